"""The rule catalogue, one module per family; importing this package registers every rule."""

from cbm.compliance.rules import (  # noqa: F401  (import registers)
    annual,
    cfe,
    open_skies,
    reductions,
    vd_activities,
    vd_verification,
)

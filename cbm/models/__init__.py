"""All models, imported together so that Alembic and the app see one complete MetaData."""

from cbm.db import Base
from cbm.models.accounts import ApiToken, User
from cbm.models.activities import Activity
from cbm.models.compliance import CheckRun, Finding, FindingEvent
from cbm.models.forces import Ceiling, Holding, Reduction
from cbm.models.jobs import JobRun, SchedulerHeartbeat
from cbm.models.notifications import Notification
from cbm.models.provenance import AuditEvent, ImportRejection, ImportRun
from cbm.models.reference import (
    OSAirfield,
    OSQuotaHolder,
    RegimeParticipation,
    Region,
    RuleParameter,
    State,
    StateAlias,
)
from cbm.models.sources import Source, SourceFile
from cbm.models.trust import TrustRun, TrustScore
from cbm.models.verification import Inspection, ObservationFlight, Quota

__all__ = [
    "Activity",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Ceiling",
    "CheckRun",
    "Finding",
    "FindingEvent",
    "Holding",
    "ImportRejection",
    "ImportRun",
    "Inspection",
    "JobRun",
    "Notification",
    "OSAirfield",
    "OSQuotaHolder",
    "ObservationFlight",
    "Quota",
    "Reduction",
    "RegimeParticipation",
    "Region",
    "RuleParameter",
    "SchedulerHeartbeat",
    "Source",
    "SourceFile",
    "State",
    "StateAlias",
    "TrustRun",
    "TrustScore",
    "User",
]

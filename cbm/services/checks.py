"""Running compliance checks: the one entry point for the CLI, the pages and the scheduler.

A check runs in one transaction: either every finding it changes is written with its run
row, or nothing is and a *failed* run row records why (in a transaction of its own).

After a successful check the trust signals are recomputed from the new findings, in a
transaction of their own once the check has committed. A failure there is logged and
recorded as a failed trust run (the previous scores stay in place); it never fails the check.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from cbm.compliance.engine import CheckResult, Scope, record_failed_run, run_check
from cbm.db import session_scope

log = logging.getLogger(__name__)


def check_now(
    session_factory: sessionmaker[Session],
    scope: Scope | None = None,
    *,
    trigger: str,
    user_id: int | None = None,
    as_of: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
    trust: bool = True,
) -> CheckResult:
    """Run a check and commit it; on any error record a failed run and re-raise.

    Then, unless ``trust`` is false, recompute the trust signals (see
    :func:`recompute_trust_after`)."""
    scope = scope or Scope()
    try:
        with session_scope(session_factory) as session:
            result = run_check(
                session, scope, trigger=trigger, user_id=user_id, as_of=as_of, progress=progress
            )
    except Exception as exc:
        with session_scope(session_factory) as session:
            record_failed_run(
                session,
                scope,
                trigger=trigger,
                user_id=user_id,
                message=f"{type(exc).__name__}: {exc}",
            )
        raise
    if trust:
        recompute_trust_after(session_factory, result.run_id, progress=progress)
    return result


def recompute_trust_after(
    session_factory: sessionmaker[Session],
    check_run_id: int,
    *,
    progress: Callable[[str], None] | None = None,
) -> int | None:
    """Recompute the trust signals after check run ``check_run_id``; the new trust run's id,
    or ``None`` when it failed (logged, and recorded as a failed trust run)."""
    from cbm.trust.compute import recompute

    if progress:
        progress("trust signals")
    try:
        outcome = recompute(session_factory, check_run_id=check_run_id, trigger="after-check")
    except Exception:
        log.exception("the trust signals could not be recomputed after check run %s", check_run_id)
        return None
    log.debug("after check run %s: %s", check_run_id, outcome.line())
    return outcome.run_id

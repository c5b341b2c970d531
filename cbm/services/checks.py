"""Running compliance checks: the one entry point for the CLI, the pages and the scheduler.

A check runs in one transaction: either every finding it changes is written with its run
row, or nothing is and a *failed* run row records why (in a transaction of its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from cbm.compliance.engine import CheckResult, Scope, record_failed_run, run_check
from cbm.db import session_scope


def check_now(
    session_factory: sessionmaker[Session],
    scope: Scope | None = None,
    *,
    trigger: str,
    user_id: int | None = None,
    as_of: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckResult:
    """Run a check and commit it; on any error record a failed run and re-raise."""
    scope = scope or Scope()
    try:
        with session_scope(session_factory) as session:
            return run_check(
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

"""A per-process cache of the *computed data* of dashboard pages, shared by every user.

What is cached: the plain data a page template renders (its :class:`~dashboards.charts.Chart`
objects with their rows, links and option JSON, score tables, evidence lists, a snapshot of
the page's context), never HTML and never ORM objects. Each request still signs the user in,
checks the data version and renders the page (navigation, CSRF token, the user's name) on
its own.

Key: the page, its path argument (region or State code), the ``year`` and ``signal`` query
arguments as given, today's date (the default year and deadline statuses depend on it) and
the application root. Each entry carries the **data version** it was computed at, and is
used only while the version is unchanged.

Data version (:func:`data_version`): one ``SELECT`` of the newest id and the latest finish
of ``trust_runs``, ``check_runs`` and ``import_runs`` (plus the latest import revert), the
newest ``finding_events`` id and the newest ``audit_events`` id. Everything the dashboards
show changes through one of them: trust scores come from a finished trust run, findings from
a check run or a finding action (an event), records from an import run (or its revert) or
an edit (an audit event in the same transaction), reference data from the reference loader
(audit events). A write that bypasses all of these (hand-written SQL) is not seen until the
next check, import or edit; restarting the server empties the cache too.

Size: an LRU of ``CBM_DASHBOARD_CACHE_SIZE`` entries per process (default 256; ``0``
turns the cache off). One entry is a page's data, tens of kilobytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import AuditEvent, CheckRun, FindingEvent, ImportRun, TrustRun

DEFAULT_SIZE = 256


def configured_size() -> int:
    raw = os.environ.get("CBM_DASHBOARD_CACHE_SIZE", "").strip()
    if not raw:
        return DEFAULT_SIZE
    try:
        return max(0, int(raw))
    except ValueError:
        return DEFAULT_SIZE


def data_version(session: Session) -> tuple[Any, ...]:
    """The stamp of everything the dashboards show (see the module docstring): one
    statement of scalar subqueries, each a max over a small table or a primary key."""
    parts = (
        select(func.max(TrustRun.id)),
        select(func.max(TrustRun.finished_at)),
        select(func.max(CheckRun.id)),
        select(func.max(CheckRun.finished_at)),
        select(func.max(FindingEvent.id)),
        select(func.max(ImportRun.id)),
        select(func.max(ImportRun.finished_at)),
        select(func.max(ImportRun.reverted_at)),
        select(func.max(AuditEvent.id)),
    )
    row = session.execute(select(*(p.scalar_subquery() for p in parts))).one()
    return tuple(row)


class PageCache:
    """A bounded, thread-safe LRU of page data, each entry valid for one data version."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_build(
        self, key: Hashable, version: tuple[Any, ...], build: Callable[[], Any]
    ) -> Any:
        """The data cached under ``key`` at ``version``, or ``build()`` (stored)."""
        if self.size <= 0:
            return build()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            self.misses += 1
        value = build()  # outside the lock: two requests may build the same page once each
        with self._lock:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

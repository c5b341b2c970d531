"""Upcoming deadlines: what each State owes in the next days, and an iCalendar feed of it.

:func:`upcoming` lists, per State, what falls due in ``[start, start + days]`` (both days
included):

- annual submissions: the VD annual exchange (15 Dec) and calendar (15 Nov), the CFE
  exchange (15 Dec) and GEMI (30 Apr), each read from the rule parameters, owed by the
  States party to the regime on that day (``regime_participation``, ``valid_to``
  inclusive), and *submitted* when the notification for the period is stored (VD and CFE:
  ``covers_year`` = due year + 1; GEMI: the due year);
- the Open Skies planning notification (1 Nov, OST parties, for the following year);
- reductions with a deadline in the window and no completion date;
- VD inspection and evaluation requests without a reply whose reply deadline
  (``inspection.reply_hours`` / ``evaluation.reply_hours`` after the request) falls in
  the window.

Day deadlines end at 23:59:59 UTC of their day. :func:`to_ical` writes them as RFC 5545
text (no library: the format is small and the folding rules are easy to get wrong
silently, so they are tested). Feed tokens (the secret in a calendar subscription URL) are
made and checked here too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from cbm.compliance.registry import EDITIONS
from cbm.models import (
    Inspection,
    Notification,
    Reduction,
    RegimeParticipation,
    RuleParameter,
    User,
)

DEFAULT_DAYS = 60
MAX_DAYS = 366
OUTSTANDING = "outstanding"
SUBMITTED = "submitted"
PRODID = "-//cbm//CSBM compliance tracker//EN"


@dataclass(frozen=True)
class AnnualObligation:
    """One annual submission: who sends what by when, and the period it covers."""

    regime: str
    kind: str  # notification kind that fulfils it
    param: str  # the month-day parameter (``MM-DD``)
    what: str
    covers_offset: int  # covers_year = due year + offset
    rule_id: str | None


ANNUAL: tuple[AnnualObligation, ...] = (
    AnnualObligation(
        "VD",
        "annual_exchange",
        "annual_exchange.due_month_day",
        "Annual exchange of military information for {year}",
        1,
        "VD-I-3",
    ),
    AnnualObligation(
        "VD",
        "annual_calendar",
        "annual_calendar.due_month_day",
        "Annual calendar of notifiable activities for {year}",
        1,
        "VD-VII-1",
    ),
    AnnualObligation(
        "CFE",
        "annual_exchange",
        "annual_exchange.due_month_day",
        "CFE annual information exchange for {year}",
        1,
        "CFE-X1",
    ),
    AnnualObligation(
        "GEMI",
        "annual_exchange",
        "annual_exchange.due_month_day",
        "Global Exchange of Military Information for {year}",
        0,
        "GEMI-3",
    ),
    AnnualObligation(
        "OST",
        "planning_notification",
        "planning_notification.due_month_day",
        "Open Skies planning notification (flights planned for {year})",
        1,
        None,
    ),
)
#: VD verification requests whose reply is due within hours of the request.
REPLIES = {
    "vd_inspection": ("inspection.reply_hours", "Reply to inspection request {id}", "VD-IX-I4"),
    "vd_evaluation": ("evaluation.reply_hours", "Reply to evaluation visit request {id}", None),
}
#: Reductions: the regime their deadline is judged under and the rule that judges it.
REDUCTION_RULES = {"treaty": ("CFE", "CFE-R2"), "unilateral": ("RED", "RED-1")}
REDUCTION_CITATIONS = {
    "treaty": "CFE Art. VIII ¶4",
    "unilateral": "the State's announced commitment",
    "withdrawal": "the State's announced commitment",
}


@dataclass(frozen=True)
class Deadline:
    """One thing one State owes by one time."""

    state: str
    regime: str
    what: str
    due_at: dt.datetime  # aware UTC; 23:59:59 of the day for day deadlines
    citation: str
    status: str  # outstanding | submitted
    subject_type: str | None
    subject_id: str | None
    uid: str
    all_day: bool = True
    rule_id: str | None = None
    counterpart: str | None = None

    @property
    def due_date(self) -> dt.date:
        return self.due_at.astimezone(dt.UTC).date()

    @property
    def outstanding(self) -> bool:
        return self.status == OUTSTANDING


class DeadlineError(ValueError):
    """A window that cannot be listed (days out of range)."""


def parse_window(
    session: Session, args: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The window of the Deadlines page, its export and calendar feed, from query-string
    values: ``from`` (default today, UTC), ``days`` (1..366, default 60) and ``state`` (a
    code or name). Returns the values and, per argument, what was wrong."""
    from cbm.services.records import state_resolver

    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "start": dt.datetime.now(dt.UTC).date(),
        "days": DEFAULT_DAYS,
        "state": None,
    }
    raw_from = (args.get("from") or "").strip()
    if raw_from:
        try:
            if len(raw_from) != 10:
                raise ValueError
            values["start"] = dt.date.fromisoformat(raw_from)
        except ValueError:
            errors["from"] = f"'{raw_from[:40]}' is not a date (YYYY-MM-DD)"
    raw_days = (args.get("days") or "").strip()
    if raw_days:
        if raw_days.isdigit() and 1 <= int(raw_days) <= MAX_DAYS:
            values["days"] = int(raw_days)
        else:
            errors["days"] = f"'{raw_days[:20]}' is not a number of days from 1 to {MAX_DAYS}"
    raw_state = " ".join((args.get("state") or "").split())
    if raw_state:
        code = state_resolver(session).resolve(raw_state)
        if code:
            values["state"] = code
        else:
            errors["state"] = (
                f"'{raw_state[:60]}' is not a State we know; use an ISO 3166 alpha-3 code "
                "(DEU) or a name (Germany)"
            )
    return values, errors


def end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)


def _parameters(session: Session) -> dict[tuple[str, str], RuleParameter]:
    wanted = [(regime, edition) for regime, edition in EDITIONS.items()]
    rows = session.scalars(
        select(RuleParameter).where(
            or_(*(and_(RuleParameter.regime == r, RuleParameter.edition == e) for r, e in wanted))
        )
    )
    return {(p.regime, p.key): p for p in rows}


def _month_day(param: RuleParameter) -> tuple[int, int]:
    month, day = (int(x) for x in param.value.strip().split("-"))
    return month, day


def _parties(session: Session, regime: str, day: dt.date) -> list[str]:
    """The States party to ``regime`` on ``day`` (``valid_to`` included)."""
    rows = session.scalars(
        select(RegimeParticipation.state_code)
        .where(
            RegimeParticipation.regime == regime,
            RegimeParticipation.status == "party",
            RegimeParticipation.valid_from <= day,
            or_(RegimeParticipation.valid_to.is_(None), RegimeParticipation.valid_to >= day),
        )
        .distinct()
    )
    return sorted(rows)


def upcoming(
    session: Session,
    *,
    start: dt.date,
    days: int = DEFAULT_DAYS,
    states: Sequence[str] | None = None,
) -> list[Deadline]:
    """Everything due from ``start`` to ``start + days`` (both included), sorted by due
    time, State and text. ``states`` limits the list to those alpha-3 codes."""
    if not 0 <= days <= MAX_DAYS:
        raise DeadlineError(f"days must be between 0 and {MAX_DAYS}")
    end = start + dt.timedelta(days=days)
    wanted = set(states) if states else None
    params = _parameters(session)
    out: list[Deadline] = []
    out.extend(_annual(session, params, start, end, wanted))
    out.extend(_reductions(session, start, end, wanted))
    out.extend(_replies(session, params, start, end, wanted))
    out.sort(key=lambda d: (d.due_at, d.state, d.regime, d.what, d.uid))
    return out


def _annual(
    session: Session,
    params: dict[tuple[str, str], RuleParameter],
    start: dt.date,
    end: dt.date,
    wanted: set[str] | None,
) -> Iterable[Deadline]:
    for ob in ANNUAL:
        param = params.get((ob.regime, ob.param))
        if param is None:
            continue  # the reference data does not define this deadline
        month, day = _month_day(param)
        for year in range(start.year, end.year + 1):
            try:
                due = dt.date(year, month, day)
            except ValueError:  # 29 February in a common year
                continue
            if not start <= due <= end:
                continue
            owed = [s for s in _parties(session, ob.regime, due) if wanted is None or s in wanted]
            if not owed:
                continue
            covers = year + ob.covers_offset
            sent = {
                sender: reference
                for sender, reference in session.execute(
                    select(Notification.sender, Notification.reference)
                    .where(
                        Notification.regime == ob.regime,
                        Notification.kind == ob.kind,
                        Notification.covers_year == covers,
                        Notification.sender.in_(owed),
                    )
                    .order_by(Notification.sent_at.desc(), Notification.reference.desc())
                )
            }
            for state in owed:
                reference = sent.get(state)
                out_uid = f"{ob.regime}.{ob.kind}.{state}.{covers}"
                yield Deadline(
                    state=state,
                    regime=ob.regime,
                    what=ob.what.format(year=covers),
                    due_at=end_of_day(due),
                    citation=param.paragraph,
                    status=SUBMITTED if reference else OUTSTANDING,
                    subject_type="notification",
                    subject_id=reference or "",
                    uid=out_uid,
                    rule_id=ob.rule_id,
                )


def _reductions(
    session: Session, start: dt.date, end: dt.date, wanted: set[str] | None
) -> Iterable[Deadline]:
    stmt = select(Reduction).where(
        Reduction.deadline.is_not(None),
        Reduction.deadline >= start,
        Reduction.deadline <= end,
        Reduction.completed_at.is_(None),
    )
    if wanted is not None:
        stmt = stmt.where(Reduction.state.in_(wanted))
    cfe_parties: dict[dt.date, set[str]] = {}
    for r in session.scalars(stmt.order_by(Reduction.deadline, Reduction.reduction_id)):
        assert r.deadline is not None
        regime, rule_id = REDUCTION_RULES.get(r.kind, ("RED", "RED-1"))
        if regime == "CFE":
            # No CFE obligation for a State that is not a party then (suspended, withdrawn).
            if r.deadline not in cfe_parties:
                cfe_parties[r.deadline] = set(_parties(session, "CFE", r.deadline))
            if r.state not in cfe_parties[r.deadline]:
                continue
        noun = {"treaty": "treaty reduction", "withdrawal": "withdrawal"}.get(
            r.kind, "unilateral reduction"
        )
        done = f", {r.reduced:,} done so far" if r.reduced is not None else ""
        yield Deadline(
            state=r.state,
            regime=regime,
            what=f"Complete {noun} {r.reduction_id}: {r.quantity:,} {r.category}{done}",
            due_at=end_of_day(r.deadline),
            citation=REDUCTION_CITATIONS.get(r.kind, "the State's announced commitment"),
            status=OUTSTANDING,
            subject_type="reduction",
            subject_id=r.reduction_id,
            uid=f"reduction.{r.reduction_id}",
            rule_id=rule_id,
        )


def _replies(
    session: Session,
    params: dict[tuple[str, str], RuleParameter],
    start: dt.date,
    end: dt.date,
    wanted: set[str] | None,
) -> Iterable[Deadline]:
    window_start = dt.datetime.combine(start, dt.time(0), tzinfo=dt.UTC)
    window_end = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    parties: dict[dt.date, set[str]] = {}
    for kind, (key, what, rule_id) in REPLIES.items():
        param = params.get(("VD", key))
        if param is None:
            continue
        hours = dt.timedelta(hours=float(param.value))
        stmt = select(Inspection).where(
            Inspection.regime == "VD",
            Inspection.kind == kind,
            Inspection.requested_at.is_not(None),
            Inspection.requested_at >= window_start - hours,
            Inspection.requested_at < window_end - hours,
            Inspection.replied_at.is_(None),
            # A reply on record (accepted, refused, force majeure) without its time is
            # still a reply: only requests with none, or marked unanswered, are open.
            or_(Inspection.reply.is_(None), Inspection.reply == "no_reply"),
        )
        if wanted is not None:
            stmt = stmt.where(Inspection.inspected_state.in_(wanted))
        for ins in session.scalars(stmt.order_by(Inspection.requested_at)):
            due = ins.requested_at.astimezone(dt.UTC) + hours
            day = due.date()
            if day not in parties:
                parties[day] = set(_parties(session, "VD", day))
            if ins.inspected_state not in parties[day]:
                continue
            yield Deadline(
                state=ins.inspected_state,
                regime="VD",
                what=f"{what.format(id=ins.inspection_id)} from {ins.inspecting_state}",
                due_at=due,
                citation=param.paragraph,
                status=OUTSTANDING,
                subject_type="inspection",
                subject_id=ins.inspection_id,
                uid=f"reply.{ins.inspection_id}",
                all_day=False,
                rule_id=rule_id,
                counterpart=ins.inspecting_state,
            )


# --------------------------------------------------------------------------------------
# iCalendar (RFC 5545)
# --------------------------------------------------------------------------------------


def ical_escape(text: str) -> str:
    """TEXT value escaping: backslash, semicolon, comma and newlines (RFC 5545 §3.3.11)."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\r", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str, limit: int = 75) -> str:
    """One content line folded to lines of at most ``limit`` octets (UTF-8), joined by
    CRLF and a space (RFC 5545 §3.1). A character is never split across lines."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for ch in line:
        width = len(ch.encode("utf-8"))
        if size + width > limit:
            out.append("".join(current))
            current = [" "]  # the continuation line's leading space counts
            size = 1
        current.append(ch)
        size += width
    out.append("".join(current))
    return "\r\n".join(out)


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def to_ical(
    deadlines: Iterable[Deadline],
    *,
    calendar_name: str,
    now: dt.datetime | None = None,
    uid_domain: str = "cbm.invalid",
    url_for_deadline: object = None,
) -> str:
    """The deadlines as one VCALENDAR (CRLF line ends, folded at 75 octets).

    Day deadlines are all-day events (``DTSTART;VALUE=DATE``); reply deadlines are timed
    (UTC). UIDs derive from what is owed (not from the status or the list order), so a
    calendar client updates an event instead of duplicating it.
    ``url_for_deadline`` (a callable of a :class:`Deadline`, optional) adds a URL line.
    """
    stamp = _stamp(now or dt.datetime.now(dt.UTC))
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"NAME:{ical_escape(calendar_name)}",
        f"X-WR-CALNAME:{ical_escape(calendar_name)}",
    ]
    for d in deadlines:
        digest = hashlib.sha256(d.uid.encode("utf-8")).hexdigest()[:24]
        lines += ["BEGIN:VEVENT", f"UID:{digest}@{uid_domain}", f"DTSTAMP:{stamp}"]
        if d.all_day:
            day = d.due_date
            lines += [
                f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
                f"DTEND;VALUE=DATE:{day + dt.timedelta(days=1):%Y%m%d}",
            ]
        else:
            lines.append(f"DTSTART:{_stamp(d.due_at)}")
        status = "" if d.outstanding else f" ({d.status})"
        lines.append(f"SUMMARY:{ical_escape(f'{d.state} · {d.regime}: {d.what}{status}')}")
        description = (
            f"{d.what}.\nOwed by {d.state} under {d.regime}; due "
            f"{d.due_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC.\n"
            f"Citation: {d.citation}.\nStatus: {d.status}."
        )
        lines.append(f"DESCRIPTION:{ical_escape(description)}")
        lines.append(f"CATEGORIES:{ical_escape(d.regime)}")
        lines.append("TRANSP:TRANSPARENT")
        if callable(url_for_deadline):
            url = url_for_deadline(d)
            if url:
                lines.append(f"URL:{url}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


# --------------------------------------------------------------------------------------
# Feed tokens
# --------------------------------------------------------------------------------------


def new_feed_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_feed_token(session: Session, user_id: int) -> str:
    """The user's feed token, made on first use."""
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    if not user.feed_token:
        user.feed_token = new_feed_token()
        session.flush()
    return user.feed_token


def renew_feed_token(session: Session, user_id: int) -> str:
    """A new token for the user; the old feed URL stops working at once."""
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    user.feed_token = new_feed_token()
    session.flush()
    return user.feed_token


def user_for_feed_token(session: Session, token: str | None) -> User | None:
    """The active user whose feed token this is, or None (empty, unknown, disabled)."""
    if not token or len(token) > 64:
        return None
    user = session.scalar(select(User).where(User.feed_token == token))
    if user is None or not user.active or not secrets.compare_digest(user.feed_token or "", token):
        return None
    return user

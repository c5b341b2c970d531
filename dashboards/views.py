"""The dashboards blueprint: overview, region, State and method pages, and a CSV per chart.

Pages read the stored trust scores (the latest finished trust run) and group records in
SQL; see :mod:`dashboards.queries`. Every chart is built by one function of a page's
``*_CHARTS`` registry, which the page and the chart's CSV route both call, so the CSV is
exactly the data of the chart with the same URL filters (``year``, ``signal``).

A page's data (its charts and tables, :func:`overview_data`, :func:`region_data`,
:func:`state_data`) is computed once per data version and shared by every user through the
per-process cache of :mod:`dashboards.cache`; each request renders its own page from it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy.orm import Session

from cbm.web.database import db_session
from dashboards import charts as ch
from dashboards import queries as q
from dashboards.cache import PageCache, configured_size, data_version

bp = Blueprint(
    "dashboards",
    __name__,
    url_prefix="/dashboards",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

HERE = Path(__file__).parent
MAP_FILE = HERE / "static" / "dashboards" / "vendor" / "world-atlas" / "osce-regions.json"
#: Largest activities the region timeline draws (the table says how many there are).
TIMELINE_LIMIT = 300
REGION_FINDINGS = 50
LATEST_FINDINGS = 10
MOVERS = 5
SUBJECT_KINDS = {
    "notification": "notifications",
    "activity": "activities",
    "inspection": "inspections",
    "observation_flight": "observation_flights",
    "flight": "observation_flights",
    "holding": "holdings",
    "reduction": "reductions",
    "quota": "quotas",
}


class BadArgument(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def map_geometry() -> dict[str, Any]:
    """The region shapes (precomputed SVG paths, see dashboards/tools/vendor.py)."""
    return json.loads(MAP_FILE.read_text(encoding="utf-8"))


def _with_query(url: str, values: Mapping[str, Any]) -> str:
    values = {k: v for k, v in values.items() if v not in (None, "")}
    return f"{url}?{urlencode(values)}" if values else url


def _year_range(year: int) -> dict[str, str]:
    return {"due_from": f"{year}-01-01", "due_to": f"{year}-12-31"}


def findings_url(state: str | None = None, year: int | None = None, **extra: Any) -> str:
    values: dict[str, Any] = {"state": state, **extra}
    if year is not None:
        values.update(_year_range(year))
    return _with_query(url_for("findings.index"), values)


def records_url(kind: str, **filters: Any) -> str:
    return _with_query(url_for("records.list_records", kind=kind), filters)


def record_link(subject_type: str | None, subject_id: str | None) -> str | None:
    """The page of a record named by a finding or a trust signal's details."""
    from cbm.web.records import encode_key

    kind = SUBJECT_KINDS.get(subject_type or "")
    if not kind or not subject_id:
        return None
    if kind == "activities":  # keyed by (activity_id, source): search by the id
        return records_url("activities", q=subject_id)
    if kind in ("notifications", "inspections", "observation_flights", "reductions"):
        return url_for("records.record", kind=kind, key=encode_key([str(subject_id)]))
    return records_url(kind, q=subject_id)


def _int_arg(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1900 <= int(raw) <= 2200:
        raise BadArgument(name, f"'{raw[:20]}' is not a year; use four digits such as 2023")
    return int(raw)


def _signal_arg(default: str = "index") -> str:
    raw = (request.args.get("signal") or "").strip()
    if not raw:
        return default
    if raw not in q.SIGNALS:
        raise BadArgument(
            "signal", f"'{raw[:30]}' is not a signal; use one of {', '.join(q.SIGNALS)}"
        )
    return raw


def signal_titles() -> dict[str, str]:
    titles = dict(q.SIGNAL_TITLES)
    method = trust_method()
    for sig in (method or {}).get("signals", []):
        if sig.get("id") in titles and sig.get("title"):
            titles[sig["id"]] = sig["title"]
    return titles


@lru_cache(maxsize=1)
def trust_method() -> dict[str, Any] | None:
    """The published trust method (:func:`cbm.trust.method.method_description`), or None
    in an installation without it."""
    try:
        from cbm.trust.method import method_description
    except ImportError:
        return None
    return method_description()


# --------------------------------------------------------------------------------------
# page contexts: the data a page's charts share, loaded once
# --------------------------------------------------------------------------------------


class Context:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.titles = signal_titles()

    @cached_property
    def run(self) -> Any:
        return q.latest_run(self.session)

    @cached_property
    def years(self) -> list[int]:
        return q.run_years(self.session, self.run.id) if self.run else []

    @cached_property
    def states(self) -> dict[str, q.Place]:
        return q.states(self.session)

    @cached_property
    def regions(self) -> list[q.Place]:
        return q.regions(self.session)

    @cached_property
    def region_names(self) -> dict[str, str]:
        return {r.code: r.name for r in self.regions}

    def choose_year(self) -> int:
        asked = _int_arg("year")
        if asked is not None:
            return asked
        this_year = dt.datetime.now(dt.UTC).year
        past = [y for y in self.years if y <= this_year]
        if past:
            return past[-1]
        return self.years[-1] if self.years else this_year - 1

    def state_name(self, code: str | None) -> str:
        if not code:
            return ""
        place = self.states.get(code)
        return place.name if place else code


class OverviewContext(Context):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.year = self.choose_year()

    @cached_property
    def region_scores(self) -> dict[str, dict[int, q.Score]]:
        out: dict[str, dict[int, q.Score]] = {}
        if self.run:
            for s in q.scores(self.session, self.run.id, "region", signal="index"):
                out.setdefault(s.subject, {})[s.year] = s
        return out

    @cached_property
    def trend_years(self) -> list[int]:
        return [y for y in self.years if y <= max(self.year, self.years[0])] if self.years else []


class RegionContext(Context):
    def __init__(self, session: Session, code: str) -> None:
        super().__init__(session)
        names = self.region_names
        if code not in names:
            abort(404, description=f"There is no region '{code}'.")
        self.code = code
        self.name = names[code]
        self.year = self.choose_year()
        self.signal = _signal_arg()
        self.members = sorted(c for c, p in self.states.items() if p.region == code)

    @cached_property
    def year_scores(self) -> dict[tuple[str, str], q.Score]:
        if not self.run:
            return {}
        rows = q.scores(self.session, self.run.id, "state", year=self.year, subjects=self.members)
        return {(s.subject, s.signal): s for s in rows}

    @cached_property
    def region_year_scores(self) -> dict[str, q.Score]:
        if not self.run:
            return {}
        rows = q.scores(self.session, self.run.id, "region", year=self.year, subjects=[self.code])
        return {s.signal: s for s in rows}


class StateContext(Context):
    def __init__(self, session: Session, code: str) -> None:
        super().__init__(session)
        code = code.upper()
        if code not in self.states:
            abort(404, description=f"There is no participating State '{code}'.")
        self.code = code
        self.place = self.states[code]
        self.year = self.choose_year()

    @cached_property
    def all_scores(self) -> list[q.Score]:
        if not self.run:
            return []
        return q.scores(
            self.session,
            self.run.id,
            "state",
            subjects=[self.code],
            details=True,
            details_year=self.year,
        )


# --------------------------------------------------------------------------------------
# overview charts
# --------------------------------------------------------------------------------------


def overview_regions(ctx: OverviewContext) -> ch.Chart:
    rows, links = [], []
    for region in ctx.regions:
        s = ctx.region_scores.get(region.code, {}).get(ctx.year)
        rows.append(
            [
                region.code,
                region.name,
                ctx.year,
                None if s is None else s.score,
                None if s is None else s.change,
                None if s is None else s.worst,
                None if s is None else s.items,
            ]
        )
        links.append(url_for(".region", region_code=region.code, year=ctx.year))
    return ch.Chart(
        "regions",
        f"Trust index by region, {ctx.year}",
        ["region", "region_name", "year", "index", "change", "worst_member", "items"],
        rows if ctx.run else [],
        links=links,
        description="The map and the table show the same figures.",
    )


def overview_trend(ctx: OverviewContext) -> ch.Chart:
    years = ctx.trend_years
    rows, series = [], []
    for region in ctx.regions:
        by_year = ctx.region_scores.get(region.code, {})
        values = [by_year[y].score if y in by_year else None for y in years]
        urls = [url_for(".region", region_code=region.code, year=y) for y in years]
        series.append((region.name, values, urls))
        for y, v in zip(years, values, strict=True):
            rows.append([region.code, region.name, y, v])
    option = ch.line_option("Trust index by region over the years", years, series)
    return ch.Chart(
        "trend",
        "Trust index by region over the years",
        ["region", "region_name", "year", "index"],
        rows if ctx.run else [],
        option=option,
        height=360,
    )


def overview_movers(ctx: OverviewContext) -> ch.Chart:
    scores = []
    if ctx.run:
        scores = [
            s
            for s in q.scores(ctx.session, ctx.run.id, "state", year=ctx.year, signal="index")
            if s.change is not None and s.score is not None
        ]
    falls = sorted((s for s in scores if s.change < 0), key=lambda s: (s.change, s.subject))
    rises = sorted((s for s in scores if s.change > 0), key=lambda s: (-s.change, s.subject))
    chosen = falls[:MOVERS] + rises[:MOVERS]
    chosen.sort(key=lambda s: (s.change, s.subject))
    rows = [
        [s.subject, ctx.state_name(s.subject), ctx.year, s.score, s.change, s.score - s.change]
        for s in chosen
    ]
    links = [url_for(".state", state_code=s.subject, year=ctx.year) for s in chosen]
    labels = [f"{ctx.state_name(s.subject)} ({ch.change_text(s.change)})" for s in chosen]
    option = ch.bar_option(
        "Biggest movers",
        labels,
        [
            ("Fell", [round(s.change, 1) if s.change < 0 else None for s in chosen], links),
            ("Rose", [round(s.change, 1) if s.change > 0 else None for s in chosen], links),
        ],
        horizontal=True,
        stack=True,
        colours=("#D55E00", "#0072B2"),
        y_name="change (points)",
    )
    option["xAxis"].pop("min", None)
    return ch.Chart(
        "movers",
        f"Biggest movers, {ctx.year} against {ctx.year - 1}",
        ["state", "state_name", "year", "index", "change", "previous_index"],
        rows,
        option=option,
        links=links,
        height=max(160, 34 * len(rows) + 80),
        empty_text="No State's index changed against the previous year (or there are no scores).",
    )


def findings_chart(found: Sequence[Any], title: str, empty_text: str | None = None) -> ch.Chart:
    """Findings as a table chart, each row linking to its finding page."""
    rows = [
        [
            f.id,
            f.rule_id,
            f.severity,
            f.status,
            f.state,
            f.period or "",
            f.due_at.date().isoformat() if f.due_at else "",
            f.summary,
        ]
        for f in found
    ]
    extra = {"empty_text": empty_text} if empty_text else {}
    return ch.Chart(
        "findings",
        title,
        ["finding", "rule", "severity", "status", "state", "period", "due", "summary"],
        rows,
        links=[url_for("findings.finding", finding_id=f.id) for f in found],
        **extra,
    )


def overview_findings(ctx: OverviewContext) -> ch.Chart:
    found = q.latest_findings(ctx.session, limit=LATEST_FINDINGS)
    return findings_chart(found, "Latest findings")


OVERVIEW_CHARTS: dict[str, Callable[[Any], ch.Chart]] = {
    "regions": overview_regions,
    "trend": overview_trend,
    "movers": overview_movers,
    "findings": overview_findings,
}


# --------------------------------------------------------------------------------------
# region charts
# --------------------------------------------------------------------------------------


def region_heatmap(ctx: RegionContext) -> ch.Chart:
    signals = list(q.SIGNALS)
    rows, links = [], []
    for code in ctx.members:
        row: list[Any] = [code, ctx.state_name(code), ctx.year]
        for sig in signals:
            s = ctx.year_scores.get((code, sig))
            row.append(None if s is None else s.score)
        rows.append(row)
        links.append(url_for(".state", state_code=code, year=ctx.year))
    agg: list[Any] = [ctx.code, ctx.name, ctx.year]
    for sig in signals:
        s = ctx.region_year_scores.get(sig)
        agg.append(None if s is None else s.score)
    return ch.Chart(
        "heatmap",
        f"Members × signals, {ctx.year}",
        ["subject", "name", "year", *signals],
        ([*rows, agg]) if ctx.run else [],
        links=[*links, None],
    )


def region_trend(ctx: RegionContext) -> ch.Chart:
    years = ctx.years
    rows, series = [], []
    if ctx.run:
        region = {
            s.year: s.score
            for s in q.scores(
                ctx.session, ctx.run.id, "region", subjects=[ctx.code], signal=ctx.signal
            )
        }
        members: dict[str, dict[int, float | None]] = {}
        for s in q.scores(
            ctx.session, ctx.run.id, "state", subjects=ctx.members, signal=ctx.signal
        ):
            members.setdefault(s.subject, {})[s.year] = s.score
        values = [region.get(y) for y in years]
        series.append((f"{ctx.name} (region)", values, None))
        rows += [[ctx.code, ctx.name, y, ctx.signal, v] for y, v in zip(years, values, strict=True)]
        for code in ctx.members:
            values = [members.get(code, {}).get(y) for y in years]
            urls = [url_for(".state", state_code=code, year=y) for y in years]
            series.append((ctx.state_name(code), values, urls))
            rows += [
                [code, ctx.state_name(code), y, ctx.signal, v]
                for y, v in zip(years, values, strict=True)
            ]
    title = f"{ctx.titles.get(ctx.signal, ctx.signal)} over the years"
    option = ch.line_option(title, years, series, emphasise=f"{ctx.name} (region)")
    return ch.Chart(
        "trend",
        title,
        ["subject", "name", "year", "signal", "score"],
        rows,
        option=option,
        height=380,
    )


def region_activities(ctx: RegionContext) -> ch.Chart:
    points, total = q.activities_in_year(ctx.session, ctx.members, ctx.year, TIMELINE_LIMIT)
    rows, links, plotted = [], [], []
    from cbm.web.records import encode_key

    for p in points:
        url = url_for(
            "records.record", kind="activities", key=encode_key([p.activity_id, p.source])
        )
        rows.append(
            [
                p.activity_id,
                p.source,
                p.state,
                p.name or "",
                p.kind,
                p.start_date.isoformat(),
                p.end_date.isoformat() if p.end_date else "",
                p.troops,
            ]
        )
        links.append(url)
        plotted.append(
            {
                "label": f"{p.name or p.activity_id} ({p.state}, {p.troops or 'troops unknown'})",
                "date": p.start_date.isoformat(),
                "lane": p.state,
                "troops": p.troops,
                "url": url,
            }
        )
    lanes = sorted({p.state for p in points}) or ctx.members
    option = ch.timeline_option(
        "Activities", lanes, plotted, start=f"{ctx.year}-01-01", end=f"{ctx.year}-12-31"
    )
    shown = f"the {len(points)} largest of {total:,}" if total > len(points) else f"{total:,}"
    chart = ch.Chart(
        "activities",
        f"Military activities starting in {ctx.year} ({shown})",
        ["activity_id", "source", "state", "name", "kind", "start_date", "end_date", "troops"],
        rows,
        option=option,
        links=links,
        description="Each bubble is an activity, placed at its start date on the row of the "
        "conducting State; its area grows with the troops involved (a hollow bubble: troops "
        "not declared). Click one to open its record.",
        height=max(220, 38 * len(lanes) + 90),
        empty_text=f"No activities of this region's States start in {ctx.year}.",
    )
    return chart


def region_findings(ctx: RegionContext) -> ch.Chart:
    found = q.latest_findings(ctx.session, limit=REGION_FINDINGS, states=ctx.members, year=ctx.year)
    return findings_chart(
        found,
        f"Findings of its members due in {ctx.year}",
        f"No findings of this region's States are due in {ctx.year}.",
    )


REGION_CHARTS: dict[str, Callable[[Any], ch.Chart]] = {
    "heatmap": region_heatmap,
    "trend": region_trend,
    "activities": region_activities,
    "findings": region_findings,
}


# --------------------------------------------------------------------------------------
# State charts
# --------------------------------------------------------------------------------------


def state_signals(ctx: StateContext) -> ch.Chart:
    years = ctx.years
    by = {(s.signal, s.year): s for s in ctx.all_scores}
    rows, series = [], []
    year_urls = [url_for(".state", state_code=ctx.code, year=y) for y in years]
    for sig in q.SIGNALS:
        values = [by[(sig, y)].score if (sig, y) in by else None for y in years]
        urls = [f"{u}#signal-{sig}" for u in year_urls]
        series.append((ctx.titles.get(sig, sig), values, urls))
        for y in years:
            s = by.get((sig, y))
            if s is not None:
                rows.append([ctx.code, y, sig, s.score, s.change, s.items])
    title = "Trust signals over the years"
    option = ch.line_option(title, years, series, emphasise=ctx.titles.get("index"))
    return ch.Chart(
        "signals",
        title,
        ["state", "year", "signal", "score", "change", "items"],
        rows,
        option=option,
        height=380,
    )


def state_calendar(ctx: StateContext) -> ch.Chart:
    from cbm.compliance import deadlines as dl

    items = dl.upcoming(ctx.session, start=dt.date(ctx.year, 1, 1), days=364, states=[ctx.code])
    rows, links = [], []
    for d in items:
        rows.append(
            [d.due_date.isoformat(), d.regime, d.what, d.status, d.rule_id or "", d.citation]
        )
        link = record_link(d.subject_type, d.subject_id)
        if link is None and d.subject_type == "notification":
            link = records_url("notifications", state=ctx.code, regime=d.regime)
        links.append(link)
    return ch.Chart(
        "calendar",
        f"Obligations due in {ctx.year}",
        ["due", "regime", "obligation", "status", "rule", "citation"],
        rows,
        links=links,
        empty_text=f"Nothing is due from {ctx.place.name} in {ctx.year}.",
    )


def state_findings(ctx: StateContext) -> ch.Chart:
    counts = q.findings_by_year(ctx.session, ctx.code)
    years = sorted(counts)
    rows = [
        [ctx.code, y, sev, counts[y][sev]]
        for y in years
        for sev in q.SEVERITIES
        if sev in counts[y]
    ]
    series = [
        (
            sev,
            [counts[y].get(sev) for y in years],
            [findings_url(ctx.code, y, severity=sev) for y in years],
        )
        for sev in q.SEVERITIES
        if any(sev in counts[y] for y in years)
    ]
    option = ch.bar_option(
        "Findings by year",
        years,
        series,
        stack=True,
        colours=[ch.SEVERITY_COLOURS[s[0]] for s in series],
        y_name="findings",
    )
    return ch.Chart(
        "findings",
        "Findings by year (due date) and severity",
        ["state", "year", "severity", "findings"],
        rows,
        option=option,
        links=[findings_url(ctx.code, r[1], severity=r[2]) for r in rows],
        empty_text=f"No findings about {ctx.place.name}.",
    )


def state_submissions(ctx: StateContext) -> ch.Chart:
    from cbm.compliance import deadlines as dl

    obligations = [o for o in dl.ANNUAL if o.rule_id]
    found = q.submissions(ctx.session, ctx.code, obligations)
    years = sorted({y for (_, _, y) in found if y <= ctx.year})[-8:]
    rows, links = [], []
    for o in obligations:
        for y in years:
            entry = found.get((o.regime, o.kind, y))
            if entry is None:
                continue
            finding = entry.get("finding")
            if finding and finding["severity"] == "breach":
                status = "missing"
            elif finding and finding["severity"] == "late":
                status = "late"
            elif entry.get("reference"):
                status = "on time"
            else:
                status = finding["severity"] if finding else "not judged"
            received = entry.get("received")
            rows.append(
                [
                    o.regime,
                    o.kind,
                    y,
                    status,
                    entry.get("reference") or "",
                    received.date().isoformat() if received else "",
                    finding["id"] if finding else "",
                ]
            )
            if finding:
                links.append(url_for("findings.finding", finding_id=finding["id"]))
            else:
                links.append(record_link("notification", entry.get("reference")))
    return ch.Chart(
        "submissions",
        "Annual submissions: on time, late or missing",
        ["regime", "kind", "covers_year", "status", "reference", "received", "finding"],
        rows,
        links=links,
        empty_text="No annual submissions or findings about them are stored.",
    )


def state_quotas(ctx: StateContext) -> ch.Chart:
    all_rows = q.quotas(ctx.session, ctx.code)
    chosen = [r for r in all_rows if r.year == ctx.year]
    rows, links, labels = [], [], []
    for r in chosen:
        rows.append(
            [r.year, r.regime, r.kind, r.counterpart, r.holder, r.quota, r.used, r.remaining]
        )
        if r.regime == "OST":
            links.append(records_url("observation_flights", state=ctx.code, year=r.year))
        else:
            links.append(records_url("inspections", state=ctx.code, year=r.year, regime=r.regime))
        who = f" over {r.counterpart}" if r.counterpart else ""
        labels.append(f"{r.regime} {r.kind}{who}")
    used = [r.used for r in chosen]
    remaining = [max(0, r.remaining) if r.remaining is not None else None for r in chosen]
    over = [
        max(0, -r.remaining) if r.remaining is not None and r.remaining < 0 else None
        for r in chosen
    ]
    series = [("Used", used, links), ("Remaining", remaining, links)]
    if any(over):
        series.append(("Over quota", over, links))
    option = ch.bar_option(
        "Quotas",
        labels,
        series,
        stack=True,
        horizontal=True,
        colours=("#0072B2", "#E69F00", "#D55E00"),
        y_name="inspections / flights",
    )
    return ch.Chart(
        "quotas",
        f"Quotas used and remaining, {ctx.year}",
        ["year", "regime", "kind", "counterpart", "shared_by", "quota", "used", "remaining"],
        rows,
        option=option,
        links=links,
        height=max(180, 30 * len(rows) + 90),
        description="Passive quotas: inspections and flights the State must accept; active "
        "quotas: Open Skies flights it may conduct over each counterpart. Only visits that "
        "count against a quota are counted. An Open Skies group shares one passive quota.",
        empty_text=f"No quotas or quota-counted visits are stored for {ctx.year}.",
    )


def state_verification(ctx: StateContext) -> ch.Chart:
    data = q.verification_by_year(ctx.session, ctx.code)
    years = sorted(data)
    keys = (
        ("inspections_received", "Inspections & visits received", "inspections"),
        ("inspections_conducted", "Inspections & visits conducted", "inspections"),
        ("flights_received", "Flights received", "observation_flights"),
        ("flights_conducted", "Flights conducted", "observation_flights"),
    )
    rows = [[ctx.code, y, *[data[y].get(k, 0) for k, _, _ in keys]] for y in years]
    series = [
        (
            label,
            [data[y].get(k, 0) for y in years],
            [records_url(kind, state=ctx.code, year=y) for y in years],
        )
        for k, label, kind in keys
    ]
    option = ch.bar_option("Verification", years, series, y_name="count")
    return ch.Chart(
        "verification",
        "Inspections, evaluation visits and observation flights by year",
        ["state", "year", *[k for k, _, _ in keys]],
        rows,
        option=option,
        links=[records_url("inspections", state=ctx.code, year=r[1]) for r in rows],
        empty_text="No inspections, evaluation visits or flights involve this State.",
    )


def state_holdings(ctx: StateContext) -> ch.Chart:
    data = q.holdings_and_ceilings(ctx.session, ctx.code, ctx.year)
    rows = [
        [
            h.category,
            h.source,
            h.as_of.isoformat() if h.as_of else "",
            h.count,
            h.regime or "",
            h.ceiling,
            None if h.count is None or not h.ceiling else round(100 * h.count / h.ceiling, 1),
        ]
        for h in data
    ]
    labels = [f"{h.category} ({h.source})" if h.source else h.category for h in data]
    links = [records_url("holdings", state=ctx.code, q=h.category) for h in data]
    # Categories differ by orders of magnitude (personnel against aircraft): the chart
    # shows each holding as a share of its ceiling; the table has the counts.
    capped = [(i, h) for i, h in enumerate(data) if h.ceiling and h.count is not None]
    option = ch.bar_option(
        "Holdings as a share of the ceiling",
        [labels[i] for i, _ in capped],
        [
            (
                "Holding (% of ceiling)",
                [round(100 * h.count / h.ceiling, 1) for _, h in capped],
                [links[i] for i, _ in capped],
            )
        ],
        horizontal=True,
        colours=("#0072B2",),
        y_name="% of ceiling",
    )
    option["series"][0]["markLine"] = {
        "silent": True,
        "symbol": "none",
        "data": [{"xAxis": 100, "name": "ceiling"}],
        "lineStyle": {"color": "#000000", "type": "dashed"},
        "label": {"formatter": "ceiling"},
    }
    if not capped:
        option = None
    return ch.Chart(
        "holdings",
        f"Holdings against ceilings, {ctx.year}",
        ["category", "source", "as_of", "holding", "regime", "ceiling", "percent_of_ceiling"],
        rows,
        option=option,
        links=links,
        description="The latest national totals declared on or before 31 December, beside "
        "the ceiling in force that year; the chart shows those with a ceiling, as a share "
        "of it (the dashed line is the ceiling).",
        height=max(160, 32 * len(data) + 90),
        empty_text="No holdings or ceilings are stored for this State.",
    )


def state_reductions(ctx: StateContext) -> ch.Chart:
    data = q.reductions(ctx.session, ctx.code)
    rows, links, labels, done, left = [], [], [], [], []
    for r in data:
        reduced = r.reduced or 0
        rows.append(
            [
                r.reduction_id,
                r.kind,
                r.category,
                r.quantity,
                r.reduced,
                r.deadline.isoformat() if r.deadline else "",
                r.completed_at.isoformat() if r.completed_at else "",
                round(100 * reduced / r.quantity, 1) if r.quantity else None,
            ]
        )
        links.append(record_link("reduction", r.reduction_id))
        labels.append(f"{r.reduction_id} ({r.category})")
        done.append(reduced)
        left.append(max(0, r.quantity - reduced))
    option = ch.bar_option(
        "Reductions",
        labels,
        [("Reduced", done, links), ("Still to reduce", left, links)],
        stack=True,
        horizontal=True,
        colours=("#009E73", "#E69F00"),
        y_name="items",
    )
    return ch.Chart(
        "reductions",
        "Reductions and withdrawals: progress",
        [
            "reduction_id",
            "kind",
            "category",
            "quantity",
            "reduced",
            "deadline",
            "completed",
            "percent",
        ],
        rows,
        option=option,
        links=links,
        height=max(160, 32 * len(rows) + 90),
        empty_text="No reductions or withdrawals are stored for this State.",
    )


STATE_CHARTS: dict[str, Callable[[Any], ch.Chart]] = {
    "signals": state_signals,
    "calendar": state_calendar,
    "findings": state_findings,
    "submissions": state_submissions,
    "quotas": state_quotas,
    "verification": state_verification,
    "holdings": state_holdings,
    "reductions": state_reductions,
}


# --------------------------------------------------------------------------------------
# building a page's charts
# --------------------------------------------------------------------------------------


def _build(
    registry: Mapping[str, Callable[[Any], ch.Chart]], ctx: Any, csv_url: Callable[[str], str]
) -> dict[str, ch.Chart]:
    out = {}
    for key, fn in registry.items():
        chart = fn(ctx)
        chart.csv_url = csv_url(key)
        if chart.option is not None and not chart.empty:
            chart.option_json = chart_json_text(chart.option)
        out[key] = chart
    return out


def _csv(chart: ch.Chart, filename: str) -> Response:
    return Response(
        chart.csv_text(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _bad_argument(exc: BadArgument) -> tuple[str, int]:
    return render_template("dashboards/bad_argument.html", error=exc), 400


def _filters(ctx: Any, **extra: Any) -> dict[str, Any]:
    values = {"year": ctx.year, **extra}
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------------------
# page data: computed once per data version and shared by every user (dashboards.cache)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What a page says about the trust run its scores come from."""

    id: int
    method_version: str
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class HolderInfo:
    holder: str
    members: str
    passive_quota: int | None


class Snapshot:
    """A page context's plain values, as the templates read them (no session, no ORM
    objects), so that a page's data can be cached and shared."""

    FIELDS = (
        "year",
        "years",
        "titles",
        "states",
        "regions",
        "region_names",
        "code",
        "name",
        "members",
        "signal",
        "place",
        "trend_years",
    )

    def __init__(self, ctx: Context) -> None:
        for name in self.FIELDS:
            if hasattr(type(ctx), name) or name in vars(ctx):
                setattr(self, name, getattr(ctx, name))
        run = ctx.run
        self.run = RunInfo(run.id, run.method_version, run.finished_at) if run is not None else None

    def state_name(self, code: str | None) -> str:
        if not code:
            return ""
        place = self.states.get(code)
        return place.name if place else code


def page_cache() -> PageCache:
    """This process's cache of page data (one per application)."""
    cache = current_app.extensions.get("dashboards_cache")
    if cache is None:
        cache = current_app.extensions["dashboards_cache"] = PageCache(configured_size())
    return cache


def _cached_page(session: Session, page: str, code: str, build: Callable[[], dict]) -> dict:
    args = request.args
    key = (
        page,
        code,
        (args.get("year") or "").strip(),
        (args.get("signal") or "").strip(),
        dt.datetime.now(dt.UTC).date(),
        request.script_root,
    )
    cache = page_cache()
    if cache.size <= 0:
        return build()
    return cache.get_or_build(key, data_version(session), build)


def overview_data(session: Session) -> dict[str, Any]:
    ctx = OverviewContext(session)
    filters = _filters(ctx)
    charts = _build(OVERVIEW_CHARTS, ctx, lambda k: url_for(".overview_csv", chart=k, **filters))
    sparks = {}
    for region in ctx.regions:
        by_year = ctx.region_scores.get(region.code, {})
        values = [by_year[y].score if y in by_year else None for y in ctx.trend_years]
        sparks[region.code] = ch.sparkline(values, ctx.trend_years)
    return {
        "ctx": Snapshot(ctx),
        "charts": charts,
        "regions": {row[0]: row for row in charts["regions"].rows},
        "sparks": sparks,
        "has_records": _has_records(session) if not ctx.run else True,
        "any_findings": q.any_findings(session) if not ctx.run else True,
    }


def region_data(session: Session, region_code: str) -> dict[str, Any]:
    ctx = RegionContext(session, region_code)
    filters = _filters(ctx, signal=ctx.signal if ctx.signal != "index" else None)
    charts = _build(
        REGION_CHARTS,
        ctx,
        lambda k: url_for(".region_csv", region_code=ctx.code, chart=k, **filters),
    )
    return {
        "ctx": Snapshot(ctx),
        "charts": charts,
        "count_findings": q.count_findings(session, ctx.members, ctx.year),
    }


def state_data(session: Session, state_code: str) -> dict[str, Any]:
    ctx = StateContext(session, state_code)
    filters = _filters(ctx)
    charts = _build(
        STATE_CHARTS,
        ctx,
        lambda k: url_for(".state_csv", state_code=ctx.code, chart=k, **filters),
    )
    year_scores = {s.signal: s for s in ctx.all_scores if s.year == ctx.year}
    holder = q.open_skies_holder(session, ctx.code)
    return {
        "ctx": Snapshot(ctx),
        "charts": charts,
        "year_scores": year_scores,
        "evidence": {sig: _evidence(s.details) for sig, s in year_scores.items()},
        "holder": HolderInfo(holder.holder, holder.members, holder.passive_quota)
        if holder is not None
        else None,
    }


# --------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------


@bp.get("/", endpoint="overview")
def overview() -> Any:
    session = db_session()
    try:
        data = _cached_page(session, "overview", "", lambda: overview_data(session))
    except BadArgument as exc:
        return _bad_argument(exc)
    return render_template(
        "dashboards/overview.html", geo=map_geometry(), **data, **_common(data["ctx"])
    )


@bp.get("/trust_scores.csv", endpoint="trust_scores")
def trust_scores() -> Response:
    """Every trust score of the latest trust run behind these pages, with the filters of
    ``cbm export trust_scores`` (level, subject or state, year, signal; ``format``): the
    numbers of every chart, in one file, through the common export path."""
    from cbm.web.exports import export_response

    return export_response("trust_scores", request.args)


@bp.get("/<chart>.csv", endpoint="overview_csv")
def overview_csv(chart: str) -> Any:
    if chart not in OVERVIEW_CHARTS:
        abort(404)
    try:
        ctx = OverviewContext(db_session())
    except BadArgument as exc:
        return _bad_argument(exc)
    return _csv(OVERVIEW_CHARTS[chart](ctx), f"cbm-overview-{chart}-{ctx.year}.csv")


@bp.get("/regions/<region_code>", endpoint="region")
def region(region_code: str) -> Any:
    session = db_session()
    try:
        data = _cached_page(
            session, "region", region_code, lambda: region_data(session, region_code)
        )
    except BadArgument as exc:
        return _bad_argument(exc)
    return render_template("dashboards/region.html", **data, **_common(data["ctx"]))


@bp.get("/regions/<region_code>/<chart>.csv", endpoint="region_csv")
def region_csv(region_code: str, chart: str) -> Any:
    try:
        ctx = RegionContext(db_session(), region_code)
    except BadArgument as exc:
        return _bad_argument(exc)
    if chart not in REGION_CHARTS:
        abort(404)
    suffix = f"-{ctx.signal}" if chart == "trend" else f"-{ctx.year}"
    return _csv(REGION_CHARTS[chart](ctx), f"cbm-{ctx.code}-{chart}{suffix}.csv")


@bp.get("/states/<state_code>", endpoint="state")
def state(state_code: str) -> Any:
    session = db_session()
    code = state_code.upper()
    try:
        data = _cached_page(session, "state", code, lambda: state_data(session, code))
    except BadArgument as exc:
        return _bad_argument(exc)
    return render_template("dashboards/state.html", **data, **_common(data["ctx"]))


@bp.get("/states/<state_code>/<chart>.csv", endpoint="state_csv")
def state_csv(state_code: str, chart: str) -> Any:
    try:
        ctx = StateContext(db_session(), state_code)
    except BadArgument as exc:
        return _bad_argument(exc)
    if chart not in STATE_CHARTS:
        abort(404)
    return _csv(STATE_CHARTS[chart](ctx), f"cbm-{ctx.code}-{chart}-{ctx.year}.csv")


@bp.get("/method", endpoint="method")
def method() -> Any:
    ctx = Context(db_session())
    return render_template(
        "dashboards/method.html",
        method=trust_method(),
        run=ctx.run,
        titles=ctx.titles,
        signals=q.SIGNALS,
    )


def _evidence(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The findings and records a signal lists (``details`` of the score), with links."""
    details = details or {}
    findings = []
    for f in details.get("findings") or []:
        if isinstance(f, Mapping) and f.get("id") is not None:
            findings.append({**f, "url": url_for("findings.finding", finding_id=f["id"])})
    records = []
    for r in details.get("records") or []:
        if isinstance(r, Mapping):
            records.append({**r, "url": record_link(r.get("subject_type"), r.get("subject_id"))})
    more = sum(int(details.get(k) or 0) for k in ("more", "findings_more", "records_more"))
    return {"findings": findings, "records": records, "more": more}


def _has_records(session: Session) -> bool:
    from sqlalchemy import select

    from cbm.models import Activity, Inspection, Notification

    return any(
        session.scalar(select(col).limit(1)) is not None
        for col in (Activity.id, Notification.id, Inspection.id)
    )


def _common(ctx: Any) -> dict[str, Any]:
    return {
        "score_bin": ch.score_bin,
        "score_text": ch.score_text,
        "change_text": ch.change_text,
        "legend": ch.LEGEND,
        "signals": q.SIGNALS,
        "titles": ctx.titles,
        "chart_json": chart_json,
        "table_rows": ch.table_rows,
    }


def chart_json_text(option: Any) -> str:
    """An option as JSON safe inside <script type="application/json">."""
    text = json.dumps(option, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_json(chart: ch.Chart) -> Markup:
    """The chart's option as JSON safe inside <script type="application/json"> (built once
    with the page's data, see :func:`_build`)."""
    return Markup(chart.option_json or chart_json_text(chart.option))

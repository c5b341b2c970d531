"""The compliance pages: rules, findings (list, CSV, one finding and its actions), check
runs, deadlines and the calendar feed — with data and empty, for each role."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from conftest import csrf_token_from
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_findings_service import add_finding

from cbm.compliance.registry import all_rules
from cbm.models import CheckRun, Finding, FindingEvent, User
from cbm.services.findings import FindingFilters, iter_findings_csv


def text_of(response) -> str:
    return response.get_data(as_text=True)


def post(client, url: str, data: dict[str, Any] | None = None, *, page: str | None = None):
    """POST with the CSRF token of ``page`` (default: the overview)."""
    token = csrf_token_from(text_of(client.get(page or "/")))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def finding_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-finding="(\d+)">', html)


@pytest.fixture()
def demo(session: Session) -> int:
    """The demo data set with one full check run; returns the run id."""
    from cbm.compliance.engine import run_check
    from cbm.demo.loader import load_demo

    load_demo(session)
    result = run_check(session, trigger="cli")
    session.commit()
    return result.run_id


# --------------------------------------------------------------------------------------
# empty
# --------------------------------------------------------------------------------------


def test_pages_before_any_check(signed_in) -> None:
    client = signed_in("analyst")
    page = client.get("/findings")
    assert page.status_code == 200
    html = text_of(page)
    assert 'data-state="no-check"' in html and "No check has run yet" in html
    assert 'data-test="run-check"' in html  # an analyst may run one from here
    rules = text_of(client.get("/rules"))
    for rule_id in all_rules():
        assert f'data-rule="{rule_id}"' in rules
    rule = client.get("/rules/VD-I-3")
    assert rule.status_code == 200
    assert 'data-state="no-run"' in text_of(rule) and 'data-state="no-findings"' in text_of(rule)
    checks = text_of(client.get("/checks"))
    assert 'data-state="no-checks"' in checks
    deadlines = client.get("/deadlines?from=2025-06-01&days=10")
    assert deadlines.status_code == 200
    assert 'data-state="no-deadlines"' in text_of(deadlines)
    assert client.get("/findings/123456").status_code == 404
    assert client.get("/checks/123456").status_code == 404
    assert client.get("/rules/NOPE-1").status_code == 404


def test_viewer_sees_no_run_button(signed_in) -> None:
    html = text_of(signed_in("viewer").get("/findings"))
    assert 'data-state="no-check"' in html and 'data-test="run-check"' not in html


def test_navigation_links(signed_in) -> None:
    html = text_of(signed_in("viewer").get("/findings"))
    for path, label in (
        ("/findings", "Findings"),
        ("/rules", "Rules"),
        ("/deadlines", "Deadlines"),
        ("/checks", "Checks"),
    ):
        assert f'<a href="{path}"' in html and f">{label}</a>" in html
    assert '<a href="/findings" aria-current="page">' in html
    assert '<a href="/rules" aria-current="page">' not in html


# --------------------------------------------------------------------------------------
# with the demo data
# --------------------------------------------------------------------------------------


def test_every_page_renders_with_the_demo(signed_in, session: Session, demo: int) -> None:
    client = signed_in("viewer")
    listing = client.get("/findings?per_page=200")
    assert listing.status_code == 200
    ids = finding_rows(text_of(listing))
    assert ids and len(ids) == session.query(Finding).count()
    assert 'data-test="severity-counts"' in text_of(listing)
    for finding_id in ids:
        page = client.get(f"/findings/{finding_id}")
        assert page.status_code == 200, finding_id
        assert 'data-test="evidence"' in text_of(page)
    rules = text_of(client.get("/rules"))
    assert "/findings?rule_id=VD-I-3&amp;status=open" in rules
    for rule_id in all_rules():
        page = client.get(f"/rules/{rule_id}")
        assert page.status_code == 200, rule_id
    coverage = text_of(client.get("/rules/VD-I-3"))
    assert f"check run {demo}" in coverage
    assert "Absence obligations are evaluated only for the periods the data covers" in coverage
    assert 'data-test="evaluated"' in coverage and 'data-test="skipped"' in coverage
    assert client.get("/checks").status_code == 200
    run = text_of(client.get(f"/checks/{demo}"))
    assert 'data-rule="VD-I-3"' in run and "Coverage per rule" in run
    assert client.get("/deadlines?from=2024-11-01&days=60").status_code == 200


def test_finding_page_links_its_records(signed_in, session: Session, demo: int) -> None:
    client = signed_in("viewer")
    missing = session.scalars(
        select(Finding).where(Finding.rule_id == "VD-I-3", Finding.subject_id == "")
    ).first()
    assert missing is not None
    html = text_of(client.get(f"/findings/{missing.id}"))
    assert f"/records/notifications/?state={missing.state}&amp;regime=VD" in html
    late_activity = session.scalars(
        select(Finding).where(Finding.subject_type == "activity")
    ).first()
    assert late_activity is not None
    html = text_of(client.get(f"/findings/{late_activity.id}"))
    assert "/records/activities/" in html
    assert f"/rules/{late_activity.rule_id}" in html


# --------------------------------------------------------------------------------------
# the list: filters, pages, CSV
# --------------------------------------------------------------------------------------


def test_filters_and_counts(signed_in, session: Session) -> None:
    a = add_finding(session, severity="breach", state="EST")
    b = add_finding(session, severity="late", state="EST", summary="Late by 3 days.")
    c = add_finding(session, severity="late", state="LVA")
    session.commit()
    client = signed_in("viewer")
    html = text_of(client.get("/findings?state=Estonia"))
    assert set(finding_rows(html)) == {str(a.id), str(b.id)}
    assert '<span data-count="breach">1</span>' in html
    assert '<span data-count="late">1</span>' in html
    assert "/findings.csv?state=EST" in html
    assert finding_rows(text_of(client.get("/findings?severity=late&state=LVA"))) == [str(c.id)]
    assert finding_rows(text_of(client.get("/findings?q=by+3+days"))) == [str(b.id)]
    none = client.get("/findings?state=EST&severity=positive")
    assert none.status_code == 200 and 'data-state="no-match"' in text_of(none)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("severity=awful", "severity"),
        ("state=Atlantis", "state"),
        ("rule_id=VD-0", "rule_id"),
        ("due_from=2024-02-30", "due_from"),
        ("due_from=2024-02-01&due_to=2024-01-01", "due_to"),
        ("page=zero", "page"),
        ("per_page=7", "per_page"),
    ],
)
def test_bad_filters_are_explained(signed_in, query: str, field: str) -> None:
    page = signed_in("viewer").get(f"/findings?{query}")
    assert page.status_code == 400
    html = text_of(page)
    assert 'data-state="invalid-filters"' in html
    assert f"<strong>{field}</strong>" in html
    assert f'data-error-for="{field}"' in html or field in ("page",)


def test_pages_of_findings(signed_in, session: Session) -> None:
    made = [
        add_finding(session, state="MLT", due_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        for _ in range(30)
    ]
    session.commit()
    client = signed_in("viewer")
    first = text_of(client.get("/findings?state=MLT&per_page=25"))
    assert finding_rows(first) == [str(f.id) for f in made[:25]]
    assert "Showing 1–25 of <strong>30</strong>" in first
    assert "page=2" in first
    second = text_of(client.get("/findings?state=MLT&per_page=25&page=2"))
    assert finding_rows(second) == [str(f.id) for f in made[25:]]
    assert client.get("/findings?state=MLT&per_page=25&page=3").status_code == 404


def test_csv_download_equals_the_service(signed_in, session: Session) -> None:
    add_finding(session, state="ISL", summary="=1+1 is not a formula here")
    add_finding(session, state="ISL", severity="breach")
    add_finding(session, state="NOR")
    session.commit()
    expected = "".join(iter_findings_csv(session, FindingFilters(state="ISL")))
    expected_all = "".join(iter_findings_csv(session, FindingFilters()))
    # The export commits the request's transaction and reads in a session of its own; this
    # session must not hold a savepoint across those requests (they share one connection).
    session.close()
    client = signed_in("viewer")
    response = client.get("/findings.csv?state=Iceland")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["X-Export-Rows"] == "2"
    assert response.headers["X-Export-Filter"] == "state=ISL"
    assert text_of(response) == expected
    assert "'=1+1" in expected and expected.count("\r\n") == 3
    everything = text_of(client.get("/findings.csv"))
    assert everything == expected_all
    bad = client.get("/findings.csv?status=gone")
    assert bad.status_code == 400 and bad.mimetype == "text/plain"
    assert "status" in text_of(bad)


# --------------------------------------------------------------------------------------
# acknowledge, dispute, reopen
# --------------------------------------------------------------------------------------


def test_analyst_disputes_acknowledges_and_reopens(signed_in, session: Session) -> None:
    f = add_finding(session)
    session.commit()
    client = signed_in("analyst", "ana-web")
    url = f"/findings/{f.id}"
    page = text_of(client.get(url))
    assert 'data-action="acknowledge"' in page and 'data-action="dispute"' in page
    assert 'data-action="reopen"' not in page
    done = post(client, f"{url}/dispute", {"comment": "The State sent it by courier."}, page=url)
    assert done.status_code == 303 and done.location.endswith(url)
    after = text_of(client.get(url))
    assert f"Finding {f.id} is disputed." in after
    assert 'data-action="reopen"' in after and 'data-action="dispute"' not in after
    history = after.split('data-test="history"')[1]
    assert "Disputed" in history and "The State sent it by courier." in history
    assert "ana-web" in history
    event = session.scalars(select(FindingEvent).where(FindingEvent.finding_id == f.id)).one()
    user = session.scalars(select(User).where(User.username == "ana-web")).one()
    assert (event.action, event.user_id, event.status) == ("disputed", user.id, "disputed")
    assert (
        post(client, f"{url}/acknowledge", {"comment": "Confirmed."}, page=url).status_code == 303
    )
    assert post(client, f"{url}/reopen", {"comment": ""}, page=url).status_code == 303
    session.expire_all()
    assert session.get(Finding, f.id).status == "open"
    actions = session.scalars(
        select(FindingEvent.action).where(FindingEvent.finding_id == f.id).order_by(FindingEvent.id)
    ).all()
    assert actions == ["disputed", "acknowledged", "reopened_by_analyst"]


def test_refusals_are_explained(signed_in, session: Session) -> None:
    f = add_finding(session)
    resolved = add_finding(session, status="resolved")
    session.commit()
    client = signed_in("analyst")
    url = f"/findings/{f.id}"
    empty = post(client, f"{url}/dispute", {"comment": "   "}, page=url)
    assert empty.status_code == 422
    assert 'data-test="form-error"' in text_of(empty) and "Write a comment" in text_of(empty)
    gone = post(client, f"/findings/{resolved.id}/acknowledge", {"comment": "x"}, page=url)
    assert gone.status_code == 422 and "is resolved" in text_of(gone)
    assert 'data-action="acknowledge"' not in text_of(client.get(f"/findings/{resolved.id}"))
    assert post(client, "/findings/999999/dispute", {"comment": "x"}, page=url).status_code == 404
    session.expire_all()
    assert session.get(Finding, f.id).status == "open"
    assert session.scalars(select(FindingEvent)).all() == []


def test_viewer_sees_no_forms_and_may_not_post(signed_in, session: Session) -> None:
    f = add_finding(session)
    session.commit()
    client = signed_in("viewer")
    url = f"/findings/{f.id}"
    page = text_of(client.get(url))
    assert 'data-test="finding-actions"' not in page and "/dispute" not in page
    for action in ("acknowledge", "dispute", "reopen"):
        assert post(client, f"{url}/{action}", {"comment": "x"}, page=url).status_code == 403
    session.expire_all()
    assert session.get(Finding, f.id).status == "open"


def test_csrf_token_is_required(signed_in, session: Session) -> None:
    f = add_finding(session)
    session.commit()
    client = signed_in("analyst")
    response = client.post(f"/findings/{f.id}/dispute", data={"comment": "no token"})
    assert response.status_code == 400
    assert client.post("/checks/run").status_code == 400
    assert client.post("/deadlines/feed").status_code == 400
    session.expire_all()
    assert session.get(Finding, f.id).status == "open"


# --------------------------------------------------------------------------------------
# check runs
# --------------------------------------------------------------------------------------


def test_run_a_check_from_the_web(signed_in, session: Session) -> None:
    add_finding(session, rule_id="VD-I-3", finding_key="VD-I-3|stale")  # not detected again
    session.commit()
    client = signed_in("analyst", "ana-check")
    response = post(client, "/checks/run", page="/checks")
    assert response.status_code == 303
    run = session.scalars(select(CheckRun).order_by(CheckRun.id.desc())).first()
    assert run is not None and run.status == "succeeded" and run.trigger == "web"
    assert response.location.endswith(f"/checks/{run.id}")
    page = text_of(client.get(f"/checks/{run.id}"))
    assert f"Check run {run.id}" in page and "ana-check" in page
    assert "resolved" in page
    listing = text_of(client.get("/checks"))
    assert f'data-run="{run.id}"' in listing
    assert post(signed_in("viewer"), "/checks/run").status_code == 403


def test_a_failed_check_is_recorded(signed_in, session: Session, monkeypatch) -> None:
    import cbm.services.checks as checks

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("rule exploded")

    monkeypatch.setattr(checks, "run_check", broken)
    client = signed_in("analyst")
    response = post(client, "/checks/run", page="/checks")
    assert response.status_code == 303
    run = session.scalars(select(CheckRun).order_by(CheckRun.id.desc())).first()
    assert run is not None and run.status == "failed" and "rule exploded" in (run.message or "")
    page = text_of(client.get(response.location))
    assert "rule exploded" in page and 'data-status="failed"' in page


# --------------------------------------------------------------------------------------
# deadlines and the calendar feed
# --------------------------------------------------------------------------------------


def test_deadlines_page(signed_in) -> None:
    client = signed_in("viewer")
    page = client.get("/deadlines?from=2024-12-01&days=20&state=Germany")
    assert page.status_code == 200
    html = text_of(page)
    assert 'data-date="2024-12-15"' in html
    assert 'data-uid="VD.annual_exchange.DEU.2025"' in html
    assert "badge--deadline-outstanding" in html and "VD 2011 ¶10" in html
    assert "/rules/VD-I-3" in html
    assert 'data-uid="VD.annual_exchange.FRA.2025"' not in html
    default = client.get("/deadlines")
    assert default.status_code == 200
    today = dt.datetime.now(dt.UTC).date()
    assert f"from {today.isoformat()} to {(today + dt.timedelta(days=60)).isoformat()}" in text_of(
        default
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [("days=0", "days"), ("days=367", "days"), ("from=2024-1-1", "from"), ("state=Oz", "state")],
)
def test_deadlines_bad_arguments(signed_in, query: str, field: str) -> None:
    client = signed_in("viewer")
    page = client.get(f"/deadlines?{query}")
    assert page.status_code == 400 and f"<strong>{field}</strong>" in text_of(page)
    feed = client.get(f"/deadlines.ics?{query}")
    assert feed.status_code == 400 and feed.mimetype == "text/plain"
    assert field in text_of(feed)


def test_calendar_feed_by_session_and_by_token(app, signed_in, session: Session) -> None:
    client = signed_in("viewer", "vic-feed")
    signed = client.get("/deadlines.ics?from=2024-12-01&days=30")
    assert signed.status_code == 200
    assert signed.headers["Content-Type"] == "text/calendar; charset=utf-8"
    body = text_of(signed)
    assert body.startswith("BEGIN:VCALENDAR\r\n") and "DTSTART;VALUE=DATE:20241215" in body
    # No link yet: the page offers to create one.
    assert 'data-test="create-feed"' in text_of(client.get("/deadlines"))
    assert post(client, "/deadlines/feed", page="/deadlines").status_code == 303
    token = session.scalars(select(User.feed_token).where(User.username == "vic-feed")).one()
    assert token
    page = text_of(client.get("/deadlines"))
    assert f"/deadlines.ics?token={token}" in page and 'data-test="renew-feed"' in page

    anonymous = app.test_client()
    feed = anonymous.get(f"/deadlines.ics?token={token}&from=2024-12-01&days=30")
    assert feed.status_code == 200 and text_of(feed).count("BEGIN:VEVENT") == body.count(
        "BEGIN:VEVENT"
    )
    wrong = anonymous.get("/deadlines.ics?token=not-the-token")
    assert wrong.status_code == 401 and wrong.mimetype == "text/plain"
    assert anonymous.get("/deadlines.ics?token=").status_code == 401
    no_token = anonymous.get("/deadlines.ics")
    assert no_token.status_code == 302 and "/login" in no_token.location
    # The token opens the feed only: every other page still needs a sign-in.
    other = anonymous.get(f"/deadlines?token={token}")
    assert other.status_code == 302 and "/login" in other.location

    assert post(client, "/deadlines/feed", page="/deadlines").status_code == 303
    session.expire_all()
    renewed = session.scalars(select(User.feed_token).where(User.username == "vic-feed")).one()
    assert renewed != token
    assert anonymous.get(f"/deadlines.ics?token={token}").status_code == 401
    assert anonymous.get(f"/deadlines.ics?token={renewed}").status_code == 200


def test_account_page_creates_the_feed_link(signed_in, session: Session) -> None:
    client = signed_in("viewer", "vic-account")
    html = text_of(client.get("/account"))
    token = session.scalars(select(User.feed_token).where(User.username == "vic-account")).one()
    assert token and f"/deadlines.ics?token={token}" in html
    text_of(client.get("/account"))
    session.expire_all()
    again = session.scalars(select(User.feed_token).where(User.username == "vic-account")).one()
    assert again == token  # made once, not on every visit

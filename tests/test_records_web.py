"""Record pages through the web: lists, record pages with history, and the forms that
create, correct and delete every kind of record (issue 3 and 4), on both backends."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from conftest import csrf_token_from
from factories import KINDS, count, make
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import AuditEvent, ImportRun
from cbm.queries.records import key_parts
from cbm.services import Actor, state_resolver, upsert_records
from cbm.services.validation import validate_rows
from cbm.web.records import decode_key, encode_key

SignedIn = Callable[..., FlaskClient]

#: A non-key field to correct per kind, and its new value.
CHANGE: dict[str, tuple[str, str]] = {
    "activities": ("troops", "14000"),
    "notifications": ("remarks", "corrected by hand"),
    "inspections": ("team_size", "5"),
    "observation_flights": ("distance_km", "4800"),
    "quotas": ("quota", "13"),
    "holdings": ("count", "310"),
    "ceilings": ("ceiling", "4000"),
    "reductions": ("reduced", "50"),
}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def page_text(response: Any) -> str:
    return response.get_data(as_text=True)


def as_form(kind: str, row: dict[str, str]) -> dict[str, str]:
    """A contract row as a browser would post it: timestamps as datetime-local (UTC, no
    zone), everything else as typed."""
    spec = contract.get(kind)
    out = {}
    for f in spec.fields:
        value = row.get(f.name, "")
        if f.type == contract.TIMESTAMP and value:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
            value = when.strftime("%Y-%m-%dT%H:%M")
        out[f.name] = value
    return out


def post_form(client: FlaskClient, url: str, data: dict[str, str], **kw: Any) -> Any:
    token = csrf_token_from(page_text(client.get(url)))
    return client.post(url, data={**data, "csrf_token": token}, **kw)


def record_path(kind: str, row: dict[str, Any]) -> str:
    return f"/records/{kind}/{encode_key(key_parts(contract.get(kind), row))}"


def stored(session: Session, kind: str, row: dict[str, Any]) -> dict[str, Any] | None:
    spec = contract.get(kind)
    table = spec.model.__table__
    session.expire_all()
    key = dict(zip(spec.key, key_parts(spec, row), strict=True))
    conds = []
    for name, text in key.items():
        f = spec.field(name)
        value: Any = text
        if f.type == contract.DATE:
            value = dt.date.fromisoformat(text)
        elif f.type == contract.YEAR:
            value = int(text)
        conds.append(table.c[name] == value)
    found = session.execute(select(table).where(*conds)).mappings().first()
    return dict(found) if found else None


def shown(value: Any) -> str:
    """How a page shows a plain value (numbers with separators, empty as a dash)."""
    if value in (None, ""):
        return "–"
    return f"{value:,}" if isinstance(value, int) else str(value)


def audit_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def seed(session: Session, kind: str, rows: list[dict[str, Any]], actor: Actor = Actor()) -> None:
    result = upsert_records(session, kind, rows, actor=actor)
    assert result.ok, result.errors
    session.commit()


def history_rows(text: str) -> list[tuple[str, str]]:
    """(action, actor) of each history entry, newest first."""
    return re.findall(r'data-action="([a-z]+)" data-actor="([^"]*)"', text)


def links_in(text: str, kind: str) -> list[str]:
    """Record links of ``kind`` in a page, decoded, in order."""
    return [
        unquote(m)
        for m in re.findall(rf'href="(/records/{kind}/[^"/]+)" data-test="record-link"', text)
    ]


def assert_csp_clean(text: str) -> None:
    """No inline script, style or handler (the CSP forbids them)."""
    for tag in re.findall(r"<script\b[^>]*>", text, flags=re.IGNORECASE):
        assert "src=" in tag, f"inline script: {tag}"
    assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=", text, flags=re.IGNORECASE)


# --------------------------------------------------------------------------------------
# Keys in URLs
# --------------------------------------------------------------------------------------

KEYS = [
    ("A-1", "notification"),
    ("OST", "DEU", "2024", "passive", ""),
    ("DEU", "2024-01-01", "battle_tanks", "vd_aemi", ""),
    ("", ""),
    ("",),
    ("a/b",),
    ("1st Brigade / Süd, Ost",),
    ("x,y~z",),
    ("..",),
    (".",),
    ("~7E",),
    ("new",),
    ("new", "notification"),
    ("50% off?#&=+",),
    ("back\\slash",),
    (" spaced  out ",),
    ("Übung Nord-Süd ✓ 演习",),
]


@pytest.mark.parametrize("parts", KEYS, ids=[repr(k) for k in KEYS])
def test_key_encoding_round_trips(parts: tuple[str, ...]) -> None:
    encoded = encode_key(parts)
    assert tuple(decode_key(encoded)) == parts
    assert "/" not in encoded and "\\" not in encoded
    assert encoded not in ("", ".", "..")
    assert encode_key(decode_key(encoded)) == encoded  # stable: one string per key


def test_key_encoding_is_readable_for_plain_keys() -> None:
    assert encode_key(("A-1", "notification")) == "A-1,notification"
    assert encode_key(("OST", "DEU", "2024", "passive", "")) == "OST,DEU,2024,passive,"
    assert encode_key(("a/b",)) == "a~2Fb"
    assert encode_key(("new",)) == "~6Eew"  # not the address of the form


#: Any text a stored key can hold: everything but NUL (the validator refuses control
#: characters, and a key holding one is refused as no key: see the next test).
KEY_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)


@given(st.lists(KEY_TEXT, min_size=1, max_size=5))
def test_key_encoding_round_trips_any_text(parts: list[str]) -> None:
    encoded = encode_key(parts)
    assert decode_key(encoded) == parts
    assert "/" not in encoded and "," not in "".join(encoded.split(","))


@pytest.mark.parametrize("bad", ["~ZZ", "a~", "~7e", "ab~2", "a~00b"])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_key(bad)


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("holdings", {"unit": "1st Brigade / Süd, Ost ~ 50%"}),
        ("holdings", {"unit": ""}),
        ("quotas", {}),  # a passive quota: the counterpart key part is empty
        ("quotas", {"kind": "active", "counterpart": "RUS"}),
        ("notifications", {"reference": "VD/2024/0001 ü"}),
        ("activities", {"activity_id": ".."}),
        ("notifications", {"reference": "new"}),
    ],
)
def test_record_pages_of_awkward_keys_open_from_the_list(
    signed_in: SignedIn, session: Session, kind: str, overrides: dict[str, str]
) -> None:
    row = make(kind, 1, **overrides)
    seed(session, kind, [row])
    client = signed_in("viewer")
    listing = page_text(client.get(f"/records/{kind}/"))
    hrefs = re.findall(rf'href="(/records/{kind}/[^"]+)" data-test="record-link"', listing)
    assert len(hrefs) == 1
    page = client.get(html.unescape(hrefs[0]))
    assert page.status_code == 200
    text = page_text(page)
    for part in key_parts(contract.get(kind), row):
        assert html.escape(part, quote=False) in text
    # and the edit link of the same key works too
    analyst = signed_in("analyst")
    assert analyst.get(html.unescape(hrefs[0]) + "/edit").status_code == 200


def test_unknown_kind_bad_key_and_never_stored_key_are_404(signed_in: SignedIn) -> None:
    client = signed_in("viewer")
    for url in (
        "/records/widgets/",
        "/records/widgets/X-1",
        "/records/quotas/OST,DEU",  # too few parts
        "/records/quotas/OST,DEU,twenty,passive,",  # year not a number
        "/records/holdings/DEU,2024-13-01,acv,cfe,",  # not a date
        "/records/activities/A~ZZ,notification",  # bad escape
        "/records/activities/NEVER,notification",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Error 404" in page_text(response)
    assert "none ever was" in page_text(client.get("/records/activities/NEVER,notification"))


# --------------------------------------------------------------------------------------
# Create, edit, delete every kind
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_can_be_created_edited_and_deleted(
    signed_in: SignedIn, session: Session, kind: str
) -> None:
    client = signed_in("analyst", username="alice")
    row = make(kind, 1)
    path = record_path(kind, row)

    form = client.get(f"/records/{kind}/new")
    assert form.status_code == 200
    assert_csp_clean(page_text(form))
    response = post_form(client, f"/records/{kind}/new", as_form(kind, row))
    assert response.status_code == 303, page_text(response)
    assert unquote(urlsplit(response.headers["Location"]).path) == unquote(path)
    assert stored(session, kind, row) is not None

    page = client.get(path)
    assert page.status_code == 200
    assert history_rows(page_text(page)) == [("create", "alice")]

    column, value = CHANGE[kind]
    before = stored(session, kind, row)[column]
    edit_form = client.get(path + "/edit")
    assert edit_form.status_code == 200
    response = post_form(client, path + "/edit", as_form(kind, {**row, column: value}))
    assert response.status_code == 303, page_text(response)
    after = stored(session, kind, row)[column]
    assert str(after) == value and after != before

    text = page_text(client.get(path))
    assert history_rows(text) == [("update", "alice"), ("create", "alice")]
    update = text.split('data-action="update"')[1].split("</tbody>")[0]
    change = re.search(
        rf'data-change="{column}">.*?<td class="rec-before">(.*?)</td>'
        r'\s*<td class="rec-after">(.*?)</td>',
        update,
        flags=re.S,
    )
    assert change, update
    assert re.sub(r"<[^>]+>", "", change.group(1)) == shown(before)
    assert re.sub(r"<[^>]+>", "", change.group(2)) == shown(after)

    confirm = client.get(path + "/delete")
    assert confirm.status_code == 200
    assert "history is kept" in page_text(confirm).lower().replace("<strong>", "").replace(
        "</strong>", ""
    )
    response = post_form(client, path + "/delete", {})
    assert response.status_code == 303
    assert stored(session, kind, row) is None

    gone = client.get(path)
    assert gone.status_code == 200
    text = page_text(gone)
    assert 'data-state="deleted"' in text
    assert re.search(r"This record was deleted on \d{4}-\d\d-\d\d \d\d:\d\d UTC by alice", text)
    assert history_rows(text) == [("delete", "alice"), ("update", "alice"), ("create", "alice")]
    assert "Edit</a>" not in text  # nothing to edit any more


def test_create_shows_the_record_with_states_named_and_times_in_utc(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst")
    row = make("notifications", 1)
    post_form(client, "/records/notifications/new", as_form("notifications", row))
    text = page_text(client.get(record_path("notifications", row)))
    assert "DEU — Germany" in text
    assert "2024-01-10 09:30 UTC" in text
    assert "2024-01-10 10:00 UTC" in text  # received 11:00+01:00
    assert "created by" not in text.lower() or "Created" in text
    assert re.search(r"<dt>Created</dt><dd>by [\w-]+ on \d{4}-", text)


def test_state_picker_accepts_names_and_the_listed_form(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst")
    row = as_form("activities", make("activities", 1))
    row.update(state="Germany", host_state="POL — Poland")
    response = post_form(client, "/records/activities/new", row)
    assert response.status_code == 303, page_text(response)
    saved = stored(session, "activities", make("activities", 1))
    assert (saved["state"], saved["host_state"]) == ("DEU", "POL")


def test_a_key_given_by_state_name_leads_to_the_canonical_address(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst")
    row = as_form("quotas", make("quotas", 24, kind="active", counterpart="Russia"))
    row["state"] = "germany"
    response = post_form(client, "/records/quotas/new", row)
    assert response.status_code == 303, page_text(response)
    assert urlsplit(response.headers["Location"]).path == "/records/quotas/OST,DEU,2024,active,RUS"
    assert client.get(response.headers["Location"]).status_code == 200


def test_form_widgets_follow_the_field_types(signed_in: SignedIn) -> None:
    client = signed_in("analyst")
    text = page_text(client.get("/records/inspections/new"))
    # a vocabulary is a select, optional ones with an empty choice; kinds grouped by regime
    assert re.search(r'<select id="f-reply" name="reply"', text)
    assert '<optgroup label="CFE">' in text
    # a tri-state boolean is a select (unknown / yes / no), never a checkbox
    assert 'type="checkbox"' not in text
    block = text.split('name="concerns_raised"')[1].split("</select>")[0]
    assert ">unknown<" in block and 'value="true"' in block and 'value="false"' in block
    # States: an input bound to the list of every State "DEU — Germany"
    assert re.search(r'name="inspecting_state" type="text" value="" list="cbm-states"', text)
    assert '<option value="DEU">DEU — Germany</option>' in text
    # timestamps: datetime-local labelled UTC; numbers: min 0, step 1; long text: textarea
    assert re.search(r'name="requested_at" type="datetime-local"', text)
    assert "Enter the time in UTC" in text
    assert re.search(r'name="team_size" type="number" value="" min="0" step="1"', text)
    assert '<textarea id="f-findings"' in text
    assert 'type="date"' in page_text(client.get("/records/activities/new"))


def test_timestamps_entered_in_the_form_are_stored_as_utc(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst")
    row = as_form("notifications", make("notifications", 1))
    row.update(sent_at="2024-06-30T23:30", received_at="2024-07-01T02:15+02:00")
    response = post_form(client, "/records/notifications/new", row)
    assert response.status_code == 303, page_text(response)
    saved = stored(session, "notifications", make("notifications", 1))
    assert saved["sent_at"] == dt.datetime(2024, 6, 30, 23, 30, tzinfo=dt.UTC)
    assert saved["received_at"] == dt.datetime(2024, 7, 1, 0, 15, tzinfo=dt.UTC)
    assert saved["sent_at"].utcoffset() == dt.timedelta(0)
    # the edit form shows the stored values in UTC, ready for a datetime-local input
    text = page_text(client.get(record_path("notifications", make("notifications", 1)) + "/edit"))
    assert 'name="sent_at" type="datetime-local" value="2024-06-30T23:30"' in text
    assert 'name="received_at" type="datetime-local" value="2024-07-01T00:15"' in text


def test_editing_without_changes_keeps_precise_timestamps(
    signed_in: SignedIn, session: Session
) -> None:
    row = make("notifications", 1, sent_at="2024-01-10T09:30:15.123456Z", received_at="")
    seed(session, "notifications", [row])
    client = signed_in("analyst")
    path = record_path("notifications", row)
    text = page_text(client.get(path + "/edit"))
    # too precise for a datetime-local input: shown as text, so nothing is lost on save
    assert 'name="sent_at" type="text" value="2024-01-10T09:30:15.123456Z"' in text
    values = dict(re.findall(r'name="([a-z_]+)" type="[a-z-]+" value="([^"]*)"', text))
    token = csrf_token_from(text)
    response = client.post(
        path + "/edit", data={**as_form("notifications", row), **values, "csrf_token": token}
    )
    assert response.status_code == 303
    saved = stored(session, "notifications", row)
    assert saved["sent_at"] == dt.datetime(2024, 1, 10, 9, 30, 15, 123456, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------
# Validation comes from the service
# --------------------------------------------------------------------------------------


def service_reason(session: Session, kind: str, row: dict[str, str], column: str) -> str:
    """The reason the validator (what importers use) gives for ``column`` of ``row``."""
    spec = contract.get(kind)
    errors = validate_rows(spec, [row], state_resolver(session)).errors
    reasons = [e.reason for e in errors if e.column == column]
    assert reasons, errors
    return reasons[0]


@pytest.mark.parametrize(
    ("kind", "overrides", "column"),
    [
        ("activities", {"end_date": "2024-03-01"}, "end_date"),
        ("activities", {"state": "Atlantis"}, "state"),
        ("activities", {"troops": "-5"}, "troops"),
        ("activities", {"kind": ""}, "kind"),
        ("notifications", {"kind": "flight_notification"}, "kind"),
        ("quotas", {"kind": "active"}, "counterpart"),
        ("observation_flights", {"observed_state": "DEU"}, "observed_state"),
        ("holdings", {"count": "1,000"}, "count"),
    ],
)
def test_a_validation_error_is_shown_beside_its_field_and_nothing_is_written(
    signed_in: SignedIn, session: Session, kind: str, overrides: dict[str, str], column: str
) -> None:
    client = signed_in("analyst")
    row = make(kind, 1, **overrides)
    events = audit_count(session)
    response = post_form(client, f"/records/{kind}/new", as_form(kind, row))
    assert response.status_code == 422
    text = page_text(response)
    reason = service_reason(session, kind, row, column)
    beside = re.search(rf'data-error-for="{column}">(.*?)</p>', text, flags=re.S)
    assert beside, text
    assert html.unescape(beside.group(1)) == reason
    assert 'data-test="error-summary"' in text and "Nothing was saved" in text
    assert count(session, kind) == 0
    assert audit_count(session) == events
    # what the user typed is shown again
    if overrides[next(iter(overrides))]:
        assert f'value="{html.escape(next(iter(overrides.values())))}"' in text or (
            next(iter(overrides.values())) in text
        )


def test_an_edit_with_errors_changes_nothing(signed_in: SignedIn, session: Session) -> None:
    row = make("activities", 1)
    seed(session, "activities", [row])
    client = signed_in("analyst")
    path = record_path("activities", row)
    events = audit_count(session)
    bad = as_form("activities", {**row, "end_date": "2020-01-01", "troops": "12"})
    response = post_form(client, path + "/edit", bad)
    assert response.status_code == 422
    assert "end_date 2020-01-01 is before start_date 2024-03-10" in page_text(response)
    saved = stored(session, "activities", row)
    assert (saved["troops"], saved["end_date"]) == (13000, dt.date(2024, 3, 20))
    assert audit_count(session) == events


def test_creating_an_existing_key_is_refused(signed_in: SignedIn, session: Session) -> None:
    row = make("activities", 1)
    seed(session, "activities", [row])
    client = signed_in("analyst")
    response = post_form(
        client, "/records/activities/new", as_form("activities", {**row, "troops": "1"})
    )
    assert response.status_code == 422
    text = page_text(response)
    assert re.search(
        r'data-error-for="activity_id">a record with this key \(A-1 / notification\) already '
        r"exists; edit it instead",
        text,
    )
    assert stored(session, "activities", row)["troops"] == 13000
    assert count(session, "activities") == 1


def test_an_edit_cannot_change_the_key(signed_in: SignedIn, session: Session) -> None:
    row = make("activities", 1)
    seed(session, "activities", [row])
    client = signed_in("analyst")
    path = record_path("activities", row)
    text = page_text(client.get(path + "/edit"))
    assert re.search(r'name="activity_id" value="A-1" readonly', text)
    assert "delete the record and create it again" in text
    posted = as_form("activities", {**row, "activity_id": "B-9", "troops": "7"})
    assert post_form(client, path + "/edit", posted).status_code == 303
    assert count(session, "activities") == 1
    assert stored(session, "activities", row)["troops"] == 7


def test_a_reference_to_a_missing_record_gets_the_services_message(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst")
    row = as_form("notifications", make("notifications", 1, activity_id="NOPE"))
    response = post_form(client, "/records/notifications/new", row)
    assert response.status_code == 422
    assert "activity &#39;NOPE&#39; is not stored; import the activity first" in page_text(response)


def test_edit_of_a_missing_record_is_404(signed_in: SignedIn) -> None:
    client = signed_in("analyst")
    assert client.get("/records/activities/X,notification/edit").status_code == 404
    assert client.get("/records/activities/X,notification/delete").status_code == 404


# --------------------------------------------------------------------------------------
# Roles and CSRF
# --------------------------------------------------------------------------------------


def test_viewer_reads_but_sees_no_edit_controls_and_is_refused(
    signed_in: SignedIn, session: Session
) -> None:
    row = make("activities", 1)
    seed(session, "activities", [row])
    viewer = signed_in("viewer")
    path = record_path("activities", row)
    for url in ("/records/", "/records/activities/", path):
        response = viewer.get(url)
        assert response.status_code == 200
        text = page_text(response)
        assert "/new" not in text and "/edit" not in text and "/delete" not in text
    for url in ("/records/activities/new", path + "/edit", path + "/delete"):
        assert viewer.get(url).status_code == 403
        assert viewer.post(url, data={}).status_code in (400, 403)
    analyst = signed_in("analyst")
    token = csrf_token_from(page_text(analyst.get(path + "/edit")))
    # with a valid token of its own session, the viewer is still refused
    vtoken = csrf_token_from(page_text(viewer.get(path)))
    for url in ("/records/activities/new", path + "/edit", path + "/delete"):
        assert viewer.post(url, data={"csrf_token": vtoken}).status_code == 403
    assert token  # the analyst's page carries a token
    assert stored(session, "activities", row)["troops"] == 13000


def test_analyst_sees_the_controls(signed_in: SignedIn, session: Session) -> None:
    row = make("activities", 1)
    seed(session, "activities", [row])
    client = signed_in("analyst")
    assert 'data-test="new-record"' in page_text(client.get("/records/activities/"))
    text = page_text(client.get(record_path("activities", row)))
    assert 'data-test="edit-record"' in text and 'data-test="delete-record"' in text


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    for url in ("/records/", "/records/activities/", "/records/activities/new"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_posts_without_csrf_token_are_refused(signed_in: SignedIn, session: Session) -> None:
    row = make("activities", 2)
    seed(session, "activities", [row])
    client = signed_in("analyst")
    path = record_path("activities", row)
    new = as_form("activities", make("activities", 1))
    assert client.post("/records/activities/new", data=new).status_code == 400
    assert client.post(path + "/edit", data={**new, "troops": "1"}).status_code == 400
    assert client.post(path + "/delete", data={}).status_code == 400
    assert count(session, "activities") == 1
    assert stored(session, "activities", row)["troops"] == 13000


def test_nav_has_records(signed_in: SignedIn) -> None:
    text = page_text(signed_in("viewer").get("/"))
    assert re.search(r'<a href="/records/"[^>]*>Records</a>', text)


# --------------------------------------------------------------------------------------
# Delete refused, links between records
# --------------------------------------------------------------------------------------


@pytest.fixture()
def linked(session: Session) -> dict[str, Any]:
    """An activity with two sources, an inspection and a flight, messages about them, a
    reply, and a reduction verified by the inspection."""
    seed(session, "activities", [make("activities", 1), make("activities", 1, source="calendar")])
    seed(session, "inspections", [make("inspections", 1)])
    seed(session, "observation_flights", [make("observation_flights", 1)])
    seed(
        session,
        "notifications",
        [
            make("notifications", 1, activity_id="A-1"),
            make(
                "notifications",
                2,
                in_reply_to="N-1",
                sent_at="2024-01-11T09:30:00Z",
                received_at="",
            ),
            make("notifications", 3, kind="inspection_request", event_id="I-1", received_at=""),
            make("notifications", 4, kind="inspection_reply", event_id="I-1", received_at=""),
            make(
                "notifications",
                5,
                regime="OST",
                kind="flight_notification",
                event_id="F-1",
                covers_year="",
            ),
        ],
    )
    seed(session, "reductions", [make("reductions", 1, verified_by="I-1")])
    return {}


def test_a_notification_links_to_its_activity_event_and_message(
    signed_in: SignedIn, linked: dict
) -> None:
    client = signed_in("analyst")
    text = page_text(client.get("/records/notifications/N-1"))
    refs = re.findall(r'href="(/records/[a-z_]+/[^"]+)" data-link="activity_id"', text)
    assert sorted(unquote(r) for r in refs) == [
        "/records/activities/A-1,calendar",
        "/records/activities/A-1,notification",
    ]
    assert "Replies to this message" in text and "/records/notifications/N-2" in text
    assert 'href="/records/notifications/new?in_reply_to=N-1&amp;regime=VD">Add a reply' in text
    reply = page_text(client.get("/records/notifications/N-2"))
    assert 'href="/records/notifications/N-1" data-link="in_reply_to"' in reply
    request = page_text(client.get("/records/notifications/N-3"))
    assert 'href="/records/inspections/I-1" data-link="event_id"' in request
    flight_msg = page_text(client.get("/records/notifications/N-5"))
    assert 'href="/records/observation_flights/F-1" data-link="event_id"' in flight_msg


def test_an_inspection_lists_its_messages_and_the_reductions_it_verified(
    signed_in: SignedIn, linked: dict
) -> None:
    text = page_text(signed_in("viewer").get("/records/inspections/I-1"))
    messages = text.split('data-related="notifications.event_id"')[1].split("</section>")[0]
    assert "/records/notifications/N-3" in messages and "/records/notifications/N-4" in messages
    assert "/records/notifications/N-1" not in messages
    reductions = text.split('data-related="reductions.verified_by"')[1].split("</section>")[0]
    assert "/records/reductions/R-1" in reductions


def test_an_activity_lists_its_other_sources_and_notifications(
    signed_in: SignedIn, linked: dict
) -> None:
    client = signed_in("analyst")
    text = page_text(client.get("/records/activities/A-1,notification"))
    others = text.split('data-related="activities.activity_id"')[1].split("</section>")[0]
    assert "/records/activities/A-1,calendar" in others
    assert "/records/activities/A-1,notification" not in others
    add_source = re.search(r'href="([^"]+)">Add another source row', others)
    assert add_source
    prefilled = page_text(client.get(html.unescape(add_source.group(1))))
    assert 'name="activity_id" type="text" value="A-1"' in prefilled
    assert 'name="start_date" type="date" value="2024-03-10"' in prefilled
    assert 'name="troops" type="number" value=""' in prefilled  # figures differ by source
    notes = text.split('data-related="notifications.activity_id"')[1].split("</section>")[0]
    assert "/records/notifications/N-1" in notes
    # a prefilled "add" link for a new notification about this activity
    assert "/records/notifications/new?activity_id=A-1&amp;regime=VD" in notes
    prefilled = page_text(client.get("/records/notifications/new?activity_id=A-1&regime=VD"))
    assert 'name="activity_id" type="text" value="A-1"' in prefilled
    assert '<option value="VD" selected>' in prefilled
    flight = page_text(client.get("/records/observation_flights/F-1"))
    assert "/records/notifications/N-5" in flight


def test_deleting_a_referenced_record_is_refused_with_the_services_message(
    signed_in: SignedIn, session: Session, linked: dict
) -> None:
    client = signed_in("analyst")
    response = post_form(client, "/records/inspections/I-1/delete", {})
    assert response.status_code == 409
    text = page_text(response)
    assert 'data-state="refused"' in text
    assert "notifications N-3, N-4 refer to I-1 (event_id); change or delete them first" in text
    assert "/records/notifications/N-3" in text  # links to what refers to it
    assert count(session, "inspections") == 1
    # the other source of an activity keeps references valid: one source may go
    response = post_form(client, "/records/activities/A-1,calendar/delete", {})
    assert response.status_code == 303
    response = post_form(client, "/records/activities/A-1,notification/delete", {})
    assert response.status_code == 409


# --------------------------------------------------------------------------------------
# History: users, import runs, deletions
# --------------------------------------------------------------------------------------


def test_history_of_an_imported_row_starts_with_its_import_run(
    signed_in: SignedIn, session: Session
) -> None:
    run = ImportRun(source_name="activities-2024.csv", importer="csv")
    session.add(run)
    session.flush()
    row = make("activities", 1)
    seed(session, "activities", [row], actor=Actor(run_id=run.id))
    client = signed_in("analyst", username="bob")
    path = record_path("activities", row)
    text = page_text(client.get(path))
    # The run is named, and linked to its page now that the runs pages exist.
    assert f'<dt>Created</dt><dd>by <a href="/runs/{run.id}">import run {run.id}</a>' in text
    assert history_rows(text) == [("create", f"import run {run.id}")]
    assert "activities-2024.csv" in text

    post_form(client, path + "/edit", as_form("activities", {**row, "troops": "9000"}))
    text = page_text(client.get(path))
    assert history_rows(text) == [("update", "bob"), ("create", f"import run {run.id}")]
    assert "<dt>Last changed</dt><dd>by bob on" in text
    # the reconstructed creation shows the values the import wrote, not today's
    creation = text.split('data-action="create"')[1].split("</tbody>")[0]
    assert "13,000" in creation and "9,000" not in creation
    update = text.split('data-action="update"')[1].split("</tbody>")[0]
    assert re.search(r'data-change="troops".*?13,000.*?9,000', update, flags=re.S)

    post_form(client, path + "/delete", {})
    text = page_text(client.get(path))
    assert history_rows(text) == [
        ("delete", "bob"),
        ("update", "bob"),
        ("create", "an import run or the system"),
    ]
    # last values come from the delete event
    assert re.search(r'data-field="troops">.*?9,000', text, flags=re.S)


def test_a_deleted_key_created_again_keeps_one_history(
    signed_in: SignedIn, session: Session
) -> None:
    client = signed_in("analyst", username="carol")
    row = make("ceilings", 1)
    path = record_path("ceilings", row)
    post_form(client, "/records/ceilings/new", as_form("ceilings", row))
    post_form(client, path + "/delete", {})
    recreate = re.search(r'href="([^"]+)" data-test="recreate"', page_text(client.get(path)))
    assert recreate
    prefilled = page_text(client.get(html.unescape(recreate.group(1))))
    assert 'name="ceiling" type="number" value="4166"' in prefilled
    post_form(client, "/records/ceilings/new", as_form("ceilings", row))
    text = page_text(client.get(path))
    assert 'data-state="deleted"' not in text
    assert [a for a, _ in history_rows(text)] == ["create", "delete", "create"]


# --------------------------------------------------------------------------------------
# Lists: filters, sorting, pagination, empty states
# --------------------------------------------------------------------------------------


@pytest.fixture()
def many(session: Session) -> None:
    """Activities over several States, regions, years and kinds."""
    rows = [
        make("activities", 1, state="DEU", kind="exercise", start_date="2023-05-01",
             end_date="", name="Alpha 100% ready", troops="100"),
        make("activities", 2, state="RUS", kind="exercise", start_date="2024-01-01",
             end_date="", name="Zapad", troops="300"),
        make("activities", 3, state="RUS", kind="alert", start_date="2024-12-31",
             end_date="", name="Snap check", troops="200"),
        make("activities", 4, state="FRA", host_state="DEU", kind="transfer",
             start_date="2024-06-01", end_date="", name="O'Brien_move", troops=""),
        make("activities", 5, state="USA", kind="air", start_date="2022-02-02",
             end_date="", name="Sky", troops="50"),
    ]  # fmt: skip
    seed(session, "activities", rows)


def listed(client: FlaskClient, query: str, kind: str = "activities") -> list[str]:
    response = client.get(f"/records/{kind}/?{query}")
    assert response.status_code == 200, page_text(response)
    return [u.rsplit("/", 1)[1].split(",")[0] for u in links_in(page_text(response), kind)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"A-1", "A-2", "A-3", "A-4", "A-5"}),
        ("state=RUS", {"A-2", "A-3"}),
        ("state=Russian+Federation", {"A-2", "A-3"}),
        ("state=DEU", {"A-1", "A-4"}),  # conducting or host State
        ("region=north_america", {"A-5"}),
        ("year=2024", {"A-2", "A-3", "A-4"}),
        ("kind=exercise", {"A-1", "A-2"}),
        ("regime=VD", {"A-1", "A-2", "A-3", "A-4", "A-5"}),
        ("regime=OST", set()),
        ("q=zapad", {"A-2"}),
        ("q=Germany", {"A-1", "A-4"}),
        ("q=A-3", {"A-3"}),
        ("state=RUS&year=2024&kind=alert", {"A-3"}),
        ("state=DEU&q=brien", {"A-4"}),
        ("q=%25", {"A-1"}),  # a literal %
        ("q=_", {"A-4"}),  # a literal _
        ("q=%27", {"A-4"}),  # a quote
        ("q=%27%3B+DROP+TABLE+activities%3B--", set()),
    ],
)
def test_list_filters(signed_in: SignedIn, many: None, query: str, expected: set[str]) -> None:
    assert set(listed(signed_in("viewer"), query)) == expected


def test_year_filter_counts_timestamps_in_utc(signed_in: SignedIn, session: Session) -> None:
    seed(
        session,
        "notifications",
        [
            make("notifications", 1, sent_at="2024-12-31T23:30:00Z", received_at=""),
            make("notifications", 2, sent_at="2025-01-01T00:30:00+01:00", received_at=""),
            make("notifications", 3, sent_at="2025-01-01T00:00:00Z", received_at=""),
        ],
    )
    client = signed_in("viewer")
    assert set(listed(client, "year=2024", "notifications")) == {"N-1", "N-2"}
    assert set(listed(client, "year=2025", "notifications")) == {"N-3"}


def test_list_sorting(signed_in: SignedIn, many: None) -> None:
    client = signed_in("viewer")
    assert listed(client, "sort=troops&order=asc") == ["A-5", "A-1", "A-3", "A-2", "A-4"]
    assert listed(client, "sort=troops&order=desc") == ["A-2", "A-3", "A-1", "A-5", "A-4"]
    assert listed(client, "") == ["A-3", "A-4", "A-2", "A-1", "A-5"]  # newest start first
    assert listed(client, "sort=name&order=asc")[0] == "A-1"
    text = page_text(client.get("/records/activities/?sort=troops&order=asc"))
    assert 'aria-sort="ascending"' in text
    # the header link toggles the order and keeps the filters (a filter named kind too)
    text = page_text(client.get("/records/activities/?kind=alert&sort=troops&order=asc"))
    assert 'href="/records/activities/?kind=alert&amp;sort=troops&amp;order=desc"' in text


def test_equal_sort_values_fall_back_to_insertion_order(
    signed_in: SignedIn, session: Session
) -> None:
    seed(session, "holdings", [make("holdings", n, count="5") for n in range(1, 8)])
    client = signed_in("viewer")
    up = page_text(client.get("/records/holdings/?sort=count&order=asc"))
    down = page_text(client.get("/records/holdings/?sort=count&order=desc"))
    up_links = links_in(up, "holdings")
    assert up_links == list(reversed(links_in(down, "holdings")))
    assert "2001-01-01" in up_links[0]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("state=Atlantis", "state", "is not a known participating State"),
        ("year=twenty", "year", "is not a year"),
        ("year=1899", "year", "is not a year"),
        ("sort=password", "sort", "cannot sort by"),
        ("order=sideways", "order", "asc (ascending) or desc"),
        ("page=0", "page", "pages are numbered from 1"),
        ("page=abc", "page", "pages are numbered from 1"),
        ("per_page=7", "per_page", "is not a page size"),
        ("region=atlantis", "region", "is not a known region"),
        ("kind=parade", "kind", "is not a kind"),
        ("regime=NATO", "regime", "is not a regime"),
    ],
)
def test_invalid_filters_get_a_friendly_message(
    signed_in: SignedIn, many: None, query: str, field: str, message: str
) -> None:
    response = signed_in("viewer").get(f"/records/activities/?{query}")
    assert response.status_code == 400
    text = page_text(response)
    assert 'data-state="invalid-filters"' in text
    assert re.search(rf'data-error-for="{field}">[^<]*{re.escape(message)}', html.unescape(text))
    assert 'data-test="clear-filters"' in text


def test_pagination(signed_in: SignedIn, session: Session) -> None:
    seed(session, "holdings", [make("holdings", n) for n in range(1, 31)])
    client = signed_in("viewer")
    first = page_text(client.get("/records/holdings/?per_page=25&sort=as_of&order=asc"))
    assert len(links_in(first, "holdings")) == 25
    assert "Showing 1–25 of <strong>30</strong>" in first
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = client.get("/records/holdings/?per_page=25&sort=as_of&order=asc&page=2")
    second_text = page_text(second)
    assert len(links_in(second_text, "holdings")) == 5
    assert "Showing 26–30 of <strong>30</strong>" in second_text
    assert set(links_in(first, "holdings")).isdisjoint(links_in(second_text, "holdings"))
    beyond = client.get("/records/holdings/?per_page=25&page=3")
    assert beyond.status_code == 404
    assert "There is no page 3" in page_text(beyond)
    assert 'href="/records/holdings/?per_page=25&amp;page=2"' in page_text(beyond)
    assert len(links_in(page_text(client.get("/records/holdings/")), "holdings")) == 30


def test_empty_states(signed_in: SignedIn, many: None) -> None:
    analyst = signed_in("analyst")
    text = page_text(analyst.get("/records/reductions/"))
    assert 'data-state="none-stored"' in text
    assert 'href="/records/reductions/new">Add one with the form</a>' in text
    assert "import" in text
    viewer_text = page_text(signed_in("viewer").get("/records/reductions/"))
    assert 'data-state="none-stored"' in viewer_text and "/new" not in viewer_text
    text = page_text(analyst.get("/records/activities/?year=1999"))
    assert 'data-state="no-match"' in text
    assert 'href="/records/activities/">clear the filters</a>' in text
    # a filter over an empty table still says nothing is stored yet
    assert 'data-state="none-stored"' in page_text(analyst.get("/records/reductions/?year=1999"))


def test_index_lists_every_kind_with_counts(signed_in: SignedIn, many: None) -> None:
    text = page_text(signed_in("viewer").get("/records/"))
    for kind in KINDS:
        assert f'href="/records/{kind}/"' in text
    assert re.search(r'data-count="activities">5<', text)
    assert re.search(r'data-count="quotas">0<', text)


@pytest.mark.parametrize("kind", KINDS)
def test_every_list_and_record_page_renders(
    signed_in: SignedIn, session: Session, kind: str
) -> None:
    row = make(kind, 1)
    seed(session, kind, [row])
    client = signed_in("analyst")
    listing = client.get(f"/records/{kind}/?q=a&year=2024&state=DEU&region=central_europe")
    assert listing.status_code == 200
    assert_csp_clean(page_text(listing))
    page = client.get(record_path(kind, row))
    assert page.status_code == 200
    assert_csp_clean(page_text(page))
    for column in contract.get(kind).columns:
        assert f'data-field="{column}"' in page_text(page)

"""The JSON API: tokens, authorisation, records through the services, the other resources.

Every test runs on SQLite and PostgreSQL with real requests through the app.
"""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from api_support import ACTIVITY, make_api_users, seed_records
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import Activity, ApiToken, AuditEvent, User
from cbm.services.records import upsert_records
from cbm.services.tokens import TokenError, authenticate_token, create_token, revoke_token
from cbm.web.api.openapi import openapi_document


@pytest.fixture()
def users(session: Session):
    users = make_api_users(session)
    seed_records(session)
    return users


def _activity(**changes) -> dict:
    body = {
        "activity_id": "API-NEW-1",
        "source": "notification",
        "state": "Poland",
        "kind": "exercise",
        "start_date": "2025-05-01",
        "troops": 4000,
    }
    body.update(changes)
    return body


# -- tokens --------------------------------------------------------------------------------


def test_tokens_are_hashed_scoped_and_revocable(session: Session, users) -> None:
    analyst = session.get(User, users.user_ids["analyst"])
    token, secret = create_token(session, analyst, "read only", scope="viewer")
    assert secret.startswith(token.prefix + "_")
    assert secret not in {t.token_hash for t in session.scalars(select(ApiToken))}
    assert authenticate_token(session, secret).role == "viewer"
    with pytest.raises(TokenError, match="cannot do more than its owner"):
        create_token(session, analyst, "too much", scope="admin")
    with pytest.raises(TokenError, match="name"):
        create_token(session, analyst, "   ")
    revoke_token(session, token.id)
    assert authenticate_token(session, secret) is None
    assert authenticate_token(session, secret[:-1] + "x") is None
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_type == "api_tokens")
    ).all()
    assert {"create", "revoke"} <= set(actions)


def test_expired_token_and_disabled_owner_are_refused(session: Session, users) -> None:
    viewer = session.get(User, users.user_ids["viewer"])
    token, secret = create_token(session, viewer, "short", expires_days=1)
    assert authenticate_token(session, secret) is not None
    token.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert authenticate_token(session, secret) is None
    _t, other = create_token(session, viewer, "other")
    viewer.active = False
    assert authenticate_token(session, other) is None


def test_role_change_applies_to_existing_tokens(session: Session, users) -> None:
    admin_token = users.tokens["admin"]
    session.get(User, users.user_ids["admin"]).role = "viewer"
    assert authenticate_token(session, admin_token).role == "viewer"


# -- authentication and authorisation --------------------------------------------------------


def test_no_token_bad_token_and_session_cookie_are_401(client: FlaskClient, users) -> None:
    for headers in ({}, {"Authorization": "Bearer cbm_nope_nope"}, {"Authorization": "Basic x"}):
        response = client.get("/api/v1/activities", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_viewer_token_reads_but_cannot_write(client: FlaskClient, users, session) -> None:
    viewer = users.headers("viewer")
    assert client.get("/api/v1/activities", headers=viewer).status_code == 200
    before = session.scalar(select(func.count()).select_from(Activity))
    response = client.post("/api/v1/activities", headers=viewer, json=_activity())
    assert response.status_code == 403
    assert "analyst" in response.get_json()["detail"]
    assert (
        client.delete("/api/v1/activities/API-2024-1,notification", headers=viewer).status_code
        == 403
    )
    assert session.scalar(select(func.count()).select_from(Activity)) == before


def test_revoked_token_is_refused_at_once(client: FlaskClient, users, session) -> None:
    headers = users.headers("analyst")
    assert client.get("/api/v1/rules", headers=headers).status_code == 200
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == users.user_ids["analyst"]))
    revoke_token(session, token.id)
    session.commit()
    response = client.get("/api/v1/rules", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_every_api_route_declares_a_role_and_enforces_it(app, client, users) -> None:
    """From the URL map: each API view names its role; a token below it gets 403."""
    from cbm.services.accounts import role_rank
    from cbm.web.api import PUBLIC_API_ENDPOINTS

    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint in PUBLIC_API_ENDPOINTS:
            continue
        needed = getattr(app.view_functions[rule.endpoint], "cbm_api_role", None)
        assert needed in ("viewer", "analyst", "admin"), rule.endpoint
        values = {a: (1 if "id" in a else "x") for a in rule.arguments if a != "kind"}
        path = rule.build(values, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for role in ("viewer", "analyst", "admin"):
                response = client.open(path, method=method, headers=users.headers(role), json={})
                if role_rank(role) < role_rank(needed):
                    assert response.status_code == 403, (method, path, role)
                else:
                    assert response.status_code not in (401, 403, 500), (method, path, role)
                checked += 1
    assert checked > 150


# -- records -------------------------------------------------------------------------------


def test_create_get_patch_put_delete(client: FlaskClient, users, session) -> None:
    headers = users.headers("analyst")
    created = client.post("/api/v1/activities", headers=headers, json=_activity())
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["state"] == "POL" and body["host_state"] == "POL" and body["troops"] == 4000
    assert (
        created.headers["Location"] == body["_url"] == "/api/v1/activities/API-NEW-1,notification"
    )
    assert client.get(body["_url"], headers=headers).get_json() == body

    patched = client.patch(body["_url"], headers=headers, json={"troops": 13500, "name": "X"})
    assert patched.status_code == 200
    assert (
        patched.get_json()["troops"] == 13500 and patched.get_json()["start_date"] == "2025-05-01"
    )

    replaced = client.put(body["_url"], headers=headers, json=_activity(troops=None))
    assert replaced.status_code == 200
    assert replaced.get_json()["name"] is None and replaced.get_json()["troops"] is None

    moved = client.patch(body["_url"], headers=headers, json={"activity_id": "OTHER"})
    assert moved.status_code == 422 and "key" in moved.get_json()["detail"]

    assert client.delete(body["_url"], headers=headers).status_code == 204
    assert client.get(body["_url"], headers=headers).status_code == 404
    history = session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_key == "API-NEW-1 / notification")
    ).all()
    assert history[0] == "create" and history[-1] == "delete"
    assert (
        session.scalar(select(AuditEvent.user_id).where(AuditEvent.action == "delete"))
        == (users.user_ids["analyst"])
    )


def test_validation_messages_are_the_services(client: FlaskClient, users, session) -> None:
    bad = {
        "activity_id": "API-BAD",
        "source": "notification",
        "state": "XXX",
        "kind": "exercise",
        "start_date": "2024-02-30",
    }
    expected = upsert_records(session, "activities", [bad], all_or_nothing=True)
    session.rollback()
    response = client.post("/api/v1/activities", headers=users.headers("analyst"), json=bad)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    got = [(e["field"], e["message"]) for e in response.get_json()["errors"]]
    assert got == [(e.column, e.reason) for e in expected.errors]
    assert session.scalar(select(Activity).where(Activity.activity_id == "API-BAD")) is None


def test_create_refuses_an_existing_key_and_unknown_columns(client, users) -> None:
    headers = users.headers("analyst")
    row = {k: v for k, v in ACTIVITY.items() if k != "troops"}
    response = client.post("/api/v1/activities", headers=headers, json=row)
    assert response.status_code == 422 and "already exists" in response.get_json()["detail"]
    response = client.post("/api/v1/activities", headers=headers, json=_activity(tropps=1))
    assert response.status_code == 422 and "tropps" in response.get_json()["detail"]
    response = client.post("/api/v1/activities", headers=headers, json=_activity(troops=True))
    assert response.status_code == 422
    response = client.post(
        "/api/v1/activities", headers=headers, data="[1]", content_type="application/json"
    )
    assert response.status_code == 422
    assert client.post("/api/v1/activities", headers=headers, data="x").status_code == 415


def test_delete_of_a_referenced_record_is_409(client, users) -> None:
    response = client.delete(
        "/api/v1/activities/API-2024-1,notification", headers=users.headers("analyst")
    )
    assert response.status_code == 409
    assert "API-N-1" in response.get_json()["detail"]


def test_list_filters_sorting_and_pages(client: FlaskClient, users) -> None:
    headers = users.headers("viewer")
    for n in range(30):
        client.post(
            "/api/v1/activities",
            headers=users.headers("analyst"),
            json=_activity(activity_id=f"P-{n:02d}", troops=n),
        )
    page = client.get(
        "/api/v1/activities?state=Poland&sort=troops&order=asc&per_page=25", headers=headers
    ).get_json()
    assert page["total"] == 30 and page["pages"] == 2
    assert [r["troops"] for r in page["items"]] == list(range(25))
    second = client.get(page["links"]["next"], headers=headers).get_json()
    assert [r["troops"] for r in second["items"]] == list(range(25, 30))
    assert "state=Poland" in second["links"]["prev"]
    bad = client.get("/api/v1/activities?state=Atlantis&per_page=7", headers=headers)
    assert bad.status_code == 400
    assert {e["field"] for e in bad.get_json()["errors"]} == {"state", "per_page"}


# -- other resources ------------------------------------------------------------------------


def test_runs_upload_get_and_revert(client: FlaskClient, users, session) -> None:
    csv = b"activity_id,source,state,kind,start_date\nUP-1,notification,FRA,exercise,2024-01-01\n"
    response = client.post(
        "/api/v1/runs",
        headers=users.headers("analyst"),
        data={"file": (io.BytesIO(csv), "up.csv"), "kind": "activities"},
    )
    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    assert run["status"] == "succeeded" and run["rows_inserted"] == 1
    assert run["started_by"] == "api-analyst"
    listed = client.get("/api/v1/runs?kind=activities", headers=users.headers("viewer")).get_json()
    assert run["run_id"] in [r["run_id"] for r in listed["items"]]
    url = f"/api/v1/runs/{run['run_id']}/revert"
    assert client.post(url, headers=users.headers("analyst")).status_code == 403
    reverted = client.post(url, headers=users.headers("admin"))
    assert reverted.status_code == 200 and reverted.get_json()["reverted_by"] == "api-admin"
    assert session.scalar(select(Activity).where(Activity.activity_id == "UP-1")) is None


def test_sources_need_admin_and_use_the_service(client: FlaskClient, users) -> None:
    assert client.get("/api/v1/sources", headers=users.headers("analyst")).status_code == 403
    admin = users.headers("admin")
    created = client.post(
        "/api/v1/sources",
        headers=admin,
        json={"name": "feed-2", "location": "http://127.0.0.1:9/x.csv", "schedule": "every 1h"},
    )
    assert created.status_code == 201, created.get_json()
    url = created.headers["Location"]
    assert client.patch(url, headers=admin, json={"enabled": False}).get_json()["enabled"] is False
    bad = client.patch(url, headers=admin, json={"schedule": "whenever"})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "schedule"
    dup = client.post("/api/v1/sources", headers=admin, json={"name": "feed-2", "location": "x"})
    assert dup.status_code == 422
    assert client.delete(url, headers=admin).status_code == 204


def test_findings_rules_and_trust(client: FlaskClient, users) -> None:
    headers = users.headers("viewer")
    rules = client.get("/api/v1/rules?regime=VD", headers=headers).get_json()
    assert rules["total"] > 0 and all(r["regime"] == "VD" for r in rules["items"])
    one = client.get(rules["items"][0]["_url"], headers=headers).get_json()
    assert one["citation"]
    assert client.get("/api/v1/findings?status=nonsense", headers=headers).status_code == 400
    assert client.get("/api/v1/findings/999999", headers=headers).status_code == 404
    found = client.get("/api/v1/trust_scores?level=state", headers=headers).get_json()
    assert found["total"] == 0 and found["items"] == []


def test_finding_actions_through_the_service(client: FlaskClient, users, session) -> None:
    from cbm.models import Finding

    finding = Finding(
        finding_key="t:1",
        rule_id="VD-I-3",
        regime="VD",
        severity="late",
        status="open",
        state="DEU",
        summary="test",
    )
    session.add(finding)
    session.commit()
    url = f"/api/v1/findings/{finding.id}"
    analyst = users.headers("analyst")
    refused = client.patch(url, headers=analyst, json={"action": "dispute", "comment": ""})
    assert refused.status_code == 409 and "comment" in refused.get_json()["detail"]
    done = client.patch(url, headers=analyst, json={"action": "dispute", "comment": "wrong date"})
    assert done.status_code == 200 and done.get_json()["status"] == "disputed"


# -- description and docs ----------------------------------------------------------------------


def test_openapi_and_docs_are_public_and_offline(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc == openapi_document()
    assert "/activities/{key}" in doc["paths"] and "/sources/{source_id}" in doc["paths"]
    page = client.get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"):
        assert client.get(f"/static/vendor/swagger-ui/{name}").status_code == 200


def test_account_page_creates_and_revokes_a_token(client, make_user, session) -> None:
    from conftest import csrf_token_from, login

    make_user("analyst", "tok-owner")
    login(client, "tok-owner")
    page = client.get("/account").get_data(as_text=True)
    # The tokens section is in the page once, and not in its <title>.
    assert page.count('data-test="api-tokens"') == 1
    assert re.search(r"<title>[^<]*Your account[^<]*</title>", page)
    created = client.post(
        "/account/tokens",
        data={
            "name": "sync",
            "scope": "viewer",
            "expires_days": "30",
            "csrf_token": csrf_token_from(page),
        },
    )
    html = created.get_data(as_text=True)
    assert created.status_code == 200 and 'data-test="new-token-value"' in html
    secret = re.search(r'value="(cbm_[^"]+)"', html).group(1)
    api = client.get("/api/v1/rules", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200
    token = session.scalar(select(ApiToken).where(ApiToken.name == "sync"))
    client.post(f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf_token_from(html)})
    assert (
        client.get("/api/v1/rules", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    # Without the CSRF token the form is refused.
    assert client.post("/account/tokens", data={"name": "x"}).status_code == 400

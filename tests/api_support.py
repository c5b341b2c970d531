"""Shared setup of the API tests: tokens per role and a small data set behind the routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cbm.services.accounts import create_user
from cbm.services.records import upsert_records
from cbm.services.sources import add_source
from cbm.services.tokens import create_token

ACTIVITY = {
    "activity_id": "API-2024-1",
    "source": "notification",
    "state": "DEU",
    "kind": "exercise",
    "start_date": "2024-03-01",
    "end_date": "2024-03-10",
    "troops": "9500",
}
NOTIFICATION = {
    "reference": "API-N-1",
    "regime": "VD",
    "kind": "prior_notification",
    "sender": "DEU",
    "recipients": "all",
    "sent_at": "2024-01-05T09:00:00Z",
    "activity_id": "API-2024-1",
}


@dataclass
class ApiUsers:
    """A token per role (the secrets) and the accounts' ids."""

    tokens: dict[str, str]
    user_ids: dict[str, int]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_api_users(session: Session) -> ApiUsers:
    tokens, ids = {}, {}
    for role in ("viewer", "analyst", "admin"):
        user = create_user(session, f"api-{role}", "correct horse battery staple", role)
        session.flush()
        _token, secret = create_token(session, user, f"{role} token")
        tokens[role], ids[role] = secret, user.id
    session.commit()
    return ApiUsers(tokens, ids)


def seed_records(session: Session) -> None:
    """An activity and a notification that refers to it (so deleting the activity is
    refused), and a source."""
    for kind, row in (("activities", ACTIVITY), ("notifications", NOTIFICATION)):
        result = upsert_records(session, kind, [row])
        assert result.ok, result.errors
    add_source(session, "api-feed", "http://127.0.0.1:9/feed.csv", kind="activities")
    session.commit()

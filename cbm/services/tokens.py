"""Personal API tokens: created in the UI or with ``cbm token create``, hashed, revocable.

A token is ``cbm_`` + 8 public characters + ``_`` + 32 secret ones. Only the SHA-256 of
the whole token is stored: the token has ~190 bits of randomness, so a fast hash is safe
(unlike passwords, nothing short can be guessed) and lets every API request be checked
with one indexed lookup. The public prefix tells tokens apart in lists and logs.

A token acts for its owner with the *lower* of the owner's current role and the token's
``scope``. A disabled owner, a revoked or expired token: refused. Creating and revoking
are audited like every other account change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cbm.db import utcnow
from cbm.models import ApiToken, User
from cbm.services.accounts import AccountError, role_rank
from cbm.services.records import SYSTEM, Actor, audit_event
from cbm.vocab import ROLES

TOKEN_PREFIX = "cbm_"
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
#: Writing ``last_used_at`` on every request would turn each read into a write; once a
#: minute is enough to tell a live token from a forgotten one.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenError(AccountError):
    """A refused token operation; the message says why and is safe to show."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who an accepted token speaks for, and with which role."""

    token_id: int
    user_id: int
    username: str
    role: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _audit(session: Session, actor: Actor, action: str, token: ApiToken, changes: dict) -> None:
    audit_event(session, actor, action, "api_tokens", token.id, token.prefix, changes)


def create_token(
    session: Session,
    user: User,
    name: str,
    *,
    scope: str | None = None,
    expires_days: int | None = None,
    actor: Actor = SYSTEM,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns it and the secret (shown once, never stored)."""
    name = " ".join((name or "").split())
    if not name:
        raise TokenError("give the token a name that says what uses it (e.g. 'nightly sync')")
    if len(name) > MAX_NAME_LENGTH:
        raise TokenError(f"a token name has at most {MAX_NAME_LENGTH} characters")
    if not user.active:
        raise TokenError(f"the account {user.username} is disabled")
    scope = scope or user.role
    if scope not in ROLES:
        raise TokenError(f"'{scope}' is not a role; choose one of {', '.join(ROLES)}")
    if role_rank(scope) > role_rank(user.role):
        raise TokenError(
            f"a token cannot do more than its owner: {user.username} is {user.role}, "
            f"so the scope is at most {user.role}"
        )
    expires_at = None
    if expires_days is not None:
        if not 1 <= expires_days <= MAX_EXPIRY_DAYS:
            raise TokenError(f"a token expires after 1 to {MAX_EXPIRY_DAYS} days")
        expires_at = utcnow() + dt.timedelta(days=expires_days)
    public = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{public}_{secrets.token_urlsafe(24)}"
    token = ApiToken(
        user_id=user.id,
        name=name,
        prefix=f"{TOKEN_PREFIX}{public}",
        token_hash=hash_token(secret),
        scope=scope,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    _audit(
        session,
        actor,
        "create",
        token,
        {
            "user": [None, user.username],
            "name": [None, name],
            "scope": [None, scope],
            "expires_at": [None, expires_at.isoformat() if expires_at else None],
        },
    )
    return token, secret


def list_tokens(session: Session, user_id: int | None = None) -> list[ApiToken]:
    """Tokens, newest first; of one account when ``user_id`` is given."""
    stmt = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return list(session.scalars(stmt))


def revoke_token(
    session: Session, token_id: int, *, owner_id: int | None = None, actor: Actor = SYSTEM
) -> ApiToken:
    """Revoke a token at once. With ``owner_id``, only a token of that account."""
    token = session.get(ApiToken, token_id)
    if token is None or (owner_id is not None and token.user_id != owner_id):
        raise TokenError(f"there is no token {token_id}")
    if token.revoked_at is not None:
        raise TokenError(f"token {token.prefix} was already revoked")
    token.revoked_at = utcnow()
    _audit(session, actor, "revoke", token, {"revoked_at": [None, token.revoked_at.isoformat()]})
    session.flush()
    return token


def token_status(token: ApiToken, now: dt.datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired`` (for lists)."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _note_use(session: Session, token: ApiToken, now: dt.datetime) -> None:
    """Stamp ``last_used_at``, best effort: a read must not fail for want of it.

    On SQLite the stamp turns a GET's read transaction into a writer, which fails at once
    ("database is locked") when another connection committed since it began; all tokens
    used by concurrent readers come due in the same minute. In a savepoint, that failure
    only skips the stamp (the next request writes it); other database errors propagate.
    """
    try:
        with session.begin_nested():
            token.last_used_at = now
    except OperationalError as exc:
        if "locked" not in str(exc.orig):
            raise


def authenticate_token(session: Session, secret: str | None) -> TokenIdentity | None:
    """The identity behind a presented token, or None (unknown, revoked, expired, disabled)."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    digest = hash_token(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = utcnow()
    if token_status(token, now) != "active":
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        _note_use(session, token, now)
    role = token.scope if role_rank(token.scope) <= role_rank(user.role) else user.role
    return TokenIdentity(token.id, user.id, user.username, role)

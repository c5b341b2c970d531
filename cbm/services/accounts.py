"""User accounts: creation, roles, disabling, passwords, authentication. Audited.

Passwords are hashed with argon2id. Disabling an account or resetting its password bumps
``session_version``, which ends every session that account holds.
"""

from __future__ import annotations

import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.db import utcnow
from cbm.models import User
from cbm.services.records import SYSTEM, Actor, audit_event
from cbm.vocab import ROLES

MIN_PASSWORD_LENGTH = 12
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong name costs as much as a wrong
# password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("not a real password, used for timing only")


class AccountError(ValueError):
    """A refused account change; the message says why and is safe to show."""


def role_rank(role: str) -> int:
    """viewer < analyst < admin."""
    return ROLES.index(role) if role in ROLES else -1


def generate_password() -> str:
    """A random password of about 96 bits, easy to copy."""
    return secrets.token_urlsafe(16)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise AccountError("the password may not start or end with spaces")


def _audit(session: Session, actor: Actor, action: str, user: User, changes: dict) -> None:
    audit_event(session, actor, action, "users", user.id, user.username, changes)


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise AccountError(f"no account named '{username}'")
    return user


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str = "viewer",
    *,
    display_name: str = "",
    actor: Actor = SYSTEM,
) -> User:
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise AccountError(
            "a username has 2 to 80 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if role not in ROLES:
        raise AccountError(f"'{role}' is not a role; use one of {', '.join(ROLES)}")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"an account named '{username}' already exists")
    check_password_strength(password)
    user = User(
        username=username,
        display_name=display_name.strip(),
        password_hash=_hasher.hash(password),
        role=role,
        active=True,
        session_version=1,
    )
    session.add(user)
    session.flush()
    _audit(
        session,
        actor,
        "create",
        user,
        {"username": [None, username], "role": [None, role], "active": [None, True]},
    )
    session.flush()
    return user


def set_role(session: Session, username: str, role: str, *, actor: Actor = SYSTEM) -> User:
    if role not in ROLES:
        raise AccountError(f"'{role}' is not a role; use one of {', '.join(ROLES)}")
    user = get_user(session, username)
    if user.role == role:
        return user
    if user.role == "admin" and _would_leave_no_admin(session, user):
        raise AccountError("this is the last active administrator; appoint another first")
    before = user.role
    user.role = role
    user.session_version += 1  # permissions changed: sign in again
    _audit(session, actor, "update", user, {"role": [before, role]})
    session.flush()
    return user


def set_active(session: Session, username: str, active: bool, *, actor: Actor = SYSTEM) -> User:
    user = get_user(session, username)
    if user.active == active:
        return user
    if not active and user.role == "admin" and _would_leave_no_admin(session, user):
        raise AccountError("this is the last active administrator; appoint another first")
    user.active = active
    user.session_version += 1
    _audit(session, actor, "update", user, {"active": [not active, active]})
    session.flush()
    return user


def reset_password(
    session: Session, username: str, password: str | None = None, *, actor: Actor = SYSTEM
) -> str:
    """Set a new password (generated when none is given) and end the account's sessions."""
    user = get_user(session, username)
    password = password or generate_password()
    check_password_strength(password)
    user.password_hash = _hasher.hash(password)
    user.session_version += 1
    _audit(session, actor, "update", user, {"password": ["(hidden)", "(changed)"]})
    session.flush()
    return password


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (same cost either way)."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    try:
        if user is None or not user.password_hash:
            _hasher.verify(_DUMMY_HASH, password)
            return None
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


def ensure_admin(session: Session, username: str = "admin") -> str | None:
    """On an instance with no accounts, create an administrator; return its password once."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    password = generate_password()
    create_user(session, username, password, "admin", display_name="Administrator")
    return password


def _would_leave_no_admin(session: Session, user: User) -> bool:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.active.is_(True), User.id != user.id)
    )
    return not others


def change_own_password(
    session: Session, user_id: int, current_password: str, new_password: str
) -> User:
    """A signed-in user changes their own password; the current one must be given.

    Bumps ``session_version`` (the account's other sessions end; the web layer signs the
    current session in again with the new version) and audits the change with the user as
    the actor. Raises :class:`AccountError` on a wrong current password or a weak new one.
    """
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AccountError("this account does not exist or is disabled")
    try:
        if not user.password_hash:
            raise VerificationError("no password set")
        _hasher.verify(user.password_hash, current_password)
    except (VerificationError, InvalidHashError):
        raise AccountError("the current password is wrong") from None
    if new_password == current_password:
        raise AccountError("the new password must differ from the current one")
    check_password_strength(new_password)
    user.password_hash = _hasher.hash(new_password)
    user.session_version += 1
    _audit(session, Actor(user_id=user.id), "update", user, {"password": ["(hidden)", "(changed)"]})
    session.flush()
    return user

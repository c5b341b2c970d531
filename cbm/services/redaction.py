"""Secrets out of exported text: passwords in URLs, tokens in query strings, auth headers.

A source's location is a path or a URL, and a URL may carry credentials (``user:pw@host``,
``?token=…``). Exports are files that travel (to spreadsheets, to other teams), so every
export that shows a location or a message that may quote one passes it through
:func:`redact`: the secret values become ``***``, everything else (host, path, the other
parameters, their order) stays, so the location is still recognisable. Redaction is
stable: the same text always gives the same bytes.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
#: Query parameters whose value is a secret (case-insensitive, ``-`` and ``_`` alike).
SECRET_PARAMS = frozenset(
    {
        "token",
        "key",
        "apikey",
        "api_key",
        "access_token",
        "refresh_token",
        "auth",
        "auth_token",
        "signature",
        "sig",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
#: Header names whose value is a credential, written ``Name: value`` in text.
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_HEADER = re.compile(
    r"(?im)\b(" + "|".join(re.escape(h) for h in SECRET_HEADERS) + r")(\s*[:=]\s*)([^\r\n,;]+)"
)


def _is_secret(name: str) -> bool:
    return name.strip().lower().replace("-", "_") in {p.replace("-", "_") for p in SECRET_PARAMS}


def _redact_query(query: str) -> str:
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and value and _is_secret(name) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """One URL with the password of its userinfo and secret query values as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if colon and password else f"{userinfo}@{host}"
        query = _redact_query(parts.query)
        fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    except ValueError:  # not parseable as a URL (a bad port …): mask all of it past the scheme
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{MASK}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact(text: str | None) -> str:
    """``text`` (a location, a message) with every URL's secrets and every auth header's
    value replaced by ``***``; ``None`` is the empty string."""
    if not text:
        return ""
    out = _URL.sub(lambda m: redact_url(m.group()), text)
    return _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)

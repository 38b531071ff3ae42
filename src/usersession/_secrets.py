"""Keeping secrets out of logs, reprs and error messages.

A token is named in a log record by `fingerprint`, a short hash that lets
someone match records to each other without being able to use the token.
Server answers that errors quote are passed through `scrub` first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["REDACTED", "SECRET_FIELDS", "excerpt", "fingerprint", "scrub"]

REDACTED = "[secret]"

#: Fields of OAuth messages whose values are credentials.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "code",
        "code_verifier",
        "device_code",
        "token",
        "assertion",
        "password",
    }
)

_EXCERPT_LENGTH = 200


def fingerprint(secret: str | None) -> str:
    """Return a short, stable hash of `secret` for logs: ``"sha256:1a2b3c4d"``."""
    if not secret:
        return "none"
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    return f"sha256:{digest[:8]}"


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each known secret in `text`.

    Very short values are skipped: replacing a two-letter "secret" would
    mangle the text without protecting anything.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if key in SECRET_FIELDS else _redact_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    return value


_FIELD_NAMES = "|".join(sorted(SECRET_FIELDS, key=len, reverse=True))

# A credential field with its value, however the answer is encoded: JSON
# (even cut short), a form, a query string, a header-like line.
_FIELD_VALUE = re.compile(
    rf"""(["']?\b(?:{_FIELD_NAMES})["']?\s*[:=]\s*)"""
    r"""(\[secret\]|"[^"]*"?|'[^']*'?|[^\s&,;<>"'}\]]+)""",
    re.IGNORECASE,
)
# Credentials of an Authorization header (RFC 9110 section 11.4).
_AUTH_VALUE = re.compile(r"\b(Bearer|Basic|DPoP)\s+[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)


def excerpt(body: bytes, secrets: Iterable[str | None] = ()) -> str:
    """Return the start of a server answer, safe to show in an error message.

    Credential fields are masked wherever they appear, in JSON, cut-short
    JSON, forms or header-like lines, and every known secret is replaced,
    all before the text is cut short, so a token is never half-quoted.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        pass
    else:
        if isinstance(parsed, dict | list):
            text = json.dumps(_redact_json(parsed), ensure_ascii=False)
    text = scrub(text, secrets)
    text = _FIELD_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + " " + REDACTED, text)
    text = " ".join(text.split())
    if len(text) > _EXCERPT_LENGTH:
        text = text[: _EXCERPT_LENGTH - 3] + "..."
    return text

"""The token endpoint's answers, classified without any I/O.

An answer to a refresh request is one of three things, and the whole
behaviour of a `User` follows from which:

- `Refreshed`: new tokens (RFC 6749 section 5.1).
- `Refused`: the grant is dead for good (RFC 6749 section 5.2): the user must
  log in again.
- `Unavailable`: no verdict now (network, 5xx, 429, ``temporarily_unavailable``
  or an answer that is not a token response): keep every token, try later.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import RefreshUnavailable, UserRefreshFailed
from ._secrets import excerpt, scrub
from ._tokens import Tokens

__all__ = [
    "Refreshed",
    "Refused",
    "Unavailable",
    "classify_token_answer",
    "no_answer",
    "parse_retry_after",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Refreshed:
    """New tokens. `adopted` when another process or user refreshed first."""

    tokens: Tokens
    adopted: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """The authorization server refused the grant for good."""

    error: UserRefreshFailed


@dataclasses.dataclass(frozen=True, slots=True)
class Unavailable:
    """The refresh could not be done now."""

    error: RefreshUnavailable


Outcome = Refreshed | Refused | Unavailable

_TEMPORARY = "temporarily_unavailable"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Read ``Retry-After`` (RFC 9110 section 10.2.3) as seconds from `now`.

    Accepts delay-seconds or an HTTP date; anything else is ignored.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _oauth_error(payload: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if payload is None:
        return None, None
    code = payload.get("error")
    description = payload.get("error_description")
    return (
        code if isinstance(code, str) and code else None,
        description if isinstance(description, str) else None,
    )


def no_answer(exc: BaseException) -> Unavailable:
    """The outcome of a token request that got no HTTP answer at all."""
    reason = type(exc).__name__
    error = RefreshUnavailable(
        f"the token endpoint could not be reached ({reason}); "
        "the user is still logged in"
    )
    error.__cause__ = exc
    return Unavailable(error)


def classify_token_answer(
    status: int,
    body: bytes,
    *,
    previous: Tokens,
    issued_at: float,
    now: float,
    retry_after: str | None = None,
    secrets: Iterable[str | None] = (),
) -> Outcome:
    """Decide what a token endpoint's answer to a refresh means.

    Args:
        status: The HTTP status code.
        body: The raw body.
        previous: The tokens being refreshed; what the answer leaves out is
            kept from them (RFC 6749 section 6).
        issued_at: When the request was sent, in seconds since the epoch:
            the new expiry counts from then.
        now: The current time, for an HTTP-date ``Retry-After``.
        retry_after: The ``Retry-After`` header, if any.
        secrets: Values to scrub from any excerpt of the answer.
    """
    secrets = [*secrets, previous.access_token, previous.refresh_token]
    payload = _json_object(body)
    code, description = _oauth_error(payload)
    if description is not None:
        description = scrub(description, secrets)

    if 200 <= status < 300 and payload is not None and code is None:
        try:
            fresh = Tokens.from_response(payload, issued_at=issued_at)
        except ValueError:
            pass
        else:
            return Refreshed(previous.succeeded_by(fresh))

    permanent_status = status in (400, 401) or 200 <= status < 300
    if code is not None and code != _TEMPORARY and permanent_status:
        return Refused(
            UserRefreshFailed(
                f"the authorization server refused the refresh ({code}); "
                "the user is logged out",
                error=code,
                description=description,
                status_code=status,
            )
        )
    if status == 401 and code is None:
        # RFC 6749 section 5.2: a 401 from the token endpoint is a failed
        # client authentication, which no retry will mend.
        return Refused(
            UserRefreshFailed(
                "the token endpoint rejected the client (HTTP 401); "
                "the user is logged out",
                error="invalid_client",
                status_code=status,
            )
        )

    seconds = parse_retry_after(retry_after, now)
    if code == _TEMPORARY:
        what = f"the token endpoint is temporarily unavailable (HTTP {status})"
    elif 200 <= status < 300:
        what = f"the token endpoint's answer is not a token response (HTTP {status})"
    else:
        what = f"the token endpoint answered HTTP {status}"
    return Unavailable(
        RefreshUnavailable(
            f"{what}; the user is still logged in",
            status_code=status,
            body_excerpt=excerpt(body, secrets),
            retry_after=seconds,
            error=code,
        )
    )

"""Answers to a login grant, read without any I/O.

A login ends in a token request (RFC 6749 sections 4.1.3 and 4.4.2, RFC 8628
section 3.4). Its answer is either new `Tokens` or a `LoginError` that says
why not; the device flow reads some of those errors as "keep polling".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

from ._errors import AccessDenied, DeviceCodeExpired, LoginError
from ._oauth import _json_object, _oauth_error
from ._secrets import excerpt
from ._tokens import Tokens

__all__ = ["login_error", "read_token_answer"]

# RFC 6749 section 5.2: error = 1*( %x20-21 / %x23-5B / %x5D-7E ).
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")

_ERRORS: dict[str, type[LoginError]] = {
    "access_denied": AccessDenied,
    # RFC 8628 section 3.5.
    "expired_token": DeviceCodeExpired,
}


def login_error(
    code: str,
    description: str | None,
    *,
    status_code: int | None = None,
    secrets: Iterable[str | None] = (),
    where: str = "the authorization server",
) -> LoginError:
    """The error for an OAuth error answer to a login.

    The code and description come from the server, or from whoever called the
    loopback redirect, so both are cleaned before they reach a message: a
    code outside the RFC 6749 character set is replaced, and the description
    is scrubbed of `secrets` and credential fields and cut short.
    """
    if not _ERROR_CODE.fullmatch(code):
        code = "invalid_error_code"
    cleaned = None if description is None else excerpt(description.encode(), secrets)
    message = f"{where} refused the login ({code})"
    if cleaned:
        message += f": {cleaned}"
    return _ERRORS.get(code, LoginError)(
        message, error=code, description=cleaned, status_code=status_code
    )


def read_token_answer(
    answer: httpx.Response | httpx.TransportError,
    *,
    issued_at: float,
    secrets: Iterable[str | None] = (),
) -> Tokens | LoginError:
    """Read the token endpoint's answer to a login grant.

    Args:
        answer: The response, or the error that stood in for one.
        issued_at: When the request was sent (seconds since the epoch); the
            expiry counts from then.
        secrets: Values to keep out of any error message (the code, the
            verifier, the device code, the client secret).

    Returns:
        The new tokens, or the error to raise (or, for the device flow's
        ``authorization_pending`` and ``slow_down``, to keep polling after).
    """
    if isinstance(answer, httpx.TransportError):
        error = LoginError(
            f"the token endpoint could not be reached ({type(answer).__name__})"
        )
        error.__cause__ = answer
        return error
    status = answer.status_code
    payload = _json_object(answer.content)
    code, description = _oauth_error(payload)
    if 200 <= status < 300 and payload is not None and code is None:
        try:
            return Tokens.from_response(payload, issued_at=issued_at)
        except ValueError:
            pass
    if code is not None:
        return login_error(
            code,
            description,
            status_code=status,
            secrets=secrets,
            where="the token endpoint",
        )
    return LoginError(
        f"the token endpoint answered HTTP {status} without tokens: "
        f"{excerpt(answer.content, secrets)}",
        status_code=status,
    )

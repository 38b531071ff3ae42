"""What a resource server answers when a bearer token does not let a
request in (RFC 6750 section 3), shared by the ASGI and WSGI integrations.

Each integration is a thin edge: it reads the ``Authorization`` headers, asks
a `Guard` for the token, checks it with an `Introspector` (sync or async),
and sends the `Answer` the guard builds from any `TokenCheckError`:

* no bearer credentials: 401 with a bare ``Bearer`` challenge (RFC 6750
  section 3.1: no error code when the request had none);
* more than one ``Authorization`` header, or Bearer credentials that are
  not a b64token (RFC 6750 section 2.1): 400 ``invalid_request``;
* a token that is not active: 401 ``invalid_token``;
* a scope missing: 403 ``insufficient_scope`` with ``scope="..."``;
* introspection unavailable: 503, without a challenge: the token was not
  judged, so the client has no reason to drop it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ._errors import InsufficientScope, IntrospectionUnavailable, TokenCheckError
from ._introspection import Claims, Introspector

__all__ = ["CLAIMS_KEY", "Answer", "Guard", "ScopePolicy"]

#: Where the integrations put the `Claims` of an accepted token: a key of the
#: ASGI scope or the WSGI environ.
CLAIMS_KEY = "usersession.claims"

#: The scopes every request needs, or a function of the method and path
#: that returns them (``None``: this request needs no token at all).
ScopePolicy = Collection[str] | Callable[[str, str], Collection[str] | None]

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~"
# / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 9110 section 5.6.4: what a quoted-string may hold without escapes.
_QUOTABLE = re.compile(r"[\t\x20\x21\x23-\x5b\x5d-\x7e]*")


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer refusing a request.

    Attributes:
        status: The status code.
        headers: Its headers, ``WWW-Authenticate`` among them when it has one.
        body: A small JSON object with the error.
        detail: The error code (or description) alone, for frameworks that
            build their own error bodies.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    detail: str


def _scopes(value: Collection[str] | str) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not _SCOPE_TOKEN.fullmatch(item):
            raise ValueError(f"{item!r} is not a valid scope (RFC 6749 section 3.3)")
    return tuple(dict.fromkeys(items))


class Guard:
    """Turns bearer-token checks into HTTP answers (RFC 6750 section 3).

    Args:
        introspector: Checks the tokens.
        scopes: The scopes each request needs (see `ScopePolicy`).
        realm: The ``realm`` of the challenges, if any.

    Raises:
        ValueError: A scope or the realm cannot be put in a challenge.
    """

    def __init__(
        self,
        introspector: Introspector,
        *,
        scopes: ScopePolicy = (),
        realm: str | None = None,
    ) -> None:
        if realm is not None and not _QUOTABLE.fullmatch(realm):
            raise ValueError("realm must not hold quotes, backslashes or controls")
        self.introspector = introspector
        self.realm = realm
        self._policy: Callable[[str, str], Collection[str] | None] | None = None
        self._static: tuple[str, ...] = ()
        if callable(scopes):
            self._policy = scopes
        else:
            self._static = _scopes(scopes)

    def required(self, method: str, path: str) -> tuple[str, ...] | None:
        """The scopes this request needs, or ``None`` if it needs no token."""
        if self._policy is None:
            return self._static
        needed = self._policy(method, path)
        return None if needed is None else _scopes(needed)

    def token(self, authorization: Sequence[str]) -> str | Answer:
        """The bearer token of the request's ``Authorization`` header values,
        or the answer refusing a request that carries none or a malformed one.
        """
        if len(authorization) > 1:
            # RFC 6750 section 3.1: more than one method, or a repeated header.
            return self._answer(400, "invalid_request", "repeated Authorization")
        if not authorization:
            return self._answer(401, None, "a bearer token is required")
        scheme, _, credentials = authorization[0].strip().partition(" ")
        # RFC 9110 section 11.1: the scheme name is case-insensitive.
        if scheme.lower() != "bearer":
            return self._answer(401, None, "a bearer token is required")
        credentials = credentials.strip()
        if not _B64TOKEN.fullmatch(credentials):
            return self._answer(400, "invalid_request", "malformed bearer token")
        return credentials

    def scope_refusal(self, claims: Claims, required: Sequence[str]) -> Answer | None:
        """The 403 for claims that lack one of `required`, or ``None``."""
        missing = claims.missing(required)
        if not missing:
            return None
        return self.refusal(
            InsufficientScope(
                "missing scope", required=tuple(required), missing=missing
            )
        )

    def refusal(self, error: TokenCheckError) -> Answer:
        """The answer to a request whose token check raised `error`."""
        if isinstance(error, IntrospectionUnavailable):
            # RFC 7662 section 4 leaves this to the resource server: failing
            # closed keeps a broken introspection from letting anyone in.
            answer = self._answer(
                503, None, "the token cannot be checked now", challenge=False
            )
            if error.retry_after is None:
                return answer
            # RFC 9110 10.2.3: pass on when the introspection endpoint said
            # to come back, in whole seconds, never sooner.
            seconds = max(0, math.ceil(error.retry_after))
            return dataclasses.replace(
                answer, headers=(*answer.headers, ("Retry-After", str(seconds)))
            )
        if isinstance(error, InsufficientScope):
            return self._answer(
                403,
                "insufficient_scope",
                "the access token lacks a required scope",
                scope=" ".join(error.required),
            )
        return self._answer(401, "invalid_token", "the access token is not active")

    def challenge(
        self,
        error: str | None = None,
        description: str | None = None,
        scope: str | None = None,
    ) -> str:
        """A ``WWW-Authenticate`` value for the Bearer scheme (RFC 6750 3)."""
        params = []
        if self.realm is not None:
            params.append(f'realm="{self.realm}"')
        if error is not None:
            params.append(f'error="{error}"')
        if description is not None:
            params.append(f'error_description="{description}"')
        if scope is not None:
            params.append(f'scope="{scope}"')
        return "Bearer " + ", ".join(params) if params else "Bearer"

    def _answer(
        self,
        status: int,
        error: str | None,
        description: str,
        *,
        scope: str | None = None,
        challenge: bool = True,
    ) -> Answer:
        payload: dict[str, Any] = {}
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if challenge:
            # RFC 6750 section 3: a 401 (and the other refusals of a token)
            # carry a Bearer challenge; with no credentials, no error code.
            coded = error is not None
            headers.append(
                (
                    "WWW-Authenticate",
                    self.challenge(error, description if coded else None, scope=scope),
                )
            )
        if error is not None:
            payload["error"] = error
        elif status == 503:
            payload["error"] = "temporarily_unavailable"
        payload["error_description"] = description
        if scope is not None:
            payload["scope"] = scope
        body = json.dumps(payload).encode("utf-8")
        return Answer(status, tuple(headers), body, error or description)

"""Bearer-token checks for ASGI apps (Starlette, FastAPI, ...), by token
introspection (RFC 7662) through an `Introspector`.

Two ways in, usable together:

* `IntrospectionMiddleware` wraps any ASGI app (no dependency): every HTTP
  request and WebSocket needs an active token, with the scopes the policy
  asks for; the token's `Claims` are put in the ASGI scope under
  ``"usersession.claims"`` (see `claims_of`).
* `require` is a dependency for FastAPI routes (``Depends(require(...))``),
  also callable from a Starlette endpoint, that returns the claims. It
  needs Starlette (``pip install 'usersession[server]'``).

Refusals follow RFC 6750 section 3: 401 with a Bearer challenge (no error
code when no token came, ``invalid_token`` for one that is not active), 403
``insufficient_scope`` naming the scope, 400 ``invalid_request`` for a
malformed ``Authorization`` header, and 503 when introspection is
unavailable (fail closed).

Example::

    app = IntrospectionMiddleware(app, introspector, scopes=["read"])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._errors import TokenCheckError
from ._guard import CLAIMS_KEY, Answer, Guard, ScopePolicy
from ._introspection import Claims, Introspector

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["CLAIMS_KEY", "IntrospectionMiddleware", "claims_of", "require"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 6455 section 7.4.1: 1008 is "policy violation"; 1013 (IANA registry)
# is "try again later", the WebSocket way of saying 503.
_WS_POLICY_VIOLATION = 1008
_WS_TRY_AGAIN_LATER = 1013


class IntrospectionMiddleware:
    """Lets a request through only with an active bearer token.

    Args:
        app: The ASGI app to protect.
        introspector: Checks the tokens (`Introspector.acheck`).
        scopes: The scopes every request needs, or a function of
            ``(method, path)`` returning them, or ``None`` for a request
            that needs no token (a health check, say).
        realm: The ``realm`` of the ``WWW-Authenticate`` challenges.

    Lifespan messages pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        introspector: Introspector,
        *,
        scopes: ScopePolicy = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self._guard = Guard(introspector, scopes=scopes, realm=realm)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        required = self._guard.required(method, scope.get("path", ""))
        if required is None:
            await self.app(scope, receive, send)
            return
        authorization = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"authorization"
        ]
        token = self._guard.token(authorization)
        if isinstance(token, Answer):
            await _refuse(kind, token, send)
            return
        try:
            claims = await self._guard.introspector.acheck(token, scopes=required)
        except TokenCheckError as exc:
            await _refuse(kind, self._guard.refusal(exc), send)
            return
        scope = dict(scope)
        scope[CLAIMS_KEY] = claims
        await self.app(scope, receive, send)


async def _refuse(kind: str, answer: Answer, send: Send) -> None:
    if kind == "websocket":
        # Closing before accepting makes the server answer the handshake 403.
        code = _WS_TRY_AGAIN_LATER if answer.status == 503 else _WS_POLICY_VIOLATION
        await send({"type": "websocket.close", "code": code, "reason": answer.detail})
        return
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in answer.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


def claims_of(connection: Scope | HTTPConnection) -> Claims | None:
    """The claims `IntrospectionMiddleware` put in a request's scope, if any.

    Args:
        connection: The ASGI scope, or a Starlette ``Request`` / ``WebSocket``.
    """
    scope = getattr(connection, "scope", connection)
    claims = scope.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


def require(
    introspector: Introspector, *scopes: str, realm: str | None = None
) -> Callable[[Any], Awaitable[Claims]]:
    """A dependency that returns the request's token claims, or refuses it.

    For FastAPI: ``claims: Claims = Depends(require(introspector, "read"))``.
    From a Starlette endpoint: ``claims = await guard(request)``. A refusal is
    a ``starlette.exceptions.HTTPException`` with the status and headers of
    RFC 6750 section 3 (or 503), which both frameworks answer. When
    `IntrospectionMiddleware` already checked the token, its claims are
    reused and only the scopes are checked.

    Args:
        introspector: Checks the tokens.
        *scopes: The scopes the route needs.
        realm: The ``realm`` of the challenges.

    Raises:
        ImportError: Starlette is not installed.
    """
    from ._starlette import dependency

    return dependency(Guard(introspector, scopes=scopes, realm=realm))

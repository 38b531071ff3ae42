"""Bearer-token checks for WSGI apps (Flask, Django, plain WSGI), by token
introspection (RFC 7662) through an `Introspector`.

`IntrospectionMiddleware` wraps the app: a request goes through only with
an active token holding the scopes the policy asks for, and its `Claims`
are put in the environ under ``"usersession.claims"`` (in Flask:
``request.environ["usersession.claims"]``; see `claims_of`). Refusals are
the same as `usersession.asgi`'s: 401 with a Bearer challenge, 403
``insufficient_scope`` naming the scope, 400 ``invalid_request``, and 503
when introspection is unavailable (fail closed). No dependency is needed.

Example (Flask)::

    app.wsgi_app = IntrospectionMiddleware(app.wsgi_app, introspector)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._errors import TokenCheckError
from ._guard import CLAIMS_KEY, Answer, Guard, ScopePolicy
from ._introspection import Claims, Introspector

__all__ = ["CLAIMS_KEY", "IntrospectionMiddleware", "claims_of"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    503: "Service Unavailable",
}


class IntrospectionMiddleware:
    """Lets a request through only with an active bearer token.

    Args:
        app: The WSGI app to protect.
        introspector: Checks the tokens (`Introspector.check`).
        scopes: The scopes every request needs, or a function of
            ``(method, path)`` returning them, or ``None`` for a request
            that needs no token. The path is ``PATH_INFO``.
        realm: The ``realm`` of the ``WWW-Authenticate`` challenges.
    """

    def __init__(
        self,
        app: WSGIApp,
        introspector: Introspector,
        *,
        scopes: ScopePolicy = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self._guard = Guard(introspector, scopes=scopes, realm=realm)

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        required = self._guard.required(
            environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        )
        if required is None:
            return self.app(environ, start_response)
        # A WSGI server folds repeated headers into one value; a comma then
        # makes the credentials malformed, which is answered 400.
        header = environ.get("HTTP_AUTHORIZATION")
        token = self._guard.token([] if header is None else [header])
        if isinstance(token, Answer):
            return _refuse(token, start_response)
        try:
            claims = self._guard.introspector.check(token, scopes=required)
        except TokenCheckError as exc:
            return _refuse(self._guard.refusal(exc), start_response)
        environ[CLAIMS_KEY] = claims
        return self.app(environ, start_response)


def _refuse(answer: Answer, start_response: StartResponse) -> list[bytes]:
    status = f"{answer.status} {_REASONS.get(answer.status, 'Error')}"
    headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
    start_response(status, headers)
    return [answer.body]


def claims_of(environ: Environ) -> Claims | None:
    """The claims `IntrospectionMiddleware` put in a request's environ, if any."""
    claims = environ.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None

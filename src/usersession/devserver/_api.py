"""A small protected API that accepts bearer tokens (RFC 6750)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._faults import Fault, FaultQueue, serve_with_fault
from ._http import Exchange, Listener, Request, Response
from ._stats import Counters, Stats
from ._tokens import parse_scope, token_hash

logger = logging.getLogger("usersession.devserver")

Validator = Callable[[str], Mapping[str, Any] | None]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class SeenRequest:
    """One request the demo API received.

    Attributes:
        method: The HTTP method.
        path: The path, without the query string.
        has_authorization: Whether any Authorization header came.
        authorization_headers: How many Authorization headers came.
        token_hash: Short SHA-256 hash (see ``token_hash()``) of the bearer
            token, or None when no Bearer credentials came.
        status: The status answered, or None when the connection was dropped.
        body_bytes: Size of the request body.
    """

    method: str
    path: str
    has_authorization: bool
    authorization_headers: int
    token_hash: str | None
    status: int | None
    body_bytes: int


class DemoAPI:
    """A protected resource on its own port, for demos and tests.

    Routes: ``GET /me`` and ``POST /upload`` need a bearer token;
    ``GET /scoped?scope=x`` needs one whose scope includes ``x``;
    ``/echo`` and ``/redirect?to=URL&status=302`` need none.

    Args:
        validate: Returns the claims (``sub``, ``scope``...) of a live token,
            or None for an unknown, expired or revoked one. If it raises, the
            API answers 503: it fails closed.
        host: The loopback address to listen on (``"127.0.0.1"`` or ``"::1"``).
        port: The port to listen on; 0 (the default) takes a free one.
        realm: The realm in ``WWW-Authenticate`` challenges.
    """

    def __init__(
        self,
        validate: Validator,
        *,
        host: str = "127.0.0.1",
        realm: str = "usersession-demo",
        port: int = 0,
    ) -> None:
        if any(c in realm for c in '"\\\r\n'):
            raise ValueError("realm must not contain quotes or newlines")
        self._validate = validate
        self.realm = realm
        self._faults = FaultQueue(["api"])
        self._counters = Counters()
        self._seen: list[SeenRequest] = []
        self._seen_lock = threading.Lock()
        self._listener = Listener(_ApiApp(self), host, "api", port)
        self._routes: dict[str, tuple[frozenset[str] | None, bool, Handler]] = {
            # path: (allowed methods or None for any, needs a token, handler)
            "/me": (frozenset({"GET", "HEAD"}), True, self._me),
            "/upload": (frozenset({"POST", "PUT"}), True, self._upload),
            "/scoped": (frozenset({"GET", "HEAD"}), True, self._scoped),
            "/echo": (None, False, self._echo),
            "/redirect": (None, False, self._redirect),
        }

    def __repr__(self) -> str:
        try:
            return f"DemoAPI(url={self.url!r})"
        except RuntimeError:
            return "DemoAPI(not started)"

    # Lifecycle

    def start(self) -> DemoAPI:
        """Bind the port on loopback (a free one by default) and start serving."""
        self._listener.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every socket and join the threads."""
        self._listener.stop()

    def __enter__(self) -> DemoAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        return self._listener.base_url

    @property
    def port(self) -> int:
        """The port bound."""
        return self._listener.port

    def refuse_connections(self, refuse: bool = True) -> None:
        """Close the listening socket (True) or reopen it on the same port."""
        self._listener.refuse_connections(refuse)

    # Faults, records and counters

    def inject(self, fault: Fault, times: int | None = 1) -> None:
        """Queue a fault for the next ``times`` requests (None: until cleared)."""
        self._faults.add("api", fault, times)

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    def pending_faults(self) -> int | None:
        """Requests still to be faulted; None if a fault repeats until cleared."""
        return self._faults.pending("api")

    @property
    def seen(self) -> list[SeenRequest]:
        """A copy of the requests received so far, in the order answered."""
        with self._seen_lock:
            return list(self._seen)

    def clear_seen(self) -> None:
        """Forget the recorded requests."""
        with self._seen_lock:
            self._seen.clear()

    def stats(self) -> Stats:
        """Counters (the ``api_*`` fields; the others stay zero)."""
        return Stats(**self._counters.snapshot())

    def reset_stats(self) -> None:
        """Zero the counters and forget the recorded requests."""
        self._counters.reset()
        self.clear_seen()

    # Serving

    def _serve(self, request: Request, exchange: Exchange) -> None:
        self._counters.add("api_requests")
        authorization = request.header_values("Authorization")
        bearer = _bearer_token(authorization)

        def record(sent: Response | None) -> None:
            status = None if sent is None else sent.status
            if status is not None and 200 <= status < 300:
                self._counters.add("api_ok")
            elif status == 401:
                self._counters.add("api_unauthorized")
            seen = SeenRequest(
                method=request.method,
                path=request.path,
                has_authorization=bool(authorization),
                authorization_headers=len(authorization),
                token_hash=None if bearer is None else token_hash(bearer),
                status=status,
                body_bytes=len(request.body),
            )
            with self._seen_lock:
                self._seen.append(seen)

        serve_with_fault(
            self._faults.take("api"),
            request,
            exchange,
            self._handle,
            record,
            bearer_realm=self.realm,
        )

    def _handle(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return Response.json(404, {"error": "not_found"})
        methods, needs_token, handler = route
        if methods is not None and request.method not in methods:
            return Response.json(
                405, {"error": "method_not_allowed"}, [("Allow", ", ".join(methods))]
            )
        claims: Mapping[str, Any] = {}
        if needs_token:
            checked = self._check_token(request)
            if isinstance(checked, Response):
                return checked
            claims = checked
        return handler(request, claims)

    def _challenge(
        self, status: int, error: str | None, description: str | None = None
    ) -> Response:
        # RFC 6750 3: no error code when the request had no credentials at all.
        challenge = f'Bearer realm="{self.realm}"'
        payload: dict[str, Any] = {}
        if error is not None:
            challenge += f', error="{error}"'
            payload["error"] = error
        if description is not None:
            challenge += f', error_description="{description}"'
            payload["error_description"] = description
        return Response.json(status, payload, [("WWW-Authenticate", challenge)])

    def _check_token(self, request: Request) -> Mapping[str, Any] | Response:
        authorization = request.header_values("Authorization")
        if len(authorization) > 1:
            # RFC 6750 3.1: more than one set of credentials is invalid_request.
            return self._challenge(400, "invalid_request", "repeated Authorization")
        token = _bearer_token(authorization)
        if token is None:
            return self._challenge(401, None)
        try:
            claims = self._validate(token)
        except Exception as exc:
            # RFC 7662 4 leaves failure handling to the resource server; failing
            # closed with 503 keeps a broken introspection from granting access.
            logger.debug("devserver api: validation failed (%s)", type(exc).__name__)
            return Response.json(503, {"error": "temporarily_unavailable"})
        if claims is None:
            return self._challenge(401, "invalid_token")
        return claims

    # Routes

    def _me(self, request: Request, claims: Mapping[str, Any]) -> Response:
        return Response.json(200, _identity(claims))

    def _upload(self, request: Request, claims: Mapping[str, Any]) -> Response:
        digest = hashlib.sha256(request.body).hexdigest()
        return Response.json(200, {"received": len(request.body), "sha256": digest})

    def _scoped(self, request: Request, claims: Mapping[str, Any]) -> Response:
        needed = request.query_param("scope") or ""
        try:
            needed_scopes = parse_scope(needed)
            granted = set(parse_scope(str(claims.get("scope") or "")))
        except ValueError:
            return Response.json(400, {"error": "invalid_request"})
        if not set(needed_scopes) <= granted:
            # RFC 6750 3.1: insufficient_scope is a 403 naming the scope needed.
            response = self._challenge(403, "insufficient_scope")
            challenge = dict(response.headers)["WWW-Authenticate"]
            challenge += f', scope="{" ".join(needed_scopes)}"'
            return dataclasses.replace(
                response, headers=(("WWW-Authenticate", challenge),)
            )
        return Response.json(200, _identity(claims))

    def _echo(self, request: Request, claims: Mapping[str, Any]) -> Response:
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return Response.json(200, headers)

    def _redirect(self, request: Request, claims: Mapping[str, Any]) -> Response:
        target = request.query_param("to")
        status_text = request.query_param("status") or "302"
        if (
            not target
            or any(c in target for c in "\r\n\0")
            or not status_text.isdigit()
            or int(status_text) not in _REDIRECT_STATUSES
        ):
            return Response.json(400, {"error": "invalid_request"})
        return Response.empty(int(status_text), [("Location", target)])


Handler = Callable[[Request, Mapping[str, Any]], Response]


def _identity(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {"sub": claims.get("sub"), "scope": claims.get("scope")}


def _bearer_token(authorization: list[str]) -> str | None:
    """The token of a single ``Authorization: Bearer`` header (RFC 6750 2.1)."""
    if len(authorization) != 1:
        return None
    scheme, _, token = authorization[0].strip().partition(" ")
    token = token.strip()
    # RFC 9110 11.1: the scheme name is case-insensitive.
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class _ApiApp:
    def __init__(self, api: DemoAPI) -> None:
        self._api = api

    def serve(self, request: Request, exchange: Exchange) -> None:
        self._api._serve(request, exchange)

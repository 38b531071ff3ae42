"""The ASGI integration (`usersession.asgi`): a Starlette app (and a FastAPI
one, when FastAPI is installed) served by uvicorn on 127.0.0.1, validating
tokens by introspection at the development server (V1, V2, C09)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from usersession import Claims, Introspector
from usersession.asgi import CLAIMS_KEY, IntrospectionMiddleware, claims_of, require
from usersession.devserver import DevServer, Fault

from introspection_support import introspections, introspector_for, retry_after_cases

starlette_applications = pytest.importorskip("starlette.applications")
uvicorn = pytest.importorskip("uvicorn")

from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port, lifespan on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def starlette_app(introspector: Introspector) -> Any:
    """/items needs "read"; /admin needs "read" (middleware) then "admin"
    (the dependency); /health needs no token."""
    admin_guard = require(introspector, "admin", realm="api")

    async def items(request: Request) -> Response:
        claims = claims_of(request)
        assert claims is not None and claims is request.scope[CLAIMS_KEY]
        return JSONResponse({"sub": claims.sub, "scope": sorted(claims.scope)})

    async def admin(request: Request) -> Response:
        claims = await admin_guard(request)
        return JSONResponse({"sub": claims.sub, "admin": True})

    async def health(request: Request) -> Response:
        assert claims_of(request) is None
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await introspector.aclose()

    inner = starlette_applications.Starlette(
        routes=[
            Route("/items", items),
            Route("/admin", admin),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )

    def policy(method: str, path: str) -> list[str] | None:
        return None if path == "/health" else ["read"]

    return IntrospectionMiddleware(inner, introspector, scopes=policy, realm="api")


@pytest.fixture
def served(dev: DevServer) -> Iterator[str]:
    with serving(starlette_app(introspector_for(dev))) as url:
        yield url


def get(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(url, headers=headers, timeout=10)


def test_v1_active_token_reaches_the_app_with_its_claims(
    dev: DevServer, served: str
) -> None:
    """V1: an active token with the scope passes; the app sees its claims."""
    token = dev.login("alice", "read write")["access_token"]
    response = get(f"{served}/items", token)
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "scope": ["read", "write"]}
    assert get(f"{served}/health").text == "ok"


def test_v1_answers_follow_rfc6750(dev: DevServer, served: str) -> None:
    """V1: 401 with a bare challenge without a token, 401 invalid_token for
    an inactive one, 403 insufficient_scope naming the scope, 400 for a
    malformed header."""
    missing = get(f"{served}/items")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    basic = get(f"{served}/items", Authorization="Basic dTpw")
    assert basic.headers["www-authenticate"] == 'Bearer realm="api"'
    inactive = get(f"{served}/items", "at_unknown")
    assert inactive.status_code == 401
    assert inactive.headers["www-authenticate"] == (
        'Bearer realm="api", error="invalid_token", '
        'error_description="the access token is not active"'
    )
    assert inactive.json()["error"] == "invalid_token"
    assert inactive.headers["cache-control"] == "no-store"
    narrow = dev.login("bob", "openid")["access_token"]
    forbidden = get(f"{served}/items", narrow)
    assert forbidden.status_code == 403
    challenge = forbidden.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert challenge.endswith('scope="read"')
    assert forbidden.json()["scope"] == "read"
    malformed = get(f"{served}/items", Authorization="Bearer a b")
    assert malformed.status_code == 400
    assert 'error="invalid_request"' in malformed.headers["www-authenticate"]


def test_v1_dependency_checks_the_routes_own_scope(dev: DevServer, served: str) -> None:
    """V1: require() reuses the middleware's claims and answers 403 with the
    route's scope through Starlette's HTTPException."""
    reader = dev.login("alice", "read")["access_token"]
    refused = get(f"{served}/admin", reader)
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", '
        'scope="admin"'
    )
    admin = dev.login("root", "read admin")["access_token"]
    assert get(f"{served}/admin", admin).json() == {"sub": "root", "admin": True}
    assert introspections(dev) == 2


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.status(200, '{"active": false}', "application/json"), 401),
        (Fault.oauth_error("invalid_client", 401), 503),
        (Fault.status(500), 503),
        (Fault.hang(3.0), 503),
        (Fault.status(200, '{"active": "true"}', "application/json"), 401),
        (Fault.status(200, '{"sub": "alice"}', "application/json"), 401),
    ],
    ids=["a-inactive", "b-401", "c-500", "d-silent", "e-string", "e-missing"],
)
def test_c09_answers_to_the_apis_caller(
    dev: DevServer, fault: Fault, status: int
) -> None:
    """C09, V2: (a) and (e) are 401 invalid_token; (b) (c) (d) are 503 and
    nothing is cached, so the next request is introspected afresh."""
    token = dev.login("alice", "read")["access_token"]
    with serving(starlette_app(introspector_for(dev, timeout=0.3))) as url:
        dev.inject("introspection", fault)
        refused = get(f"{url}/items", token)
        assert refused.status_code == status
        if status == 401:
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        else:
            assert "www-authenticate" not in refused.headers
            assert refused.json()["error"] == "temporarily_unavailable"
        assert get(f"{url}/items", token).status_code == 200
        assert introspections(dev) == 2


def test_v2_a_retry_after_from_introspection_is_passed_on(dev: DevServer) -> None:
    """V2: when the introspection endpoint answers 429 or 503 with a
    Retry-After (seconds or an HTTP date), the API's 503 carries one, in
    whole seconds rounded up; without one, none."""
    token = dev.login("alice", "read")["access_token"]
    cases = retry_after_cases()
    with serving(starlette_app(introspector_for(dev, timeout=0.3))) as url:
        for fault, expected in cases:
            dev.inject("introspection", fault)
            refused = get(f"{url}/items", token)
            assert refused.status_code == 503
            seen = refused.headers.get("retry-after")
            assert expected(seen), seen


def test_v2_unreachable_introspection_is_503(dev: DevServer, served: str) -> None:
    """V2: with the authorization server refusing connections, 503."""
    token = dev.login("alice", "read")["access_token"]
    dev.refuse_connections()
    assert get(f"{served}/items", token).status_code == 503
    dev.refuse_connections(False)
    assert get(f"{served}/items", token).status_code == 200


def test_v3_fifty_concurrent_requests_one_introspection(
    dev: DevServer, served: str
) -> None:
    """V3: 50 concurrent requests with one uncached token through the app
    make one introspection call."""
    token = dev.login("alice", "read")["access_token"]
    dev.inject("introspection", Fault.delay(0.3))

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(
                *(
                    client.get(
                        f"{served}/items", headers={"Authorization": f"Bearer {token}"}
                    )
                    for _ in range(50)
                )
            )
        return [answer.status_code for answer in answers]

    assert asyncio.run(main()) == [200] * 50
    assert introspections(dev) == 1


def test_websockets_without_an_active_token_are_closed(dev: DevServer) -> None:
    """A WebSocket handshake without an active token is closed before it is
    accepted (1008), and 1013 when introspection is unavailable."""
    introspector = introspector_for(dev)
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    guarded = IntrospectionMiddleware(app, introspector)

    async def handshake(headers: list[tuple[bytes, bytes]]) -> list[Any]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "headers": headers}
        await guarded(scope, receive, send)
        return sent

    async def main() -> None:
        try:
            refused = await handshake([])
            assert refused == [
                {
                    "type": "websocket.close",
                    "code": 1008,
                    "reason": "a bearer token is required",
                }
            ]
            token = dev.login("alice")["access_token"]
            accepted = await handshake([(b"authorization", f"Bearer {token}".encode())])
            assert accepted == [] and reached == ["websocket"]
            dev.inject("introspection", Fault.status(500))
            other = dev.login("bob")["access_token"]
            down = await handshake([(b"authorization", f"Bearer {other}".encode())])
            assert down[0]["code"] == 1013

            async def nothing() -> dict[str, Any]:
                return {"type": "lifespan.startup"}

            async def ignore(message: Any) -> None:
                pass

            await guarded({"type": "lifespan"}, nothing, ignore)
            assert reached == ["websocket", "lifespan"]
        finally:
            await introspector.aclose()

    asyncio.run(main())


def test_fastapi_dependency(dev: DevServer) -> None:
    """V1 with FastAPI: Depends(require(...)) yields the claims or answers
    401/403 with RFC 6750 challenges, and 503 when introspection fails."""
    fastapi = pytest.importorskip("fastapi")
    introspector = introspector_for(dev)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await introspector.aclose()

    app = fastapi.FastAPI(lifespan=lifespan)
    needs_read = require(introspector, "read")

    @app.get("/items")  # type: ignore[untyped-decorator]
    async def items(
        claims: Claims = fastapi.Depends(needs_read),  # noqa: B008 - FastAPI's idiom
    ) -> dict[str, Any]:
        return {"sub": claims.sub}

    token = dev.login("alice", "read")["access_token"]
    narrow = dev.login("bob", "openid")["access_token"]
    with serving(app) as url:
        assert get(f"{url}/items", token).json() == {"sub": "alice"}
        missing = get(f"{url}/items")
        assert (missing.status_code, missing.headers["www-authenticate"]) == (
            401,
            "Bearer",
        )
        inactive = get(f"{url}/items", "at_unknown")
        assert inactive.status_code == 401
        assert inactive.json() == {"detail": "invalid_token"}
        assert 'error="invalid_token"' in inactive.headers["www-authenticate"]
        forbidden = get(f"{url}/items", narrow)
        assert forbidden.status_code == 403
        assert 'scope="read"' in forbidden.headers["www-authenticate"]
        dev.inject("introspection", Fault.status(502))
        other = dev.login("carol", "read")["access_token"]
        assert get(f"{url}/items", other).status_code == 503


def test_require_without_starlette_names_the_extra(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Starlette, require() says which extra to install; importing
    usersession.asgi and its middleware needs nothing."""
    for name in list(sys.modules):
        if name == "starlette" or name.startswith("starlette."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.delitem(sys.modules, "usersession._starlette", raising=False)
    module = importlib.import_module("usersession.asgi")
    with pytest.raises(ImportError, match=r"usersession\[server\]"):
        module.require(introspector_for(dev), "read")

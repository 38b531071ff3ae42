"""The WSGI integration (`usersession.wsgi`): a plain WSGI app, as Flask
would have it, served by a threaded wsgiref server on 127.0.0.1, validating
tokens by introspection at the development server (V1, V2, V3, C09)."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from usersession import Introspector
from usersession.devserver import DevServer, Fault
from usersession.wsgi import CLAIMS_KEY, IntrospectionMiddleware, claims_of

from introspection_support import introspections, introspector_for, retry_after_cases


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadedServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def wsgi_app(introspector: Introspector) -> Any:
    """/items needs "read", /admin "read admin", /health no token."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        claims = claims_of(environ)
        body: dict[str, Any]
        if environ["PATH_INFO"] == "/health":
            assert claims is None
            body = {"ok": True}
        else:
            assert claims is not None and claims is environ[CLAIMS_KEY]
            body = {"sub": claims.sub, "scope": sorted(claims.scope)}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def policy(method: str, path: str) -> str | None:
        return {"/health": None, "/admin": "read admin"}.get(path, "read")

    return IntrospectionMiddleware(app, introspector, scopes=policy, realm="wsgi")


@pytest.fixture
def served(dev: DevServer) -> Iterator[str]:
    introspector = introspector_for(dev)
    with serving(wsgi_app(introspector)) as url:
        yield url
    introspector.close()


def get(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(url, headers=headers, timeout=10)


def test_v1_active_token_reaches_the_app_with_its_claims(
    dev: DevServer, served: str
) -> None:
    """V1: an active token with the scope passes; the app sees its claims in
    the environ."""
    token = dev.login("alice", "read")["access_token"]
    assert get(f"{served}/items", token).json() == {"sub": "alice", "scope": ["read"]}
    assert get(f"{served}/health").json() == {"ok": True}
    assert introspections(dev) == 1


def test_v1_answers_follow_rfc6750(dev: DevServer, served: str) -> None:
    """V1: the same answers as the ASGI side: 401 bare challenge, 401
    invalid_token, 403 insufficient_scope with the scope, 400 for repeated
    credentials."""
    missing = get(f"{served}/items")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="wsgi"'
    assert missing.headers["content-type"] == "application/json"
    inactive = get(f"{served}/items", "at_unknown")
    assert inactive.status_code == 401
    assert 'error="invalid_token"' in inactive.headers["www-authenticate"]
    assert inactive.json()["error"] == "invalid_token"
    reader = dev.login("alice", "read")["access_token"]
    forbidden = get(f"{served}/admin", reader)
    assert forbidden.status_code == 403
    assert forbidden.headers["www-authenticate"] == (
        'Bearer realm="wsgi", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", '
        'scope="read admin"'
    )
    twice = httpx.get(
        f"{served}/items",
        headers=[("Authorization", f"Bearer {reader}"), ("Authorization", "Bearer x")],
    )
    assert twice.status_code == 400
    assert 'error="invalid_request"' in twice.headers["www-authenticate"]


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
    introspector = introspector_for(dev, timeout=0.3)
    with serving(wsgi_app(introspector)) as url:
        dev.inject("introspection", fault)
        refused = get(f"{url}/items", token)
        assert refused.status_code == status
        if status == 401:
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        else:
            assert "www-authenticate" not in refused.headers
        assert get(f"{url}/items", token).status_code == 200
        assert introspections(dev) == 2
    introspector.close()


def test_v2_a_retry_after_from_introspection_is_passed_on(dev: DevServer) -> None:
    """V2: when the introspection endpoint answers 429 or 503 with a
    Retry-After (seconds or an HTTP date), the API's 503 carries one, in
    whole seconds rounded up; without one, none."""
    token = dev.login("alice", "read")["access_token"]
    cases = retry_after_cases()
    introspector = introspector_for(dev, timeout=0.3)
    with serving(wsgi_app(introspector)) as url:
        for fault, expected in cases:
            dev.inject("introspection", fault)
            refused = get(f"{url}/items", token)
            assert refused.status_code == 503
            seen = refused.headers.get("retry-after")
            assert expected(seen), seen
    introspector.close()


def test_v3_twenty_threads_one_introspection(dev: DevServer, served: str) -> None:
    """V3: 20 concurrent requests (a thread each on the server) with one
    uncached token make one introspection call; later ones hit the cache."""
    token = dev.login("alice", "read")["access_token"]
    dev.inject("introspection", Fault.delay(0.3))
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        barrier.wait()
        statuses.append(get(f"{served}/items", token).status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 20
    assert get(f"{served}/items", token).status_code == 200
    assert introspections(dev) == 1


def test_scope_policy_is_validated(dev: DevServer) -> None:
    """Scopes that could not go in a challenge are refused when the
    middleware is built; so is a realm with a quote."""
    introspector = introspector_for(dev)
    with pytest.raises(ValueError, match="scope"):
        IntrospectionMiddleware(lambda e, s: [], introspector, scopes=['a"b'])
    with pytest.raises(ValueError, match="realm"):
        IntrospectionMiddleware(lambda e, s: [], introspector, realm='x"y')

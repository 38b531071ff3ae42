"""Tests of the development authorization server and demo API, over real sockets."""

from __future__ import annotations

import base64
import gc
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest

from usersession.devserver import (
    ENDPOINTS,
    DemoAPI,
    DevServer,
    Fault,
    SeenRequest,
    Stats,
    token_hash,
)


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dev(clock: FakeClock) -> Iterator[DevServer]:
    with DevServer(clock=clock) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    """A Basic header built as given, without RFC 6749 2.3.1 encoding."""
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def refresh(
    http: httpx.Client, dev: DevServer, refresh_token: str, **form: str
) -> httpx.Response:
    return http.post(
        dev.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, **form},
        auth=(dev.client_id, dev.client_secret),
    )


def introspect(http: httpx.Client, dev: DevServer, token: str) -> dict[str, Any]:
    response = http.post(
        dev.introspection_endpoint,
        data={"token": token},
        auth=(dev.client_id, dev.client_secret),
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def me_status(http: httpx.Client, dev: DevServer, token: str) -> int:
    return http.get(f"{dev.api_url}/me", headers=bearer(token)).status_code


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error


def devserver_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("usersession-devserver") and t.is_alive()
    ]


# Lifecycle


def test_starts_fast_on_loopback_ports_actually_bound() -> None:
    started = time.perf_counter()
    dev = DevServer().start()
    elapsed = time.perf_counter() - started
    try:
        print(f"DevServer.start() took {elapsed * 1000:.1f} ms")
        issuer = urllib.parse.urlsplit(dev.issuer)
        api = urllib.parse.urlsplit(dev.api_url)
        assert issuer.scheme == "http"
        assert issuer.hostname == "127.0.0.1"
        assert issuer.port not in (None, 0)
        assert api.port not in (None, 0)
        assert issuer.port != api.port  # another origin
        assert dev.token_endpoint == f"{dev.issuer}/token"
        assert dev.revocation_endpoint == f"{dev.issuer}/revoke"
        assert dev.introspection_endpoint == f"{dev.issuer}/introspect"
        with socket.create_connection(("127.0.0.1", issuer.port), timeout=1):
            pass
    finally:
        dev.stop()


def test_stop_closes_sockets_and_joins_threads_even_with_idle_keepalive() -> None:
    dev = DevServer().start()
    port = urllib.parse.urlsplit(dev.issuer).port
    assert port is not None
    payload = dev.login()
    client = httpx.Client(timeout=5.0)
    try:
        # Leave keep-alive connections open in the pool across stop().
        assert client.get(dev.discovery_url).status_code == 200
        assert me_status(client, dev, payload["access_token"]) == 200
        started = time.perf_counter()
        dev.stop()
        print(f"DevServer.stop() took {(time.perf_counter() - started) * 1000:.1f} ms")
        assert devserver_threads() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        dev.stop()  # idempotent
    finally:
        client.close()
    gc.collect()  # a leaked socket would raise ResourceWarning (an error here)


def test_a_stopped_server_cannot_restart_and_urls_need_a_started_server() -> None:
    dev = DevServer()
    with pytest.raises(RuntimeError):
        _ = dev.issuer
    assert "not started" in repr(dev)
    dev.start()
    with pytest.raises(RuntimeError):
        dev.start()
    dev.stop()
    with pytest.raises(RuntimeError):
        dev.start()


def test_only_loopback_hosts_are_accepted() -> None:
    for host in ("0.0.0.0", "192.0.2.1", "localhost", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            DevServer(host=host)


def test_demo_api_can_listen_on_another_loopback_host() -> None:
    """127.0.0.2 is another host (origin) for redirect tests, still loopback."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not routed to loopback here")
    with DemoAPI(lambda token: None, host="127.0.0.2") as api, httpx.Client() as client:
        assert api.url.startswith("http://127.0.0.2:")
        assert client.get(f"{api.url}/echo").status_code == 200


def test_demo_api_can_listen_on_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with DemoAPI(lambda token: None, host="::1") as api, httpx.Client() as client:
        assert api.url.startswith("http://[::1]:")
        assert client.get(f"{api.url}/echo").status_code == 200


# Discovery


@pytest.mark.parametrize(
    "path",
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"],
)
def test_discovery_documents(dev: DevServer, http: httpx.Client, path: str) -> None:
    response = http.get(dev.issuer + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["issuer"] == dev.issuer  # RFC 8414 3.3: must match exactly
    assert doc["token_endpoint"] == dev.token_endpoint
    assert doc["revocation_endpoint"] == dev.revocation_endpoint
    assert doc["introspection_endpoint"] == dev.introspection_endpoint
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert set(doc["grant_types_supported"]) == {
        "refresh_token",
        "client_credentials",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
    assert doc["authorization_endpoint"] == dev.authorization_endpoint
    assert doc["device_authorization_endpoint"] == dev.device_authorization_endpoint
    assert doc == dev.metadata()
    assert dev.stats().discovery_requests == 1
    assert http.post(dev.issuer + path).status_code == 405


def test_unknown_paths_answer_404_json(dev: DevServer, http: httpx.Client) -> None:
    assert_oauth_error(http.get(f"{dev.issuer}/nope"), 404, "not_found")
    assert_oauth_error(http.get(f"{dev.api_url}/nope"), 404, "not_found")


# Token endpoint: refresh_token grant


def test_refresh_with_basic_auth(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login("alice", "openid profile offline_access")
    response = refresh(http, dev, login["refresh_token"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # RFC 6749 5.1: token answers must not be cached.
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 60
    assert body["scope"] == "openid profile offline_access"
    assert body["access_token"] != login["access_token"]
    assert body["refresh_token"] != login["refresh_token"]
    assert "id_token" not in body
    me = http.get(f"{dev.api_url}/me", headers=bearer(body["access_token"]))
    assert me.json() == {"sub": "alice", "scope": "openid profile offline_access"}
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)


def test_refresh_with_client_secret_post(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    response = http.post(
        dev.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_id": dev.client_id,
            "client_secret": dev.client_secret,
        },
    )
    assert response.status_code == 200
    assert "access_token" in response.json()


def test_basic_auth_credentials_are_form_urlencoded_first(
    dev: DevServer, http: httpx.Client
) -> None:
    """RFC 6749 2.3.1: id and secret are form-urlencoded, then base64-encoded."""
    client_id, secret = "svc:reports 1", "p@ss:w+rd/=%é"
    dev.add_client(client_id, secret)
    login = dev.login(client_id=client_id)

    form = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    encoded = basic(urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret))
    assert http.post(dev.token_endpoint, data=form, headers=encoded).status_code == 200
    # Sent without the encoding, the ':' in the id splits in the wrong place and
    # the '+' in the secret decodes to a space.
    raw = http.post(dev.token_endpoint, data=form, headers=basic(client_id, secret))
    assert_oauth_error(raw, 401, "invalid_client")


@pytest.mark.parametrize(
    "case", ["wrong-basic", "wrong-post", "unknown", "none", "bearer", "garbage"]
)
def test_failed_client_authentication_is_401_invalid_client(
    dev: DevServer, http: httpx.Client, case: str
) -> None:
    login = dev.login()
    form = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    headers: dict[str, str] = {}
    if case == "wrong-basic":
        headers = basic(dev.client_id, "not-the-secret")
    elif case == "wrong-post":
        form |= {"client_id": dev.client_id, "client_secret": "not-the-secret"}
    elif case == "unknown":
        headers = basic("nobody", "secret")
    elif case == "bearer":
        headers = bearer(login["access_token"])
    elif case == "garbage":
        headers = {"Authorization": "Basic !!!not-base64!!!"}
    response = http.post(dev.token_endpoint, data=form, headers=headers)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == "no-store"
    assert dev.stats().refresh_grants == 0


def test_two_client_authentication_methods_at_once_are_refused(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    response = http.post(
        dev.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_secret": dev.client_secret,
        },
        auth=(dev.client_id, dev.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_public_client_refreshes_with_client_id_only(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login(client_id=dev.public_client_id)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": login["refresh_token"],
        "client_id": dev.public_client_id,
    }
    assert http.post(dev.token_endpoint, data=form).status_code == 200
    # A public client has no secret, so Basic credentials cannot be right.
    response = http.post(
        dev.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(dev.public_client_id, ""),
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_refresh_token_of_another_client_is_invalid_grant(
    dev: DevServer, http: httpx.Client
) -> None:
    dev.add_client("other", "other-secret")
    login = dev.login(client_id="other")
    assert_oauth_error(refresh(http, dev, login["refresh_token"]), 400, "invalid_grant")


def test_rotation_reuse_revokes_the_whole_grant(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login("alice")
    bystander = dev.login("bob")
    first = refresh(http, dev, login["refresh_token"]).json()
    reuse = refresh(http, dev, login["refresh_token"])
    assert_oauth_error(reuse, 400, "invalid_grant")
    # Every token descended from the login is dead: A1, A2, R2.
    assert me_status(http, dev, login["access_token"]) == 401
    assert me_status(http, dev, first["access_token"]) == 401
    assert introspect(http, dev, first["access_token"]) == {"active": False}
    assert_oauth_error(refresh(http, dev, first["refresh_token"]), 400, "invalid_grant")
    # Another login is untouched.
    assert me_status(http, dev, bystander["access_token"]) == 200
    assert refresh(http, dev, bystander["refresh_token"]).status_code == 200
    stats = dev.stats()
    assert stats.reuse_detections == 1
    assert stats.invalid_grant_answers == 2
    assert stats.refresh_grants == 2
    assert stats.token_requests == 4


def test_concurrent_refreshes_with_one_token_yield_exactly_one_success(
    dev: DevServer,
) -> None:
    login = dev.login()
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=5.0) as client:
            barrier.wait()
            status = refresh(client, dev, login["refresh_token"]).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 19
    stats = dev.stats()
    assert stats.token_requests == 20
    assert stats.refresh_grants == 1
    assert stats.invalid_grant_answers == 19
    # The first reuse revoked the grant; later ones meet a revoked grant.
    assert stats.reuse_detections == 1


def test_without_rotation_the_refresh_token_stays_and_is_omitted(
    clock: FakeClock, http: httpx.Client
) -> None:
    with DevServer(rotate_refresh_tokens=False, clock=clock) as dev:
        login = dev.login()
        for _ in range(3):
            response = refresh(http, dev, login["refresh_token"])
            assert response.status_code == 200
            assert "refresh_token" not in response.json()
        assert dev.stats().refresh_grants == 3
        assert dev.stats().reuse_detections == 0


def test_narrower_scope_is_honoured_and_wider_scope_refused(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login(scope="openid profile offline_access")
    narrow = refresh(http, dev, login["refresh_token"], scope="profile")
    assert narrow.json()["scope"] == "profile"
    claims = introspect(http, dev, narrow.json()["access_token"])
    assert claims["scope"] == "profile"
    # RFC 6749 6: the refresh token keeps the original grant's scope.
    full = refresh(http, dev, narrow.json()["refresh_token"])
    assert full.json()["scope"] == "openid profile offline_access"
    wider = refresh(http, dev, full.json()["refresh_token"], scope="profile admin")
    assert_oauth_error(wider, 400, "invalid_scope")


def test_unknown_expired_and_revoked_refresh_tokens_are_invalid_grant(
    clock: FakeClock, http: httpx.Client
) -> None:
    with DevServer(refresh_token_lifetime=3600, clock=clock) as dev:
        assert_oauth_error(refresh(http, dev, "rt_unknown"), 400, "invalid_grant")
        expiring = dev.login()
        clock.advance(3601)
        response = refresh(http, dev, expiring["refresh_token"])
        assert_oauth_error(response, 400, "invalid_grant")
        revoked = dev.login()
        assert dev.revoke_refresh_token(revoked["refresh_token"])
        assert me_status(http, dev, revoked["access_token"]) == 401
        response = refresh(http, dev, revoked["refresh_token"])
        assert_oauth_error(response, 400, "invalid_grant")
        forced = dev.login()
        dev.expire_refresh_tokens()
        assert_oauth_error(
            refresh(http, dev, forced["refresh_token"]), 400, "invalid_grant"
        )
        assert dev.stats().invalid_grant_answers == 4
        assert dev.stats().reuse_detections == 0


def test_refresh_token_parameter_is_required(
    dev: DevServer, http: httpx.Client
) -> None:
    response = http.post(
        dev.token_endpoint,
        data={"grant_type": "refresh_token"},
        auth=(dev.client_id, dev.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


# Token endpoint: other grants and malformed requests


def test_client_credentials_grant(dev: DevServer, http: httpx.Client) -> None:
    response = http.post(
        dev.token_endpoint,
        data={"grant_type": "client_credentials", "scope": "reports"},
        auth=(dev.client_id, dev.client_secret),
    )
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert body["scope"] == "reports"
    claims = introspect(http, dev, body["access_token"])
    assert claims["sub"] == dev.client_id
    assert claims["client_id"] == dev.client_id
    assert dev.stats().client_credentials_grants == 1
    public = http.post(
        dev.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": dev.public_client_id},
    )
    assert_oauth_error(public, 400, "unauthorized_client")


def test_unsupported_and_malformed_token_requests(
    dev: DevServer, http: httpx.Client
) -> None:
    auth = (dev.client_id, dev.client_secret)
    for grant in ("implicit", "password", "urn:nope"):
        response = http.post(dev.token_endpoint, data={"grant_type": grant}, auth=auth)
        assert_oauth_error(response, 400, "unsupported_grant_type")
    assert_oauth_error(
        http.post(dev.token_endpoint, data={}, auth=auth), 400, "invalid_request"
    )
    as_json = http.post(dev.token_endpoint, json={"grant_type": "client_credentials"})
    assert_oauth_error(as_json, 400, "invalid_request")
    repeated = http.post(
        dev.token_endpoint,
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=auth,
    )
    assert_oauth_error(repeated, 400, "invalid_request")
    get = http.get(dev.token_endpoint)
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert dev.stats().token_requests == 6  # every POST, the GET not


# Revocation (RFC 7009)


def test_revoking_an_access_token_leaves_the_grant(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    response = http.post(
        dev.revocation_endpoint,
        data={"token": login["access_token"], "token_type_hint": "access_token"},
        auth=(dev.client_id, dev.client_secret),
    )
    assert response.status_code == 200
    assert me_status(http, dev, login["access_token"]) == 401
    assert refresh(http, dev, login["refresh_token"]).status_code == 200
    assert dev.stats().revocation_requests == 1


def test_revoking_a_refresh_token_revokes_its_grant(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    # A wrong hint must not stop the server from finding the token.
    response = http.post(
        dev.revocation_endpoint,
        data={"token": login["refresh_token"], "token_type_hint": "access_token"},
        auth=(dev.client_id, dev.client_secret),
    )
    assert response.status_code == 200
    assert me_status(http, dev, login["access_token"]) == 401
    assert_oauth_error(refresh(http, dev, login["refresh_token"]), 400, "invalid_grant")


def test_revocation_edge_cases(dev: DevServer, http: httpx.Client) -> None:
    auth = (dev.client_id, dev.client_secret)
    unknown = http.post(dev.revocation_endpoint, data={"token": "nope"}, auth=auth)
    assert unknown.status_code == 200  # RFC 7009 2.2
    missing = http.post(dev.revocation_endpoint, data={}, auth=auth)
    assert_oauth_error(missing, 400, "invalid_request")
    bad_auth = http.post(
        dev.revocation_endpoint, data={"token": "x"}, auth=(dev.client_id, "wrong")
    )
    assert_oauth_error(bad_auth, 401, "invalid_client")
    dev.add_client("other", "other-secret")
    theirs = dev.login(client_id="other")
    foreign = http.post(
        dev.revocation_endpoint, data={"token": theirs["access_token"]}, auth=auth
    )
    assert_oauth_error(foreign, 400, "unauthorized_client")
    assert me_status(http, dev, theirs["access_token"]) == 200
    public = dev.login(client_id=dev.public_client_id)
    own = http.post(
        dev.revocation_endpoint,
        data={"token": public["refresh_token"], "client_id": dev.public_client_id},
    )
    assert own.status_code == 200
    assert me_status(http, dev, public["access_token"]) == 401
    assert dev.stats().revocation_requests == 5


def test_server_side_revocation_helpers(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    assert dev.revoke_access_token(login["access_token"]) is True
    assert dev.revoke_access_token("at_unknown") is False
    assert dev.revoke_access_token(login["refresh_token"]) is False
    assert me_status(http, dev, login["access_token"]) == 401
    assert refresh(http, dev, login["refresh_token"]).status_code == 200


# Introspection (RFC 7662)


def test_introspection_of_live_and_dead_tokens(
    dev: DevServer, clock: FakeClock, http: httpx.Client
) -> None:
    login = dev.login("alice", "openid profile")
    claims = introspect(http, dev, login["access_token"])
    assert claims == {
        "active": True,
        "scope": "openid profile",
        "client_id": dev.client_id,
        "sub": "alice",
        "iat": int(clock.now),
        "exp": int(clock.now) + 60,
        "token_type": "Bearer",
        "iss": dev.issuer,
    }
    assert introspect(http, dev, login["refresh_token"])["active"] is True
    assert introspect(http, dev, login["id_token"]) == {"active": False}
    assert introspect(http, dev, "at_unknown") == {"active": False}
    clock.advance(60)
    assert introspect(http, dev, login["access_token"]) == {"active": False}
    assert dev.stats().introspection_requests == 5


def test_introspection_requires_a_confidential_client(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    public = http.post(
        dev.introspection_endpoint,
        data={"token": login["access_token"], "client_id": dev.public_client_id},
    )
    assert_oauth_error(public, 401, "invalid_client")
    anonymous = http.post(dev.introspection_endpoint, data={"token": "x"})
    assert_oauth_error(anonymous, 401, "invalid_client")
    post_auth = http.post(
        dev.introspection_endpoint,
        data={
            "token": login["access_token"],
            "client_id": dev.client_id,
            "client_secret": dev.client_secret,
        },
    )
    assert post_auth.json()["active"] is True


def test_tokens_without_lifetime_have_no_exp(http: httpx.Client) -> None:
    with DevServer(access_token_lifetime=None) as dev:
        login = dev.login()
        assert "expires_in" not in login
        assert "exp" not in introspect(http, dev, login["access_token"])


# Clock, expiry and login


def test_injected_clock_expires_access_tokens(
    dev: DevServer, clock: FakeClock, http: httpx.Client
) -> None:
    login = dev.login()
    assert login["expires_in"] == 60
    clock.advance(59.9)
    assert me_status(http, dev, login["access_token"]) == 200
    clock.advance(0.1)
    response = http.get(f"{dev.api_url}/me", headers=bearer(login["access_token"]))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # The refresh token outlives it.
    assert refresh(http, dev, login["refresh_token"]).status_code == 200


def test_expires_in_can_be_left_out(clock: FakeClock, http: httpx.Client) -> None:
    with DevServer(
        include_expires_in=False, access_token_lifetime=100, clock=clock
    ) as dev:
        login = dev.login()
        assert "expires_in" not in login
        refreshed = refresh(http, dev, login["refresh_token"]).json()
        assert "expires_in" not in refreshed
        clock.advance(100)
        assert me_status(http, dev, refreshed["access_token"]) == 401


def test_fractional_lifetimes_are_sent_as_numbers() -> None:
    with DevServer(access_token_lifetime=0.5) as dev:
        assert dev.login()["expires_in"] == 0.5


def test_expire_access_tokens(dev: DevServer, http: httpx.Client) -> None:
    old = [dev.login(), dev.login("bob")]
    dev.expire_access_tokens()
    assert [me_status(http, dev, p["access_token"]) for p in old] == [401, 401]
    fresh = refresh(http, dev, old[0]["refresh_token"]).json()
    assert me_status(http, dev, fresh["access_token"]) == 200


def test_login_payload_and_options(dev: DevServer) -> None:
    payload = dev.login()
    assert set(payload) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "id_token",
    }
    assert (
        len({payload["access_token"], payload["refresh_token"], payload["id_token"]})
        == 3
    )
    plain = dev.login(scope="profile", refresh_token=False)
    assert "id_token" not in plain
    assert "refresh_token" not in plain
    with pytest.raises(ValueError, match="client_id"):
        dev.login(client_id="nobody")
    with pytest.raises(ValueError, match="scope"):
        dev.login(scope='bad"scope')
    assert dev.stats() == Stats()  # logins bypass HTTP


def test_client_secrets_are_random_per_server() -> None:
    assert DevServer().client_secret != DevServer().client_secret


# Demo API


def test_api_challenges(dev: DevServer, http: httpx.Client) -> None:
    missing = http.get(f"{dev.api_url}/me")
    assert missing.status_code == 401
    # RFC 6750 3.1: no error code when no credentials came.
    assert missing.headers["www-authenticate"] == 'Bearer realm="usersession-demo"'
    basic = http.get(f"{dev.api_url}/me", auth=("user", "password"))
    assert basic.headers["www-authenticate"] == 'Bearer realm="usersession-demo"'
    unknown = http.get(f"{dev.api_url}/me", headers=bearer("at_nope"))
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == (
        'Bearer realm="usersession-demo", error="invalid_token"'
    )
    assert unknown.json() == {"error": "invalid_token"}
    login = dev.login()
    id_token = http.get(f"{dev.api_url}/me", headers=bearer(login["id_token"]))
    assert id_token.status_code == 401
    twice = http.get(
        f"{dev.api_url}/me",
        headers=[
            ("Authorization", f"Bearer {login['access_token']}"),
            ("Authorization", f"Bearer {login['access_token']}"),
        ],
    )
    assert twice.status_code == 400
    assert 'error="invalid_request"' in twice.headers["www-authenticate"]
    lower = http.get(
        f"{dev.api_url}/me",
        headers={"Authorization": f"bearer {login['access_token']}"},
    )
    assert lower.status_code == 200


def test_api_routes(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login("carol", "openid profile")
    token = login["access_token"]
    me = http.get(f"{dev.api_url}/me", headers=bearer(token))
    assert me.json() == {"sub": "carol", "scope": "openid profile"}
    upload = http.post(
        f"{dev.api_url}/upload", content=b"x" * 1000, headers=bearer(token)
    )
    assert upload.json()["received"] == 1000

    def chunks() -> Iterator[bytes]:
        yield b"a" * 10
        yield b""
        yield b"b" * 70000

    chunked = http.post(
        f"{dev.api_url}/upload", content=chunks(), headers=bearer(token)
    )
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.json()["received"] == 70010
    assert http.get(f"{dev.api_url}/upload", headers=bearer(token)).status_code == 405
    scoped = http.get(f"{dev.api_url}/scoped?scope=admin", headers=bearer(token))
    assert scoped.status_code == 403
    assert scoped.headers["www-authenticate"] == (
        'Bearer realm="usersession-demo", error="insufficient_scope", scope="admin"'
    )
    granted = http.get(f"{dev.api_url}/scoped?scope=profile", headers=bearer(token))
    assert granted.status_code == 200


def test_api_echo_and_redirect_need_no_token(
    dev: DevServer, http: httpx.Client
) -> None:
    echo = http.get(f"{dev.api_url}/echo", headers={"X-Probe": "1"})
    assert echo.status_code == 200
    assert echo.json()["x-probe"] == "1"
    assert "authorization" not in echo.json()
    target = f"{dev.api_url}/echo"
    query = urllib.parse.urlencode({"to": target, "status": "307"})
    redirect = http.get(f"{dev.api_url}/redirect?{query}")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == target
    default = http.get(
        f"{dev.api_url}/redirect?" + urllib.parse.urlencode({"to": "/x"})
    )
    assert default.status_code == 302
    followed = http.get(
        f"{dev.api_url}/redirect?{query}", headers=bearer("t"), follow_redirects=True
    )
    assert followed.status_code == 200
    bad = http.get(f"{dev.api_url}/redirect?to=/x&status=200")
    assert bad.status_code == 400


def test_api_records_what_it_saw(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    token = login["access_token"]
    http.get(f"{dev.api_url}/me", headers=bearer(token))
    http.get(f"{dev.api_url}/me")
    http.post(f"{dev.api_url}/upload", content=b"12345", headers=bearer("at_nope"))
    http.get(f"{dev.api_url}/echo", auth=("u", "p"))
    assert dev.api_seen() == [
        SeenRequest("GET", "/me", True, 1, token_hash(token), 200, 0),
        SeenRequest("GET", "/me", False, 0, None, 401, 0),
        SeenRequest("POST", "/upload", True, 1, token_hash("at_nope"), 401, 5),
        SeenRequest("GET", "/echo", True, 1, None, 200, 0),
    ]
    assert dev.api.seen == dev.api_seen()
    assert len(token_hash(token)) == 12
    assert token not in repr(dev.api_seen())
    stats = dev.stats()
    assert (stats.api_requests, stats.api_ok, stats.api_unauthorized) == (4, 2, 2)
    dev.reset_stats()
    assert dev.stats() == Stats()
    assert dev.api_seen() == []


def test_concurrent_api_requests_are_all_counted(dev: DevServer) -> None:
    token = dev.login()["access_token"]
    barrier = threading.Barrier(30)

    def worker() -> None:
        with httpx.Client(timeout=5.0) as client:
            barrier.wait()
            for _ in range(5):
                assert me_status(client, dev, token) == 200

    threads = [threading.Thread(target=worker) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dev.stats().api_ok == 150
    assert len(dev.api_seen()) == 150


def test_standalone_demo_api_with_a_validator(http: httpx.Client) -> None:
    calls: list[str] = []

    def validate(token: str) -> dict[str, Any] | None:
        calls.append(token)
        if token == "boom":
            raise RuntimeError("introspection is down")
        return {"sub": "dora", "scope": "read"} if token == "good" else None

    with DemoAPI(validate) as api:
        assert http.get(f"{api.url}/me", headers=bearer("good")).json() == {
            "sub": "dora",
            "scope": "read",
        }
        assert http.get(f"{api.url}/me", headers=bearer("bad")).status_code == 401
        # A validator that fails makes the API fail closed.
        down = http.get(f"{api.url}/me", headers=bearer("boom"))
        assert_oauth_error(down, 503, "temporarily_unavailable")
        api.inject(Fault.status(500))
        assert http.get(f"{api.url}/me", headers=bearer("good")).status_code == 500
        assert calls == ["good", "bad", "boom"]
        assert api.stats().api_requests == 4


def test_keep_alive_and_raw_chunked_upload(dev: DevServer) -> None:
    token = dev.login()["access_token"]
    port = urllib.parse.urlsplit(dev.api_url).port
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/me", headers=bearer(token))
        first = conn.getresponse()
        assert first.status == 200
        assert json.loads(first.read())["sub"] == "alice"
        sock = conn.sock
        conn.request(
            "POST",
            "/upload",
            body=iter([b"abc", b"defg"]),
            headers=bearer(token),
            encode_chunked=True,
        )
        second = conn.getresponse()
        assert json.loads(second.read())["received"] == 7
        assert conn.sock is sock  # HTTP/1.1 keep-alive: one connection
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"Content-Length: 99999999999\r\n\r\n", 413),
        (b"Content-Length: 5, 6\r\n\r\nhello", 400),
    ],
)
def test_bad_body_framing_is_refused_and_the_connection_closed(
    dev: DevServer, framing: bytes, status: int
) -> None:
    port = urllib.parse.urlsplit(dev.api_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n" + framing)
        answer = b""
        while chunk := raw.recv(4096):  # EOF: the server closed the connection
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in answer


# Faults


class Background:
    """A refresh running in a thread; keeps its answer or its error."""

    def __init__(self, dev: DevServer, refresh_token: str) -> None:
        self.responses: list[httpx.Response] = []
        self.errors: list[Exception] = []

        def run() -> None:
            with httpx.Client(timeout=10.0) as client:
                try:
                    self.responses.append(refresh(client, dev, refresh_token))
                except httpx.HTTPError as exc:
                    self.errors.append(exc)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def join(self) -> httpx.Response:
        self._thread.join()
        assert not self.errors
        return self.responses[0]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def test_fault_delay_applies_the_effect_after_the_sleep(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    dev.inject("token", Fault.delay(1.0))
    started = time.perf_counter()
    background = Background(dev, login["refresh_token"])
    try:
        # The request has arrived (counted on arrival), but R1 is not rotated.
        wait_until(lambda: dev.stats().token_requests == 1)
        assert dev.stats().refresh_grants == 0
        assert introspect(http, dev, login["refresh_token"])["active"] is True
    finally:
        response = background.join()
    assert time.perf_counter() - started >= 1.0
    assert response.status_code == 200
    assert dev.stats().refresh_grants == 1
    assert introspect(http, dev, login["refresh_token"])["active"] is False
    assert dev.pending_faults("token") == 0


def test_fault_late_answer_applies_the_effect_first(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    dev.inject("token", Fault.late_answer(1.0))
    background = Background(dev, login["refresh_token"])
    try:
        wait_until(lambda: dev.stats().refresh_grants == 1)  # R1 rotated...
        assert introspect(http, dev, login["refresh_token"])["active"] is False
        assert not background.responses  # ...while the client still waits
    finally:
        response = background.join()
    assert response.status_code == 200


def test_fault_status(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    dev.inject(
        "token",
        Fault.status(
            503,
            body=b"<html>down</html>",
            content_type="text/html",
            headers={"Retry-After": "1"},
        ),
    )
    dev.inject("token", Fault.status(429))
    first = refresh(http, dev, login["refresh_token"])
    assert first.status_code == 503
    assert first.headers["retry-after"] == "1"
    assert first.headers["content-type"] == "text/html"
    assert first.content == b"<html>down</html>"
    second = refresh(http, dev, login["refresh_token"])
    assert (second.status_code, second.text) == (429, "Too Many Requests")
    assert second.headers["content-type"] == "text/plain; charset=utf-8"
    # Faults replaced the answers: R1 was never used.
    assert refresh(http, dev, login["refresh_token"]).status_code == 200
    assert dev.stats().token_requests == 3
    assert dev.stats().refresh_grants == 1


def test_fault_oauth_error(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    dev.inject("token", Fault.oauth_error("invalid_grant", description="no more"))
    dev.inject("token", Fault.oauth_error("invalid_client", status=401))
    first = refresh(http, dev, login["refresh_token"])
    assert first.status_code == 400
    assert first.json() == {"error": "invalid_grant", "error_description": "no more"}
    second = refresh(http, dev, login["refresh_token"])
    assert_oauth_error(second, 401, "invalid_client")
    assert second.headers["www-authenticate"].startswith("Basic")
    assert dev.stats().invalid_grant_answers == 1
    dev.inject("api", Fault.oauth_error("insufficient_scope", status=401))
    api = http.get(f"{dev.api_url}/me", headers=bearer(login["access_token"]))
    assert api.status_code == 401
    assert api.headers["www-authenticate"] == (
        'Bearer realm="usersession-demo", error="insufficient_scope"'
    )


def test_fault_drop(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    dev.inject("token", Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        refresh(http, dev, login["refresh_token"])
    # Without after_effect nothing happened: R1 still works.
    assert introspect(http, dev, login["refresh_token"])["active"] is True
    dev.inject("token", Fault.drop(after_effect=True))
    with pytest.raises(httpx.RemoteProtocolError):
        refresh(http, dev, login["refresh_token"])
    # The rotation happened, and the new refresh token never reached anyone.
    assert introspect(http, dev, login["refresh_token"])["active"] is False
    assert dev.stats().refresh_grants == 1


def test_fault_hang(dev: DevServer) -> None:
    login = dev.login()
    dev.inject("token", Fault.hang(0.5))
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=0.2)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        refresh(client, dev, login["refresh_token"])
    dev.inject("token", Fault.hang(0.2))
    started = time.perf_counter()
    with httpx.Client(timeout=5.0) as client, pytest.raises(httpx.RemoteProtocolError):
        refresh(client, dev, login["refresh_token"])
    assert time.perf_counter() - started >= 0.2
    assert dev.stats().refresh_grants == 0


def test_fault_hang_does_not_delay_stop() -> None:
    dev = DevServer().start()
    dev.inject("token", Fault.hang(30))
    errors: list[BaseException] = []

    def run() -> None:
        with httpx.Client(timeout=60.0) as client:
            try:
                refresh(client, dev, "rt_x")
            except httpx.HTTPError as exc:
                errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    while dev.stats().token_requests == 0:
        time.sleep(0.01)
    started = time.perf_counter()
    dev.stop()
    thread.join()
    assert time.perf_counter() - started < 5
    assert len(errors) == 1


def test_fault_malformed(dev: DevServer, http: httpx.Client) -> None:
    login = dev.login()
    dev.inject("token", Fault.malformed())
    response = refresh(http, dev, login["refresh_token"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    dev.inject("introspection", Fault.malformed(b"<html>", "text/html"))
    raw = http.post(
        dev.introspection_endpoint,
        data={"token": login["access_token"]},
        auth=(dev.client_id, dev.client_secret),
    )
    assert raw.content == b"<html>"


def test_fault_times_and_clearing(dev: DevServer, http: httpx.Client) -> None:
    def status() -> int:
        return http.get(dev.discovery_url).status_code

    dev.inject("discovery", Fault.status(204))
    empty = http.get(dev.discovery_url)
    assert (empty.status_code, empty.content) == (204, b"")
    dev.inject("discovery", Fault.status(500), times=2)
    dev.inject("discovery", Fault.status(502))
    assert dev.pending_faults("discovery") == 3
    assert [status() for _ in range(4)] == [500, 500, 502, 200]
    dev.inject("discovery", Fault.status(503), times=None)
    assert dev.pending_faults("discovery") is None
    assert [status() for _ in range(3)] == [503, 503, 503]
    dev.clear_faults("discovery")
    assert status() == 200
    for endpoint in ENDPOINTS:
        dev.inject(endpoint, Fault.status(500), times=None)
    dev.clear_faults()
    assert all(dev.pending_faults(e) == 0 for e in ENDPOINTS)
    with pytest.raises(ValueError, match="unknown endpoint"):
        dev.inject("authorize", Fault.drop())
    with pytest.raises(ValueError, match="times"):
        dev.inject("token", Fault.drop(), times=0)


def test_faults_on_revocation_introspection_and_api(
    dev: DevServer, http: httpx.Client
) -> None:
    login = dev.login()
    auth = (dev.client_id, dev.client_secret)
    dev.inject("revocation", Fault.status(503))
    revoke = http.post(
        dev.revocation_endpoint, data={"token": login["access_token"]}, auth=auth
    )
    assert revoke.status_code == 503
    assert me_status(http, dev, login["access_token"]) == 200
    dev.inject("introspection", Fault.hang(0.3))
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=0.1)) as quick,
        pytest.raises(httpx.ReadTimeout),
    ):
        quick.post(
            dev.introspection_endpoint, data={"token": login["access_token"]}, auth=auth
        )
    dev.inject("api", Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{dev.api_url}/me", headers=bearer(login["access_token"]))
    dev.inject("api", Fault.status(401))
    unauthorized = http.get(f"{dev.api_url}/me", headers=bearer(login["access_token"]))
    assert unauthorized.status_code == 401
    assert "www-authenticate" not in unauthorized.headers
    seen = dev.api_seen()
    assert [r.status for r in seen] == [200, None, 401]
    assert dev.stats().api_unauthorized == 1


def test_fault_constructors_validate() -> None:
    with pytest.raises(ValueError):
        Fault.delay(-1)
    with pytest.raises(ValueError):
        Fault.hang(float("nan"))
    with pytest.raises(ValueError):
        Fault.status(99)
    with pytest.raises(ValueError):
        Fault.status(500, headers={"X-Bad": "a\r\nInjected: 1"})
    with pytest.raises(ValueError):
        Fault.oauth_error('bad"code')
    with pytest.raises(ValueError):
        Fault.status(204, body=b"x")
    assert Fault.delay(0.2) == Fault.delay(0.2)  # frozen, comparable
    assert hash(Fault.status(503, headers={"Retry-After": "1"}))


# Refusing connections


def test_refuse_connections_and_reopen_on_the_same_port(dev: DevServer) -> None:
    login = dev.login()
    issuer = dev.issuer
    with httpx.Client(timeout=2.0) as client:
        assert client.get(dev.discovery_url).status_code == 200  # pooled connection
        assert me_status(client, dev, login["access_token"]) == 200
        dev.refuse_connections(True)
        with pytest.raises(httpx.ConnectError):
            refresh(client, dev, login["refresh_token"])
        with pytest.raises(httpx.ConnectError):
            client.get(dev.discovery_url)
        # The API is another listener: a token it checked already keeps
        # working from its introspection cache; one it has not seen cannot
        # be introspected now, and the API fails closed (V2).
        assert me_status(client, dev, login["access_token"]) == 200
        assert me_status(client, dev, dev.login("bob")["access_token"]) == 503
        dev.refuse_connections(True)  # idempotent
        dev.refuse_connections(False)
        assert dev.issuer == issuer
        assert refresh(client, dev, login["refresh_token"]).status_code == 200
    assert dev.stats().token_requests == 1  # the refused attempt never arrived


def test_api_can_refuse_connections(dev: DevServer, http: httpx.Client) -> None:
    dev.api.refuse_connections()
    with pytest.raises(httpx.ConnectError):
        http.get(f"{dev.api_url}/echo")
    dev.api.refuse_connections(False)
    assert http.get(f"{dev.api_url}/echo").status_code == 200


# Secrets stay out of logs


def test_no_token_or_secret_reaches_logs_or_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = []
    with DevServer() as dev, httpx.Client(timeout=2.0) as http:
        secrets_seen.append(dev.client_secret)
        login = dev.login()
        secrets_seen += [
            login["access_token"],
            login["refresh_token"],
            login["id_token"],
        ]
        me_status(http, dev, login["access_token"])
        http.get(f"{dev.api_url}/me", headers=bearer(login["id_token"]))
        new = refresh(http, dev, login["refresh_token"]).json()
        secrets_seen += [new["access_token"], new["refresh_token"]]
        refresh(http, dev, login["refresh_token"])  # reuse
        introspect(http, dev, new["access_token"])
        http.post(
            dev.revocation_endpoint,
            data={"token": new["refresh_token"]},
            auth=(dev.client_id, dev.client_secret),
        )
        http.post(
            dev.token_endpoint, data={"grant_type": "x"}, auth=(dev.client_id, "bad")
        )
        dev.inject("token", Fault.drop())
        with pytest.raises(httpx.RemoteProtocolError):
            refresh(http, dev, new["refresh_token"])
        http.get(f"{dev.api_url}/me?access_token={login['access_token']}")
        # A malformed request line must not be echoed to stderr either.
        port = urllib.parse.urlsplit(dev.issuer).port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(f"BROKEN {login['access_token']}\r\n\r\n".encode())
            raw.recv(4096)
        assert dev.client_secret not in repr(dev)
    out, err = capfd.readouterr()
    # httpx logs its own request URLs; only this package's records matter here.
    ours = [r for r in caplog.records if r.name.startswith("usersession")]
    assert ours, "expected DEBUG records to inspect"
    for record in ours:
        text = record.getMessage() + (record.exc_text or "")
        for secret in secrets_seen:
            assert secret not in text
    for secret in secrets_seen:
        assert secret not in out
        assert secret not in err
    assert any(token_hash(login["refresh_token"]) in r.getMessage() for r in ours)

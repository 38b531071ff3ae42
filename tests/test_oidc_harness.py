"""Checks of the oidc-provider test harness itself (tests/oidc_server.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from oidc_server import (
    DEFAULT_ACCOUNT_ID,
    OidcProvider,
    login_with_pkce,
    pkce_pair,
    run_oidc_provider,
)

pytestmark = pytest.mark.oidc

TTL = 4


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with run_oidc_provider(access_token_ttl=TTL) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_counters(request: pytest.FixtureRequest) -> None:
    if "provider" in request.fixturenames:
        running: OidcProvider = request.getfixturevalue("provider")
        running.reset_stats()
        running.set_token_delay(0)


def _error_code(response: httpx.Response) -> str | None:
    body: Any = response.json()
    return body.get("error") if isinstance(body, dict) else None


def _userinfo_status(provider: OidcProvider, access_token: str) -> int:
    response = httpx.get(
        provider.userinfo_endpoint,
        headers={"Authorization": f"Bearer {access_token}"},
    )
    return response.status_code


def test_server_starts_on_loopback(provider: OidcProvider) -> None:
    assert provider.issuer.startswith("http://127.0.0.1:")
    assert provider.discovery["issuer"] == provider.issuer
    assert provider.discovery["code_challenge_methods_supported"] == ["S256"]
    for endpoint in (
        provider.authorization_endpoint,
        provider.token_endpoint,
        provider.introspection_endpoint,
        provider.revocation_endpoint,
        provider.userinfo_endpoint,
    ):
        assert endpoint.startswith(provider.issuer + "/")
    assert provider.startup_seconds < 30


def test_login_with_pkce_returns_tokens(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == TTL
    assert tokens["scope"] == "openid"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["id_token"]

    userinfo = httpx.get(
        provider.userinfo_endpoint,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == DEFAULT_ACCOUNT_ID
    assert provider.introspect(tokens["refresh_token"])["active"] is True


def test_any_loopback_port_is_accepted_for_the_redirect(
    provider: OidcProvider,
) -> None:
    tokens = login_with_pkce(
        provider,
        scope="openid profile",
        redirect_uri="http://127.0.0.1:53219/callback",
    )
    assert set(tokens["scope"].split()) == {"openid", "profile"}


def test_pkce_is_required(provider: OidcProvider) -> None:
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": provider.redirect_uri,
        "scope": "openid",
        "state": "s",
    }
    response = httpx.get(provider.authorization_endpoint, params=params)
    assert response.status_code in {302, 303}
    location = httpx.URL(response.headers["location"])
    assert location.params["error"] == "invalid_request"

    _, plain_challenge = pkce_pair()
    params |= {"code_challenge": plain_challenge, "code_challenge_method": "plain"}
    response = httpx.get(provider.authorization_endpoint, params=params)
    location = httpx.URL(response.headers["location"])
    assert location.params["error"] == "invalid_request"


def test_refresh_rotates_and_reuse_is_invalid_grant(provider: OidcProvider) -> None:
    first = login_with_pkce(provider)

    response = provider.refresh(first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == TTL

    reused = provider.refresh(first["refresh_token"])
    assert reused.status_code == 400
    assert _error_code(reused) == "invalid_grant"

    # Reuse of a rotated token revokes the whole grant, new tokens included.
    after_reuse = provider.refresh(second["refresh_token"])
    assert after_reuse.status_code == 400
    assert _error_code(after_reuse) == "invalid_grant"
    assert provider.introspect(second["access_token"])["active"] is False

    stats = provider.stats()
    assert stats["grants"]["refresh_token"] == 1
    assert stats["refresh_token_invalid_grant"] == 2


def test_introspection_reports_active_tokens(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)

    access = provider.introspect(tokens["access_token"])
    assert access["active"] is True
    assert access["client_id"] == provider.client_id
    assert access["sub"] == DEFAULT_ACCOUNT_ID
    assert access["token_type"] == "Bearer"
    assert access["exp"] - access["iat"] == TTL

    refresh = provider.introspect(tokens["refresh_token"])
    assert refresh["active"] is True
    assert refresh["client_id"] == provider.client_id
    assert "token_type" not in refresh  # oidc-provider omits it for RTs

    assert provider.introspect("not-a-token")["active"] is False


def test_revocation(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)

    provider.revoke(tokens["refresh_token"], token_type_hint="refresh_token")
    assert provider.introspect(tokens["refresh_token"])["active"] is False
    refused = provider.refresh(tokens["refresh_token"])
    assert refused.status_code == 400
    assert _error_code(refused) == "invalid_grant"

    # oidc-provider revokes the rest of the grant along with any one token.
    other = login_with_pkce(provider)
    provider.revoke(other["access_token"], token_type_hint="access_token")
    assert provider.introspect(other["access_token"])["active"] is False
    assert _userinfo_status(provider, other["access_token"]) == 401
    assert provider.introspect(other["refresh_token"])["active"] is False

    assert provider.stats()["revocations"] == 2


def test_drop_access_token_keeps_the_refresh_token(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)

    provider.drop_access_token(tokens["access_token"])
    assert _userinfo_status(provider, tokens["access_token"]) == 401
    assert provider.introspect(tokens["refresh_token"])["active"] is True

    refreshed = provider.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert _userinfo_status(provider, refreshed.json()["access_token"]) == 200
    assert provider.stats()["access_tokens_dropped"] == 1


def test_stats_count_what_the_test_did(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)
    login_with_pkce(provider)
    rotated = provider.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200
    provider.client_credentials()
    assert provider.refresh(tokens["refresh_token"]).status_code == 400
    assert provider.refresh("no-such-token").status_code == 400

    stats = provider.stats()
    assert stats["grants"] == {
        "authorization_code": 2,
        "refresh_token": 1,
        "client_credentials": 1,
    }
    assert stats["invalid_grant"] == 2
    assert stats["refresh_token_invalid_grant"] == 2
    assert stats["grant_errors"] == {"refresh_token": {"invalid_grant": 2}}
    assert stats["token_requests"] == {
        "authorization_code": 2,
        "refresh_token": 3,
        "client_credentials": 1,
    }
    assert stats["authorizations"] == 2
    assert stats["server_errors"] == 0


def test_token_delay_makes_requests_overlap(provider: OidcProvider) -> None:
    provider.set_token_delay(0.3)
    results: list[int] = []

    def request() -> None:
        results.append(len(provider.client_credentials()["access_token"]))

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 3
    assert provider.stats()["max_concurrent_token_requests"] == 3


def test_access_token_lifetime_is_the_configured_one() -> None:
    ttl = 2
    with run_oidc_provider(access_token_ttl=ttl) as short_lived:
        tokens = login_with_pkce(short_lived)
        assert tokens["expires_in"] == ttl
        info = short_lived.introspect(tokens["access_token"])
        assert info["active"] is True
        assert info["exp"] - info["iat"] == ttl

        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        with httpx.Client() as client:
            # Expiry is whole seconds with no clock tolerance: the token is
            # refused from second `exp` on.
            time.sleep(max(0.0, info["exp"] - time.time()) + 0.05)
            expired = client.get(short_lived.userinfo_endpoint, headers=headers)
        assert expired.status_code == 401
        assert short_lived.introspect(tokens["access_token"])["active"] is False

        refreshed = short_lived.refresh(tokens["refresh_token"])
        assert refreshed.status_code == 200
        assert refreshed.json()["expires_in"] == ttl


def test_server_log_holds_no_tokens(provider: OidcProvider) -> None:
    tokens = login_with_pkce(provider)
    log = provider.server_log()
    assert tokens["access_token"] not in log
    assert tokens["refresh_token"] not in log
    assert provider.client_secret not in log

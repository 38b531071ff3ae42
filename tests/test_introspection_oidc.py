"""`Introspector` against a real authorization server, oidc-provider: active,
expired, revoked and other clients' tokens, and its answers to our own
client authentication (V1, V2, V3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import usersession
from usersession import Claims, IntrospectionUnavailable, Introspector, InvalidToken

from conftest import Mode
from introspection_support import Clocks, check_in
from oidc_server import (
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    OidcProvider,
    login_with_pkce,
    run_oidc_provider,
)

pytestmark = pytest.mark.oidc

TTL = 3  # the server's access-token lifetime, seconds


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcProvider]:
    with run_oidc_provider(access_token_ttl=TTL) as server:
        yield server


_made: list[Introspector] = []


@pytest.fixture(autouse=True)
def _close_introspectors() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def introspector(
    oidc: OidcProvider,
    client_id: str | None = None,
    client_secret: str | None = None,
    **options: Any,
) -> Introspector:
    """An introspector found by discovery, closed when the test ends."""
    provider = usersession.Provider.discover(
        oidc.issuer, client_id or oidc.client_id, client_secret or oidc.client_secret
    )
    assert provider.introspection_endpoint == oidc.introspection_endpoint
    made = Introspector(provider, **options)
    _made.append(made)
    return made


def introspections(oidc: OidcProvider) -> int:
    count: int = oidc.stats()["introspections"]
    return count


def test_v1_active_token(oidc: OidcProvider, mode: Mode) -> None:
    """V1: a token from a real login is active, with its claims."""
    tokens = login_with_pkce(oidc, scope="openid profile")
    claims = check_in(mode, introspector(oidc), tokens["access_token"], ["openid"])
    assert isinstance(claims, Claims)
    assert claims.sub == oidc.account_id
    assert claims.client_id == oidc.client_id
    assert {"openid", "profile"} <= claims.scope
    assert claims.exp is not None and claims.exp - time.time() <= TTL
    assert claims.raw["token_type"] == "Bearer"


def test_v3_expired_token_is_refused_at_exp(oidc: OidcProvider, mode: Mode) -> None:
    """V3: a cached answer is used no later than the token's exp; then the
    server is asked again and says inactive."""
    checker = introspector(oidc, ttl=30.0)
    token = login_with_pkce(oidc)["access_token"]
    before = introspections(oidc)
    claims = check_in(mode, checker, token)
    assert isinstance(claims, Claims) and claims.exp is not None
    assert isinstance(check_in(mode, checker, token), Claims)
    assert introspections(oidc) == before + 1
    time.sleep(max(0.0, claims.exp - time.time()) + 0.05)
    assert isinstance(check_in(mode, checker, token), InvalidToken)
    assert oidc.introspect(token)["active"] is False


def test_c10_revoked_token_is_refused_after_the_ttl(
    oidc: OidcProvider, mode: Mode
) -> None:
    """C10 against oidc-provider: revoked at the server, the token is still
    accepted from the cache within the TTL, and refused after a fresh call."""
    clocks = Clocks()
    checker = introspector(oidc, ttl=30.0, monotonic=clocks.monotonic)
    token = login_with_pkce(oidc)["access_token"]
    before = introspections(oidc)
    assert isinstance(check_in(mode, checker, token), Claims)
    oidc.revoke(token, token_type_hint="access_token")
    assert isinstance(check_in(mode, checker, token), Claims)
    assert introspections(oidc) == before + 1
    clocks.advance(30.0)
    assert isinstance(check_in(mode, checker, token), InvalidToken)
    assert introspections(oidc) == before + 2


def test_v1_token_of_another_client(oidc: OidcProvider, mode: Mode) -> None:
    """V1: a token issued to another client is active at the server; an API
    that serves only its own client refuses it (client_ids), and a client
    the server does not let introspect learns nothing (inactive)."""
    answer = httpx.post(
        oidc.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET),
    )
    assert answer.status_code == 200
    theirs = answer.json()["access_token"]
    anyone = check_in(mode, introspector(oidc), theirs)
    assert isinstance(anyone, Claims) and anyone.client_id == OTHER_CLIENT_ID
    own_only = introspector(oidc, client_ids=[oidc.client_id])
    assert isinstance(check_in(mode, own_only, theirs), InvalidToken)
    # The other client may not introspect at all (the server's policy):
    # even a live token of the first client is inactive to it.
    mine = login_with_pkce(oidc)["access_token"]
    stranger = introspector(oidc, OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
    assert isinstance(check_in(mode, stranger, mine), InvalidToken)


def test_v2_wrong_client_secret_is_unavailable(oidc: OidcProvider, mode: Mode) -> None:
    """V2: the server refuses our client authentication (401): unavailable,
    never a verdict on the token, never cached."""
    token = login_with_pkce(oidc)["access_token"]
    wrong = introspector(oidc, oidc.client_id, "not-the-secret")
    refused = check_in(mode, wrong, token)
    assert isinstance(refused, IntrospectionUnavailable)
    assert refused.upstream_status == 401
    assert "not-the-secret" not in str(refused) + (refused.body_excerpt or "")
    assert wrong.cached == 0


def test_v3_concurrent_checks_one_call_at_oidc_provider(oidc: OidcProvider) -> None:
    """V3: 30 tasks checking one new token make one call at the server."""
    checker = introspector(oidc)
    token = login_with_pkce(oidc)["access_token"]
    before = introspections(oidc)

    async def main() -> list[Claims]:
        try:
            return await asyncio.gather(*(checker.acheck(token) for _ in range(30)))
        finally:
            await checker.aclose()

    assert len(asyncio.run(main())) == 30
    assert introspections(oidc) == before + 1

"""The demo workload against a real authorization server: oidc-provider.

A user logs in through the authorization-code flow with PKCE (driven over
HTTP by the harness), then threads and asyncio tasks share that user while
access tokens expire every few seconds, refresh tokens rotate with reuse
detection, and one access token is dropped by the server mid-run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import usersession
from usersession._workload import Workload
from usersession.devserver import DemoAPI

from oidc_server import OidcProvider, login_with_pkce, run_oidc_provider

pytestmark = pytest.mark.oidc


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcProvider]:
    with run_oidc_provider(access_token_ttl=4) as server:
        yield server


def introspecting(server: OidcProvider) -> Any:
    def validate(token: str) -> Mapping[str, Any] | None:
        answer = server.introspect(token, token_type_hint="access_token")
        return answer if answer.get("active") is True else None

    return validate


def test_workload_against_oidc_provider(oidc: OidcProvider) -> None:
    """Zero failed requests, and exactly one refresh grant per expiry or
    revocation, with refresh-token rotation on."""
    provider = usersession.Provider.discover(
        oidc.issuer, oidc.client_id, oidc.client_secret
    )
    assert provider.revocation_endpoint == oidc.revocation_endpoint
    tokens = usersession.Tokens.from_response(login_with_pkce(oidc))
    assert tokens.lifetime == 4.0
    user = usersession.User(provider, tokens)
    oidc.reset_stats()

    with DemoAPI(introspecting(oidc)) as api:
        workload = Workload(
            user,
            f"{api.url}/me",
            threads=3,
            tasks=6,
            duration=9.0,
            revoke_at=(5.0,),
            revoke=oidc.drop_access_token,
        )
        tally = workload.run()

    stats = oidc.stats()
    assert tally.failed == 0, tally.errors
    assert tally.ok == tally.sent > 0
    assert tally.resent >= 1  # the dropped token was met and recovered from
    refresh_grants = stats["grants"].get("refresh_token", 0)
    assert refresh_grants == tally.renewals_needed
    assert 4 <= tally.renewals_needed <= 8  # 9 s of 4 s tokens, plus one drop
    assert stats["invalid_grant"] == 0
    assert stats["max_concurrent_token_requests"] == 1
    assert user.is_logged_in

    user.logout()
    assert oidc.stats()["revocations"] >= 1

"""G4: client credentials (RFC 6749 4.4): a user for a service, whose
"refresh" repeats the grant."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

import usersession
from usersession.devserver import DevServer

from conftest import Mode, send
from login_helpers import SecretRecorder, leaks


def run_client_credentials(
    mode: Mode, provider: usersession.Provider, **options: Any
) -> usersession.User:
    if mode == "sync":
        return usersession.client_credentials(provider, **options)
    return asyncio.run(usersession.aclient_credentials(provider, **options))


@pytest.fixture
def recorder() -> SecretRecorder:
    return SecretRecorder()


def test_g4_first_token_is_fetched_at_creation(
    dev: DevServer, mode: Mode, recorder: SecretRecorder
) -> None:
    store = usersession.MemoryStore()
    provider = recorder.provider(dev)
    user = run_client_credentials(mode, provider, scope="api", store=store)

    assert user.provider is provider and user.store is store
    assert user.tokens is not None and store.load() == user.tokens
    assert user.tokens.refresh_token is None and user.tokens.scope == "api"
    assert recorder.forms == [{"grant_type": "client_credentials", "scope": "api"}]
    assert dev.stats().client_credentials_grants == 1
    me = send(user, mode, "GET", f"{dev.api_url}/me")
    assert me.status_code == 200 and me.json()["sub"] == dev.client_id


def test_g4_refresh_repeats_the_grant(
    dev: DevServer, mode: Mode, recorder: SecretRecorder
) -> None:
    user = run_client_credentials(mode, recorder.provider(dev), scope="api")
    first = user.tokens
    assert first is not None

    renewed = user.refresh() if mode == "sync" else asyncio.run(user.arefresh())
    assert renewed.access_token != first.access_token
    assert recorder.forms[-1] == {"grant_type": "client_credentials", "scope": "api"}

    # A rejected token (R2) is renewed the same way, and the request resent.
    dev.revoke_access_token(renewed.access_token)
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    stats = dev.stats()
    assert (stats.client_credentials_grants, stats.refresh_grants) == (3, 0)
    assert user.is_logged_in


def test_g4_expiring_token_is_renewed_before_sending(mode: Mode) -> None:
    with DevServer(access_token_lifetime=0.4) as dev:
        provider = usersession.Provider.discover(
            dev.issuer, dev.client_id, dev.client_secret
        )
        user = run_client_credentials(mode, provider)
        assert user.tokens is not None and user.tokens.lifetime == 0.4
        time.sleep(0.25)  # S2: due from half its lifetime on
        assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
        stats = dev.stats()
        assert (stats.client_credentials_grants, stats.api_unauthorized) == (2, 0)


def test_g4_refused_grants(dev: DevServer, mode: Mode) -> None:
    public = usersession.Provider.discover(
        dev.issuer, dev.public_client_id, token_endpoint_auth_method="none"
    )
    with pytest.raises(usersession.LoginError) as caught:
        run_client_credentials(mode, public)
    assert caught.value.error == "unauthorized_client"  # RFC 6749 4.4

    wrong = usersession.Provider.discover(dev.issuer, dev.client_id, "not-the-secret")
    with pytest.raises(usersession.LoginError) as caught:
        run_client_credentials(mode, wrong)
    assert (caught.value.error, caught.value.status_code) == ("invalid_client", 401)
    assert "not-the-secret" not in str(caught.value)


def test_g4_refused_renewal_logs_the_service_out(dev: DevServer, mode: Mode) -> None:
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    user = run_client_credentials(mode, provider)
    dev.add_client(dev.client_id, "a-new-secret")  # the old secret stops working
    with pytest.raises(usersession.UserRefreshFailed) as caught:
        user.refresh()
    assert caught.value.error == "invalid_client" and not user.is_logged_in


def test_x1_client_credentials_logs_no_secret(
    dev: DevServer,
    mode: Mode,
    recorder: SecretRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = run_client_credentials(mode, recorder.provider(dev))
    user.refresh()
    assert dev.client_secret in recorder.secrets
    assert len(recorder.secrets) >= 3  # the secret and two access tokens
    assert leaks(caplog.records, recorder.secrets, repr(user), str(user)) == []

"""G1-G4 against a real authorization server: oidc-provider.

The device flow is confirmed, and the authorization code flow completed,
over HTTP by the test (`confirm_device`, `FakeBrowser`), through the
server's own verification pages and its test-only interaction route.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import usersession

from conftest import Mode
from login_helpers import FakeBrowser, FakeClock, SecretRecorder, leaks
from oidc_server import OidcProvider, confirm_device, run_oidc_provider

pytestmark = pytest.mark.oidc

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcProvider]:
    with run_oidc_provider(access_token_ttl=60) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(oidc: OidcProvider) -> None:
    oidc.reset_stats()
    oidc.set_device_interval(None)


def discover(oidc: OidcProvider, **options: Any) -> usersession.Provider:
    return usersession.Provider.discover(
        oidc.issuer, oidc.client_id, oidc.client_secret, **options
    )


def userinfo_status(user: usersession.User, oidc: OidcProvider) -> int:
    with usersession.Client(user) as client:
        return client.get(oidc.userinfo_endpoint).status_code


class Counting(httpx.BaseTransport):
    def __init__(self, fetched: list[str]) -> None:
        self._fetched = fetched
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._fetched.append(request.url.path)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncCounting(httpx.AsyncBaseTransport):
    def __init__(self, fetched: list[str]) -> None:
        self._fetched = fetched

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._fetched.append(request.url.path)
        async with httpx.AsyncHTTPTransport() as inner:
            response = await inner.handle_async_request(request)
            await response.aread()
        return response


def test_g1_discovery_is_cached_per_process(oidc: OidcProvider, mode: Mode) -> None:
    fetched: list[str] = []
    transport = Counting(fetched)
    options: dict[str, Any] = {
        "transport": transport,
        "async_transport": AsyncCounting(fetched),
    }

    def find(**extra: Any) -> usersession.Provider:
        if mode == "sync":
            return discover(oidc, **options, **extra)
        return asyncio.run(
            usersession.Provider.adiscover(
                oidc.issuer, oidc.client_id, oidc.client_secret, **options, **extra
            )
        )

    first, second = find(), find()
    assert fetched == ["/.well-known/openid-configuration"]
    assert first.device_authorization_endpoint == oidc.device_authorization_endpoint
    assert second.authorization_endpoint == oidc.authorization_endpoint
    find(cache=False)
    assert len(fetched) == 2
    transport.close()


# G2: the device flow


def run_device_login(
    mode: Mode, provider: usersession.Provider, clock: FakeClock | None, **options: Any
) -> usersession.User:
    if clock is not None:
        options.update(clock=clock)
    if mode == "sync":
        if clock is not None:
            options.update(sleep=clock.sleep)
        return usersession.device_login(provider, **options)
    if clock is not None:
        options.update(sleep=clock.asleep)
    return asyncio.run(usersession.adevice_login(provider, **options))


def test_g2_device_login_confirmed_over_http(oidc: OidcProvider, mode: Mode) -> None:
    """oidc-provider gives no interval, so the client waits 5 s (a fake 5 s
    here: the server does not enforce pacing) before its first poll."""
    shown: list[usersession.DeviceCode] = []

    def confirm(code: usersession.DeviceCode) -> None:
        shown.append(code)
        confirm_device(oidc, code.user_code)

    clock = FakeClock()
    user = run_device_login(
        mode, discover(oidc), clock, scope="openid offline_access", on_code=confirm
    )
    assert clock.sleeps == [5.0]
    assert shown[0].verification_uri == oidc.device_verification_uri
    assert shown[0].verification_uri_complete is not None
    assert user.tokens is not None and user.tokens.refresh_token is not None
    assert userinfo_status(user, oidc) == 200
    user.refresh()  # the device grant's refresh token works too
    assert oidc.stats()["grants"][DEVICE_GRANT] == 1


def test_g2_device_login_waits_while_pending(oidc: OidcProvider, mode: Mode) -> None:
    """The person confirms only after the first poll was answered
    authorization_pending."""
    codes: list[usersession.DeviceCode] = []
    clock = FakeClock()
    fake_sleep = clock.sleep

    def sleep_then_confirm(seconds: float) -> None:
        fake_sleep(seconds)
        if len(clock.sleeps) == 2:
            confirm_device(oidc, codes[0].user_code)

    async def asleep(seconds: float) -> None:
        sleep_then_confirm(seconds)

    provider = discover(oidc)
    if mode == "sync":
        user = usersession.device_login(
            provider,
            scope="openid",
            on_code=codes.append,
            sleep=sleep_then_confirm,
            clock=clock,
        )
    else:
        user = asyncio.run(
            usersession.adevice_login(
                provider,
                scope="openid",
                on_code=codes.append,
                sleep=asleep,
                clock=clock,
            )
        )
    assert user.is_logged_in
    stats = oidc.stats()
    assert stats["grant_errors"][DEVICE_GRANT] == {"authorization_pending": 1}
    assert stats["token_requests"][DEVICE_GRANT] == 2


def test_g2_device_login_denied(oidc: OidcProvider, mode: Mode) -> None:
    def deny(code: usersession.DeviceCode) -> None:
        confirm_device(oidc, code.user_code, approve=False)

    with pytest.raises(usersession.AccessDenied):
        run_device_login(mode, discover(oidc), FakeClock(), on_code=deny)


def test_c11_g2_real_time_device_login(oidc: OidcProvider) -> None:
    oidc.set_device_interval(1)
    started = time.monotonic()
    user = usersession.device_login(
        discover(oidc),
        scope="openid",
        on_code=lambda code: confirm_device(oidc, code.user_code),
    )
    assert 1.0 <= time.monotonic() - started < 3.0
    assert userinfo_status(user, oidc) == 200


# G3: authorization code, PKCE, loopback redirect


def run_browser_login(
    mode: Mode, provider: usersession.Provider, **options: Any
) -> usersession.User:
    options.setdefault("timeout", 15.0)
    options.setdefault("scope", "openid")  # oidc-provider denies a login without
    if mode == "sync":
        return usersession.browser_login(provider, **options)
    return asyncio.run(usersession.abrowser_login(provider, **options))


def test_g3_browser_login_completed_over_http(oidc: OidcProvider, mode: Mode) -> None:
    browser = FakeBrowser()
    user = run_browser_login(
        mode, discover(oidc), scope="openid offline_access", open_browser=browser
    )
    assert browser.callback is not None and browser.callback_status == 200
    # RFC 9207: oidc-provider names itself, and the client checked it.
    assert browser.callback.params["iss"] == oidc.issuer
    assert user.tokens is not None and user.tokens.id_token is not None
    assert userinfo_status(user, oidc) == 200
    assert oidc.stats()["grants"]["authorization_code"] == 1


def test_c12_g3_taken_port_against_oidc_provider(
    oidc: OidcProvider, mode: Mode
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        browser = FakeBrowser()
        user = run_browser_login(mode, discover(oidc), port=port, open_browser=browser)
    assert user.is_logged_in
    assert browser.callback is not None and browser.callback.port != port


def test_x1_logins_at_oidc_provider_log_no_secret(
    oidc: OidcProvider, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = SecretRecorder()
    provider = discover(
        oidc, transport=recorder.transport, async_transport=recorder.async_transport
    )
    users = [
        run_browser_login(mode, provider, open_browser=FakeBrowser()),
        run_device_login(
            mode,
            provider,
            FakeClock(),
            scope="openid offline_access",
            on_code=lambda code: confirm_device(oidc, code.user_code),
        ),
    ]
    for user in users:
        user.refresh()
    assert {"code", "code_verifier", "device_code"} <= {
        key for form in recorder.forms for key in form
    }
    assert leaks(caplog.records, recorder.secrets, *map(repr, users)) == []


# G4: client credentials


def test_g4_client_credentials_at_oidc_provider(oidc: OidcProvider, mode: Mode) -> None:
    provider = discover(oidc)
    if mode == "sync":
        user = usersession.client_credentials(provider)
    else:
        user = asyncio.run(usersession.aclient_credentials(provider))
    assert user.tokens is not None and user.tokens.refresh_token is None
    assert oidc.introspect(user.tokens.access_token)["active"] is True
    first = user.tokens.access_token
    renewed = user.refresh()  # repeats the grant: there is no refresh token
    assert renewed.access_token != first and renewed.refresh_token is None
    assert oidc.introspect(renewed.access_token)["active"] is True
    assert oidc.stats()["grants"]["client_credentials"] == 2

"""G3: the authorization code grant with PKCE S256 and a loopback redirect
(RFC 6749 4.1, RFC 7636, RFC 8252), and cases C12 and C13.

The person's browser is `FakeBrowser` (or, for speed, a plain httpx client
that follows redirects): it goes through the development server's
authorization endpoint and then calls the loopback redirect for real.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import usersession
from usersession._loopback import LoopbackReceiver, read_callback
from usersession._pkce import UNRESERVED, new_state, new_verifier, s256_challenge
from usersession.devserver import DevServer, Fault
from usersession.devserver._logins import redirect_uri_registered, s256_matches

from conftest import Mode
from login_helpers import FakeBrowser, SecretRecorder, leaks


def run_browser_login(
    mode: Mode, provider: usersession.Provider, **options: Any
) -> usersession.User:
    options.setdefault("timeout", 10.0)
    if mode == "sync":
        return usersession.browser_login(provider, **options)
    return asyncio.run(usersession.abrowser_login(provider, **options))


@pytest.fixture
def recorder() -> SecretRecorder:
    return SecretRecorder()


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A loopback port something else already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# C13: PKCE


def test_c13_rfc7636_appendix_b_vector() -> None:
    challenge = s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert len(challenge) == 43
    assert not set(challenge) & set("=+/")


def test_c13_generated_verifiers_are_43_to_128_unreserved_characters() -> None:
    verifiers = [new_verifier() for _ in range(500)]
    verifiers += [new_verifier(43), new_verifier(128)]
    assert len(set(verifiers)) == len(verifiers)
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= set(UNRESERVED)
        challenge = s256_challenge(verifier)
        assert len(challenge) == 43 and not set(challenge) & set("=+/")
    # Every character of the set is used, so none is special-cased.
    assert set("".join(verifiers)) == set(UNRESERVED)
    for length in (42, 129):
        with pytest.raises(ValueError, match="43 to 128"):
            new_verifier(length)
    assert new_state() != new_state()


def test_c13_dev_server_checks_s256_strictly() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert s256_matches(verifier, challenge)
    assert not s256_matches(verifier + "x", challenge)
    assert not s256_matches(verifier, challenge + "=")
    assert not s256_matches(verifier[:42], s256_challenge(verifier[:42]))  # short
    assert not s256_matches("é" * 43, challenge)  # outside the unreserved set
    for _ in range(1000):
        fresh = new_verifier()
        assert s256_matches(fresh, s256_challenge(fresh))


def test_c13_strict_fake_as_accepts_1000_logins_in_a_row(dev: DevServer) -> None:
    """1000 complete browser logins, each with a fresh verifier that the
    development server checks (S256, RFC 7636 4.6) before issuing tokens."""
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    started = time.perf_counter()
    with httpx.Client(follow_redirects=True) as browser:
        for _ in range(1000):
            user = usersession.browser_login(
                provider, open_browser=browser.get, timeout=10
            )
            assert user.is_logged_in
    elapsed = time.perf_counter() - started
    stats = dev.stats()
    assert stats.authorization_code_grants == 1000
    assert stats.token_requests == 1000
    assert elapsed < 60


# G3 and C12: the loopback redirect


def test_c12_g3_taken_port_is_replaced_and_named_everywhere(
    dev: DevServer, mode: Mode, occupied_port: int
) -> None:
    browser = FakeBrowser()
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    user = run_browser_login(mode, provider, port=occupied_port, open_browser=browser)

    assert user.is_logged_in
    assert browser.callback is not None and browser.callback_status == 200
    bound = browser.callback.port
    assert bound is not None and bound != occupied_port
    expected = f"http://127.0.0.1:{bound}/callback"
    assert dev.redirect_uris_seen() == [
        ("authorization", expected),
        ("token", expected),
    ]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(browser.urls[0]).query)
    assert query["redirect_uri"] == [expected]


def test_g3_free_preferred_port_is_used(dev: DevServer, mode: Mode) -> None:
    port = free_port()
    browser = FakeBrowser()
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    run_browser_login(mode, provider, port=port, open_browser=browser)
    assert dev.redirect_uris_seen()[-1] == (
        "token",
        f"http://127.0.0.1:{port}/callback",
    )


def test_g3_authorization_request_and_code_exchange(
    dev: DevServer, mode: Mode, recorder: SecretRecorder
) -> None:
    browser = FakeBrowser()
    store = usersession.MemoryStore()
    provider = recorder.provider(dev)
    user = run_browser_login(
        mode, provider, scope="openid api", store=store, open_browser=browser
    )

    url = urllib.parse.urlsplit(browser.urls[0])
    assert f"{url.scheme}://{url.netloc}{url.path}" == dev.authorization_endpoint
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query["response_type"] == "code"
    assert query["client_id"] == dev.client_id
    assert query["scope"] == "openid api"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32
    exchange = recorder.forms[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == query["redirect_uri"]
    assert s256_challenge(exchange["code_verifier"]) == query["code_challenge"]
    assert "code_verifier" not in query

    assert user.provider is provider and store.load() == user.tokens
    assert "Logged in" in browser.callback_page
    with usersession.Client(user) as client:
        assert client.get(f"{dev.api_url}/me").json()["sub"] == "alice"


def test_c12_g3_wrong_state_is_rejected_at_once(dev: DevServer, mode: Mode) -> None:
    dev.login_settings.state_override = "forged-state"
    browser = FakeBrowser()
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    started = time.monotonic()
    with pytest.raises(usersession.LoginError, match="state does not match"):
        run_browser_login(mode, provider, open_browser=browser, timeout=30)
    assert time.monotonic() - started < 5  # no waiting for the timeout
    assert browser.callback_status == 400 and "Login failed" in browser.callback_page
    assert dev.stats().token_requests == 0  # the code was never redeemed


def test_g3_iss_is_checked_when_present(dev: DevServer, mode: Mode) -> None:
    """RFC 9207: a redirect naming another issuer is a mix-up; a missing iss
    is refused when the server advertises that it always sends one, and
    accepted from a server that does not."""
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    assert provider.require_iss
    dev.login_settings.iss_override = "https://attacker.example"
    with pytest.raises(usersession.LoginError, match="another issuer"):
        run_browser_login(mode, provider, open_browser=FakeBrowser())
    dev.login_settings.iss_override = ""  # no iss at all
    with pytest.raises(usersession.LoginError, match="carries no issuer"):
        run_browser_login(mode, provider, open_browser=FakeBrowser())
    silent = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret, cache=False, require_iss=False
    )
    browser = FakeBrowser()
    assert run_browser_login(mode, silent, open_browser=browser).is_logged_in
    assert browser.callback is not None and "iss" not in browser.callback.params
    assert dev.stats().token_requests == 1


def test_g3_denied_login_is_access_denied(dev: DevServer, mode: Mode) -> None:
    dev.login_settings.approve = False
    browser = FakeBrowser()
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    with pytest.raises(usersession.AccessDenied) as caught:
        run_browser_login(mode, provider, open_browser=browser)
    assert caught.value.error == "access_denied"
    assert browser.callback_status == 400


def test_g3_wait_is_bounded(dev: DevServer, mode: Mode) -> None:
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    started = time.monotonic()
    with pytest.raises(usersession.LoginTimedOut, match=r"within 0\.3 s"):
        run_browser_login(mode, provider, open_browser=lambda url: None, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3


def test_g3_refused_code_exchange(
    dev: DevServer, mode: Mode, recorder: SecretRecorder
) -> None:
    dev.inject("token", Fault.oauth_error("invalid_grant", 400, "code expired"))
    with pytest.raises(usersession.LoginError) as caught:
        run_browser_login(mode, recorder.provider(dev), open_browser=FakeBrowser())
    assert type(caught.value) is usersession.LoginError
    assert (caught.value.error, caught.value.status_code) == ("invalid_grant", 400)
    assert leaks([], recorder.secrets, str(caught.value), repr(caught.value)) == []


def test_g3_shows_the_url_when_no_browser_is_opened(
    dev: DevServer, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    shown: list[str] = []
    with pytest.raises(usersession.LoginTimedOut):
        usersession.browser_login(
            provider, open_browser=False, on_url=shown.append, timeout=0.05
        )
    assert len(shown) == 1 and shown[0].startswith(dev.authorization_endpoint)
    with pytest.raises(usersession.LoginTimedOut):
        usersession.browser_login(provider, open_browser=False, timeout=0.05)
    assert dev.authorization_endpoint in capsys.readouterr().err


def test_g3_provider_without_authorization_endpoint(mode: Mode) -> None:
    provider = usersession.Provider("https://as.example/token", "c", "s")
    with pytest.raises(usersession.LoginError, match="authorization_endpoint"):
        run_browser_login(mode, provider, open_browser=FakeBrowser())


def test_x1_browser_login_logs_no_secret(
    dev: DevServer,
    mode: Mode,
    recorder: SecretRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = run_browser_login(mode, recorder.provider(dev), open_browser=FakeBrowser())
    forms = recorder.forms[-1]
    assert {"code", "code_verifier"} <= set(forms)
    assert {forms["code"], forms["code_verifier"]} <= recorder.secrets
    assert any(r.name == "usersession" for r in caplog.records)
    assert leaks(caplog.records, recorder.secrets, repr(user), str(user)) == []


# The loopback receiver on its own


def _callback(
    receiver: LoopbackReceiver, query: str = "", path: str = "/callback"
) -> int:
    with httpx.Client() as client:
        status: int = client.get(
            f"http://127.0.0.1:{receiver.port}{path}?{query}"
        ).status_code
    return status


def test_g3_receiver_answers_one_callback_only() -> None:
    check: Callable[[Any], str] = lambda params: read_callback(  # noqa: E731
        params, state="s1", issuer="https://as.example"
    )
    with LoopbackReceiver(0, check) as receiver:
        assert receiver.redirect_uri == f"http://127.0.0.1:{receiver.port}/callback"
        assert _callback(receiver, "code=c&state=s1", path="/favicon.ico") == 404
        with httpx.Client() as client:
            assert client.post(receiver.redirect_uri).status_code == 405
        assert receiver.wait(0) is None  # nothing valid came yet
        assert (
            _callback(receiver, "code=c1&state=s1&iss=https%3A%2F%2Fas.example") == 200
        )
        assert _callback(receiver, "code=c2&state=s1") == 409
        assert receiver.wait(1) == "c1"
    with pytest.raises(httpx.ConnectError):
        _callback(receiver, "code=c3&state=s1")  # closed


def test_g3_receiver_wakes_an_async_waiter_on_close() -> None:
    receiver = LoopbackReceiver(0, lambda params: "never")

    async def wait() -> object:
        return await receiver.wait_async(30)

    threading.Timer(0.1, receiver.close).start()
    started = time.monotonic()
    assert asyncio.run(wait()) is None
    assert time.monotonic() - started < 5


def test_g3_read_callback_checks_state_iss_and_errors() -> None:
    def read(**params: str) -> str:
        return read_callback(params, state="good", issuer="https://as.example")

    assert read(state="good", code="c") == "c"
    assert read(state="good", code="c", iss="https://as.example") == "c"
    for bad in ({}, {"code": "c"}, {"state": "bad", "code": "c"}):
        with pytest.raises(usersession.LoginError, match="state"):
            read(**bad)
    with pytest.raises(usersession.LoginError, match="another issuer"):
        read(state="good", code="c", iss="https://other.example")
    with pytest.raises(usersession.LoginError, match="no authorization code"):
        read(state="good")
    with pytest.raises(usersession.AccessDenied) as denied:
        read(state="good", error="access_denied", error_description="no\nthanks")
    assert denied.value.description == "no thanks"
    with pytest.raises(usersession.LoginError) as odd:
        read(state="good", error="\x1b[31mred")
    assert odd.value.error == "invalid_error_code"
    # Without a known issuer there is nothing to compare iss with.
    assert read_callback(
        {"state": "s", "code": "c", "iss": "x"}, state="s", issuer=None
    )


def test_g3_repeated_parameters_are_refused() -> None:
    with LoopbackReceiver(
        0, lambda params: read_callback(params, state="s", issuer=None)
    ) as receiver:
        assert _callback(receiver, "state=s&code=a&code=b") == 400
        outcome = receiver.wait(1)
    assert isinstance(outcome, usersession.LoginError)
    assert "repeats the parameter 'code'" in str(outcome)


# The development server's authorization endpoint


def _authorize(dev: DevServer, http: httpx.Client, **params: str) -> httpx.Response:
    return http.get(dev.authorization_endpoint, params=params)


def _good_params(dev: DevServer, verifier: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": dev.client_id,
        "redirect_uri": "http://127.0.0.1:5555/callback",
        "state": "st",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
    }


def test_g3_dev_server_never_redirects_to_unregistered_uris(dev: DevServer) -> None:
    verifier = new_verifier()
    with httpx.Client() as http:
        for change in (
            {"client_id": "nobody"},
            {"redirect_uri": "http://evil.example/callback"},
            {"redirect_uri": "http://127.0.0.1:5555/other"},
            {"redirect_uri": "http://127.0.0.1:5555/callback#frag"},
        ):
            answer = _authorize(dev, http, **{**_good_params(dev, verifier), **change})
            assert answer.status_code == 400 and "location" not in answer.headers
    assert redirect_uri_registered("http://[::1]:1/callback", ["http://[::1]/callback"])
    assert redirect_uri_registered(
        "http://localhost:80/callback", ["http://localhost/callback"]
    )
    assert not redirect_uri_registered(
        "http://127.0.0.1:x/callback", ["http://127.0.0.1/callback"]
    )
    assert not redirect_uri_registered(
        "https://127.0.0.1:9/callback", ["http://127.0.0.1/callback"]
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "bad\\scope"}, "invalid_scope"),
    ],
)
def test_g3_dev_server_requires_pkce_s256(
    dev: DevServer, change: dict[str, str | None], error: str
) -> None:
    params = {**_good_params(dev, new_verifier()), **change}
    with httpx.Client() as http:
        answer = _authorize(
            dev, http, **{k: v for k, v in params.items() if v is not None}
        )
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert location.params["error"] == error
    assert location.params["state"] == "st" and location.params["iss"] == dev.issuer


def test_g3_dev_server_codes_are_checked_and_single_use(dev: DevServer) -> None:
    verifier = new_verifier()
    params = _good_params(dev, verifier)
    auth = (dev.client_id, dev.client_secret)

    def exchange(http: httpx.Client, code: str, **change: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params["redirect_uri"],
            "code_verifier": verifier,
            **change,
        }
        return http.post(dev.token_endpoint, data=form, auth=auth)

    with httpx.Client() as http:
        code = httpx.URL(_authorize(dev, http, **params).headers["location"]).params[
            "code"
        ]
        assert (
            exchange(http, code, code_verifier=new_verifier()).json()["error"]
            == "invalid_grant"
        )
        other_port = "http://127.0.0.1:5556/callback"
        assert (
            exchange(http, code, redirect_uri=other_port).json()["error"]
            == "invalid_grant"
        )
        first = exchange(http, code)
        assert first.status_code == 200
        tokens = first.json()
        assert {"access_token", "refresh_token", "id_token"} <= set(tokens)
        # RFC 6749 4.1.2: a code used twice revokes the tokens it gave.
        assert exchange(http, code).json()["error"] == "invalid_grant"
        me = http.get(
            f"{dev.api_url}/me",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert me.status_code == 401
        public = http.post(
            dev.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": params["redirect_uri"],
                "code_verifier": verifier,
                "client_id": dev.public_client_id,
            },
        )
        assert public.json()["error"] == "invalid_grant"  # another client's code


def test_g3_dev_server_codes_are_short_lived() -> None:
    now = [1_000_000.0]
    with DevServer(clock=lambda: now[0]) as dev, httpx.Client() as http:
        verifier = new_verifier()
        params = _good_params(dev, verifier)
        location = _authorize(dev, http, **params).headers["location"]
        now[0] += dev.login_settings.code_lifetime
        answer = http.post(
            dev.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": httpx.URL(location).params["code"],
                "redirect_uri": params["redirect_uri"],
                "code_verifier": verifier,
            },
            auth=(dev.client_id, dev.client_secret),
        )
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "code expired",
    }


def test_g3_dev_server_metadata_lists_the_authorization_endpoint(
    dev: DevServer,
) -> None:
    metadata = dev.metadata()
    assert metadata["authorization_endpoint"] == dev.authorization_endpoint
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "authorization_code" in metadata["grant_types_supported"]


def test_g3_dev_server_custom_redirect_uris(dev: DevServer, mode: Mode) -> None:
    dev.add_client("cli", None, redirect_uris=["http://127.0.0.1/cb"])
    provider = usersession.Provider.discover(
        dev.issuer, "cli", token_endpoint_auth_method="none"
    )
    browser = FakeBrowser()
    with pytest.raises(AssertionError, match="not a redirect"):
        run_browser_login(mode, provider, open_browser=browser, timeout=0.5)

"""X1: no token, secret or verifier in any log record, repr, str or error."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault

from conftest import fire, provider_for, send


def test_x1_debug_logging_over_a_whole_scenario_shows_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """X1: DEBUG logging on every logger through refreshes, a refusal, an
    unavailable refresh, a loop-guard warning and logout: no record, repr,
    str or error message holds any token or the client secret."""
    secrets: set[str] = set()
    texts: list[str] = []

    def remember(user: usersession.User) -> None:
        tokens = user.tokens
        if tokens is not None:
            secrets.update(
                t
                for t in (tokens.access_token, tokens.refresh_token, tokens.id_token)
                if t
            )

    def note_error(error: BaseException) -> None:
        texts.extend([str(error), repr(error)])
        for name in ("body_excerpt", "description"):
            value = getattr(error, name, None)
            if value:
                texts.append(str(value))

    with caplog.at_level(logging.DEBUG), DevServer(access_token_lifetime=3600.0) as dev:
        secrets.add(dev.client_secret)
        provider = provider_for(dev)
        user = usersession.User(provider, usersession.Tokens.from_response(dev.login()))
        remember(user)
        texts.extend([repr(provider), repr(user), repr(user.tokens), str(user.tokens)])
        texts.append(repr(user.store))

        # Refresh after a rejection, with concurrent waiters, sync and async.
        assert user.tokens is not None
        for mode in ("sync", "async"):
            dev.revoke_access_token(user.tokens.access_token)
            dev.inject("token", Fault.delay(0.1))
            fire(user, mode, 5, f"{dev.api_url}/me")
            remember(user)

        # Refresh unavailable: a 502 whose body echoes the refresh token.
        dev.revoke_access_token(user.tokens.access_token)
        echoed = f"<html>bad gateway for {user.tokens.refresh_token}</html>"
        dev.inject("token", Fault.status(502, echoed, "text/html"))
        with pytest.raises(usersession.RefreshUnavailable) as unavailable:
            send(user, "sync", "GET", f"{dev.api_url}/me")
        note_error(unavailable.value)

        # Loop guard.
        looping = usersession.User(
            provider, usersession.Tokens.from_response(dev.login()), refresh_limit=1
        )
        remember(looping)
        dev.inject("api", Fault.oauth_error("invalid_token", status=401), times=3)
        send(looping, "sync", "GET", f"{dev.api_url}/me")
        remember(looping)
        send(looping, "sync", "GET", f"{dev.api_url}/me")

        # Refused for good, with a description quoting the refresh token.
        dev.inject(
            "token",
            Fault.oauth_error(
                "invalid_grant", description=f"token {user.tokens.refresh_token} spent"
            ),
        )
        with pytest.raises(usersession.UserRefreshFailed) as refused:
            send(user, "sync", "GET", f"{dev.api_url}/me")
        note_error(refused.value)
        with pytest.raises(usersession.InvalidUser) as invalid:
            send(user, "sync", "GET", f"{dev.api_url}/me")
        note_error(invalid.value)

        # Logout with a failing revocation, sync and async.
        dev.inject("revocation", Fault.status(503, "down"), times=None)
        looping.logout()
        other = usersession.User(
            provider, usersession.Tokens.from_response(dev.login())
        )
        remember(other)
        asyncio.run(other.alogout())

        # Insecure transport.
        fresh = usersession.User(
            provider, usersession.Tokens.from_response(dev.login())
        )
        remember(fresh)
        with (
            usersession.Client(fresh) as client,
            pytest.raises(usersession.InsecureTransport) as insecure,
        ):
            client.get("http://api.example/data")
        note_error(insecure.value)

    records = caplog.records
    assert any(r.levelno == logging.DEBUG and r.name == "usersession" for r in records)
    assert any(r.name.startswith("httpx") for r in records)
    texts.extend(r.getMessage() for r in records)
    texts.extend(caplog.text.splitlines())
    assert len(secrets) >= 10
    leaks = [(s, t) for s in secrets for t in texts if s in t]
    assert leaks == []


def test_x1_provider_repr_hides_the_client_secret() -> None:
    provider = usersession.Provider("https://as.example/token", "cid", "hunter22")
    assert "hunter22" not in repr(provider)
    assert "hunter22" not in str(provider)


def test_x1_user_repr_hides_tokens() -> None:
    provider = usersession.Provider("https://as.example/token", "cid", "s3cr3t-value")
    user = usersession.User(provider, usersession.Tokens("access-xyz", "refresh-xyz"))
    for text in (repr(user), str(user), repr(usersession.UserAuth(user))):
        assert "access-xyz" not in text
        assert "refresh-xyz" not in text


def test_x1_request_errors_do_not_echo_the_authorization_header() -> None:
    """httpx errors raised through the auth flow carry the request; its
    repr shows no header."""
    provider = usersession.Provider("https://as.example/token", "cid", "s")
    user = usersession.User(provider, usersession.Tokens("access-abc", "refresh-abc"))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        usersession.Client(user, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.get("https://api.example/")
    assert "access-abc" not in str(caught.value)
    assert "access-abc" not in repr(caught.value.request)


def test_x1_a_password_in_the_url_never_reaches_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """X1: the debug line about a 401 names the request by method and URL
    without its user info, query or fragment, on every library's wire."""
    import requests

    from usersession.requests import _WIRE as requests_wire

    url = "https://me:pw-in-url@api.example/items?key=query-secret#frag"

    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"})

    provider = usersession.Provider("https://as.example/token", "c", "s")
    user = usersession.User(provider, usersession.Tokens("at-secret"))
    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(reject)
    with (
        usersession.Client(user, transport=transport) as client,
        pytest.raises(usersession.UserRefreshFailed),
    ):
        client.get(url)
    prepared = requests.Request("GET", url).prepare()
    # httpx logs the URL it was given at INFO itself; this is about ours.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("usersession")]
    lines.append(requests_wire.describe(prepared))
    assert any("GET https://api.example/items" in line for line in lines)
    for line in lines:
        for secret in ("pw-in-url", "query-secret", "frag", "at-secret"):
            assert secret not in line, line

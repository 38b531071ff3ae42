"""The adapters for requests, aiohttp and httpx2: names, extras, set-up errors.

How they behave is pinned by the conformance suite (test_conformance.py),
which runs the same tests against every edge; this file covers what is
particular to each adapter.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import aiohttp
import httpx2
import pytest
import requests

import usersession
import usersession.aiohttp
import usersession.httpx2
import usersession.requests
from usersession.devserver import DevServer, token_hash

from conftest import login


def test_adapter_names() -> None:
    assert sorted(usersession.requests.__all__) == ["NO_TOKEN", "Session", "UserAuth"]
    assert sorted(usersession.aiohttp.__all__) == ["UserMiddleware", "client_session"]
    assert sorted(usersession.httpx2.__all__) == ["AsyncClient", "Client", "UserAuth"]
    assert issubclass(usersession.requests.Session, requests.Session)
    assert issubclass(usersession.requests.UserAuth, requests.auth.AuthBase)
    assert issubclass(usersession.httpx2.Client, httpx2.Client)
    assert issubclass(usersession.httpx2.AsyncClient, httpx2.AsyncClient)
    assert issubclass(usersession.httpx2.UserAuth, httpx2.Auth)


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("usersession.requests", "requests", "requests"),
        ("usersession.aiohttp", "aiohttp", "aiohttp"),
        ("usersession.httpx2", "httpx2", "httpx2"),
    ],
)
def test_an_adapter_without_its_extra_says_what_to_install(
    module: str, package: str, extra: str
) -> None:
    """usersession imports and works without the extra; the adapter's import
    fails with an ImportError naming the extra to install."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{package!r}] = None  # as if it were not installed
        import usersession
        assert usersession.Client and usersession.AsyncClient
        try:
            import {module}
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without its extra")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'usersession[{extra}]'" in done.stdout


def test_userauth_on_a_plain_requests_session(dev: DevServer) -> None:
    """An existing requests.Session gets the behaviour from UserAuth alone:
    a rejected token is refreshed once and the request resent."""
    user = login(dev)
    first = user.tokens
    assert first is not None
    dev.revoke_access_token(first.access_token)
    with requests.Session() as session:
        session.auth = usersession.requests.UserAuth(user)
        response = session.get(f"{dev.api_url}/me", timeout=30)
    assert response.status_code == 200
    assert [hop.status_code for hop in response.history] == [401]
    assert dev.stats().token_requests == 1
    second = user.tokens
    assert second is not None and second.access_token != first.access_token
    assert [s.token_hash for s in dev.api_seen()] == [
        token_hash(first.access_token),
        token_hash(second.access_token),
    ]


def test_aiohttp_middleware_without_its_trace_config_refuses_before_sending(
    dev: DevServer,
) -> None:
    """Without the trace config the middleware cannot tell a redirect hop
    from a new request, so it refuses rather than risk sending the token to
    another origin; nothing reaches the server."""
    user = login(dev)
    middleware = usersession.aiohttp.UserMiddleware(user)

    async def go() -> None:
        async with aiohttp.ClientSession(middlewares=[middleware]) as session:
            with pytest.raises(RuntimeError, match="trace_configs"):
                await session.get(f"{dev.api_url}/me")

    asyncio.run(go())
    assert dev.api_seen() == []


def test_aiohttp_middleware_with_its_trace_config_on_a_session_of_your_own(
    dev: DevServer,
) -> None:
    user = login(dev)
    middleware = usersession.aiohttp.UserMiddleware(user)

    async def go() -> int:
        async with (
            aiohttp.ClientSession(
                middlewares=[middleware], trace_configs=[middleware.trace_config]
            ) as session,
            session.get(f"{dev.api_url}/me") as response,
        ):
            return response.status

    assert asyncio.run(go()) == 200
    assert [s.has_authorization for s in dev.api_seen()] == [True]


def test_adapter_reprs_name_the_user_not_the_token(dev: DevServer) -> None:
    user = login(dev)
    tokens = user.tokens
    assert tokens is not None
    with usersession.requests.Session(user) as session:
        objects: list[object] = [
            usersession.requests.UserAuth(user),
            session,
            usersession.requests.NO_TOKEN,
            usersession.aiohttp.UserMiddleware(user),
            usersession.httpx2.UserAuth(user),
        ]
        for thing in objects:
            text = repr(thing) + str(thing)
            assert "usersession" in text
            for secret in (
                tokens.access_token,
                tokens.refresh_token,
                dev.client_secret,
            ):
                assert secret is not None and secret not in text

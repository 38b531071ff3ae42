"""Shared fixtures: a real development server, users on it, and concurrent firing.

Tests that exist in a sync and an async form take the `mode` fixture and use
`fire`, which sends requests from threads (sync) or from asyncio tasks on one
event loop (async), all released at the same moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest

import usersession
from usersession._provider import _discovery_cache
from usersession.devserver import DevServer

Mode = Literal["sync", "async"]
Outcome = httpx.Response | BaseException


@pytest.fixture(autouse=True)
def _fresh_discovery_cache() -> Iterator[None]:
    """Each test discovers anew: a later test's server may reuse a port, and
    so an issuer, that an earlier test's server had."""
    _discovery_cache.clear()
    yield
    _discovery_cache.clear()


@pytest.fixture
def dev() -> Iterator[DevServer]:
    """A development server whose access tokens live an hour."""
    with DevServer(access_token_lifetime=3600.0) as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Run the test once with threads and once with asyncio tasks."""
    value: Mode = request.param
    return value


def provider_for(dev: DevServer, **options: Any) -> usersession.Provider:
    return usersession.Provider(
        dev.token_endpoint,
        dev.client_id,
        dev.client_secret,
        revocation_endpoint=dev.revocation_endpoint,
        introspection_endpoint=dev.introspection_endpoint,
        issuer=dev.issuer,
        **options,
    )


def login(dev: DevServer, **user_options: Any) -> usersession.User:
    """A user freshly logged in at `dev`."""
    tokens = usersession.Tokens.from_response(dev.login())
    return usersession.User(provider_for(dev), tokens, **user_options)


def fire(
    user: usersession.User,
    mode: Mode,
    n: int,
    url: str,
    *,
    method: str = "GET",
    clients: int = 1,
    **request_options: Any,
) -> list[Outcome]:
    """Send `n` requests at once for `user`; return each response or error.

    `clients` spreads the requests over that many separate client objects.
    """
    if mode == "sync":
        return _fire_threads(user, n, url, method, clients, request_options)
    return asyncio.run(_fire_tasks(user, n, url, method, clients, request_options))


def _fire_threads(
    user: usersession.User,
    n: int,
    url: str,
    method: str,
    clients: int,
    options: dict[str, Any],
) -> list[Outcome]:
    pool = [usersession.Client(user, timeout=30) for _ in range(clients)]
    results: list[Outcome | None] = [None] * n
    barrier = threading.Barrier(n)

    def one(index: int) -> None:
        barrier.wait()
        try:
            results[index] = pool[index % clients].request(method, url, **options)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in pool:
        client.close()
    assert all(result is not None for result in results), "a request never finished"
    return [result for result in results if result is not None]


async def _fire_tasks(
    user: usersession.User,
    n: int,
    url: str,
    method: str,
    clients: int,
    options: dict[str, Any],
) -> list[Outcome]:
    pool = [usersession.AsyncClient(user, timeout=30) for _ in range(clients)]
    try:
        return list(
            await asyncio.gather(
                *(pool[i % clients].request(method, url, **options) for i in range(n)),
                return_exceptions=True,
            )
        )
    finally:
        for client in pool:
            await client.aclose()


def send(
    user: usersession.User, mode: Mode, method: str, url: str, **options: Any
) -> httpx.Response:
    """One request, sync or async, with a fresh client."""
    if mode == "sync":
        with usersession.Client(user, timeout=30) as client:
            return client.request(method, url, **options)

    async def go() -> httpx.Response:
        async with usersession.AsyncClient(user, timeout=30) as client:
            return await client.request(method, url, **options)

    return asyncio.run(go())


def statuses(outcomes: list[Outcome]) -> list[int | str]:
    """Each outcome as its status code, or its error's class name."""
    return [
        o.status_code if isinstance(o, httpx.Response) else type(o).__name__
        for o in outcomes
    ]


def count(outcomes: list[Outcome], kind: int | type[BaseException]) -> int:
    if isinstance(kind, int):
        return sum(
            isinstance(o, httpx.Response) and o.status_code == kind for o in outcomes
        )
    return sum(isinstance(o, kind) for o in outcomes)

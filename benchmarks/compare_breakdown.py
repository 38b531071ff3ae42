"""Where usersession's time per request goes.

Two views, both with a valid token (nothing to refresh):

- `ladders`: for each base library, clients that add one piece of
  usersession's way of hooking in at a time (an auth that only sets the
  header, a no-op hook, a no-op middleware, a no-op trace config), then
  usersession itself, each measured like the overhead runs (sequential
  blocks interleaved with the bare client). What the no-op pieces cost is
  the price of the library's extension points; the rest is usersession's.
- `steps`: each step of usersession's per-request path on httpx, timed
  alone with timeit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from compare_overhead import Measured, measure_async, measure_sync

__all__ = ["ladders", "steps"]


# -- Clients with one piece more at a time ------------------------------------


class _Get:
    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str) -> int:
        status: int = self.client.get(url).status_code
        return status

    def close(self) -> None:
        self.client.close()


class _AGet:
    def __init__(self, session: Any) -> None:
        self.session = session

    async def get(self, url: str) -> int:
        async with self.session.get(url) as response:
            await response.read()
            status: int = response.status
            return status

    async def aclose(self) -> None:
        await self.session.close()


def _httpx_ladder(token: str, user: Any) -> list[tuple[str, Any]]:
    import httpx

    import usersession

    header = f"Bearer {token}"

    class HeaderAuth(httpx.Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            request.headers["Authorization"] = header
            yield request

    def noop(request: httpx.Request) -> None:
        pass

    return [
        ("an httpx.Auth that sets the header", lambda: httpx.Client(auth=HeaderAuth())),
        (
            "the same + a no-op request hook",
            lambda: httpx.Client(auth=HeaderAuth(), event_hooks={"request": [noop]}),
        ),
        (
            "usersession.UserAuth on an httpx.Client",
            lambda: httpx.Client(auth=usersession.UserAuth(user)),
        ),
        ("usersession.Client", lambda: usersession.Client(user)),
    ]


def _requests_ladder(token: str, user: Any) -> list[tuple[str, Any]]:
    import requests
    from peers.bare import requests_session

    import usersession.requests

    header = f"Bearer {token}"

    def noop(response: Any, **kwargs: Any) -> Any:
        return response

    class HookAuth:
        def __call__(self, request: Any) -> Any:
            request.headers["Authorization"] = header
            request.register_hook("response", noop)
            return request

    def hooked() -> Any:
        session = requests_session(requests.Session())
        session.auth = HookAuth()
        return session

    return [
        ("an auth that sets the header and adds a no-op response hook", hooked),
        (
            "usersession.requests.Session",
            lambda: requests_session(usersession.requests.Session(user)),
        ),
    ]


def _aiohttp_ladder(token: str, user: Any) -> list[tuple[str, Any]]:
    import aiohttp

    import usersession.aiohttp

    header = f"Bearer {token}"

    async def middleware(request: Any, handler: Any) -> Any:
        request.headers["Authorization"] = header
        return await handler(request)

    async def nothing(session: Any, context: Any, params: Any) -> None:
        pass

    def traced() -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(nothing)
        config.on_request_redirect.append(nothing)
        config.on_request_end.append(nothing)
        config.on_request_exception.append(nothing)
        return config

    return [
        (
            "a middleware that sets the header",
            lambda: aiohttp.ClientSession(middlewares=(middleware,)),
        ),
        (
            "a default header + a no-op trace config (4 signals)",
            lambda: aiohttp.ClientSession(
                headers={"Authorization": header}, trace_configs=[traced()]
            ),
        ),
        (
            "the middleware + the no-op trace config",
            lambda: aiohttp.ClientSession(
                middlewares=(middleware,), trace_configs=[traced()]
            ),
        ),
        (
            "usersession.aiohttp.client_session",
            lambda: usersession.aiohttp.client_session(user),
        ),
    ]


def ladders(
    server: Any, login: Callable[[], dict[str, Any]], fast: Any, rounds: int
) -> list[tuple[str, str, Measured]]:
    """(base, variant, measured) for every rung of every ladder."""
    import asyncio

    from peers.bare import make_bare
    from peers.ours import user_for

    payload = login()
    token = payload["access_token"]
    fast.allow(token)
    url = f"{fast.url}/me"
    found: list[tuple[str, str, Measured]] = []
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        for base, ladder in (("httpx", _httpx_ladder), ("requests", _requests_ladder)):
            for name, factory in ladder(token, user_for(server, payload)):
                measured = measure_sync(
                    lambda base=base: make_bare(base, "sync", token),
                    lambda factory=factory: _Get(factory()),
                    url,
                    pool,
                    rounds=rounds,
                    concurrent_rounds=0,
                )[0]
                found.append((base, name, measured))
    finally:
        pool.shutdown()

    async def aiohttp_rungs() -> None:
        for name, factory in _aiohttp_ladder(token, user_for(server, payload)):
            measured = (
                await measure_async(
                    lambda: make_bare("aiohttp", "async", token),
                    lambda factory=factory: _AGet(factory()),
                    url,
                    rounds=rounds,
                    concurrent_rounds=0,
                )
            )[0]
            found.append(("aiohttp", name, measured))

    asyncio.run(aiohttp_rungs())
    return found


# -- The steps of one request, alone ------------------------------------------


def steps() -> list[tuple[str, float]]:
    """Microseconds per call of each step of usersession's path on httpx
    (best of 5 x 20,000 calls)."""
    import timeit

    import httpx

    from usersession import Provider, Tokens, User, UserAuth
    from usersession._auth import _WIRE
    from usersession._httpx_family import strip_foreign_token
    from usersession._urls import check_transport, origin_of

    provider = Provider("http://127.0.0.1:9/token", "client", "secret")
    user = User(provider, Tokens("a" * 43, "r" * 43, expires_at=time.time() + 3600))
    auth = UserAuth(user)
    request = httpx.Request("GET", "http://127.0.0.1:8000/me")
    response = httpx.Response(200, request=request)
    target = origin_of(request.url)
    text_url = "http://127.0.0.1:8000/me"

    def whole(flow_of: Callable[[httpx.Request], Any]) -> Callable[[], None]:
        def run() -> None:
            flow = flow_of(request)
            next(flow)
            with contextlib.suppress(StopIteration):
                flow.send(response)

        return run

    def timed(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=20000, repeat=5)) / 20000 * 1e6

    return [
        (
            "whole UserAuth flow (request out, 200 back)",
            timed(whole(auth.sync_auth_flow)),
        ),
        (
            "httpx's own no-auth flow, for comparison",
            timed(whole(httpx.Auth().sync_auth_flow)),
        ),
        (
            "check_transport(url) (S4: https, or a loopback host)",
            timed(lambda: check_transport(request.url)),
        ),
        (
            "origin_of(url) (done twice per request)",
            timed(lambda: origin_of(request.url)),
        ),
        ("User._acquire() (lock, expiry check)", timed(user._acquire)),
        (
            "set the header and the origin extension",
            timed(lambda: _WIRE.authorize(request, "Bearer x", target)),
        ),
        ("body replay check", timed(lambda: _WIRE.replay(request))),
        ("redirect-guard request hook", timed(lambda: strip_foreign_token(request))),
        (
            "origin_of(url string) and check_transport(url string): the "
            "requests adapter's URLs are strings",
            timed(lambda: (origin_of(text_url), check_transport(text_url))),
        ),
    ]


# -- A profile of the difference ----------------------------------------------


def _by_function(profile: Any, requests: int) -> dict[tuple[str, str], float]:
    import pstats

    found: dict[tuple[str, str], float] = {}
    stats = pstats.Stats(profile)
    for (filename, line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.split("site-packages/")[-1].split("/src/")[-1]
        where = where.split("/lib/python3")[-1].lstrip("0123456789./")
        key = (f"{where}:{line}", name)
        found[key] = found.get(key, 0.0) + entry[2] / requests * 1e6
    return found


def _group(where: str) -> str | None:
    if where.startswith(("usersession/", "_user", "_bearer")):
        return "usersession"
    if "benchmarks/" in where:
        return None  # the harness's own wrappers, alike on both sides
    if where.startswith("ipaddress"):
        return "ipaddress (S4 host check)"
    if "_urlparse" in where or "/_urls.py" in where:
        return "httpx.URL parsing"
    if where.startswith("~"):
        return "built-ins and socket calls"
    return "the base library and the rest"


def _rank(
    bare: dict[tuple[str, str], float], lib: dict[tuple[str, str], float], top: int
) -> dict[str, list[tuple[str, float, float]]]:
    """Growth per request grouped by where it happens, and usersession's
    functions that grew most, each with its share of the total growth."""
    added = {k: lib.get(k, 0.0) - bare.get(k, 0.0) for k in set(bare) | set(lib)}
    groups: dict[str, float] = {}
    for (where, _), value in added.items():
        group = _group(where)
        if group is not None:
            groups[group] = groups.get(group, 0.0) + value
    total = sum(groups.values()) or 1.0
    ours = sorted(
        (
            (f"{name} ({where})", value)
            for (where, name), value in added.items()
            if _group(where) == "usersession"
        ),
        key=lambda item: item[1],
        reverse=True,
    )[:top]
    return {
        "groups": [
            (name, value, value / total)
            for name, value in sorted(groups.items(), key=lambda g: -g[1])
        ],
        "functions": [(name, value, value / total) for name, value in ours],
    }


def profile_sync(
    bare: Any, lib: Any, url: str, requests: int = 2000, top: int = 8
) -> dict[str, list[tuple[str, float, float]]]:
    """Functions whose own time grew most from `bare` to `lib`, per request
    (cProfile's inflated microseconds, and the share of all growth)."""
    import cProfile

    found = []
    for subject in (bare, lib):
        for _ in range(100):
            subject.get(url)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            subject.get(url)
        profile.disable()
        found.append(_by_function(profile, requests))
    return _rank(found[0], found[1], top)


async def profile_async(
    bare: Any, lib: Any, url: str, requests: int = 2000, top: int = 8
) -> dict[str, list[tuple[str, float, float]]]:
    """The same for async subjects."""
    import cProfile

    found = []
    for subject in (bare, lib):
        for _ in range(100):
            await subject.get(url)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            await subject.get(url)
        profile.disable()
        found.append(_by_function(profile, requests))
    return _rank(found[0], found[1], top)


# -- A control for an event-loop artefact -------------------------------------


class _LockFirst:
    """Bare httpx2.AsyncClient, entering an uncontended anyio.Lock before
    each request, as Authlib's AsyncOAuth2Client does (ensure_active_token)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock: Any = None

    async def get(self, url: str) -> int:
        import anyio

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            pass
        response = await self._client.get(url)
        status: int = response.status_code
        return status

    async def aclose(self) -> None:
        await self._client.aclose()


def anyio_control(
    login: Callable[[], dict[str, Any]], fast: Any, rounds: int
) -> list[Measured]:
    """Bare httpx2.AsyncClient with and without an anyio.Lock entered before
    each request: sequential and 100 tasks."""
    import asyncio

    import httpx2
    from peers.bare import make_bare

    payload = login()
    token = payload["access_token"]
    fast.allow(token)
    headers = {"Authorization": f"Bearer {token}"}

    async def run() -> list[Measured]:
        return await measure_async(
            lambda: make_bare("httpx2", "async", token),
            lambda: _LockFirst(httpx2.AsyncClient(headers=headers, timeout=30)),
            f"{fast.url}/me",
            rounds=rounds,
            concurrent_rounds=rounds,
        )

    return asyncio.run(run())

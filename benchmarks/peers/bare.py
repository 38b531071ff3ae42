"""The base HTTP libraries alone, sending a fixed ``Authorization`` header.

These are the denominators of the overhead ratios: the same client, pooled
and warm, with the token set once as a default header and nothing else.
"""

from __future__ import annotations

from typing import Any

from . import AsyncSubject, SyncSubject, achunks, chunks

__all__ = ["BASES", "make_bare"]


def requests_session(session: Any) -> Any:
    """Give a requests session a pool as large as the concurrency used
    (requests keeps 10 connections per host by default); applied alike to
    every requests-based subject and to bare requests."""
    import requests.adapters

    for prefix in ("http://", "https://"):
        session.mount(
            prefix, requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=128)
        )
    return session


class _FixedHeader:
    """A requests auth that sets one fixed Authorization header."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = self._value
        return request


class _FixedSync(SyncSubject):
    def __init__(self, client: Any, token: str) -> None:
        self._client = client
        self._token = token

    def get(self, url: str) -> int:
        status: int = self._client.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        status: int = self._client.post(url, content=chunks()).status_code
        return status

    def access_token(self) -> str | None:
        return self._token

    def refresh_token(self) -> str | None:
        return None

    def set_expiry(self, expires_at: float) -> None:
        pass

    def close(self) -> None:
        self._client.close()


class _FixedRequests(_FixedSync):
    def upload(self, url: str) -> int:
        status: int = self._client.post(url, data=chunks()).status_code
        return status


class _FixedAsync(AsyncSubject):
    def __init__(self, client: Any, token: str) -> None:
        self._client = client
        self._token = token

    async def get(self, url: str) -> int:
        response = await self._client.get(url)
        status: int = response.status_code
        return status

    async def upload(self, url: str) -> int:
        response = await self._client.post(url, content=achunks())
        status: int = response.status_code
        return status

    def access_token(self) -> str | None:
        return self._token

    def refresh_token(self) -> str | None:
        return None

    def set_expiry(self, expires_at: float) -> None:
        pass

    async def aclose(self) -> None:
        await self._client.aclose()


class _FixedAiohttp(AsyncSubject):
    def __init__(self, session: Any, token: str) -> None:
        self._session = session
        self._token = token

    async def get(self, url: str) -> int:
        async with self._session.get(url) as response:
            await response.read()
            status: int = response.status
            return status

    async def upload(self, url: str) -> int:
        async with self._session.post(url, data=achunks()) as response:
            await response.read()
            status: int = response.status
            return status

    def access_token(self) -> str | None:
        return self._token

    def refresh_token(self) -> str | None:
        return None

    def set_expiry(self, expires_at: float) -> None:
        pass

    async def aclose(self) -> None:
        await self._session.close()


def make_bare(base: str, mode: str, token: str) -> SyncSubject | AsyncSubject:
    """The base library `base` with a fixed bearer header (async subjects
    must be made inside the running event loop)."""
    headers = {"Authorization": f"Bearer {token}"}
    if base == "httpx" and mode == "sync":
        import httpx

        return _FixedSync(httpx.Client(headers=headers, timeout=30), token)
    if base == "httpx" and mode == "async":
        import httpx

        return _FixedAsync(httpx.AsyncClient(headers=headers, timeout=30), token)
    if base == "httpx2" and mode == "sync":
        import httpx2

        return _FixedSync(httpx2.Client(headers=headers, timeout=30), token)
    if base == "httpx2" and mode == "async":
        import httpx2

        return _FixedAsync(httpx2.AsyncClient(headers=headers, timeout=30), token)
    if base == "requests" and mode == "sync":
        import requests

        session = requests_session(requests.Session())
        # Set by an auth callable, as every library under test does: a
        # session without auth reads ~/.netrc on every request (requests'
        # trust_env), which any session with an auth skips.
        session.auth = _FixedHeader(headers["Authorization"])
        return _FixedRequests(session, token)
    if base == "aiohttp" and mode == "async":
        import aiohttp

        return _FixedAiohttp(
            aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ),
            token,
        )
    raise ValueError(f"no bare client for {base} ({mode})")


#: The base libraries, by name, with their mode(s).
BASES = {
    "httpx": ("sync", "async"),
    "httpx2": ("sync", "async"),
    "requests": ("sync",),
    "aiohttp": ("async",),
}

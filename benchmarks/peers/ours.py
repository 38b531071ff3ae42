"""usersession on each HTTP library it supports."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import AsyncSubject, Config, Server, SyncSubject, achunks, chunks
from .bare import requests_session

__all__ = ["configs", "provider_for", "user_for"]

SETUP = (
    "`User(provider, Tokens.from_response(login))` with its defaults (leeway "
    "30 s, capped at half the token's lifetime; refresh on 401; one refresh at "
    "a time per `User`), one `Provider(token_endpoint, client_id, "
    "client_secret)` per process as a program would keep it; nothing else to "
    "configure."
)

_providers: dict[Server, Any] = {}


def provider_for(server: Server) -> Any:
    """One `Provider` per server, shared by every user, as a program keeps
    one (it holds the TLS context its token requests use)."""
    from usersession import Provider

    if server not in _providers:
        _providers[server] = Provider(
            server.token_endpoint,
            server.client_id,
            server.client_secret,
            revocation_endpoint=server.revocation_endpoint,
            timeout=30.0,
        )
    return _providers[server]


def user_for(server: Server, payload: dict[str, Any]) -> Any:
    from usersession import Tokens, User

    return User(provider_for(server), Tokens.from_response(payload))


class _UserTokens:
    user: Any

    def access_token(self) -> str | None:
        tokens = self.user.tokens
        return None if tokens is None else str(tokens.access_token)

    def refresh_token(self) -> str | None:
        tokens = self.user.tokens
        return None if tokens is None else tokens.refresh_token

    def set_expiry(self, expires_at: float) -> None:
        tokens = self.user.tokens
        self.user.set_tokens(dataclasses.replace(tokens, expires_at=expires_at))


class _HttpxSync(_UserTokens, SyncSubject):
    def __init__(self, user: Any, client: Any) -> None:
        self.user = user
        self._client = client

    def get(self, url: str) -> int:
        status: int = self._client.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        status: int = self._client.post(url, content=chunks()).status_code
        return status

    def close(self) -> None:
        self._client.close()


class _RequestsSync(_HttpxSync):
    def upload(self, url: str) -> int:
        status: int = self._client.post(url, data=chunks()).status_code
        return status


class _HttpxAsync(_UserTokens, AsyncSubject):
    def __init__(self, user: Any, client: Any) -> None:
        self.user = user
        self._client = client

    async def get(self, url: str) -> int:
        response = await self._client.get(url)
        status: int = response.status_code
        return status

    async def upload(self, url: str) -> int:
        response = await self._client.post(url, content=achunks())
        status: int = response.status_code
        return status

    async def aclose(self) -> None:
        await self._client.aclose()


class _Aiohttp(_UserTokens, AsyncSubject):
    def __init__(self, user: Any, session: Any) -> None:
        self.user = user
        self._session = session

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

    async def aclose(self) -> None:
        await self._session.close()


def _httpx_sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    import usersession

    user = user_for(server, payload)
    return _HttpxSync(user, usersession.Client(user, timeout=30))


def _httpx_async(server: Server, payload: dict[str, Any]) -> AsyncSubject:
    import usersession

    user = user_for(server, payload)
    return _HttpxAsync(user, usersession.AsyncClient(user, timeout=30))


def _httpx2_sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    import usersession.httpx2

    user = user_for(server, payload)
    return _HttpxSync(user, usersession.httpx2.Client(user, timeout=30))


def _httpx2_async(server: Server, payload: dict[str, Any]) -> AsyncSubject:
    import usersession.httpx2

    user = user_for(server, payload)
    return _HttpxAsync(user, usersession.httpx2.AsyncClient(user, timeout=30))


def _requests_sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    import usersession.requests

    user = user_for(server, payload)
    return _RequestsSync(user, requests_session(usersession.requests.Session(user)))


def _aiohttp_async(server: Server, payload: dict[str, Any]) -> AsyncSubject:
    import aiohttp

    import usersession.aiohttp

    user = user_for(server, payload)
    session = usersession.aiohttp.client_session(
        user, timeout=aiohttp.ClientTimeout(total=30)
    )
    return _Aiohttp(user, session)


def configs() -> list[Config]:
    return [
        Config(
            "us-httpx",
            "usersession",
            "usersession.Client",
            "httpx",
            "sync",
            _httpx_sync,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
        Config(
            "us-requests",
            "usersession",
            "usersession.requests.Session",
            "requests",
            "sync",
            _requests_sync,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
        Config(
            "us-httpx2",
            "usersession",
            "usersession.httpx2.Client",
            "httpx2",
            "sync",
            _httpx2_sync,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
        Config(
            "us-httpx-async",
            "usersession",
            "usersession.AsyncClient",
            "httpx",
            "async",
            _httpx_async,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
        Config(
            "us-httpx2-async",
            "usersession",
            "usersession.httpx2.AsyncClient",
            "httpx2",
            "async",
            _httpx2_async,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
        Config(
            "us-aiohttp",
            "usersession",
            "usersession.aiohttp.client_session",
            "aiohttp",
            "async",
            _aiohttp_async,
            SETUP,
            refreshes_on_401=True,
            ours=True,
        ),
    ]

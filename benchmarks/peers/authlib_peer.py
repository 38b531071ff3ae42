"""Authlib: its httpx integration (on httpx2 when installed) and its
requests integration, with automatic refresh of expired tokens."""

from __future__ import annotations

from typing import Any

from . import AsyncSubject, Config, Server, SyncSubject, achunks, chunks
from .bare import requests_session

__all__ = ["configs"]

SETUP = (
    "`OAuth2Client` / `AsyncOAuth2Client` (httpx integration) and "
    "`OAuth2Session` (requests integration) with `client_id`, "
    "`client_secret` (client_secret_basic, the default), `token_endpoint` "
    "(which turns on automatic refresh), `token=` the login's answer, an "
    "`update_token` callback that keeps the new token, and the default "
    "`leeway=60`. The async client serialises refreshes with its own lock "
    "(an anyio Lock in `ensure_active_token`); the sync clients take none. "
    "Authlib refreshes only tokens it believes expired; it never looks at a "
    "401. `AUTHLIB_INSECURE_TRANSPORT=1` lets it use the loopback http:// "
    "token endpoint."
)


class _Tokens:
    client: Any

    def access_token(self) -> str | None:
        token = self.client.token
        return None if not token else str(token.get("access_token"))

    def refresh_token(self) -> str | None:
        token = self.client.token
        return None if not token else token.get("refresh_token")

    def set_expiry(self, expires_at: float) -> None:
        self.client.token["expires_at"] = int(expires_at)


class _Sync(_Tokens, SyncSubject):
    def __init__(self, client: Any, body_keyword: str) -> None:
        self.client = client
        self._body = body_keyword

    def get(self, url: str) -> int:
        status: int = self.client.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        response = self.client.post(url, **{self._body: chunks()})
        status: int = response.status_code
        return status

    def close(self) -> None:
        self.client.close()


class _Async(_Tokens, AsyncSubject):
    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, url: str) -> int:
        response = await self.client.get(url)
        status: int = response.status_code
        return status

    async def upload(self, url: str) -> int:
        response = await self.client.post(url, content=achunks())
        status: int = response.status_code
        return status

    async def aclose(self) -> None:
        await self.client.aclose()


def _keep(token: Any, refresh_token: Any = None, access_token: Any = None) -> None:
    """The update_token callback: the client already holds the new token;
    a real program would save it here."""


async def _akeep(
    token: Any, refresh_token: Any = None, access_token: Any = None
) -> None:
    pass


def _httpx_sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    from authlib.integrations.httpx_client import OAuth2Client

    client = OAuth2Client(
        client_id=server.client_id,
        client_secret=server.client_secret,
        token_endpoint=server.token_endpoint,
        token=dict(payload),
        update_token=_keep,
        timeout=30,
    )
    return _Sync(client, "content")


def _httpx_async(server: Server, payload: dict[str, Any]) -> AsyncSubject:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client(
        client_id=server.client_id,
        client_secret=server.client_secret,
        token_endpoint=server.token_endpoint,
        token=dict(payload),
        update_token=_akeep,
        timeout=30,
    )
    return _Async(client)


def _requests_sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(
        client_id=server.client_id,
        client_secret=server.client_secret,
        token_endpoint=server.token_endpoint,
        token=dict(payload),
        update_token=_keep,
    )
    return _Sync(requests_session(session), "data")


def _httpx_base() -> str:
    # Authlib's httpx integration runs on httpx2 when it is installed (and
    # on legacy httpx, deprecated, otherwise); the overhead is measured
    # against whichever it uses.
    from authlib.integrations.httpx_client import _compat

    return str(_compat.httpx2.__name__)


def configs() -> list[Config]:
    base = _httpx_base()
    return [
        Config(
            "authlib-httpx",
            "authlib",
            f"Authlib OAuth2Client ({base})",
            base,
            "sync",
            _httpx_sync,
            SETUP,
            refreshes_on_401=False,
        ),
        Config(
            "authlib-requests",
            "authlib",
            "Authlib OAuth2Session (requests)",
            "requests",
            "sync",
            _requests_sync,
            SETUP,
            refreshes_on_401=False,
        ),
        Config(
            "authlib-httpx-async",
            "authlib",
            f"Authlib AsyncOAuth2Client ({base})",
            base,
            "async",
            _httpx_async,
            SETUP,
            refreshes_on_401=False,
        ),
    ]

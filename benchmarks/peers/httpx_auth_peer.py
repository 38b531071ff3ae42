"""httpx-auth: `OAuth2AuthorizationCode`, whose token cache refreshes an
expired token with its refresh token.

The login itself is put straight into httpx-auth's token cache (the
development server issued it), under the key the auth object computes.
When httpx-auth decides it has no token at all it starts an interactive
browser login: a local HTTP server bound on every interface and a browser.
Neither may happen here, so `request_new_grant` is replaced by a stub that
counts the attempt and fails at once as a login nobody answered would
(``TimeoutOccurred``). A count above zero means the user was sent back to
the login page.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any

from . import AsyncSubject, Config, Server, SyncSubject, achunks, chunks

__all__ = ["configs", "login_prompts"]

SETUP = (
    "`OAuth2AuthorizationCode(authorization_url, token_url, client_id=..., "
    "username=client_id, password=client_secret)` (client_secret_basic at the "
    "token endpoint) on `httpx.Client` / `httpx.AsyncClient`, its default "
    "in-memory `TokenMemoryCache` (thread locks around the cache and around "
    "token requests) and default `early_expiry=30`. It refreshes when the "
    "cached token is within 30 s of expiry, never on a 401. With "
    "`httpx.AsyncClient` it still refreshes with a blocking `httpx.Client`. "
    "Its interactive login (a server on all interfaces plus a browser) is "
    "replaced by a counting stub, see 'login prompts'. The login's tokens are "
    "put into its cache through a private method, "
    "`OAuth2.token_cache._add_token(state, access_token, expires_at, "
    "refresh_token)`: httpx-auth has no public way to seed a token."
)

_counter = itertools.count()
_prompts = 0
_prompts_lock = threading.Lock()
_patched = False


def login_prompts() -> int:
    """How many times httpx-auth tried to send the user to log in again."""
    return _prompts


def _patch() -> None:
    global _patched
    if _patched:
        return
    from httpx_auth import TimeoutOccurred
    from httpx_auth._oauth2 import authentication_responses_server

    def request_new_grant(grant_details: Any) -> tuple[str, str]:
        global _prompts
        with _prompts_lock:
            _prompts += 1
        raise TimeoutOccurred(0)

    authentication_responses_server.request_new_grant = request_new_grant
    _patched = True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Cached:
    state: str

    def _entry(self) -> tuple[Any, ...] | None:
        from httpx_auth import OAuth2

        entry = OAuth2.token_cache.tokens.get(self.state)
        return None if entry is None else tuple(entry)

    def access_token(self) -> str | None:
        entry = self._entry()
        return None if entry is None else str(entry[0])

    def refresh_token(self) -> str | None:
        entry = self._entry()
        return None if entry is None or len(entry) < 3 else entry[2]

    def set_expiry(self, expires_at: float) -> None:
        from httpx_auth import OAuth2

        entry = self._entry()
        assert entry is not None
        OAuth2.token_cache._add_token(self.state, entry[0], expires_at, entry[2])


class _Sync(_Cached, SyncSubject):
    def __init__(self, state: str, client: Any) -> None:
        self.state = state
        self._client = client

    def get(self, url: str) -> int:
        status: int = self._client.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        status: int = self._client.post(url, content=chunks()).status_code
        return status

    def close(self) -> None:
        self._client.close()


class _Async(_Cached, AsyncSubject):
    def __init__(self, state: str, client: Any) -> None:
        self.state = state
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


def _auth(server: Server, payload: dict[str, Any]) -> Any:
    import time

    from httpx_auth import OAuth2, OAuth2AuthorizationCode

    _patch()
    # The cache key is a hash of the authorization URL: a query parameter
    # of our own keeps each subject's tokens apart.
    auth = OAuth2AuthorizationCode(
        f"{server.authorization_endpoint}?compare_subject={next(_counter)}",
        server.token_endpoint,
        client_id=server.client_id,
        username=server.client_id,
        password=server.client_secret,
        redirect_uri_port=_free_port(),
        timeout=30,
    )
    OAuth2.token_cache._add_token(
        auth.state,
        payload["access_token"],
        time.time() + float(payload["expires_in"]),
        payload["refresh_token"],
    )
    return auth


def _sync(server: Server, payload: dict[str, Any]) -> SyncSubject:
    import httpx

    auth = _auth(server, payload)
    return _Sync(auth.state, httpx.Client(auth=auth, timeout=30))


def _async(server: Server, payload: dict[str, Any]) -> AsyncSubject:
    import httpx

    auth = _auth(server, payload)
    return _Async(auth.state, httpx.AsyncClient(auth=auth, timeout=30))


def configs() -> list[Config]:
    return [
        Config(
            "httpx-auth",
            "httpx-auth",
            "httpx-auth OAuth2AuthorizationCode",
            "httpx",
            "sync",
            _sync,
            SETUP,
            refreshes_on_401=False,
        ),
        Config(
            "httpx-auth-async",
            "httpx-auth",
            "httpx-auth OAuth2AuthorizationCode (async)",
            "httpx",
            "async",
            _async,
            SETUP,
            refreshes_on_401=False,
        ),
    ]

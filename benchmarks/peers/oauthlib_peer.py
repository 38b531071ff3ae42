"""requests-oauthlib: `OAuth2Session` with automatic refresh."""

from __future__ import annotations

from typing import Any

from . import Config, Server, SyncSubject, chunks
from .bare import requests_session

__all__ = ["configs"]

SETUP = (
    "`OAuth2Session(client_id, token=login, auto_refresh_url=token_endpoint, "
    "auto_refresh_kwargs={client_id, client_secret}, token_updater=save)`, "
    "as its documentation's refresh section shows (client credentials in the "
    "refresh body). It refreshes when oauthlib finds the token past its "
    "`expires_at` (no leeway), with no lock, and never on a 401. No asyncio "
    "support. `OAUTHLIB_INSECURE_TRANSPORT=1` lets it use the loopback "
    "http:// endpoints."
)


class _Session(SyncSubject):
    def __init__(self, session: Any) -> None:
        self.session = session

    def get(self, url: str) -> int:
        status: int = self.session.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        status: int = self.session.post(url, data=chunks()).status_code
        return status

    def access_token(self) -> str | None:
        token = self.session.token
        return None if not token else str(token.get("access_token"))

    def refresh_token(self) -> str | None:
        token = self.session.token
        return None if not token else token.get("refresh_token")

    def set_expiry(self, expires_at: float) -> None:
        token = {
            key: value
            for key, value in self.session.token.items()
            if key != "expires_in"
        }
        token["expires_at"] = expires_at
        self.session.token = token

    def close(self) -> None:
        self.session.close()


def _make(server: Server, payload: dict[str, Any]) -> SyncSubject:
    from requests_oauthlib import OAuth2Session

    holder: dict[str, Any] = {}

    def save(token: dict[str, Any]) -> None:
        # A real program would save the token here; the session holds it.
        holder["token"] = token

    session = OAuth2Session(
        server.client_id,
        token=dict(payload),
        auto_refresh_url=server.token_endpoint,
        auto_refresh_kwargs={
            "client_id": server.client_id,
            "client_secret": server.client_secret,
        },
        token_updater=save,
    )
    return _Session(requests_session(session))


def configs() -> list[Config]:
    return [
        Config(
            "requests-oauthlib",
            "requests-oauthlib",
            "requests-oauthlib OAuth2Session",
            "requests",
            "sync",
            _make,
            SETUP,
            refreshes_on_401=False,
        )
    ]

"""google-auth: user credentials (`google.oauth2.credentials.Credentials`)
on `google.auth.transport.requests.AuthorizedSession`.

Explicit credentials only, with a loopback ``token_uri``: nothing here
asks for default credentials, a metadata server or an ID-token endpoint,
and `compare_guard` refuses any socket that is not on loopback anyway.
"""

from __future__ import annotations

import datetime
from typing import Any

from . import Config, Server, SyncSubject, chunks
from .bare import requests_session

__all__ = ["configs"]

SETUP = (
    "`google.oauth2.credentials.Credentials(token, refresh_token, token_uri="
    "<loopback token endpoint>, client_id, client_secret, expiry)` with "
    "`with_non_blocking_refresh()` (a token within 3 min 45 s of expiry is "
    "refreshed by one background thread while requests go on with it; an "
    "opt-in, off by default, chosen here as google-auth's best "
    "configuration), on "
    "`AuthorizedSession(credentials)` with its defaults: refresh and resend "
    "on 401, at most 2 refresh attempts per request; token requests retry "
    "5xx/429 with exponential backoff. No lock around a refresh of an "
    "expired token. Its public async API (`google.auth.aio`) has no "
    "refreshable user credentials. Metadata lookups are switched off "
    "(`NO_GCE_CHECK=True`, `GCE_METADATA_HOST=127.0.0.1:1`, ...)."
)


def _utc(epoch: float) -> datetime.datetime:
    # google-auth compares naive UTC datetimes.
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.replace(tzinfo=None)


class _Session(SyncSubject):
    def __init__(self, credentials: Any, session: Any) -> None:
        self.credentials = credentials
        self.session = session

    def get(self, url: str) -> int:
        status: int = self.session.get(url).status_code
        return status

    def upload(self, url: str) -> int:
        status: int = self.session.post(url, data=chunks()).status_code
        return status

    def access_token(self) -> str | None:
        token = self.credentials.token
        return None if token is None else str(token)

    def refresh_token(self) -> str | None:
        token = self.credentials.refresh_token
        return None if token is None else str(token)

    def set_expiry(self, expires_at: float) -> None:
        self.credentials.expiry = _utc(expires_at)

    def settle(self) -> None:
        # with_non_blocking_refresh() refreshes in a thread of google-auth's
        # own, which retries a 5xx with backoff: wait for it, so that its
        # token requests are counted in this trial and not in the next one.
        worker = getattr(self.credentials._refresh_worker, "_worker", None)
        if worker is not None:
            worker.join(timeout=30)

    def close(self) -> None:
        self.session.close()


def _make(server: Server, payload: dict[str, Any]) -> SyncSubject:
    import time

    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    credentials = Credentials(
        token=payload["access_token"],
        refresh_token=payload["refresh_token"],
        token_uri=server.token_endpoint,
        client_id=server.client_id,
        client_secret=server.client_secret,
        expiry=_utc(time.time() + float(payload["expires_in"])),
    )
    credentials.with_non_blocking_refresh()
    session = AuthorizedSession(credentials)
    return _Session(credentials, requests_session(session))


def configs() -> list[Config]:
    return [
        Config(
            "google-auth",
            "google-auth",
            "google-auth AuthorizedSession",
            "requests",
            "sync",
            _make,
            SETUP,
            refreshes_on_401=True,
        )
    ]

"""Each library under comparison, behind one small interface.

A *subject* is one configured client of one library, logged in as one user
of the development server: it can GET a URL, POST a streamed upload, say
which access and refresh token it holds, and be told that its access token
expires at some time (its own belief; the server is told separately). A
`Config` names a subject's library, base HTTP library and configuration,
and builds it.

Every library is configured the way its own documentation recommends for a
long-running program that holds a user's tokens; `Config.setup` says how, and
the results page prints it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

__all__ = [
    "CHUNK",
    "CHUNKS",
    "AsyncSubject",
    "Config",
    "Server",
    "SyncSubject",
    "achunks",
    "chunks",
]

#: The streamed upload: CHUNKS chunks of CHUNK bytes from a generator.
CHUNK = 4096
CHUNKS = 16


def chunks() -> Iterator[bytes]:
    """The streamed upload body, as a one-shot generator."""
    for index in range(CHUNKS):
        yield bytes([65 + index % 26]) * CHUNK


async def achunks() -> AsyncIterator[bytes]:
    """The same body, as a one-shot async generator."""
    for piece in chunks():
        yield piece


@dataclasses.dataclass(frozen=True)
class Server:
    """Where the development authorization server is, and the client."""

    token_endpoint: str
    authorization_endpoint: str
    revocation_endpoint: str
    client_id: str
    client_secret: str


class SyncSubject(abc.ABC):
    """One configured, logged-in client of a library, used from threads."""

    @abc.abstractmethod
    def get(self, url: str) -> int:
        """GET `url` and read the answer; the status."""

    @abc.abstractmethod
    def upload(self, url: str) -> int:
        """POST the streamed upload (`chunks()`) to `url`; the status."""

    @abc.abstractmethod
    def access_token(self) -> str | None:
        """The access token the library would send now."""

    @abc.abstractmethod
    def refresh_token(self) -> str | None:
        """The refresh token the library holds (None: it has none left)."""

    @abc.abstractmethod
    def set_expiry(self, expires_at: float) -> None:
        """Make the library believe its access token expires then."""

    def settle(self) -> None:  # noqa: B027 - most libraries leave nothing
        """Wait for work the library left running in the background."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the client."""


class AsyncSubject(abc.ABC):
    """One configured, logged-in client of a library, used from tasks."""

    @abc.abstractmethod
    async def get(self, url: str) -> int:
        """GET `url` and read the answer; the status."""

    @abc.abstractmethod
    async def upload(self, url: str) -> int:
        """POST the streamed upload (`achunks()`) to `url`; the status."""

    @abc.abstractmethod
    def access_token(self) -> str | None:
        """The access token the library would send now."""

    @abc.abstractmethod
    def refresh_token(self) -> str | None:
        """The refresh token the library holds (None: it has none left)."""

    @abc.abstractmethod
    def set_expiry(self, expires_at: float) -> None:
        """Make the library believe its access token expires then."""

    def settle(self) -> None:  # noqa: B027 - most libraries leave nothing
        """Wait for work the library left running in the background."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the client."""


Subject = SyncSubject | AsyncSubject
Maker = Callable[[Server, dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class Config:
    """One library in one configuration.

    Attributes:
        key: Short identifier.
        library: The library's distribution name, for its version.
        label: How the tables name it.
        base: The HTTP library it runs on (its overhead is measured against
            that library sending a fixed Authorization header).
        mode: ``sync`` (driven from threads) or ``async`` (asyncio tasks).
        make: Builds a subject from the server and a login's token payload;
            async subjects are built inside the running event loop.
        setup: The configuration, for the results page.
        refreshes_on_401: Whether the library refreshes when an API answers
            401 (otherwise a rejected token goes to the caller as it is).
        ours: Whether this is usersession (its rows are checked against the
            targets).
    """

    key: str
    library: str
    label: str
    base: str
    mode: Literal["sync", "async"]
    make: Maker
    setup: str
    refreshes_on_401: bool
    ours: bool = False

"""Token stores: where a user's tokens live between requests and restarts.

A store saves, loads and clears one user's `Tokens`, and provides the lock
that a refresh holds, so that everyone sharing the store refreshes one at a
time. Every operation has a sync and an async form.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Protocol, runtime_checkable

from ._tokens import Tokens

__all__ = ["MemoryStore", "TokenStore"]


@runtime_checkable
class TokenStore(Protocol):
    """What a `User` needs of a store.

    Implementations raise `StoreError` when they cannot do what is asked;
    a refresh that meets it fails for now, never for good.
    """

    def load(self) -> Tokens | None:
        """Return the saved tokens, or ``None`` when there are none."""

    def save(self, tokens: Tokens) -> None:
        """Replace the saved tokens."""

    def clear(self) -> None:
        """Forget the saved tokens."""

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock held while refreshing the saved tokens."""

    async def aload(self) -> Tokens | None:
        """The async form of `load`."""

    async def asave(self, tokens: Tokens) -> None:
        """The async form of `save`."""

    async def aclear(self) -> None:
        """The async form of `clear`."""

    def alock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The async form of `lock`."""


class MemoryStore:
    """Tokens kept in this process's memory: the default store.

    Several `User` objects may share one `MemoryStore`; its lock then makes
    them refresh one at a time, and each adopts the other's new tokens.
    """

    _POLL = 0.002

    def __init__(self, tokens: Tokens | None = None) -> None:
        self._tokens = tokens
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "empty" if self._tokens is None else repr(self._tokens)
        return f"MemoryStore({state})"

    def load(self) -> Tokens | None:
        return self._tokens

    def save(self, tokens: Tokens) -> None:
        self._tokens = tokens

    def clear(self) -> None:
        self._tokens = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._lock:
            yield

    async def aload(self) -> Tokens | None:
        return self._tokens

    async def asave(self, tokens: Tokens) -> None:
        self._tokens = tokens

    async def aclear(self) -> None:
        self._tokens = None

    @contextlib.asynccontextmanager
    async def alock(self) -> AsyncIterator[None]:
        # A thread lock must not block the event loop, so poll it. It is
        # contended only when several users share this store and refresh at
        # the same moment, which is rare and short.
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(self._POLL)
        try:
            yield
        finally:
            self._lock.release()

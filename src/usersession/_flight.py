"""Work under way that any thread or event loop can wait for.

A `Flight` is one refresh: created by whoever starts it and completed
exactly once with its outcome, which every waiter then reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Generic, TypeVar

from ._errors import InvalidUser
from ._oauth import Outcome
from ._tokens import Tokens

__all__ = ["Ended", "Flight", "Rendezvous", "Result"]


class Ended:
    """The outcome of a refresh cut short by logout: the user is gone."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidUser) -> None:
        self.error = error


Result = Outcome | Ended
T = TypeVar("T")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Rendezvous(Generic[T]):
    """An outcome that threads and coroutines of any event loop can wait for.

    Completed exactly once. Threads wait on an event; coroutines wait on a
    future of their own loop, woken thread-safely, so work finished in one
    thread or loop releases waiters in every other. Cancelling a waiting
    task removes only that task's future.
    """

    __slots__ = ("_done", "_lock", "_waiters", "outcome")

    def __init__(self) -> None:
        self.outcome: T | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def complete(self, outcome: T) -> bool:
        """Record the outcome and release every waiter. Only the first counts."""
        with self._lock:
            if self.outcome is not None:
                return False
            self.outcome = outcome
            waiters, self._waiters = self._waiters, []
        self._done.set()
        for loop, future in waiters:
            # A loop that has closed meanwhile has no waiter left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)
        return True

    def wait(self, timeout: float) -> T | None:
        """Block this thread until the outcome is known; ``None`` on timeout."""
        self._done.wait(timeout)
        return self.outcome

    async def wait_async(self, timeout: float) -> T | None:
        """Wait without blocking the event loop; ``None`` on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self.outcome is not None:
                return self.outcome
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)
        return self.outcome


class Flight(Rendezvous[Result]):
    """One refresh of a user's tokens, from start to outcome."""

    __slots__ = ("generation", "proactive", "tokens")

    def __init__(self, tokens: Tokens, generation: int, *, proactive: bool) -> None:
        super().__init__()
        self.tokens = tokens
        self.generation = generation
        self.proactive = proactive

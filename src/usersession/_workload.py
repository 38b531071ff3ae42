"""A mixed workload on one `User`: threads and asyncio tasks, concurrently.

The demo runs it against the development server, and the test suite runs it
against a real authorization server. It counts what the client saw; the
caller adds what the server saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable

import httpx

from ._client import AsyncClient, Client
from ._errors import ClientError
from ._tokens import Tokens
from ._user import User

__all__ = ["Tally", "Workload"]


@dataclasses.dataclass
class Tally:
    """What the requests of a workload met, counted on the client side."""

    sent: int = 0
    ok: int = 0
    unauthorized_seen: int = 0
    resent: int = 0
    failed: int = 0
    renewals_needed: int = 0
    elapsed: float = 0.0
    slowest: float = 0.0
    held_requests: int = 0
    held_seconds: float = 0.0
    held_longest: float = 0.0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)


class Workload:
    """Drive GET requests on one user from threads and tasks until a deadline.

    Args:
        user: The user every request is sent for.
        url: The URL every request fetches.
        threads: Sync clients, one thread each.
        tasks: Async requests in flight at once, on one event loop.
        duration: Seconds to run.
        revoke_at: Seconds into the run at which `revoke` is called with the
            current access token (a server-side revocation), if given.
        revoke: Revokes one access token at the server.
    """

    def __init__(
        self,
        user: User,
        url: str,
        *,
        threads: int = 4,
        tasks: int = 16,
        duration: float = 8.0,
        revoke_at: tuple[float, ...] = (),
        revoke: Callable[[str], object] | None = None,
    ) -> None:
        self.user = user
        self.url = url
        self.threads = threads
        self.tasks = tasks
        self.duration = duration
        self.revoke_at = tuple(sorted(revoke_at))
        self.revoke = revoke
        self.tally = Tally()
        self._lock = threading.Lock()
        self._revoked: set[str] = set()
        self._stop = threading.Event()

    # -- Counting ----------------------------------------------------------------

    def _count(
        self,
        started: float,
        response: httpx.Response | None,
        error: Exception | None,
    ) -> None:
        took = time.monotonic() - started
        with self._lock:
            tally = self.tally
            tally.sent += 1
            tally.slowest = max(tally.slowest, took)
            if error is not None:
                tally.failed += 1
                name = type(error).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
                return
            assert response is not None
            rejected = sum(1 for hop in response.history if hop.status_code == 401)
            tally.unauthorized_seen += rejected + (response.status_code == 401)
            tally.resent += rejected
            if response.status_code == 200:
                tally.ok += 1
            else:
                tally.failed += 1
                key = f"HTTP {response.status_code}"
                tally.errors[key] = tally.errors.get(key, 0) + 1

    def _on_refreshed(self, previous: list[Tokens], tokens: Tokens) -> None:
        # A renewal was needed if the old token was due or had been revoked;
        # any other refresh would be one too many.
        with self._lock:
            old = previous[0]
            if old.access_token in self._revoked or old.is_due(self.user.leeway):
                self.tally.renewals_needed += 1
            previous[0] = tokens

    # -- Running -------------------------------------------------------------------

    def _thread(self) -> None:
        with Client(self.user) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get(self.url)
                except (ClientError, httpx.HTTPError) as exc:
                    self._count(started, None, exc)
                else:
                    self._count(started, response, None)

    async def _tasks(self) -> None:
        async with AsyncClient(self.user) as client:

            async def one() -> None:
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        response = await client.get(self.url)
                    except (ClientError, httpx.HTTPError) as exc:
                        self._count(started, None, exc)
                    else:
                        self._count(started, response, None)

            await asyncio.gather(*(one() for _ in range(self.tasks)))

    def run(self, progress: Callable[[float, Tally], None] | None = None) -> Tally:
        """Run the workload and return the tally."""
        current = self.user.tokens
        if current is None:
            raise ClientError("the workload needs a logged-in user")
        previous = [current]
        held_before = self.user.held
        unsubscribe = self.user.on_refreshed(
            lambda tokens: self._on_refreshed(previous, tokens)
        )
        workers = [
            threading.Thread(target=self._thread, name=f"workload-sync-{n}")
            for n in range(self.threads)
        ]
        if self.tasks:
            workers.append(
                threading.Thread(
                    target=asyncio.run, args=(self._tasks(),), name="workload-async"
                )
            )
        start = time.monotonic()
        for worker in workers:
            worker.start()
        pending = list(self.revoke_at)
        try:
            while (elapsed := time.monotonic() - start) < self.duration:
                if pending and elapsed >= pending[0] and self.revoke is not None:
                    pending.pop(0)
                    self._revoke_current()
                if progress is not None:
                    progress(elapsed, self.snapshot())
                time.sleep(min(0.1, max(0.0, self.duration - elapsed)))
        finally:
            self._stop.set()
            for worker in workers:
                worker.join()
            unsubscribe()
        held = self.user.held
        with self._lock:
            self.tally.elapsed = time.monotonic() - start
            self.tally.held_requests = held.requests - held_before.requests
            self.tally.held_seconds = held.seconds - held_before.seconds
            self.tally.held_longest = held.longest
        return self.snapshot()

    def _revoke_current(self) -> None:
        tokens = self.user.tokens
        if tokens is None or self.revoke is None:
            return
        with self._lock:
            self._revoked.add(tokens.access_token)
        self.revoke(tokens.access_token)

    def snapshot(self) -> Tally:
        """A copy of the tally so far."""
        with self._lock:
            return dataclasses.replace(self.tally, errors=dict(self.tally.errors))

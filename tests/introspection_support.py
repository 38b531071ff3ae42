"""Helpers for the tests of the resource-server side (`Introspector` and the
ASGI and WSGI integrations)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Iterable
from typing import Any

import usersession
from usersession import Claims, Introspector, TokenCheckError
from usersession.devserver import DevServer, Fault

CheckOutcome = Claims | TokenCheckError


class Clocks:
    """A wall clock and a monotonic clock that move only when told to."""

    def __init__(self) -> None:
        self.now = time.time()
        self.mono = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def api_provider(dev: DevServer, **options: Any) -> usersession.Provider:
    """The provider an API uses to introspect at `dev`, with its own client."""
    dev.add_client("test-api", "test-api-secret")
    options.setdefault("timeout", 5.0)
    return usersession.Provider(
        dev.token_endpoint,
        "test-api",
        "test-api-secret",
        introspection_endpoint=dev.introspection_endpoint,
        **options,
    )


def introspector_for(
    dev: DevServer, clocks: Clocks | None = None, **options: Any
) -> Introspector:
    """An introspector at `dev`, on `clocks` when given."""
    timeout = options.pop("timeout", None)
    provider = (
        api_provider(dev) if timeout is None else api_provider(dev, timeout=timeout)
    )
    if clocks is not None:
        options.setdefault("clock", clocks.wall)
        options.setdefault("monotonic", clocks.monotonic)
    return Introspector(provider, **options)


def check_in(
    mode: str, introspector: Introspector, token: str, scopes: Iterable[str] = ()
) -> CheckOutcome:
    """One check, with `check` (sync) or `acheck` (async, on a loop of its
    own whose connections are closed before it ends)."""
    if mode == "sync":
        try:
            return introspector.check(token, scopes=scopes)
        except TokenCheckError as exc:
            return exc

    async def go() -> CheckOutcome:
        try:
            return await introspector.acheck(token, scopes=scopes)
        except TokenCheckError as exc:
            return exc
        finally:
            await introspector.aclose()

    return asyncio.run(go())


def introspections(dev: DevServer) -> int:
    """Introspection requests the server has received so far."""
    return dev.stats().introspection_requests


def retry_after_cases() -> list[tuple[Fault, Callable[[str | None], bool]]]:
    """Introspection answers that say when to come back (or do not), each
    with a check of the ``Retry-After`` the API's 503 should carry: whole
    seconds, rounded up, and none when the endpoint gave none."""
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    return [
        (Fault.status(429, headers={"Retry-After": "7"}), lambda v: v == "7"),
        (
            Fault.status(503, headers={"Retry-After": later}),
            lambda v: v is not None and 110 <= int(v) <= 120,
        ),
        (Fault.status(503), lambda v: v is None),
    ]

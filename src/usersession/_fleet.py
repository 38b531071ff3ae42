"""The workload across several processes that share one store.

The parent starts N copies of this module (``python -m usersession._fleet``),
each running a `Workload` on its own `User` loaded from the shared store. The
children start together on the parent's word and each reports its tally as
one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._provider import Provider
from ._store import TokenStore
from ._user import User
from ._workload import Tally, Workload

__all__ = ["FleetSpec", "run_fleet", "store_from_spec"]


def store_from_spec(spec: str) -> TokenStore:
    """Build a store from a short description.

    ``file:<path>`` is a `FileStore`; ``redis://host:port/db#key`` is a
    `RedisStore` on that key.
    """
    if spec.startswith("file:"):
        from ._filestore import FileStore

        return FileStore(spec.removeprefix("file:"))
    if spec.startswith("redis://"):
        from ._redisstore import RedisStore

        url, _, key = spec.partition("#")
        return RedisStore(url, key=key or "usersession:default")
    raise ValueError(f"unknown store {spec!r}: use file:<path> or redis://...#key")


@dataclasses.dataclass(frozen=True)
class FleetSpec:
    """What every process of the fleet runs."""

    token_endpoint: str
    client_id: str
    client_secret: str | None
    url: str
    store: str
    threads: int
    tasks: int
    duration: float


def _child(spec: FleetSpec) -> None:
    provider = Provider(spec.token_endpoint, spec.client_id, spec.client_secret)
    user = User(provider, store=store_from_spec(spec.store))
    workload = Workload(
        user, spec.url, threads=spec.threads, tasks=spec.tasks, duration=spec.duration
    )
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    tally = workload.run()
    print(json.dumps(dataclasses.asdict(tally)), flush=True)


def run_fleet(
    spec: FleetSpec,
    processes: int,
    *,
    while_running: Callable[[], None] | None = None,
) -> list[Tally]:
    """Run `processes` children, all started at once; return their tallies.

    `while_running` is called in the parent once every child has started.
    """
    command = [sys.executable, "-m", "usersession._fleet", json.dumps(vars(spec))]
    children = [
        subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a fleet process failed to start ({line!r})")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        if while_running is not None:
            while_running()
        tallies = []
        for child in children:
            out, _ = child.communicate(timeout=spec.duration + 120)
            if child.returncode != 0:
                raise RuntimeError(f"a fleet process exited {child.returncode}")
            tallies.append(_tally(json.loads(out.strip().splitlines()[-1])))
        return tallies
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()


def _tally(data: dict[str, Any]) -> Tally:
    return Tally(**data)


def combine(tallies: Sequence[Tally]) -> Tally:
    """One tally for the whole fleet."""
    total = Tally()
    for tally in tallies:
        total.sent += tally.sent
        total.ok += tally.ok
        total.unauthorized_seen += tally.unauthorized_seen
        total.resent += tally.resent
        total.failed += tally.failed
        total.elapsed = max(total.elapsed, tally.elapsed)
        total.slowest = max(total.slowest, tally.slowest)
        total.held_requests += tally.held_requests
        total.held_seconds += tally.held_seconds
        total.held_longest = max(total.held_longest, tally.held_longest)
        for name, count in tally.errors.items():
            total.errors[name] = total.errors.get(name, 0) + count
    return total


if __name__ == "__main__":  # pragma: no cover - runs in the child processes
    _child(FleetSpec(**json.loads(sys.argv[1])))

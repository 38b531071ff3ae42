"""How processes sharing one token store fare through several expiries.

For each store (file, and Redis when ``redis-server`` is installed), N
processes with M concurrent requests each share one user through K access
token expiries, against the development server with refresh-token rotation
and reuse detection on. Printed side by side: token-endpoint calls per
expiry, failed requests, invalid_grant answers, and how long requests were
held while a refresh was under way.

    python benchmarks/stores.py [--processes 8] [--concurrency 8] [--expiries 4]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from usersession import Provider, Tokens, User
from usersession._fleet import FleetSpec, combine, run_fleet, store_from_spec
from usersession.devserver import DevServer

LIFETIME = 4.0  # refreshed at half-life: one expiry every 2 s


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    """A private redis-server on a free loopback port, if one is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(  # noqa: S603 - the installed redis-server
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.2),
                ):
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait()


def run(store: str, processes: int, concurrency: int, expiries: int) -> list[str]:
    threads = max(1, concurrency // 4)
    tasks = concurrency - threads
    with DevServer(access_token_lifetime=LIFETIME) as dev:
        shared = store_from_spec(store)
        provider = Provider(dev.token_endpoint, dev.client_id, dev.client_secret)
        User(provider, Tokens.from_response(dev.login()), store=shared)
        spec = FleetSpec(
            token_endpoint=dev.token_endpoint,
            client_id=dev.client_id,
            client_secret=dev.client_secret,
            url=f"{dev.api_url}/me",
            store=store,
            threads=threads,
            tasks=tasks,
            duration=expiries * LIFETIME / 2 + 0.5,
        )
        total = combine(run_fleet(spec, processes))
        stats = dev.stats()
        close = getattr(shared, "close", None)
        if close is not None:
            close()
    held = total.held_seconds / max(total.held_requests, 1)
    return [
        f"{stats.token_requests}",
        f"{stats.token_requests / expiries:.2f}",
        f"{total.sent}",
        f"{total.failed}",
        f"{stats.invalid_grant_answers}",
        f"{total.held_requests}",
        f"{held * 1000:.1f} ms",
        f"{total.held_longest * 1000:.0f} ms",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--expiries", type=int, default=4)
    args = parser.parse_args()

    rows = [
        "token-endpoint calls",
        "calls per expiry",
        "requests sent",
        "requests failed",
        "invalid_grant answers",
        "requests held",
        "mean hold",
        "longest hold",
    ]
    columns: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as folder, redis_url() as redis:
        columns["file"] = run(
            f"file:{Path(folder) / 'tokens.json'}",
            args.processes,
            args.concurrency,
            args.expiries,
        )
        if redis is not None:
            columns["redis"] = run(
                f"{redis}#usersession:bench",
                args.processes,
                args.concurrency,
                args.expiries,
            )
    print(
        f"{args.processes} processes x {args.concurrency} concurrent requests, "
        f"{args.expiries} expiries of {LIFETIME:g} s tokens (refreshed at "
        "half-life), rotation and reuse detection on"
    )
    width = max(map(len, rows))
    print(f"{'':<{width}}  " + "  ".join(f"{name:>10}" for name in columns))
    for index, row in enumerate(rows):
        values = "  ".join(f"{columns[name][index]:>10}" for name in columns)
        print(f"{row:<{width}}  {values}")
    if "redis" not in columns:
        print("(redis: redis-server is not installed; skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

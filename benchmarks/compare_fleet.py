"""One process of the multi-process storm (run by compare.py, not by hand).

It loads the user from a shared store (a `FileStore` or a `RedisStore`),
opens its connections with token-less requests, says ``ready`` and waits.
Each ``go`` line on standard input fires one round: `threads` threads (one
shared `usersession.Client`) and `tasks` asyncio tasks (one shared
`usersession.AsyncClient`) each send one GET at the same moment; the round's
outcome goes back as one JSON line. An empty line (or the end of input)
ends the process, after one last JSON line: what the loopback guard refused
in it (`compare_guard.report()`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from typing import Any

import compare_guard


def store_for(spec: str) -> Any:
    """``file:<path>`` or ``redis://host:port/db#key``."""
    if spec.startswith("file:"):
        from usersession import FileStore

        return FileStore(spec.removeprefix("file:"))
    from usersession import RedisStore

    url, _, key = spec.partition("#")
    return RedisStore(url, key=key)


def _outcome(call: Any) -> tuple[bool, str | None]:
    try:
        status = call()
    except Exception as exc:
        return False, type(exc).__name__
    return (200 <= status < 300), (None if 200 <= status < 300 else f"HTTP {status}")


def main() -> None:
    import usersession

    spec = json.loads(sys.argv[1])
    provider = usersession.Provider(
        spec["token_endpoint"], spec["client_id"], spec["client_secret"], timeout=30
    )
    user = usersession.User(provider, store=store_for(spec["store"]))
    url, echo = spec["url"], spec["echo"]
    threads, tasks = spec["threads"], spec["tasks"]
    client = usersession.Client(user, timeout=30)
    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(_make_async(user))

    # Open the connections first, without the token (nothing to refresh).
    warm = [
        threading.Thread(target=lambda: client.get(echo, auth=None))
        for _ in range(threads)
    ]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    loop.run_until_complete(_warm_async(aclient, echo, tasks))
    print("ready", flush=True)

    for line in sys.stdin:
        if line.strip() != "go":
            break
        results = _round(loop, client, aclient, url, threads, tasks)
        print(json.dumps(results), flush=True)

    client.close()
    loop.run_until_complete(aclient.aclose())
    loop.close()
    print(compare_guard.report(), flush=True)


def _round(
    loop: asyncio.AbstractEventLoop,
    client: Any,
    aclient: Any,
    url: str,
    threads: int,
    tasks: int,
) -> list[tuple[bool, str | None, float]]:
    """Every thread and task sends one GET at the same moment: (ok, error,
    seconds from the start) for each."""
    results: list[tuple[bool, str | None, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)
    started = [0.0]

    def one() -> None:
        barrier.wait()
        ok, error = _outcome(lambda: client.get(url).status_code)
        with lock:
            results.append((ok, error, time.perf_counter() - started[0]))

    async def aone(gate: asyncio.Event) -> None:
        await gate.wait()
        ok, error = await _aoutcome(aclient, url)
        with lock:
            results.append((ok, error, time.perf_counter() - started[0]))

    async def fire() -> None:
        gate = asyncio.Event()
        pending = [asyncio.ensure_future(aone(gate)) for _ in range(tasks)]
        await asyncio.sleep(0)
        barrier.wait()
        started[0] = time.perf_counter()
        gate.set()
        await asyncio.gather(*pending)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    loop.run_until_complete(fire())
    for worker in workers:
        worker.join()
    return results


async def _aoutcome(aclient: Any, url: str) -> tuple[bool, str | None]:
    try:
        response = await aclient.get(url)
    except Exception as exc:
        return False, type(exc).__name__
    status = response.status_code
    return (200 <= status < 300), (None if 200 <= status < 300 else f"HTTP {status}")


async def _warm_async(aclient: Any, echo: str, tasks: int) -> None:
    await asyncio.gather(*(aclient.get(echo, auth=None) for _ in range(tasks)))


async def _make_async(user: Any) -> Any:
    import usersession

    return usersession.AsyncClient(user, timeout=30)


if __name__ == "__main__":
    compare_guard.install()
    logging.getLogger().addHandler(logging.NullHandler())
    main()

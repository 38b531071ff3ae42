"""The cost per request with a valid token, library against bare base.

Both clients are warm and pooled and talk to the fast API (its own
process). Time is taken in small blocks that alternate between the library
and the bare client (A B, B A, A B, ...): `SEQUENTIAL` requests one after
another, or 100 at once (100 threads from a pool, or 100 asyncio tasks).
Each round gives one ratio, library over bare, for wall time and for this
process's CPU time; the result is the median ratio over the rounds, so a
burst of load from elsewhere on the machine spoils a round or two, not the
result.

Two effects of the base libraries shape the method. After a burst of
concurrent requests an httpx pool keeps idle connections that it checks on
every request, so the cost of a sequential request depends on the pool's
history: sequential blocks run first, on clients that never had more than
one connection. And one client instance can come out persistently faster or
slower than another after its bursts: the rounds are spread over several
fresh pairs of clients (`PAIRS`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "CONCURRENCY",
    "PAIRS",
    "SEQUENTIAL",
    "Measured",
    "measure_async",
    "measure_sync",
]

#: Requests per sequential block.
SEQUENTIAL = 20
#: Requests in flight at once in a concurrent block.
CONCURRENCY = 100
#: Fresh (bare, library) client pairs over which the rounds are spread.
PAIRS = 3

Sample = tuple[float, float]  # (wall, cpu) seconds per request
Factory = Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class Measured:
    """One library against its base, in one mode."""

    concurrency: int
    bare_us: float  # median wall time per request
    lib_us: float
    ratio: float  # median of the rounds' wall-time ratios
    ratio_low: float  # quartiles of those ratios
    ratio_high: float
    bare_cpu_us: float  # median CPU time of this process per request
    lib_cpu_us: float
    cpu_ratio: float  # median of the rounds' CPU-time ratios


def _quartile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(concurrency: int, bare: list[Sample], lib: list[Sample]) -> Measured:
    walls = [b[0] / a[0] for a, b in zip(bare, lib, strict=True)]
    cpus = [b[1] / a[1] for a, b in zip(bare, lib, strict=True) if a[1] > 0]
    return Measured(
        concurrency=concurrency,
        bare_us=statistics.median(s[0] for s in bare) * 1e6,
        lib_us=statistics.median(s[0] for s in lib) * 1e6,
        ratio=statistics.median(walls),
        ratio_low=_quartile(walls, 0.25),
        ratio_high=_quartile(walls, 0.75),
        bare_cpu_us=statistics.median(s[1] for s in bare) * 1e6,
        lib_cpu_us=statistics.median(s[1] for s in lib) * 1e6,
        cpu_ratio=statistics.median(cpus) if cpus else float("nan"),
    )


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"overhead request answered {status}")


def _timed(run: Callable[[], None], count: int) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return (
        (time.perf_counter() - wall) / count,
        (time.process_time() - cpu) / count,
    )


def measure_sync(
    make_bare: Factory,
    make_lib: Factory,
    url: str,
    pool: ThreadPoolExecutor,
    *,
    rounds: int,
    concurrent_rounds: int,
) -> list[Measured]:
    """Sequential, then 100-thread blocks of the library against the bare
    client (no concurrent blocks when `concurrent_rounds` is 0)."""

    def sequential(subject: Any) -> Sample:
        def run() -> None:
            for _ in range(SEQUENTIAL):
                _check(subject.get(url))

        return _timed(run, SEQUENTIAL)

    def concurrent(subject: Any) -> Sample:
        def run() -> None:
            futures = [pool.submit(subject.get, url) for _ in range(CONCURRENCY)]
            for future in futures:
                _check(future.result())

        return _timed(run, CONCURRENCY)

    def phase(block: Callable[[Any], Sample], total: int) -> Measured | None:
        if not total:
            return None
        bare_samples: list[Sample] = []
        lib_samples: list[Sample] = []
        for pair in range(PAIRS):
            bare, lib = make_bare(), make_lib()
            try:
                for subject in (bare, lib):  # warm: connections, code paths
                    for _ in range(3):
                        block(subject)
                for index in range(pair, total, PAIRS):
                    if index % 2:
                        lib_samples.append(block(lib))
                        bare_samples.append(block(bare))
                    else:
                        bare_samples.append(block(bare))
                        lib_samples.append(block(lib))
            finally:
                bare.close()
                lib.close()
        concurrency = 1 if block is sequential else CONCURRENCY
        return summarise(concurrency, bare_samples, lib_samples)

    return [
        m
        for m in (phase(sequential, rounds), phase(concurrent, concurrent_rounds))
        if m is not None
    ]


async def measure_async(
    make_bare: Factory,
    make_lib: Factory,
    url: str,
    *,
    rounds: int,
    concurrent_rounds: int,
) -> list[Measured]:
    """Sequential, then 100-task blocks; the factories are called inside
    the running event loop."""

    async def sequential(subject: Any) -> Sample:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(SEQUENTIAL):
            _check(await subject.get(url))
        return (
            (time.perf_counter() - wall) / SEQUENTIAL,
            (time.process_time() - cpu) / SEQUENTIAL,
        )

    async def concurrent(subject: Any) -> Sample:
        wall, cpu = time.perf_counter(), time.process_time()
        for status in await asyncio.gather(
            *(subject.get(url) for _ in range(CONCURRENCY))
        ):
            _check(status)
        return (
            (time.perf_counter() - wall) / CONCURRENCY,
            (time.process_time() - cpu) / CONCURRENCY,
        )

    async def phase(
        block: Callable[[Any], Awaitable[Sample]], total: int
    ) -> Measured | None:
        if not total:
            return None
        bare_samples: list[Sample] = []
        lib_samples: list[Sample] = []
        for pair in range(PAIRS):
            bare, lib = make_bare(), make_lib()
            try:
                for subject in (bare, lib):
                    for _ in range(3):
                        await block(subject)
                for index in range(pair, total, PAIRS):
                    if index % 2:
                        lib_samples.append(await block(lib))
                        bare_samples.append(await block(bare))
                    else:
                        bare_samples.append(await block(bare))
                        lib_samples.append(await block(lib))
            finally:
                await bare.aclose()
                await lib.aclose()
        concurrency = 1 if block is sequential else CONCURRENCY
        return summarise(concurrency, bare_samples, lib_samples)

    found = [
        await phase(sequential, rounds),
        await phase(concurrent, concurrent_rounds),
    ]
    return [m for m in found if m is not None]

"""usersession side by side with Authlib, requests-oauthlib, google-auth
and httpx-auth.

    python benchmarks/compare.py [--quick] [--no-install] [--no-docs]

It makes its own virtual environment (``benchmarks/.venv``), installs
usersession from this checkout with its extras and the other libraries at
their latest versions, runs itself again inside it, and measures every
library, each configured as its documentation recommends, against the same
servers on 127.0.0.1: the development authorization server (refresh-token
rotation and reuse detection on) with its demo API, and a small fast API in
a process of its own for the overhead runs.

Scenarios: the cost per request with a valid token (as a ratio to the bare
HTTP library sending a fixed header); a refresh storm (many requests meet an
expired or rejected token at once); the same storm with a token endpoint
that answers 503 once; a streamed upload that meets a 401; and processes
sharing one user through a token store. It prints one table and rewrites
docs/benchmarks.md and docs/benchmarks.svg. usersession's rows are checked
against its targets; the exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"
#: The last run's results, for --report-only (inside the ignored venv).
LAST = VENV / "compare-last.pickle"
EXTRAS = "requests,aiohttp,httpx2,redis"
PEERS = ("authlib", "requests-oauthlib", "google-auth[requests]", "httpx-auth")

# -- Bootstrap: our own virtual environment -----------------------------------


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap(no_install: bool) -> NoReturn:
    """Create or update benchmarks/.venv, then run this script inside it."""
    if sys.version_info < (3, 11):  # noqa: UP036 - any python3 may start us
        raise SystemExit("compare.py needs Python 3.11 or later (as usersession)")
    os.environ.setdefault("COMPARE_STARTED", repr(time.time()))
    fresh = not _venv_python().exists()
    # Whether this run's wall time includes a venv update (for the page).
    os.environ["COMPARE_INSTALLED"] = "1" if fresh or not no_install else "0"
    if fresh:
        print(f"creating {VENV.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    if fresh or not no_install:
        print(
            "installing usersession (this checkout) and the latest "
            + ", ".join(PEERS)
            + " ...",
            flush=True,
        )
        subprocess.run(  # noqa: S603 - pip of our own venv, fixed arguments
            [
                str(_venv_python()),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "-e",
                f"{ROOT}[{EXTRAS}]",
                *PEERS,
            ],
            check=True,
        )
    python = str(_venv_python())
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606


# -- Results ------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the table: one library in one scenario."""

    scenario: str
    label: str
    ours: bool
    token_calls: str = ""
    failed: str = ""
    logged_out: str = ""
    latency: str = ""
    other: str = ""
    verdict: str = ""  # "ok", "MISS" (usersession rows), "" otherwise
    why: str = ""  # for a missed target
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Shot:
    """One request of a storm."""

    ok: bool
    error: str | None
    seconds: float


@dataclasses.dataclass
class Trial:
    """One storm, and the no-storm round before it."""

    shots: list[Shot]
    baseline: list[Shot]
    token_calls: int
    refresh_grants: int
    invalid_grant: int
    reuse_detections: int
    logged_out: bool
    prompts: int = 0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _span(values: list[int] | list[float]) -> str:
    low, high = min(values), max(values)
    if low == high:
        return f"{low:g}"
    return f"{low:g}-{high:g}"


# -- Overhead -----------------------------------------------------------------


@dataclasses.dataclass
class Overhead:
    """A library against its bare base in one mode (see compare_overhead)."""

    label: str
    base: str
    mode: str
    ours: bool
    concurrency: int
    bare_us: float
    lib_us: float
    ratio: float
    ratio_low: float
    ratio_high: float
    bare_cpu_us: float
    lib_cpu_us: float
    cpu_ratio: float


def _overheads(config: Any, measured: list[Any]) -> list[Overhead]:
    return [
        Overhead(
            label=config.label,
            base=config.base,
            mode=config.mode,
            ours=config.ours,
            **dataclasses.asdict(m),
        )
        for m in measured
    ]


class Bench:
    """Everything the scenarios share: servers, configs, settings."""

    def __init__(self, options: argparse.Namespace) -> None:
        import peers
        from compare_servers import Authority, FastAPI
        from peers import (
            authlib_peer,
            google_peer,
            httpx_auth_peer,
            oauthlib_peer,
            ours,
        )

        self.options = options
        self.quick: bool = options.quick
        self.authority = Authority()
        self.fast = FastAPI()
        self.server = peers.Server(
            self.authority.token_endpoint,
            self.authority.authorization_endpoint,
            self.authority.revocation_endpoint,
            self.authority.client_id,
            self.authority.client_secret,
        )
        self.configs = [
            *ours.configs(),
            *authlib_peer.configs(),
            *oauthlib_peer.configs(),
            *google_peer.configs(),
            *httpx_auth_peer.configs(),
        ]
        self.login_prompts = httpx_auth_peer.login_prompts
        self.me = f"{self.authority.api_url}/me"
        self.upload_url = f"{self.authority.api_url}/upload"
        self._subjects = 0
        self.pool = ThreadPoolExecutor(max_workers=100)
        #: (process, what the loopback guard refused in it, None if it did
        #: not say) for every process other than this one.
        self.guard_reports: list[tuple[str, list[str] | None]] = []
        # What a usersession Provider's first refresh costs once (reported),
        # then paid here so that no storm below includes it.
        self.first_refresh = _refresh_costs(self.server, self.login)

    def close(self) -> None:
        self.pool.shutdown()
        self.fast.close()
        self.authority.close()
        self.guard_reports.append(("overhead API server", self.fast.refused))
        self.guard_reports.append(("authorization server", self.authority.refused))

    def login(self) -> dict[str, Any]:
        self._subjects += 1
        return self.authority.login(f"user{self._subjects}")

    def sync_configs(self) -> list[Any]:
        return [c for c in self.configs if c.mode == "sync"]

    def async_configs(self) -> list[Any]:
        return [c for c in self.configs if c.mode == "async"]

    # -- Overhead ---------------------------------------------------------------

    def _overhead_rounds(self) -> tuple[int, int]:
        return (18, 9) if self.quick else (30, 18)

    def overhead_sync(self, config: Any) -> list[Overhead]:
        from compare_overhead import measure_sync
        from peers.bare import make_bare

        payload = self.login()
        token = payload["access_token"]
        self.fast.allow(token)
        rounds, concurrent_rounds = self._overhead_rounds()
        measured = measure_sync(
            lambda: make_bare(config.base, "sync", token),
            lambda: config.make(self.server, payload),
            f"{self.fast.url}/me",
            self.pool,
            rounds=rounds,
            concurrent_rounds=concurrent_rounds,
        )
        return _overheads(config, measured)

    async def overhead_async(self, config: Any) -> list[Overhead]:
        from compare_overhead import measure_async
        from peers.bare import make_bare

        payload = self.login()
        token = payload["access_token"]
        self.fast.allow(token)
        rounds, concurrent_rounds = self._overhead_rounds()
        measured = await measure_async(
            lambda: make_bare(config.base, "async", token),
            lambda: config.make(self.server, payload),
            f"{self.fast.url}/me",
            rounds=rounds,
            concurrent_rounds=concurrent_rounds,
        )
        return _overheads(config, measured)

    def profile(self, config: Any) -> dict[str, list[tuple[str, float, float]]]:
        """cProfile of `config` against its bare base, sequential requests."""
        import compare_breakdown
        from peers.bare import make_bare

        payload = self.login()
        token = payload["access_token"]
        self.fast.allow(token)
        url = f"{self.fast.url}/me"
        if config.mode == "sync":
            lib = config.make(self.server, payload)
            bare = make_bare(config.base, "sync", token)
            try:
                return compare_breakdown.profile_sync(bare, lib, url)
            finally:
                lib.close()
                bare.close()

        async def run() -> dict[str, list[tuple[str, float, float]]]:
            lib = config.make(self.server, payload)
            bare = make_bare(config.base, "async", token)
            try:
                return await compare_breakdown.profile_async(bare, lib, url)
            finally:
                await lib.aclose()
                await bare.aclose()

        return asyncio.run(run())

    # -- Storms -----------------------------------------------------------------

    def _prepare(self, kind: str, subject: Any) -> None:
        """Make the next requests meet the storm's condition."""
        now = time.time()
        if kind in ("expired", "expired+503"):
            subject.set_expiry(now - 5)
            self.authority.call("expire")
        elif kind == "rejected":
            self.authority.call("revoke_access", token=subject.access_token())
        elif kind == "due+503":
            # Every library's leeway says "refresh now"; the token still works.
            subject.set_expiry(now + 20)
        if kind.endswith("+503"):
            self.authority.call("inject", endpoint="token", status=503, times=1)

    def _conclude(self, subject: Any, shots: list[Shot], baseline: list[Shot]) -> Trial:
        subject.settle()
        stats = self.authority.stats()
        self.authority.call("clear_faults")
        refresh_token = subject.refresh_token()
        alive = self.authority.refresh_token_active(refresh_token)
        return Trial(
            shots=shots,
            baseline=baseline,
            token_calls=stats.get("token_requests", 0),
            refresh_grants=stats.get("refresh_grants", 0),
            invalid_grant=stats.get("invalid_grant_answers", 0),
            reuse_detections=stats.get("reuse_detections", 0),
            logged_out=not alive,
        )

    def storm_sync(self, config: Any, kind: str, threads: int) -> Trial:
        subject = config.make(self.server, self.login())
        try:
            # Warm up: open the connections (the same number as the storm).
            _fire_threads(subject, self.me, threads)
            baseline = _fire_threads(subject, self.me, threads)
            self._prepare(kind, subject)
            self.authority.call("reset")
            prompts = self.login_prompts()
            shots = _fire_threads(subject, self.me, threads)
            trial = self._conclude(subject, shots, baseline)
            trial.prompts = self.login_prompts() - prompts
            return trial
        finally:
            subject.close()

    async def storm_async(self, config: Any, kind: str, tasks: int) -> Trial:
        subject = config.make(self.server, self.login())
        try:
            # Warm up: open the connections (the pool holds 100 at most).
            await _fire_tasks(subject, self.me, min(tasks, 100))
            baseline = await _fire_tasks(subject, self.me, tasks)
            self._prepare(kind, subject)
            self.authority.call("reset")
            prompts = self.login_prompts()
            shots = await _fire_tasks(subject, self.me, tasks)
            trial = self._conclude(subject, shots, baseline)
            trial.prompts = self.login_prompts() - prompts
            return trial
        finally:
            await subject.aclose()

    # -- Streamed upload --------------------------------------------------------

    def _upload_result(self, outcome: str) -> dict[str, Any]:
        seen = [s for s in self.authority.call("api_seen") if s["path"] == "/upload"]
        stats = self.authority.stats()
        return {
            "attempts": [(s["body_bytes"], s["status"]) for s in seen],
            "outcome": outcome,
            "refreshed": stats.get("refresh_grants", 0),
        }

    def upload_sync(self, config: Any) -> dict[str, Any]:
        subject = config.make(self.server, self.login())
        try:
            subject.get(self.me)
            self.authority.call("revoke_access", token=subject.access_token())
            self.authority.call("reset")
            try:
                outcome = f"HTTP {subject.upload(self.upload_url)}"
            except Exception as exc:
                outcome = type(exc).__name__
            return self._upload_result(outcome)
        finally:
            subject.close()

    async def upload_async(self, config: Any) -> dict[str, Any]:
        subject = config.make(self.server, self.login())
        try:
            await subject.get(self.me)
            self.authority.call("revoke_access", token=subject.access_token())
            self.authority.call("reset")
            try:
                outcome = f"HTTP {await subject.upload(self.upload_url)}"
            except Exception as exc:
                outcome = type(exc).__name__
            return self._upload_result(outcome)
        finally:
            await subject.aclose()

    # -- Processes sharing a store ----------------------------------------------

    def fleet(self, store: str, processes: int, threads: int, tasks: int) -> Trial:
        import usersession

        payload = self.login()
        provider = usersession.Provider(
            self.server.token_endpoint,
            self.server.client_id,
            self.server.client_secret,
        )
        from compare_fleet import store_for

        shared = store_for(store)
        tokens = usersession.Tokens.from_response(payload)
        # Every process loads a token it believes expired; the server agrees.
        usersession.User(
            provider,
            dataclasses.replace(tokens, expires_at=time.time() - 5),
            store=shared,
        )
        self.authority.call("expire")
        spec = json.dumps(
            {
                "token_endpoint": self.server.token_endpoint,
                "client_id": self.server.client_id,
                "client_secret": self.server.client_secret,
                "url": self.me,
                "echo": f"{self.authority.api_url}/echo",
                "store": store,
                "threads": threads,
                "tasks": tasks,
            }
        )
        children = [
            subprocess.Popen(  # noqa: S603 - our own script
                [sys.executable, str(HERE / "compare_fleet.py"), spec],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError("a fleet process failed to start")
            self.authority.call("reset")
            shots = _fleet_round(children)
            trial_stats = self.authority.stats()
            baseline = _fleet_round(children)
            for child in children:
                assert child.stdin is not None
                assert child.stdout is not None
                child.stdin.write("\n")
                child.stdin.flush()
                # Its last line: what the loopback guard refused in it.
                last = child.stdout.readline()
                self.guard_reports.append(
                    ("fleet worker", json.loads(last)["refused"] if last else None)
                )
                child.wait(timeout=30)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                child.wait()
                for stream in (child.stdin, child.stdout):
                    if stream is not None:
                        stream.close()
        stored = shared.load()
        close = getattr(shared, "close", None)
        if close is not None:
            close()
        refresh_token = None if stored is None else stored.refresh_token
        return Trial(
            shots=shots,
            baseline=baseline,
            token_calls=trial_stats.get("token_requests", 0),
            refresh_grants=trial_stats.get("refresh_grants", 0),
            invalid_grant=trial_stats.get("invalid_grant_answers", 0),
            reuse_detections=trial_stats.get("reuse_detections", 0),
            logged_out=not self.authority.refresh_token_active(refresh_token),
        )


def _refresh_costs(server: Any, login: Callable[[], dict[str, Any]]) -> list[float]:
    """Milliseconds of a new Provider's first three refreshes (user.refresh())."""
    from peers.ours import provider_for, user_for

    user = user_for(server, login())
    costs = []
    for _ in range(3):
        started = time.perf_counter()
        user.refresh()
        costs.append((time.perf_counter() - started) * 1000)
    assert provider_for(server) is user.provider
    return costs


def _fleet_round(children: list[subprocess.Popen[str]]) -> list[Shot]:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    shots: list[Shot] = []
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("a fleet process died")
        shots.extend(
            Shot(ok, error, seconds) for ok, error, seconds in json.loads(line)
        )
    return shots


def _shoot(call: Callable[[], int]) -> tuple[bool, str | None]:
    try:
        status = call()
    except Exception as exc:
        return False, type(exc).__name__
    if 200 <= status < 300:
        return True, None
    return False, f"HTTP {status}"


def _fire_threads(subject: Any, url: str, threads: int) -> list[Shot]:
    """`threads` threads send one GET each at the same moment."""
    barrier = threading.Barrier(threads + 1)
    shots: list[Shot] = []
    lock = threading.Lock()
    start = [0.0]

    def one() -> None:
        barrier.wait()
        ok, error = _shoot(lambda: subject.get(url))
        done = time.perf_counter()
        with lock:
            shots.append(Shot(ok, error, done - start[0]))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start[0] = time.perf_counter()
    for worker in workers:
        worker.join(timeout=120)
    return shots


async def _fire_tasks(subject: Any, url: str, tasks: int) -> list[Shot]:
    """`tasks` asyncio tasks send one GET each at the same moment."""
    gate = asyncio.Event()
    start = [0.0]

    async def one() -> Shot:
        await gate.wait()
        try:
            status = await subject.get(url)
        except Exception as exc:
            ok, error = False, type(exc).__name__
        else:
            ok = 200 <= status < 300
            error = None if ok else f"HTTP {status}"
        return Shot(ok, error, time.perf_counter() - start[0])

    pending = [asyncio.ensure_future(one()) for _ in range(tasks)]
    await asyncio.sleep(0)
    start[0] = time.perf_counter()
    gate.set()
    return list(await asyncio.wait_for(asyncio.gather(*pending), timeout=180))


# -- Summaries ----------------------------------------------------------------


def _errors(trials: list[Trial]) -> str:
    counts = Counter(s.error for t in trials for s in t.shots if s.error)
    return ", ".join(f"{name} x{count}" for name, count in counts.most_common(3))


def storm_row(
    scenario: str, config: Any, trials: list[Trial], size: int, *, targets: str
) -> Row:
    """Summarise the trials of one storm; `targets` says which of
    usersession's targets apply: 'all' (one call, no failure, no logout),
    'logout' (no logout), 'none'."""
    calls = [t.token_calls for t in trials]
    failed = [sum(not s.ok for s in t.shots) for t in trials]
    logged_out = sum(t.logged_out for t in trials)
    storm = [s.seconds for t in trials for s in t.shots]
    base = [s.seconds for t in trials for s in t.baseline]
    extra_median = (statistics.median(storm) - statistics.median(base)) * 1000
    extra_p99 = (_pct(storm, 0.99) - _pct(base, 0.99)) * 1000
    notes = []
    invalid = sum(t.invalid_grant for t in trials)
    if invalid:
        notes.append(f"invalid_grant x{invalid}")
    reuse = sum(t.reuse_detections for t in trials)
    if reuse:
        notes.append(f"reuse detected x{reuse}")
    prompts = sum(t.prompts for t in trials)
    if prompts:
        notes.append(f"login prompts x{prompts}")
    errors = _errors(trials)
    if errors:
        notes.append(errors)
    row = Row(
        scenario=scenario,
        label=config.label,
        ours=config.ours,
        token_calls=_span(calls),
        failed=f"{_span(failed)}/{size}",
        logged_out=f"{logged_out}/{len(trials)}",
        latency=(
            f"{extra_median:+.0f}/{extra_p99:+.0f} ms "
            f"(of {statistics.median(base) * 1000:.0f})"
        ),
        other="; ".join(notes),
        data={
            "calls": calls,
            "failed": failed,
            "size": size,
            "logged_out": logged_out,
            "trials": len(trials),
            "extra_median_ms": extra_median,
            "extra_p99_ms": extra_p99,
            "base_median_ms": statistics.median(base) * 1000,
        },
    )
    if config.ours and targets != "none":
        misses = []
        if targets == "all":
            if max(calls) != 1 or min(calls) != 1:
                misses.append(f"token-endpoint calls {_span(calls)} (target 1)")
            if max(failed):
                misses.append(f"{_span(failed)} failed requests (target 0)")
        if logged_out:
            misses.append(f"logged out in {logged_out} of {len(trials)} storms")
        row.verdict = "MISS" if misses else "ok"
        row.why = "; ".join(misses)
    return row


def upload_row(config: Any, result: dict[str, Any]) -> Row:
    from peers import CHUNK, CHUNKS

    total = CHUNK * CHUNKS
    attempts = result["attempts"]
    text = " then ".join(f"{size} B -> {status}" for size, status in attempts)
    resent_short = any(size < total for size, _ in attempts[1:])
    row = Row(
        scenario="upload",
        label=config.label,
        ours=config.ours,
        token_calls=str(result["refreshed"]),
        other=f"{text or 'nothing received'}; caller got {result['outcome']}",
        data={"attempts": attempts, "resent_short": resent_short, **result},
    )
    row.failed = "resent EMPTY" if resent_short else "not resent"
    if config.ours:
        row.verdict = "MISS" if resent_short else "ok"
        if resent_short:
            row.why = "a one-shot body was sent again short or empty"
    return row


#: usersession's overhead target: at most this ratio to the bare library.
TARGET = 1.05


def overhead_missed(result: Overhead) -> bool:
    """A steady cost: the lower quartile of the paired per-round ratios is
    above the target, not only the median (which flips with noise)."""
    return result.ratio_low > TARGET


def overhead_row(
    result: Overhead, ladders: list[tuple[str, str, Any]] | None = None
) -> Row:
    scenario = f"overhead {result.mode}, " + (
        "sequential" if result.concurrency == 1 else f"{result.concurrency} concurrent"
    )
    row = Row(
        scenario=scenario,
        label=f"{result.label} vs {result.base}",
        ours=result.ours,
        other=(
            f"{result.ratio:.3f}x ({result.ratio_low:.3f}-{result.ratio_high:.3f}); "
            f"{result.bare_us:.0f} -> {result.lib_us:.0f} us/request; "
            f"client CPU {result.cpu_ratio:.3f}x "
            f"({result.bare_cpu_us:.0f} -> {result.lib_cpu_us:.0f} us)"
        ),
        data=dataclasses.asdict(result),
    )
    if result.ours:
        row.verdict = "MISS" if overhead_missed(result) else "ok"
        if row.verdict == "MISS":
            row.why = (
                f"median ratio {result.ratio:.3f}, interquartile range "
                f"{result.ratio_low:.3f}-{result.ratio_high:.3f}, whose lower "
                f"bound is above {TARGET}: "
                f"{result.lib_us - result.bare_us:+.1f} us per request over "
                f"{result.base}'s {result.bare_us:.0f} us (separate medians)"
                + _overhead_cause(result, ladders or [])
            )
    return row


def _rung(ladders: list[tuple[str, str, Any]], base: str, name: str) -> Any | None:
    for rung_base, rung_name, measured in ladders:
        if rung_base == base and rung_name == name:
            return measured
    return None


def _overhead_cause(result: Overhead, ladders: list[tuple[str, str, Any]]) -> str:
    """Why an overhead row missed, from what this run measured."""
    if result.base != "aiohttp":
        return ""
    text = (
        ". Why: aiohttp runs client middleware once per redirect hop, so "
        "usersession adds a trace config to the session to tell a hop from a "
        "new request and keep the token off other origins"
    )
    tracing = _rung(
        ladders, "aiohttp", "a default header + a no-op trace config (4 signals)"
    )
    whole = _rung(ladders, "aiohttp", result.label)
    if tracing is None or whole is None:
        return text + " (the breakdown that splits this cost did not run)"
    traced = tracing.lib_us - tracing.bare_us
    total = whole.lib_us - whole.bare_us
    text += (
        f". In this run's breakdown ladder (sequential requests; 'Where "
        "usersession's time per request goes'), a trace config whose callbacks "
        f"do nothing, alone, added {traced:+.1f} us per request over aiohttp, and "
        f"{result.label} added {total:+.1f} us; the rest, {total - traced:+.1f} "
        "us, is usersession's middleware and its own trace callbacks, which "
        "this run does not split further"
    )
    if result.concurrency > 1:
        text += (
            f". The ladder is sequential only: at {result.concurrency} concurrent "
            "requests the split was not measured"
        )
    return text


def judge_overheads(results: dict[str, Any]) -> None:
    """(Re)build the overhead rows from the measurements, with the breakdown
    ladders (measured after the rows were first made) for the 'Why' text."""
    ladders = results.get("ladders") or []
    rebuilt = [
        overhead_row(result, ladders)
        for result in sorted(
            results.get("overheads", []), key=lambda o: (o.mode, o.concurrency)
        )
    ]
    others = [r for r in results["rows"] if not r.scenario.startswith("overhead ")]
    results["rows"] = rebuilt + others


def cannot_row(scenario: str, label: str, why: str) -> Row:
    return Row(scenario=scenario, label=label, ours=False, other=f"cannot: {why}")


# -- Redis --------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A private redis-server on a free loopback port, when installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(  # noqa: S603 - the installed redis-server
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


# -- The run ------------------------------------------------------------------


_T0 = time.monotonic()


def progress(text: str) -> None:
    print(f"  [{time.monotonic() - _T0:5.0f} s] {text}", file=sys.stderr, flush=True)


GROUPS = ("overhead", "storm", "upload", "processes")


def run_all(bench: Bench) -> dict[str, Any]:
    groups = set(bench.options.only.split(","))
    rows: list[Row] = []
    overheads: list[Overhead] = []
    if "overhead" in groups:
        overheads = run_overhead(bench)
        for result in sorted(overheads, key=lambda o: (o.mode, o.concurrency)):
            rows.append(overhead_row(result))
    if "storm" in groups:
        rows += run_storms(bench)
    if "upload" in groups:
        rows += run_uploads(bench)
    if "processes" in groups:
        rows += run_processes(bench)
    return {"rows": rows, "overheads": overheads}


RETRIES: list[str] = []


def retried(what: str, run: Callable[[], Any]) -> Any:
    """Run once more if the first run raised (a transport error of a base
    library under load, say); every retry is reported on the page."""
    try:
        return run()
    except Exception as exc:
        RETRIES.append(f"{what}: {type(exc).__name__}: {exc}")
        progress(f"retrying {what} after {type(exc).__name__}")
        return run()


async def aretried(what: str, run: Callable[[], Awaitable[Any]]) -> Any:
    """The async form of `retried`."""
    try:
        return await run()
    except Exception as exc:
        RETRIES.append(f"{what}: {type(exc).__name__}: {exc}")
        progress(f"retrying {what} after {type(exc).__name__}")
        return await run()


def run_overhead(bench: Bench) -> list[Overhead]:
    progress("overhead with a valid token (fast API in its own process)")
    overheads: list[Overhead] = []
    for config in bench.sync_configs():
        overheads += retried(
            f"overhead of {config.label}",
            lambda config=config: bench.overhead_sync(config),
        )

    async def async_overheads() -> list[Overhead]:
        found: list[Overhead] = []
        for config in bench.async_configs():
            found += await aretried(
                f"overhead of {config.label}",
                lambda config=config: bench.overhead_async(config),
            )
        return found

    return overheads + asyncio.run(async_overheads())


def run_storms(bench: Bench) -> list[Row]:
    quick = bench.quick
    rows: list[Row] = []

    trials = 2 if quick else 3
    threads = 32

    def sync_storm(kind: str, scenario: str, targets: str) -> None:
        progress(f"{scenario}: {threads} threads")
        for config in bench.sync_configs():
            found = [
                retried(
                    f"{scenario} / {config.label}",
                    lambda config=config: bench.storm_sync(config, kind, threads),
                )
                for _ in range(trials)
            ]
            rows.append(storm_row(scenario, config, found, threads, targets=targets))

    def async_storm(kind: str, scenario: str, sizes: list[int], targets: str) -> None:
        async def go() -> None:
            for size in sizes:
                progress(f"{scenario}: {size} tasks")
                count = trials if size <= 100 else 1
                for config in bench.async_configs():
                    found = [
                        await aretried(
                            f"{scenario}, {size} tasks / {config.label}",
                            lambda config=config, size=size: bench.storm_async(
                                config, kind, size
                            ),
                        )
                        for _ in range(count)
                    ]
                    rows.append(
                        storm_row(
                            f"{scenario}, {size} tasks",
                            config,
                            found,
                            size,
                            targets=targets,
                        )
                    )

        asyncio.run(go())

    no_async = (
        ("requests-oauthlib OAuth2Session", "no asyncio support"),
        (
            "google-auth AuthorizedSession",
            "google.auth.aio has no refreshable user credentials "
            "(only private, experimental _credentials_async)",
        ),
    )

    sizes = [10, 100] if quick else [10, 100, 1000]
    sync_storm("expired", "expired-token storm, 32 threads", "all")
    async_storm("expired", "expired-token storm", sizes, "all")
    for label, why in no_async:
        rows.append(cannot_row("every storm with asyncio tasks", label, why))

    sync_storm("rejected", "rejected-token (401) storm, 32 threads", "all")
    async_storm("rejected", "rejected-token (401) storm", [100], "all")

    sync_storm(
        "expired+503", "expired storm, token endpoint 503 once, 32 threads", "logout"
    )
    async_storm(
        "expired+503", "expired storm, token endpoint 503 once", [100], "logout"
    )

    sync_storm("due+503", "token due (still valid), 503 once, 32 threads", "all")
    async_storm("due+503", "token due (still valid), 503 once", [100], "all")
    return rows


def run_uploads(bench: Bench) -> list[Row]:
    rows: list[Row] = []
    progress("streamed upload meets a 401")
    for config in bench.sync_configs():
        rows.append(upload_row(config, bench.upload_sync(config)))

    async def uploads() -> None:
        for config in bench.async_configs():
            rows.append(upload_row(config, await bench.upload_async(config)))

    asyncio.run(uploads())
    return rows


def run_processes(bench: Bench) -> list[Row]:
    quick = bench.quick
    rows: list[Row] = []
    trials = 2 if quick else 3
    progress("processes sharing one user through a store")
    processes, fleet_threads, fleet_tasks = (3, 2, 6) if quick else (4, 4, 12)
    per_storm = processes * (fleet_threads + fleet_tasks)
    scenario = f"{processes} processes x {fleet_threads + fleet_tasks} requests"
    fleet_config = _FleetConfig("usersession FileStore")
    with tempfile.TemporaryDirectory() as folder:
        found = [
            bench.fleet(
                f"file:{Path(folder) / f'tokens{index}.json'}",
                processes,
                fleet_threads,
                fleet_tasks,
            )
            for index in range(trials)
        ]
    rows.append(storm_row(scenario, fleet_config, found, per_storm, targets="all"))
    with redis_server() as redis:
        if redis is None:
            rows.append(
                cannot_row(
                    scenario, "usersession RedisStore", "redis-server not on PATH"
                )
            )
        else:
            found = [
                bench.fleet(
                    f"{redis}#compare:{index}", processes, fleet_threads, fleet_tasks
                )
                for index in range(trials)
            ]
            rows.append(
                storm_row(
                    scenario,
                    _FleetConfig("usersession RedisStore"),
                    found,
                    per_storm,
                    targets="all",
                )
            )
    for label, why in (
        (
            "Authlib",
            "no token store; update_token is a callback, no cross-process lock",
        ),
        ("requests-oauthlib", "no token store; token_updater is a callback"),
        ("google-auth", "user credentials are in memory; no shared store or lock"),
        (
            "httpx-auth",
            "JsonTokenFileCache holds thread locks only, none across processes",
        ),
    ):
        rows.append(cannot_row(scenario, label, why))
    return rows


@dataclasses.dataclass(frozen=True)
class _FleetConfig:
    label: str
    ours: bool = True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="reuse benchmarks/.venv as it is (no upgrade check)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: print and write the results of the last run again",
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated scenario groups to run (default: {','.join(GROUPS)})",
    )
    options = parser.parse_args()
    unknown = set(options.only.split(",")) - set(GROUPS)
    if unknown:
        parser.error(f"unknown scenario groups: {', '.join(sorted(unknown))}")
    if not _in_venv():
        bootstrap(options.no_install or options.report_only)

    import compare_guard

    compare_guard.install()
    # The libraries' warnings (a refresh that met a 503, ...) are expected
    # here; keep them off the terminal.
    logging.getLogger().addHandler(logging.NullHandler())
    import compare_report

    if options.report_only:
        with LAST.open("rb") as saved:
            results, machine = pickle.load(saved)  # noqa: S301 - our own file
        return report(results, machine, write_docs=not options.no_docs)

    started = float(os.environ.get("COMPARE_STARTED", repr(time.time())))
    load_start = os.getloadavg()[0]
    print("running the comparison (progress on stderr) ...", file=sys.stderr)
    bench = Bench(options)
    try:
        results = run_all(bench)
        if "overhead" in options.only.split(","):
            import compare_breakdown

            progress("where usersession's time per request goes")
            results["ladders"] = compare_breakdown.ladders(
                bench.server, bench.login, bench.fast, 16 if options.quick else 30
            )
            results["steps"] = compare_breakdown.steps()
            results["anyio_control"] = compare_breakdown.anyio_control(
                bench.login, bench.fast, 12 if options.quick else 18
            )
            # Profile every usersession client that missed the overhead target.
            missed = {
                o.label for o in results["overheads"] if o.ours and overhead_missed(o)
            }
            results["profiles"] = {
                config.label: bench.profile(config)
                for config in bench.configs
                if config.label in missed
            }
    finally:
        bench.close()
    results["first_refresh"] = bench.first_refresh
    results["retries"] = RETRIES
    results["refused"] = list(compare_guard.REFUSED)
    results["guard_reports"] = bench.guard_reports
    results["load_start"] = load_start
    results["configs"] = bench.configs
    results["wall"] = time.time() - started
    results["quick"] = options.quick
    # The flags as given, and whether a venv update ran before the
    # measurements (its time is inside the wall time).
    results["flags"] = sys.argv[1:]
    results["installed"] = os.environ.get("COMPARE_INSTALLED") == "1"
    machine = compare_report.machine()
    with LAST.open("wb") as saved:
        pickle.dump((results, machine), saved)
    return report(results, machine, write_docs=not options.no_docs)


def report(
    results: dict[str, Any], machine: dict[str, Any], *, write_docs: bool
) -> int:
    """Print the table; rewrite the results page and the plot."""
    import compare_report

    judge_overheads(results)
    table = compare_report.table(results["rows"])
    print(compare_report.header(machine, results))
    print(table)
    missed = [row for row in results["rows"] if row.verdict == "MISS"]
    wall = results["wall"]
    print(f"\nwall time {wall:.0f} s; usersession targets missed: {len(missed)}")
    print(
        "connections, binds and lookups off loopback refused in this process: "
        f"{len(results['refused'])}"
    )
    if write_docs:
        (ROOT / "docs" / "benchmarks.md").write_text(
            compare_report.markdown(machine, results, table)
        )
        (ROOT / "docs" / "benchmarks.svg").write_text(compare_report.svg(results))
        print("wrote docs/benchmarks.md and docs/benchmarks.svg")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``usersession demo``: the library at work on the development server."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ._fleet import FleetSpec, combine, run_fleet, store_from_spec
from ._provider import Provider
from ._store import TokenStore
from ._tokens import Tokens
from ._user import User
from ._workload import Tally, Workload
from .devserver import DevServer

__all__ = ["DemoOptions", "run_demo", "verdict"]

#: A refresh counts as needed when the token it replaced had lived at least
#: this share of the time until it was due. The server dates a token from
#: when it answered, the client from when it asked, so a slow token answer
#: makes a due token look younger at the server; a second refresh for the
#: same expiry, the fault this guards against, replaces a token only
#: moments old.
_DUE_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs (see ``usersession demo --help``)."""

    duration: float = 12.0
    threads: int = 4
    tasks: int = 8
    lifetime: float = 6.0
    revocations: int = 1
    processes: int = 1
    store: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"


class _Progress:
    """One status line, rewritten in place on a terminal, once a second elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._interactive = stream.isatty()
        self._last = -1.0

    def __call__(self, elapsed: float, tally: Tally) -> None:
        line = (
            f"  {elapsed:5.1f} s   sent {tally.sent:>7}   ok {tally.ok:>7}   "
            f"401s {tally.unauthorized_seen:>3}   failed {tally.failed:>3}"
        )
        if self._interactive:
            self._stream.write("\r" + line)
        elif elapsed - self._last >= 1.0:
            self._last = elapsed
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()


def _revoke_times(options: DemoOptions) -> tuple[float, ...]:
    # Spread evenly through the run, away from its ends.
    n = options.revocations
    return tuple(options.duration * (i + 1) / (n + 1) for i in range(n))


def _store_spec(options: DemoOptions, folder: Path) -> str | None:
    if options.store == "file":
        return f"file:{folder / 'tokens.json'}"
    if options.store == "redis":
        return f"{options.redis_url}#usersession:demo:{time.time_ns()}"
    return None


def _one_process(
    dev: DevServer, user: User, options: DemoOptions, progress: _Progress
) -> Tally:
    workload = Workload(
        user,
        f"{dev.api_url}/me",
        threads=options.threads,
        tasks=options.tasks,
        duration=options.duration,
        revoke_at=_revoke_times(options),
        revoke=dev.revoke_access_token,
    )
    tally = workload.run(progress)
    progress.done()
    return tally


def _many_processes(
    dev: DevServer, store: TokenStore, spec: str, options: DemoOptions, out: TextIO
) -> Tally:
    fleet = FleetSpec(
        token_endpoint=dev.token_endpoint,
        client_id=dev.client_id,
        client_secret=dev.client_secret,
        url=f"{dev.api_url}/me",
        store=spec,
        threads=options.threads,
        tasks=options.tasks,
        duration=options.duration,
    )

    def revoke_on_schedule() -> None:
        start = time.monotonic()
        for at in _revoke_times(options):
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            current = store.load()
            if current is not None:
                dev.revoke_access_token(current.access_token)

    revoker = threading.Thread(target=revoke_on_schedule, daemon=True)
    out.write(f"  {options.processes} processes running...\n")
    out.flush()
    tallies = run_fleet(fleet, options.processes, while_running=revoker.start)
    revoker.join()
    return combine(tallies)


def run_demo(options: DemoOptions, *, out: TextIO, progress_stream: TextIO) -> int:
    """Run the demo; return 0 when every request succeeded with no extra
    token-endpoint call, 1 otherwise."""
    with (
        tempfile.TemporaryDirectory(prefix="usersession-demo-") as folder,
        DevServer(access_token_lifetime=options.lifetime) as dev,
    ):
        spec = _store_spec(options, Path(folder))
        store = None if spec is None else store_from_spec(spec)
        provider = Provider.discover(dev.issuer, dev.client_id, dev.client_secret)
        user = User(provider, Tokens.from_response(dev.login()), store=store)
        sharing = (
            "one user"
            if options.processes == 1
            else (
                f"one user in each of {options.processes} processes, "
                f"through a {options.store} store"
            )
        )
        out.write(
            f"usersession demo: {options.threads} threads and {options.tasks} "
            f"asyncio tasks share {sharing} for {options.duration:g} s;\n"
            f"access tokens live {options.lifetime:g} s, {options.revocations} "
            "revoked by the server, refresh tokens rotate.\n\n"
        )
        out.flush()
        if options.processes == 1:
            tally = _one_process(dev, user, options, _Progress(progress_stream))
        else:
            assert store is not None
            assert spec is not None
            tally = _many_processes(dev, store, spec, options, out)
        stats = dev.stats()
        due_age = options.lifetime - min(user.leeway, options.lifetime / 2)
        expiries = sum(age >= due_age * _DUE_SHARE for age in dev.refresh_ages())
        user.logout()
        closer: Callable[[], None] | None = getattr(store, "close", None)
        if closer is not None:
            closer()

    renewals = min(stats.refresh_grants, expiries + options.revocations)
    if options.processes == 1:
        renewals = tally.renewals_needed
    token_calls = stats.token_requests
    rows = [
        ("requests sent", f"{tally.sent}"),
        ("answered 200", f"{tally.ok}"),
        ("401s seen", f"{tally.unauthorized_seen}"),
        ("requests resent", f"{tally.resent}"),
        ("token-endpoint calls", f"{token_calls}"),
        ("renewals needed", f"{renewals}  (expiries and revocations)"),
        ("calls per expiry or revocation", f"{token_calls / max(renewals, 1):.2f}"),
        ("invalid_grant answers", f"{stats.invalid_grant_answers}"),
        ("requests failed", f"{tally.failed}"),
        ("elapsed", f"{tally.elapsed:.2f} s"),
        ("slowest request", f"{tally.slowest * 1000:.0f} ms"),
        ("requests held", f"{tally.held_requests} (waited for a refresh)"),
        ("longest hold", f"{tally.held_longest * 1000:.0f} ms"),
        ("requests per second", f"{tally.sent / max(tally.elapsed, 1e-9):.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    out.write("\n")
    for name, value in rows:
        out.write(f"  {name:<{width}}  {value}\n")
    for error, count in sorted(tally.errors.items()):
        out.write(f"  {'failed with ' + error:<{width}}  {count}\n")

    tally = dataclasses.replace(tally, renewals_needed=renewals)
    problems = verdict(tally, token_calls)
    if stats.invalid_grant_answers:
        problems.append(f"{stats.invalid_grant_answers} invalid_grant answers")
    out.write("\n" + ("FAILED: " + "; ".join(problems) if problems else "OK") + "\n")
    return 1 if problems else 0


def verdict(tally: Tally, token_calls: int) -> list[str]:
    """What went wrong in a run, if anything: failed requests, or more
    token-endpoint calls than the expiries and revocations needed."""
    problems = []
    if tally.sent == 0:
        problems.append("no request was sent")
    if tally.failed:
        problems.append(f"{tally.failed} requests failed")
    if token_calls > tally.renewals_needed:
        problems.append(
            f"{token_calls} token-endpoint calls for "
            f"{tally.renewals_needed} renewals needed"
        )
    return problems

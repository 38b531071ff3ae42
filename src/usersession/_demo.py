"""``usersession demo``: the library at work on the development server."""

from __future__ import annotations

from typing import TextIO

from ._provider import Provider
from ._tokens import Tokens
from ._user import User
from ._workload import Tally, Workload
from .devserver import DevServer

__all__ = ["run_demo", "verdict"]


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


def run_demo(
    *,
    duration: float,
    threads: int,
    tasks: int,
    lifetime: float,
    revocations: int,
    out: TextIO,
    progress_stream: TextIO,
) -> int:
    """Run the demo; return 0 when every request succeeded with no extra
    token-endpoint call, 1 otherwise."""
    # Revocations spread evenly through the run, away from its ends.
    revoke_at = tuple(
        duration * (n + 1) / (revocations + 1) for n in range(revocations)
    )
    with DevServer(access_token_lifetime=lifetime, rotate_refresh_tokens=True) as dev:
        provider = Provider.discover(dev.issuer, dev.client_id, dev.client_secret)
        user = User(provider, Tokens.from_response(dev.login()))
        workload = Workload(
            user,
            f"{dev.api_url}/me",
            threads=threads,
            tasks=tasks,
            duration=duration,
            revoke_at=revoke_at,
            revoke=dev.revoke_access_token,
        )
        out.write(
            f"usersession demo: {threads} threads and {tasks} asyncio tasks share "
            f"one user for {duration:g} s;\naccess tokens live {lifetime:g} s, "
            f"{revocations} revoked by the server, refresh tokens rotate.\n\n"
        )
        out.flush()
        progress = _Progress(progress_stream)
        tally = workload.run(progress)
        progress.done()
        token_calls = dev.stats().token_requests
        user.logout()

    rows = [
        ("requests sent", f"{tally.sent}"),
        ("answered 200", f"{tally.ok}"),
        ("401s seen", f"{tally.unauthorized_seen}"),
        ("requests resent", f"{tally.resent}"),
        ("token-endpoint calls", f"{token_calls}"),
        ("renewals needed", f"{tally.renewals_needed}  (expiries and revocations)"),
        ("requests failed", f"{tally.failed}"),
        ("elapsed", f"{tally.elapsed:.2f} s"),
        ("slowest request", f"{tally.slowest * 1000:.0f} ms"),
        ("requests per second", f"{tally.sent / max(tally.elapsed, 1e-9):.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    out.write("\n")
    for name, value in rows:
        out.write(f"  {name:<{width}}  {value}\n")
    for error, count in sorted(tally.errors.items()):
        out.write(f"  {'failed with ' + error:<{width}}  {count}\n")

    problems = verdict(tally, token_calls)
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

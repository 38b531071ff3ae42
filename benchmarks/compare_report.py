"""The comparison's table, results page (docs/benchmarks.md) and plot
(docs/benchmarks.svg, drawn by hand)."""

from __future__ import annotations

import html
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["header", "machine", "markdown", "svg", "table"]

DISTRIBUTIONS = (
    "usersession",
    "httpx",
    "httpx2",
    "requests",
    "aiohttp",
    "redis",
    "authlib",
    "requests-oauthlib",
    "oauthlib",
    "google-auth",
    "httpx-auth",
)

COLUMNS = (
    ("scenario", "Scenario"),
    ("label", "Library"),
    ("token_calls", "Token calls"),
    ("failed", "Failed"),
    ("logged_out", "Logged out"),
    ("latency", "Extra latency med/p99 (no-storm med)"),
    ("other", "Other"),
    ("verdict", "Target"),
)


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    release = Path("/etc/os-release")
    name = platform.system()
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip('"')
    return f"{name}, kernel {platform.release()}"


def _redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    out = subprocess.run(  # noqa: S603 - the installed redis-server
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["redis-server"] = _redis_version()
    return {
        "load": os.getloadavg()[0],
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": _os_name(),
        "versions": versions,
    }


def header(info: dict[str, Any], results: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    mode = f" ({_command(results)}; {_wall_note(results)})"
    return (
        f"\nusersession vs peers{mode}: {info['cpu']}, {info['cores']} cores, "
        f"Python {info['python']}, {info['os']}\n{versions}\n"
    )


def _command(results: dict[str, Any]) -> str:
    """The command line of the run that measured, with its flags as given."""
    flags = results.get("flags")
    if flags is None:  # a run from before flags were recorded
        flags = ["--quick"] if results.get("quick") else []
    return " ".join(["python benchmarks/compare.py", *flags])


def _wall_note(results: dict[str, Any]) -> str:
    installed = results.get("installed")
    if installed is None:
        return "wall time"
    if installed:
        return "wall time, venv update included"
    return "wall time; no venv update ran"


def _cells(row: Any) -> list[str]:
    return [str(getattr(row, key)) for key, _ in COLUMNS]


def table(rows: Sequence[Any]) -> str:
    """The one table, as plain text."""
    titles = [title for _, title in COLUMNS]
    lines = [_cells(row) for row in rows]
    # Repeated scenario names are left blank; a rule separates scenarios.
    widths = [len(title) for title in titles]
    for cells in lines:
        for index, cell in enumerate(cells[:-2]):
            widths[index] = max(widths[index], len(cell))
    out = []

    def fmt(cells: list[str]) -> str:
        head = "  ".join(
            cell.ljust(widths[index]) for index, cell in enumerate(cells[:-2])
        )
        return f"{head}  {cells[-1]:<6}  {cells[-2]}".rstrip()

    out.append(fmt(titles))
    previous = None
    for cells in lines:
        if cells[0] != previous:
            out.append("-" * min(160, sum(widths[:-2]) + 2 * len(widths) + 30))
            previous = cells[0]
        else:
            cells = ["", *cells[1:]]
        out.append(fmt(cells))
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(rows: Sequence[Any]) -> str:
    titles = [title for _, title in COLUMNS]
    out = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    previous = None
    for row in rows:
        cells = _cells(row)
        if cells[0] == previous:
            cells[0] = ""
        else:
            previous = cells[0]
        if row.verdict == "MISS":
            cells[-1] = "**MISS**"
        if row.ours:
            cells[1] = f"**{cells[1]}**"
        out.append("| " + " | ".join(_md_escape(cell) for cell in cells) + " |")
    return "\n".join(out)


def _find(rows: Sequence[Any], scenario: str, label: str) -> Any | None:
    for row in rows:
        if row.scenario == scenario and row.label == label:
            return row
    return None


TARGETS = """\
Each scenario judges usersession's rows on its own targets:

- **Overhead**: a ratio at most 1.05 against the bare HTTP library. The
  table shows the median of the per-round ratios; a row is a MISS only when
  the lower bound of their interquartile range is above 1.05 (a steady
  cost), since a median near 1.05 flips from run to run on this machine.
- **Expired-token and rejected-token (401) storms, "token due (still
  valid), 503 once" storms, processes sharing a store**: one token-endpoint
  call per storm, no failed request, no logout.
- **"Expired storm, token endpoint 503 once"**: no logout, and nothing
  else. The requests held for the refresh that met the 503 raise
  `RefreshUnavailable`, as rule F4 of [the contract](guarantees.md) says
  they must, so these rows show every held request failed next to "ok".
- **Upload**: a streamed body never resent short or empty."""


def _targets(rows: Sequence[Any]) -> str:
    ours = [row for row in rows if row.ours and row.verdict]
    missed = [row for row in ours if row.verdict == "MISS"]
    lines = [
        f"{len(ours) - len(missed)} of {len(ours)} checked usersession rows meet "
        "their target."
    ]
    if missed:
        lines.append("")
        lines.append("Missed, by how much:")
        lines.append("")
        for row in missed:
            lines.append(f"- {row.scenario} / {row.label}: {row.why}.")
    return "\n".join(lines)


def _odd_peers(rows: Sequence[Any], results: dict[str, Any]) -> list[str]:
    """Observations about the peers, each tied to this run's numbers."""
    notes = []
    storm = "expired-token storm, 32 threads"
    for label, what in (
        ("Authlib OAuth2Client (httpx2)", "Authlib's sync httpx client"),
        ("Authlib OAuth2Session (requests)", "Authlib's requests session"),
        ("requests-oauthlib OAuth2Session", "requests-oauthlib"),
        ("google-auth AuthorizedSession", "google-auth"),
    ):
        row = _find(rows, storm, label)
        if row is not None and max(row.data["calls"]) > 1:
            notes.append(
                f"{what} has no lock around the refresh of an expired token: "
                f"{row.token_calls} token-endpoint calls per storm of 32 threads, "
                f"{row.failed} requests failed, and the reuse detection of the "
                f"server revoked the grant ({row.logged_out} storms ended logged "
                f"out; {row.other})."
            )
    row = _find(rows, storm, "httpx-auth OAuth2AuthorizationCode")
    if row is not None and "login prompts" in row.other:
        notes.append(
            "httpx-auth deletes an expired token from its cache before refreshing "
            "it; a thread that looks meanwhile finds no token and starts an "
            "interactive login (a local HTTP server bound on all interfaces and a "
            "browser), which the harness stubs out and counts: "
            f"{row.other}. Its refresh itself is serialised by a lock."
        )
    upload = _find(rows, "upload", "google-auth AuthorizedSession")
    if upload is not None and upload.data.get("resent_short"):
        notes.append(
            "google-auth resends a request after refreshing on a 401 with the same "
            "`data=` argument; a generator is exhausted by then, so the API got "
            f"{upload.other}: the upload was resent empty and the caller saw success."
        )
    rejected = "rejected-token (401) storm, 32 threads"
    for label in (
        "Authlib OAuth2Client (httpx2)",
        "requests-oauthlib OAuth2Session",
        "httpx-auth OAuth2AuthorizationCode",
    ):
        row = _find(rows, rejected, label)
        if row is not None and row.data["failed"] and max(row.data["failed"]):
            notes.append(
                f"{label} never refreshes on a 401: a token the server revoked "
                f"before its expiry fails every request ({row.failed}) until the "
                "client's own clock says it expired."
            )
    upload = _find(rows, "upload", "Authlib OAuth2Client (httpx2)")
    if upload is not None and not upload.data.get("attempts"):
        notes.append(
            "Authlib's httpx integration reads a streamed body into memory "
            "(`OAuth2Auth.requires_request_body = True`) and sends it with "
            "`Content-Length` while keeping `Transfer-Encoding: chunked`: both "
            "framings at once (RFC 9112 6.3 forbids it), which the development "
            f"server refuses with 400 before the API sees the request ({upload.other})."
        )
    for scenario in (
        "expired storm, token endpoint 503 once, 32 threads",
        "expired storm, token endpoint 503 once, 100 tasks",
    ):
        row = _find(rows, scenario, "httpx-auth OAuth2AuthorizationCode")
        row = row or _find(rows, scenario, "httpx-auth OAuth2AuthorizationCode (async)")
        if row is not None and row.data["logged_out"]:
            notes.append(
                f"httpx-auth logs the user out on one 503 ({scenario}: "
                f"{row.logged_out} storms): the expired token is already gone from "
                "its cache, the failed refresh keeps nothing, and the next step is "
                "an interactive login."
            )
            break
    authlib_async = [
        o
        for o in results.get("overheads", [])
        if o.label.startswith("Authlib AsyncOAuth2Client") and o.ratio < 0.95
    ]
    control = results.get("anyio_control") or []
    if authlib_async:
        ratios = ", ".join(
            f"{o.ratio:.2f}x {'sequential' if o.concurrency == 1 else 'at 100 tasks'}"
            for o in authlib_async
        )
        shown = ", ".join(
            f"{m.ratio:.2f}x {'sequential' if m.concurrency == 1 else 'at 100 tasks'}"
            for m in control
        )
        notes.append(
            f"Authlib's async client measures faster than bare httpx2 ({ratios}). "
            "Bare httpx2.AsyncClient that enters an uncontended `anyio.Lock` before "
            "each request, as Authlib's `ensure_active_token` does, and nothing "
            f"else, measured {shown or 'likewise'} against itself without the lock "
            "in this run: an artefact of how httpx2 and anyio schedule work on the "
            "event loop, not less work done by Authlib."
        )
    row = _find(
        rows,
        "expired storm, token endpoint 503 once, 100 tasks",
        "Authlib AsyncOAuth2Client (httpx2)",
    )
    if row is not None:
        notes.append(
            "Authlib's async client recovers from a single 503 better than "
            "usersession: every task waiting on its lock tries the refresh "
            f"itself when the previous one failed ({row.token_calls} token calls, "
            f"{row.failed} failed), where usersession fails every held request "
            "(see above)."
        )
    row = _find(
        rows,
        "token due (still valid), 503 once, 32 threads",
        "google-auth AuthorizedSession",
    )
    if row is not None and not max(row.data["failed"]):
        notes.append(
            "google-auth's `with_non_blocking_refresh()` refreshes a token that is "
            "due but valid in one background thread and retries a 503 with "
            f"backoff, so nothing failed ({row.token_calls} token calls); its token "
            "requests retry 5xx with exponential backoff, which shows as a p99 of "
            "about a second in the '503 once' storms."
        )
    due = "token due (still valid), 503 once, 32 threads"
    row = _find(rows, due, "httpx-auth OAuth2AuthorizationCode")
    if row is not None and max(row.data["failed"]):
        notes.append(
            "httpx-auth drops a token from its cache as soon as it is inside "
            "`early_expiry`, so a token that still works is not used when the "
            f"early refresh meets one 503: {row.failed} requests failed and "
            f"{row.logged_out} storms ended logged out ({row.other})."
        )
    return notes


def _ours_notes(rows: Sequence[Any], results: dict[str, Any]) -> list[str]:
    """What the run says about usersession beyond the pass/fail marks."""
    notes = []
    failing = [
        r
        for r in rows
        if r.ours
        and r.scenario.startswith("expired storm, token endpoint 503 once")
        and max(r.data["failed"]) == r.data["size"]
    ]
    if failing:
        shown = ", ".join(f"{r.label} {r.failed}" for r in failing)
        due = [
            r
            for r in rows
            if r.ours and r.scenario.startswith("token due (still valid), 503 once")
        ]
        due_failed = sum(sum(r.data["failed"]) for r in due)
        notes.append(
            "One 503 from the token endpoint fails every request held for that "
            f"refresh ({shown}): the held requests share the refresh's outcome and "
            "raise `RefreshUnavailable` (rule F4); storms that ended logged out: "
            f"{sum(r.data['logged_out'] for r in failing)} of "
            f"{sum(r.data['trials'] for r in failing)}. "
            "Whether a later request then refreshes is not measured here. When "
            "the token is due but not yet expired, the held requests go out with "
            "the old token instead (the 'token due' rows: "
            f"{due_failed} failed requests over {len(due)} rows)."
        )
    rejected = [
        r
        for r in rows
        if r.ours
        and r.scenario.startswith("rejected-token (401) storm")
        and r.data["base_median_ms"] > 0
    ]
    if rejected:

        def rounds(r: Any) -> float:
            return float(r.data["extra_median_ms"] / r.data["base_median_ms"])

        low = min(rejected, key=rounds)
        high = max(rejected, key=rounds)
        notes.append(
            "In a rejected-token storm every request meets a 401 and is sent "
            "again with the new token. The storm's extra median latency, over "
            "the median of the same batch with a valid token, was "
            f"{rounds(low):.1f}x ({low.label}, {low.scenario}) to "
            f"{rounds(high):.1f}x ({high.label}, {high.scenario}: "
            f"{high.data['extra_median_ms']:+.0f} ms over "
            f"{high.data['base_median_ms']:.0f} ms)."
        )
    near = [
        r
        for r in rows
        if r.ours
        and r.scenario.startswith("overhead ")
        and r.verdict == "ok"
        and r.data["ratio"] > 1.05
    ]
    if near:
        shown = "; ".join(
            f"{r.label}, {r.scenario.removeprefix('overhead ')}: "
            f"{r.data['ratio']:.3f} ({r.data['ratio_low']:.3f}-"
            f"{r.data['ratio_high']:.3f})"
            for r in near
        )
        notes.append(
            "Overhead rows whose median ratio is above 1.05 but whose "
            "interquartile range reaches down to 1.05 or below, so judged ok by "
            f"the rule above: {shown}."
        )
    first = results.get("first_refresh") or []
    if first and first[0] > 3 * max(first[1], 0.1):
        notes.append(
            f"A new `Provider`'s first refresh costs {first[0]:.0f} ms against "
            f"{first[1]:.0f} ms for the next: it builds a TLS context "
            "(`ssl.create_default_context()`) even for an http:// token endpoint. "
            "A process that refreshes once (a command-line call, each process of "
            "a fleet) pays it inside its first storm."
        )
    return notes


def _overhead_text(results: dict[str, Any]) -> str:
    lines: list[str] = []
    ladders = results.get("ladders") or []
    if ladders:
        lines += [
            "Each base library with one piece of usersession's way of hooking in "
            "at a time, against the same library sending a fixed header "
            "(sequential, interleaved blocks as above; microseconds added per "
            "request, wall time and this process's CPU time):",
            "",
            "| Base | Client | Wall ratio | Added wall us | Added CPU us |",
            "|---|---|---|---|---|",
        ]
        for base, name, m in ladders:
            lines.append(
                f"| {base} | {name} | {m.ratio:.3f} | "
                f"{m.lib_us - m.bare_us:+.1f} | {m.lib_cpu_us - m.bare_cpu_us:+.1f} |"
            )
        lines.append("")
    steps = results.get("steps") or []
    if steps:
        lines += [
            "Each step of usersession's per-request path on httpx, timed alone "
            "(best of 5 x 20,000 calls):",
            "",
            "| Step | us per call |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value:.2f} |" for name, value in steps]
        lines.append("")
    profiles = results.get("profiles") or {}
    if profiles:
        lines += [
            "The clients that missed the overhead target, profiled. The "
            "'ipaddress' row, and on requests and aiohttp the 'httpx.URL parsing' "
            "row, are work that usersession asks for (its origin and transport "
            "checks); 'the base library and the rest' and 'built-ins and socket "
            "calls' also carry the base library's own variation between the two "
            "profiled runs.",
            "",
        ]
    for label, ranked in profiles.items():
        lines += [
            f"cProfile of {label} against its bare base, sequential requests: "
            "where the time per request grew (profiled microseconds, which the "
            "profiler inflates, and the share of the growth), then "
            "usersession's functions that grew most:",
            "",
            "| Where | +us (profiled) | Share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {_md_escape(name)} | {value:+.1f} | {share:.0%} |"
            for name, value, share in ranked["groups"]
        ]
        lines += [
            f"| `{_md_escape(name)}` | {value:+.1f} | {share:.0%} |"
            for name, value, share in ranked["functions"]
        ]
        lines.append("")
    retries = results.get("retries") or []
    if retries:
        lines.append("Runs repeated after an error in the first attempt:")
        lines.append("")
        lines += [f"- {html.escape(text)}" for text in retries]
        lines.append("")
    first = results.get("first_refresh") or []
    if first:
        lines.append(
            "A new `Provider`'s first refresh took "
            f"{first[0]:.1f} ms, the next ones {first[1]:.1f} and {first[2]:.1f} ms: "
            "the first builds the TLS context (`ssl.create_default_context()`, "
            "which loads the CA bundle) even for an http:// token endpoint. The "
            "storms above share one `Provider` set up beforehand, as a program "
            "would; each process of the multi-process storm pays it in its storm."
        )
    return "\n".join(lines)


def _guard_text(results: dict[str, Any]) -> str:
    """What the loopback guard refused, and in which processes it counted."""
    driver = results.get("refused") or []
    text = (
        "Attempts it refused in the driver process, where every library ran "
        f"except in the multi-process storm: {', '.join(driver) or 'none'}."
    )
    reports = results.get("guard_reports")
    if reports is None:
        return text + (
            " The servers and the fleet workers run the guard too, but this run "
            "did not collect their counts."
        )
    kinds: dict[str, list[int]] = {}
    silent: list[str] = []
    refused: list[str] = []
    for kind, found in reports:
        if found is None:
            silent.append(kind)
            continue
        kinds.setdefault(kind, []).append(len(found))
        refused += [f"{kind}: {what}" for what in found]
    counted = ", ".join(
        f"{len(counts)} {kind}{'s' if len(counts) > 1 else ''}"
        for kind, counts in kinds.items()
    )
    text += (
        f" In the other processes of the comparison that reported at shutdown "
        f"({counted}): {'; '.join(refused) or 'none'}."
    )
    if silent:
        text += f" Not reported (ended without saying): {', '.join(silent)}."
    return text + (
        " The redis-server of the RedisStore runs no Python and no guard; it is "
        "started bound to 127.0.0.1."
    )


def markdown(info: dict[str, Any], results: dict[str, Any], text_table: str) -> str:
    rows = results["rows"]
    versions = "\n".join(f"| {k} | {v} |" for k, v in info["versions"].items())
    setups: dict[str, list[str]] = {}
    for config in results["configs"]:
        setups.setdefault(config.setup, []).append(config.label)
    setup_text = "\n".join(
        f"- **{', '.join(labels)}**: {setup}" for setup, labels in setups.items()
    )
    odd = _odd_peers(rows, results)
    odd_text = "\n".join(f"- {note}" for note in odd) or "- (none observed this run)"
    ours = _ours_notes(rows, results)
    ours_text = "\n".join(f"- {note}" for note in ours) or "- (nothing more)"
    load = f"{results.get('load_start', 0):.2f} / {info['load']:.2f}"
    return f"""# usersession and its peers, side by side

Generated by `{_command(results)}` in {results["wall"]:.0f} s
({_wall_note(results)}). Do not edit by hand: run it again.

![token-endpoint calls, failures and overhead per library](benchmarks.svg)

## Machine

| | |
|---|---|
| CPU | {info["cpu"]} |
| Cores | {info["cores"]} |
| Python | {info["python"]} |
| OS | {info["os"]} |
| Load average (1 min) at start / end | {load} |

| Package | Version |
|---|---|
{versions}

## usersession's targets

{TARGETS}

{_targets(rows)}

Also seen in this run:

{ours_text}

## Results

Columns: token-endpoint calls per storm (a range over the trials), failed
requests per storm, storms that ended with the user logged out, the extra
latency of the storm's requests over the same requests with a valid token
(median / 99th percentile), and the rest. "Target" marks usersession rows:
ok, or MISS. In an overhead row the ratio is the median of the paired
per-round ratios (library block over the bare block next to it), while the
microsecond figures are the medians of each side's blocks taken separately,
so on a noisy machine the two can disagree, even in sign.

{_md_table(rows)}

## What the scenarios do

All libraries meet the same servers, each in its own process on 127.0.0.1:
the development authorization server of `usersession.devserver` (refresh-token
rotation and reuse detection on: a rotated refresh token presented again
revokes the whole grant) with its demo API, which checks tokens by
introspection; and, for the overhead runs only, a small asyncio HTTP server
that answers 200 to a known bearer token, so that what is measured is the
client. Every trial logs a new user in.

- **Overhead**: a warm client sends GETs with a valid token, 20 one after
  another or 100 at a time (100 threads, or 100 asyncio tasks); the same base
  library with a fixed `Authorization` header is the denominator. Library and
  bare client alternate in these small blocks, the order flipping every
  round; each round gives a ratio, and the table shows the median ratio
  (interquartile range in brackets) for wall time, then for this process's
  CPU time, so that load from elsewhere on the machine hits both sides. The
  rounds are spread over 3 fresh pairs of clients, and the sequential blocks
  run before any concurrent one: after a burst, an httpx pool keeps idle
  connections that it checks on every request, which made a sequential
  request's cost differ by up to 30% from one client instance to the next.
  The bare requests session sets its header with a one-line auth callable: a
  session without any auth reads `~/.netrc` on every request (requests'
  `trust_env`), which every library under test skips.
- **Expired-token storm**: N requests start at the same moment (a barrier
  for threads, an event for tasks) on a client whose token it believes
  expired and the server agrees. **Rejected-token storm**: the server revoked
  the access token; the client still believes it valid, so only a library
  that refreshes on a 401 can recover. **503 once**: the expired storm with
  the token endpoint answering 503 to its first call. **Token due, 503 once**:
  the client believes its token expires in 20 s (inside every library's
  leeway except requests-oauthlib's, which has none) but the token still
  works, and the first refresh meets a 503.
- **Logged out**: after the storm, the library holds no refresh token, or
  the server no longer accepts the one it holds (asked by introspection): the
  user must log in again.
- **Upload**: a POST whose body is a generator of 16 x 4096 bytes meets a 401
  (the access token was revoked); the API records the bytes of each attempt.
- **Processes**: several processes load one user from a store, with a token
  they believe expired, and fire together (threads and tasks in each); then a
  second round with the new token is the no-storm reference.

## How each library is configured

{setup_text}

Environment of every process: `NO_GCE_CHECK=True`,
`GCE_METADATA_HOST=127.0.0.1:1`, `GCE_METADATA_IP=127.0.0.1:1`,
`GOOGLE_API_USE_CLIENT_CERTIFICATE=false`, no proxies, an empty
`CLOUDSDK_CONFIG`; and an audit hook (`benchmarks/compare_guard.py`) that
refuses any socket connect, bind or lookup (`getaddrinfo`,
`gethostbyname`, `gethostbyaddr`, `getnameinfo`) off loopback and any
browser (it checks itself at start). {_guard_text(results)}

## Odd things seen in the peers

{odd_text}

## Where usersession's time per request goes

{_overhead_text(results)}

## The whole table, as printed

```
{text_table}
```
"""


# -- The plot -----------------------------------------------------------------

_OURS = "#1f6fb5"
_PEER = "#9a9a9a"
_MISS = "#c0392b"  # a usersession row that missed its target
_TARGET = "#d35400"  # the target line and its label

#: (label, value, text, colour) of one bar.
Item = tuple[str, float, str, str]


def _colour(row_ours: bool, missed: bool = False) -> str:
    if not row_ours:
        return _PEER
    return _MISS if missed else _OURS


def _bars(
    title: str,
    items: Sequence[Item],
    top: float,
    *,
    scale_max: float,
    mark: float | None = None,
    mark_label: str = "",
    origin: float = 0.0,
) -> tuple[str, float]:
    """A horizontal bar panel. With an origin other than 0 the title says
    where the axis starts, the origin is labelled under the bars, and a bar
    whose value is below it is drawn as a left-pointing marker at the origin.
    The target's label goes under the bars, clear of the title and of the
    value labels."""
    left, width, row_height = 390, 340, 18
    parts = [
        f'<text x="10" y="{top + 16}" font-size="14" font-weight="bold">'
        f"{html.escape(title)}</text>"
    ]
    if origin:
        parts.append(
            f'<text x="10" y="{top + 31}" font-size="11" fill="#555">'
            f"Axis from {origin:g}x, not 0; a value below {origin:g}x is clipped "
            "and drawn as \u25c0 at the axis.</text>"
        )
        top += 15
    y = top + 28
    # The target line goes under the bars and their labels.
    line_at = len(parts)
    span = max(scale_max - origin, 1e-9)
    for label, value, text, color in items:
        clipped = max(origin, min(value, scale_max))
        bar = (clipped - origin) / span * width
        parts.append(
            f'<text x="{left - 8}" y="{y + 13}" font-size="12" text-anchor="end">'
            f"{html.escape(label)}</text>"
        )
        if value < origin:
            parts.append(
                f'<polygon points="{left},{y + 9} {left + 8},{y + 3} '
                f'{left + 8},{y + 15}" fill="{color}"/>'
            )
            bar = 8.0
            text += f" (below {origin:g}x, clipped)"
        else:
            parts.append(
                f'<rect x="{left}" y="{y + 2}" width="{max(bar, 1):.1f}" '
                f'height="14" fill="{color}"/>'
            )
        # A white halo keeps the value readable where the target line
        # crosses it.
        parts.append(
            f'<text x="{left + max(bar, 1) + 6:.1f}" y="{y + 13}" font-size="12" '
            'stroke="white" stroke-width="3" paint-order="stroke">'
            f"{html.escape(text)}</text>"
        )
        y += row_height
    bottom = y
    if origin:
        parts.append(
            f'<text x="{left}" y="{bottom + 12}" font-size="11" fill="#555" '
            f'text-anchor="middle">{origin:g}x</text>'
        )
    if mark is not None:
        x = left + (mark - origin) / span * width
        parts.insert(
            line_at,
            f'<line x1="{x:.1f}" y1="{top + 26}" x2="{x:.1f}" y2="{bottom + 2}" '
            f'stroke="{_TARGET}" stroke-dasharray="4 3"/>',
        )
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 12}" font-size="11" '
            f'fill="{_TARGET}" text-anchor="middle">{html.escape(mark_label)}</text>'
        )
    if origin or mark is not None:
        bottom += 12
    return "\n".join(parts), bottom + 14


def svg(results: dict[str, Any]) -> str:
    rows = results["rows"]
    panels: list[str] = []
    top = 10.0

    def colour(row: Any) -> str:
        return _colour(row.ours, row.verdict == "MISS")

    storm = [r for r in rows if r.scenario == "expired-token storm, 32 threads"]
    calls = [
        (r.label, sum(r.data["calls"]) / len(r.data["calls"]), r.token_calls, colour(r))
        for r in storm
    ]
    if calls:
        part, top = _bars(
            "Expired-token storm, 32 threads: token-endpoint calls per storm",
            calls,
            top,
            scale_max=max(32.0, *(c[1] for c in calls)),
            mark=1,
            mark_label="target 1",
        )
        panels.append(part)
        failed = [
            (
                r.label,
                sum(r.data["failed"]) / len(r.data["failed"]),
                r.failed,
                colour(r),
            )
            for r in storm
        ]
        part, top = _bars(
            "Same storm: failed requests (of 32)", failed, top, scale_max=32.0
        )
        panels.append(part)

    rejected = [
        r for r in rows if r.scenario == "rejected-token (401) storm, 32 threads"
    ]
    if rejected:
        failed = [
            (
                r.label,
                sum(r.data["failed"]) / len(r.data["failed"]),
                r.failed,
                colour(r),
            )
            for r in rejected
        ]
        part, top = _bars(
            "Rejected-token (401) storm, 32 threads: failed requests (of 32)",
            failed,
            top,
            scale_max=32.0,
        )
        panels.append(part)

    outage = [r for r in rows if r.scenario.startswith("expired storm, token endpoint")]
    if outage:

        def name(r: Any) -> str:
            return f"{r.label} ({'threads' if 'threads' in r.scenario else 'tasks'})"

        logged = [
            (
                name(r),
                r.data["logged_out"] / r.data["trials"],
                f"{r.logged_out} storms",
                colour(r),
            )
            for r in outage
        ]
        part, top = _bars(
            "Token endpoint answers 503 once (expired token): storms that ended "
            "logged out",
            logged,
            top,
            scale_max=1.0,
        )
        panels.append(part)
        failed_share = [
            (
                name(r),
                sum(r.data["failed"]) / (r.data["size"] * len(r.data["failed"])),
                f"{r.failed} failed" + (" (F4)" if r.ours else ""),
                colour(r),
            )
            for r in outage
        ]
        part, top = _bars(
            "Same storms: share of requests failed (usersession's (F4): "
            "RefreshUnavailable, by rule F4; its target here is no logout)",
            failed_share,
            top,
            scale_max=1.0,
        )
        panels.append(part)

    upload = [r for r in rows if r.scenario == "upload"]
    if upload:
        resent = [
            (
                r.label,
                1.0 if r.data.get("resent_short") else 0.0,
                "resent EMPTY" if r.data.get("resent_short") else "not resent",
                colour(r),
            )
            for r in upload
        ]
        part, top = _bars(
            "Streamed upload meets a 401: resent with an empty body?",
            resent,
            top,
            scale_max=1.0,
        )
        panels.append(part)

    verdicts = {
        (r.data.get("label"), r.data.get("mode"), r.data.get("concurrency")): r.verdict
        for r in rows
        if r.scenario.startswith("overhead ")
    }
    overheads = sorted(
        results["overheads"], key=lambda o: (o.mode, o.concurrency, not o.ours)
    )
    if overheads:
        items = [
            (
                f"{o.label} ({'seq' if o.concurrency == 1 else o.concurrency})",
                o.ratio,
                f"{o.ratio:.3f}x ({o.ratio_low:.2f}-{o.ratio_high:.2f})",
                _colour(
                    o.ours, verdicts.get((o.label, o.mode, o.concurrency)) == "MISS"
                ),
            )
            for o in overheads
        ]
        high = max(1.3, *(o.ratio for o in overheads))
        part, top = _bars(
            "Time per request with a valid token, over the bare base library "
            "(median of per-round ratios, interquartile range)",
            items,
            top,
            scale_max=high,
            origin=0.8,
            mark=1.05,
            mark_label="target 1.05",
        )
        panels.append(part)

    legend_y = top + 4
    legend = (
        f'<rect x="10" y="{legend_y}" width="12" height="12" fill="{_OURS}"/>'
        f'<text x="28" y="{legend_y + 11}" font-size="12">usersession</text>'
        f'<rect x="120" y="{legend_y}" width="12" height="12" fill="{_MISS}"/>'
        f'<text x="138" y="{legend_y + 11}" font-size="12">'
        "usersession, target missed</text>"
        f'<rect x="320" y="{legend_y}" width="12" height="12" fill="{_PEER}"/>'
        f'<text x="338" y="{legend_y + 11}" font-size="12">other libraries</text>'
        f'<line x1="470" y1="{legend_y + 6}" x2="490" y2="{legend_y + 6}" '
        f'stroke="{_TARGET}" stroke-dasharray="4 3"/>'
        f'<text x="496" y="{legend_y + 11}" font-size="12">usersession\'s target</text>'
    )
    height = legend_y + 24
    body = "\n".join(panels)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="{height:.0f}" '
        f'viewBox="0 0 1000 {height:.0f}" font-family="sans-serif">\n'
        f'<rect width="1000" height="{height:.0f}" fill="white"/>\n'
        f"{body}\n{legend}\n</svg>\n"
    )

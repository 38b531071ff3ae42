"""The ``usersession`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def number(text: str) -> float:
    """A positive, finite number of seconds."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def lifetime(text: str) -> float:
    """A token lifetime: at least a second, or requests cannot outrun it."""
    value = number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 s, or tokens expire while requests travel: {text}"
        )
    return value


def count(text: str) -> int:
    """A whole number, zero or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_count(text: str) -> int:
    """A whole number, one or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usersession",
        description="HTTP sessions bound to a user who logged in with OAuth 2.0.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="run a concurrent workload through token expiries and a revocation",
        description=(
            "Start the development authorization server and demo API on "
            "127.0.0.1, log a user in, and send requests for that user from "
            "threads and asyncio tasks at once while access tokens expire and "
            "one is revoked. Exits 1 if a request failed or the token endpoint "
            "was called more often than the expiries and revocations needed."
        ),
    )
    demo.add_argument("--duration", type=number, default=10.0, help="seconds (10)")
    demo.add_argument("--threads", type=count, default=4, help="sync clients (4)")
    demo.add_argument(
        "--tasks", type=count, default=8, help="async requests in flight (8)"
    )
    demo.add_argument(
        "--lifetime",
        type=lifetime,
        default=4.0,
        help="access-token lifetime in seconds (4)",
    )
    demo.add_argument(
        "--revocations",
        type=count,
        default=1,
        help="server-side access-token revocations during the run (1)",
    )
    demo.add_argument(
        "--processes",
        type=positive_count,
        default=1,
        help="processes sharing the user through --store (1)",
    )
    demo.add_argument(
        "--store",
        choices=["memory", "file", "redis"],
        default=None,
        help="where the tokens live: memory (one process), file or redis; "
        "file when --processes is above 1",
    )
    demo.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the Redis server for --store redis (redis://127.0.0.1:6379/0)",
    )
    return parser


def _demo(args: argparse.Namespace) -> int:
    from ._demo import DemoOptions, run_demo

    if args.threads + args.tasks == 0:
        sys.stderr.write("usersession demo: error: --threads and --tasks are both 0\n")
        return 2
    store = args.store or ("memory" if args.processes == 1 else "file")
    if store == "memory" and args.processes > 1:
        sys.stderr.write(
            "usersession demo: error: processes cannot share a memory store; "
            "use --store file or --store redis\n"
        )
        return 2
    options = DemoOptions(
        duration=args.duration,
        threads=args.threads,
        tasks=args.tasks,
        lifetime=args.lifetime,
        revocations=args.revocations,
        processes=args.processes,
        store=store,
        redis_url=args.redis_url,
    )
    return run_demo(options, out=sys.stdout, progress_stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
    except KeyboardInterrupt:
        sys.stderr.write("\nusersession: interrupted\n")
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

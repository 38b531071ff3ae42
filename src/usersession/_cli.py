"""The ``usersession`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
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
    demo.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds (10)"
    )
    demo.add_argument(
        "--threads", type=_positive_int, default=4, help="sync clients (4)"
    )
    demo.add_argument(
        "--tasks", type=_count, default=8, help="async requests in flight (8)"
    )
    demo.add_argument(
        "--lifetime",
        type=_positive_float,
        default=4.0,
        help="access-token lifetime in seconds (4)",
    )
    demo.add_argument(
        "--revocations",
        type=_count,
        default=1,
        help="server-side access-token revocations during the run (1)",
    )
    return parser


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(
        duration=args.duration,
        threads=args.threads,
        tasks=args.tasks,
        lifetime=args.lifetime,
        revocations=args.revocations,
        out=sys.stdout,
        progress_stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``usersession`` command: its arguments, and how its failures end.

This module parses the command line (argparse) and turns every expected
failure into one line on stderr and an exit code (see `_cli_common`). Each
command's work is in a module of its own: ``_cli_login`` (login),
``_cli_request`` (request), ``_cli_session`` (token, status, logout),
``_cli_devserver`` (dev-server) and ``_demo`` (demo); ``_cli_profiles``
keeps the profiles they share.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, TypeAlias

from . import __version__
from ._cli_common import EXIT_CODES_HELP, CliError, Exit, error_line
from ._cli_profiles import login_command
from ._errors import ClientError, InvalidUser, LoginError

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


def port(text: str) -> int:
    """A TCP port, or 0 for a free one."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535: {text}")
    return value


def loopback(text: str) -> str:
    """A loopback IP address: the development server listens nowhere else."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a loopback IP address such as 127.0.0.1 or ::1: {text}"
        ) from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"must be a loopback address (127.0.0.0/8 or ::1): {text}"
        )
    return text


class _Formatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; the exit-code table as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit codes:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            Exit.USAGE,
            error_line(f"{message}; see: {self.prog} --help"),
        )


def _common() -> _Parser:
    # Options every profile command takes.
    common = _Parser(add_help=False)
    common.add_argument(
        "--profile",
        default="default",
        metavar="NAME",
        help="the profile: issuer, client and tokens (default: default)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what the library does (refreshes, revocations) on stderr; "
        "tokens only ever appear as short hashes",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="usersession",
        description="HTTP sessions bound to a user who logged in with OAuth 2.0: "
        "log in once, then send requests as that user, with the tokens kept "
        "fresh and shared by every invocation.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()
    _add_login(commands, common)
    _add_request(commands, common)
    _add_session_commands(commands, common)
    _add_dev_server(commands)
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
    demo.add_argument("--duration", type=number, default=12.0, help="seconds (12)")
    demo.add_argument("--threads", type=count, default=4, help="sync clients (4)")
    demo.add_argument(
        "--tasks", type=count, default=8, help="async requests in flight (8)"
    )
    demo.add_argument(
        "--lifetime",
        type=lifetime,
        default=6.0,
        help="access-token lifetime in seconds (6)",
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


Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_login(commands: Commands, common: _Parser) -> None:
    login = commands.add_parser(
        "login",
        parents=[common],
        help="log in and remember the profile",
        description=(
            "Log in at an OAuth 2.0 authorization server and save the tokens in "
            "the profile's store. The profile remembers the issuer, client id, "
            "the name of the environment variable holding the client secret "
            "(never the secret), scope, flow and store, so later logins need "
            "no options. The device flow is the default when this session has "
            "no display to open a browser on."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    login.add_argument(
        "--issuer", metavar="URL", help="the issuer (needed at the first login)"
    )
    login.add_argument(
        "--client-id", metavar="ID", help="the client id (needed at the first login)"
    )
    login.add_argument(
        "--client-secret-env",
        metavar="VAR",
        help="the environment variable holding the client secret, for a "
        "confidential client ('' for a public client again)",
    )
    login.add_argument("--scope", metavar="S", help="space-separated scopes to ask for")
    flow = login.add_mutually_exclusive_group()
    flow.add_argument(
        "--device",
        dest="flow",
        action="store_const",
        const="device",
        help="device flow: approve a code on any device (RFC 8628)",
    )
    flow.add_argument(
        "--browser",
        dest="flow",
        action="store_const",
        const="browser",
        help="browser flow: authorization code with PKCE and a loopback "
        "redirect (RFC 8252)",
    )
    login.add_argument(
        "--keyring",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the tokens in the system keyring instead of a file "
        "(needs the keyring package)",
    )
    login.add_argument(
        "--no-open",
        action="store_true",
        help="browser flow: print the URL to open instead of opening a browser",
    )
    login.add_argument(
        "--timeout",
        type=number,
        default=300.0,
        metavar="S",
        help="browser flow: seconds to wait for the browser (300)",
    )


def _add_request(commands: Commands, common: _Parser) -> None:
    request = commands.add_parser(
        "request",
        parents=[common],
        help="send an HTTP request as the profile's user (a curl for APIs)",
        description=(
            "Send one HTTP request with the profile's access token, refreshing "
            "it when due or rejected (once, even with other invocations "
            "running), and print the answer: with -i the status line and "
            "headers first, then the body, pretty-printed when it is JSON and "
            "byte for byte otherwise. Any HTTP answer exits 0 unless --fail."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    request.add_argument("method", metavar="METHOD", help="GET, POST, PUT...")
    request.add_argument("url", metavar="URL", help="https:// (or http:// to loopback)")
    request.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header (repeatable)",
    )
    body = request.add_mutually_exclusive_group()
    body.add_argument(
        "--json",
        dest="json_body",
        metavar="TEXT",
        help="send TEXT as a JSON body (@FILE reads a file, @- stdin); sets "
        "Content-Type and Accept to application/json",
    )
    body.add_argument(
        "-d",
        "--data",
        dest="form",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add a form field (repeatable); sends application/x-www-form-urlencoded",
    )
    body.add_argument(
        "--data-raw",
        metavar="TEXT",
        help="send TEXT as the body, as it is",
    )
    request.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="print the status line and headers before the body",
    )
    request.add_argument(
        "-f",
        "--fail",
        action="store_true",
        help="exit 22 without printing the body when the status is 400 or more",
    )
    request.add_argument(
        "-L", "--location", action="store_true", help="follow redirects"
    )
    request.add_argument(
        "--timeout",
        type=number,
        default=30.0,
        metavar="S",
        help="seconds to wait for the answer (30)",
    )


def _add_session_commands(commands: Commands, common: _Parser) -> None:
    commands.add_parser(
        "token",
        parents=[common],
        help="print a fresh access token, for $(usersession token)",
        description=(
            "Print the profile's access token, refreshed first when it is due, "
            "and a newline: nothing else goes to stdout, so "
            'curl -H "Authorization: Bearer $(usersession token)" works. '
            "Errors go to stderr."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    commands.add_parser(
        "status",
        parents=[common],
        help="show who is logged in and until when (never a token)",
        description=(
            "Show the profile's issuer, client, store, subject, scopes, when "
            "the access token expires and whether a refresh token is held. "
            "The subject is read from the id token without verifying it. No "
            "token is ever shown. Exits 3 when not logged in."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    logout = commands.add_parser(
        "logout",
        parents=[common],
        help="revoke the tokens and forget them",
        description=(
            "Revoke the profile's tokens at the authorization server (RFC "
            "7009) and remove them from its store. The profile's settings "
            "stay, so the next login needs no options, unless --forget."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    logout.add_argument(
        "--forget", action="store_true", help="remove the profile's settings too"
    )


def _add_dev_server(commands: Commands) -> None:
    dev = commands.add_parser(
        "dev-server",
        help="run the development authorization server and demo API",
        description=(
            "Run the development authorization server and a demo API on "
            "loopback until Ctrl-C, for testing your own programs. Prints the "
            "issuer, the API URL, the public client id and a login command. "
            "Never for production."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    dev.add_argument(
        "--host",
        type=loopback,
        default="127.0.0.1",
        help="loopback address to listen on (127.0.0.1)",
    )
    dev.add_argument(
        "--auth-port",
        type=port,
        default=8400,
        metavar="N",
        help="the authorization server's port (8400; 0 takes a free one)",
    )
    dev.add_argument(
        "--api-port",
        type=port,
        default=8401,
        metavar="N",
        help="the demo API's port (8401; 0 takes a free one)",
    )
    dev.add_argument(
        "--access-token-lifetime",
        type=lifetime,
        default=60.0,
        metavar="S",
        help="seconds an access token lives (60)",
    )


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


def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "demo":
        return _demo(args)
    if command == "dev-server":
        from ._cli_devserver import DevServerOptions, run_dev_server

        options = DevServerOptions(
            host=args.host,
            auth_port=args.auth_port,
            api_port=args.api_port,
            access_token_lifetime=args.access_token_lifetime,
        )
        return run_dev_server(options, out=sys.stdout)
    if command == "login":
        from ._cli_login import LoginOptions, run_login

        login = LoginOptions(
            profile=args.profile,
            issuer=args.issuer,
            client_id=args.client_id,
            client_secret_env=args.client_secret_env,
            scope=args.scope,
            flow=args.flow,
            keyring=args.keyring,
            open_browser=not args.no_open,
            timeout=args.timeout,
        )
        return run_login(login, out=sys.stdout, err=sys.stderr)
    if command == "request":
        from ._cli_request import RequestOptions, run_request

        request = RequestOptions(
            method=args.method,
            url=args.url,
            headers=args.headers,
            json_body=args.json_body,
            form=args.form,
            data_raw=args.data_raw,
            include=args.include,
            fail=args.fail,
            location=args.location,
            timeout=args.timeout,
            profile=args.profile,
        )
        return run_request(
            request, out=sys.stdout.buffer, err=sys.stderr, stdin=sys.stdin.buffer
        )

    from ._cli_session import run_logout, run_status, run_token

    if command == "token":
        return run_token(args.profile, out=sys.stdout)
    if command == "status":
        return run_status(args.profile, out=sys.stdout)
    if command == "logout":
        return run_logout(args.profile, forget=args.forget, out=sys.stdout)
    raise AssertionError(f"unhandled command {command}")  # pragma: no cover


def _failure(exc: Exception, profile: str) -> tuple[str, str | None, Exit]:
    """The message, OAuth error code and exit code of an expected failure."""
    if isinstance(exc, CliError):
        return exc.message, exc.code, exc.status
    code = getattr(exc, "error", None)
    code = code if isinstance(code, str) else None
    if isinstance(exc, InvalidUser):
        # The server ended the session (or it ended meanwhile): a new login
        # is the way out.
        again = f"{exc}; run: {login_command(profile)}"
        return again, code, Exit.NOT_LOGGED_IN
    if isinstance(exc, LoginError):
        return str(exc), code, Exit.LOGIN_FAILED
    return str(exc) or type(exc).__name__, code, Exit.FAILURE


@contextlib.contextmanager
def _library_logging(verbose: bool) -> Iterator[None]:
    # Without a handler, Python prints the library's warnings bare on stderr;
    # the tool says what went wrong itself, in one line, unless --verbose.
    handler: logging.Handler
    logger = logging.getLogger("usersession")
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("usersession: %(message)s"))
        handler.setLevel(logging.INFO)
        previous = logger.level
        logger.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
        previous = logger.level
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    with _library_logging(getattr(args, "verbose", False)):
        try:
            return _run(args)
        except KeyboardInterrupt:
            sys.stderr.write("\nusersession: interrupted\n")
            return Exit.INTERRUPTED
        except BrokenPipeError:
            # The reader went away (| head); say nothing more to it.
            _silence_stdout()
            return Exit.FAILURE
        except (CliError, ClientError) as exc:
            message, code, status = _failure(exc, getattr(args, "profile", "default"))
            sys.stderr.write(error_line(message, code))
            return status


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

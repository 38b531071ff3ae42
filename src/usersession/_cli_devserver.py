"""``usersession dev-server``: the development server in the foreground.

For people testing their own programs: the authorization server and the demo
API listen on loopback until Ctrl-C (or SIGTERM), which stops them cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import types
from collections.abc import Iterator
from typing import TextIO

from ._cli_common import CliError, Exit
from .devserver import DevServer

__all__ = ["DevServerOptions", "run_dev_server"]


@dataclasses.dataclass(frozen=True)
class DevServerOptions:
    """What ``usersession dev-server`` was asked to do (see its ``--help``)."""

    host: str = "127.0.0.1"
    auth_port: int = 8400
    api_port: int = 8401
    access_token_lifetime: float = 60.0


class _Stop(Exception):
    """SIGTERM arrived."""


def run_dev_server(options: DevServerOptions, *, out: TextIO) -> int:
    """Serve until Ctrl-C or SIGTERM; return 0 after a clean stop.

    Args:
        options: Where to listen and how long access tokens live.
        out: Where the addresses and the stop notice go.

    Raises:
        CliError: A port is taken, or the host is not loopback.
    """
    try:
        dev = DevServer(
            access_token_lifetime=options.access_token_lifetime,
            host=options.host,
            port=options.auth_port,
            api_port=options.api_port,
        )
    except ValueError as exc:
        raise CliError(str(exc), status=Exit.USAGE) from None
    try:
        dev.start()
    except OSError as exc:
        raise CliError(
            f"could not listen on {options.host} port {options.auth_port} or "
            f"{options.api_port}: {exc.strerror or exc}; choose others with "
            "--auth-port and --api-port (0 takes a free one)"
        ) from None
    try:
        with _sigterm_stops():
            # Announced once Ctrl-C and SIGTERM both stop cleanly.
            _announce(dev, options, out)
            _serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        dev.stop()
    out.write("\nusersession dev-server: stopped\n")
    out.flush()
    return Exit.OK


def _announce(dev: DevServer, options: DevServerOptions, out: TextIO) -> None:
    lifetime = f"{options.access_token_lifetime:g} s"
    out.write(
        "usersession dev-server: a development authorization server and demo "
        "API (for tests, never for production)\n\n"
        f"  issuer           {dev.issuer}\n"
        f"  demo API         {dev.api_url}   (GET /me needs a token)\n"
        f"  device page      {dev.issuer}/device   (approve device logins here)\n"
        f"  public client    {dev.public_client_id}\n"
        f"  token lifetime   {lifetime}\n\n"
        "Log in from another terminal with:\n\n"
        f"  usersession login --issuer {dev.issuer} "
        f"--client-id {dev.public_client_id}\n\n"
        "then try:\n\n"
        f"  usersession request GET {dev.api_url}/me\n\n"
        "Press Ctrl-C to stop.\n"
    )
    out.flush()


def _serve_forever() -> None:
    # The servers run in threads of their own; the main thread only waits,
    # in a sleep that Ctrl-C (KeyboardInterrupt) or SIGTERM (_Stop) ends.
    forever = threading.Event()
    while not forever.wait(3600.0):
        pass


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: types.FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

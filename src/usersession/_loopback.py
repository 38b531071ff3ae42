"""The loopback redirect of a browser login (RFC 8252 section 7.3).

`LoopbackReceiver` binds a socket on 127.0.0.1 before anything else, so the
redirect URI can name the port actually bound, and serves one callback on it
with a tiny standard-library HTTP server in a thread of its own. Whether a
callback is valid (`state`, RFC 9207's `iss`, an error answer) is decided by
`read_callback`, which does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import html
import logging
import os
import selectors
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ._errors import LoginError
from ._grant import login_error

__all__ = ["CALLBACK_PATH", "LoopbackReceiver", "bind_loopback", "read_callback"]

logger = logging.getLogger("usersession")

#: The path of the redirect URI.
CALLBACK_PATH = "/callback"

#: RFC 8252 section 7.3 (and 8.3): the loopback IP literal, not "localhost",
#: which could resolve elsewhere or to the other address family.
_HOST = "127.0.0.1"

#: A connection that sends no request in this time is closed (browsers open
#: spare connections they may never use).
_REQUEST_TIMEOUT = 10.0

Callback = str | LoginError


def bind_loopback(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1: on `port` when it is free, else on a
    port the system picks (any port works for RFC 8252 7.3 redirects)."""
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    for candidate in dict.fromkeys((port, 0)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if os.name != "nt":
                # Lets a second login reuse a port whose last connection is
                # in TIME_WAIT; a port some socket listens on stays refused.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_HOST, candidate))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if candidate == 0:
                raise
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            logger.info(
                "loopback port %d is not available (%s); using another", port, reason
            )
            continue
        return sock
    raise AssertionError("unreachable: port 0 either binds or raises")


def read_callback(
    params: Mapping[str, str],
    *,
    state: str,
    issuer: str | None,
    require_iss: bool = False,
    secrets: Iterable[str | None] = (),
) -> str:
    """Check the authorization response a redirect carried; return the code.

    Raises:
        LoginError: The ``state`` is not this login's (RFC 6749 section 10.12:
            a forged or stray redirect), ``iss`` names another server than
            `issuer` (RFC 9207 section 2.4: a mix-up attack), the response is
            an error (RFC 6749 section 4.1.2.1; ``AccessDenied`` for
            ``access_denied``), or it has no code.
    """
    # The state first: until it matches, nothing else in the request can be
    # trusted to come from the authorization server.
    if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
        raise LoginError(
            "the redirect's state does not match this login; it was rejected "
            "(a stray or forged redirect)"
        )
    iss = params.get("iss")
    if iss is None and require_iss:
        raise LoginError(
            "the redirect carries no issuer though the server says it always "
            "sends one; it was rejected (RFC 9207)"
        )
    if iss is not None and issuer is not None and iss != issuer:
        raise LoginError(
            "the redirect names another issuer than the provider's; it was "
            "rejected (RFC 9207)"
        )
    error = params.get("error")
    if error is not None:
        raise login_error(error, params.get("error_description"), secrets=secrets)
    code = params.get("code")
    if not code:
        raise LoginError("the redirect carries no authorization code")
    return code


class LoopbackReceiver:
    """A one-shot HTTP server for the redirect that ends a browser login.

    It listens from construction, answers ``GET /callback`` once (the first
    such request decides the outcome, valid or not) and 404 to anything
    else, and runs until `close` (or the end of a ``with`` block).

    Args:
        port: The preferred port; 0 or a taken port means any free port.
        check: Reads a callback's query parameters into the authorization
            code, raising `LoginError` for a callback to refuse.
    """

    def __init__(self, port: int, check: Callable[[Mapping[str, str]], str]) -> None:
        sock = bind_loopback(port)
        self.port: int = sock.getsockname()[1]
        self.redirect_uri = f"http://{_HOST}:{self.port}{CALLBACK_PATH}"
        self._check = check
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: Callback | None = None
        self._closing = threading.Event()
        try:
            # close() writes to this pair to wake the serving thread at once.
            self._wake_reader, self._wake_writer = socket.socketpair()
            self._server = _CallbackServer(sock, self)
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._serve, name="usersession-login-callback", daemon=True
        )
        self._thread.start()
        logger.debug("listening for the login redirect on port %d", self.port)

    def __repr__(self) -> str:
        return f"LoopbackReceiver(redirect_uri={self.redirect_uri!r})"

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and wake anyone still waiting."""
        self._done.set()
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        self._thread.join()
        self._server.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._closing.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._server.socket:
                        # Each connection gets a thread of its own, so one
                        # that sends nothing cannot hold the redirect up.
                        self._server.handle_request()

    def deliver(self, query: str) -> tuple[int, str]:
        """Take one callback's query string; return the status and page to
        answer the browser with."""
        with self._lock:
            if self._done.is_set():
                return 409, _page("Nothing to do", "This login is already over.")
            try:
                self._result = self._check(_single_values(query))
            except LoginError as exc:
                self._result = exc
            self._done.set()
            result = self._result
        if isinstance(result, LoginError):
            logger.info("login redirect rejected: %s", result)
            return 400, _page("Login failed", f"{result}. Return to the program.")
        return 200, _page(
            "Logged in", "You can close this tab and return to the program."
        )

    def wait(self, timeout: float) -> Callback | None:
        """The callback's outcome: the code, the error it ended with, or
        ``None`` when none came within `timeout` seconds (or on `close`)."""
        self._done.wait(timeout)
        with self._lock:
            return self._result

    async def wait_async(self, timeout: float) -> Callback | None:
        """The async form of `wait` (the waiting happens in a worker thread,
        which `close` wakes)."""
        return await asyncio.to_thread(self.wait, timeout)


def _single_values(query: str) -> dict[str, str]:
    # RFC 6749 section 3.1: parameters must not be repeated; a repeated
    # state or code could be a confusion attempt, so the request is refused.
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, max_num_fields=32)
    except ValueError:
        raise LoginError("the redirect has too many parameters") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise LoginError(f"the redirect repeats the parameter {name[:40]!r}")
        params[name] = value
    return params


def _page(title: str, text: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        "</body></html>\n"
    )


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True
    # handle_request() gives up after this long if the connection that woke
    # the selector went away before it was accepted.
    timeout = 0.5

    def __init__(self, sock: socket.socket, receiver: LoopbackReceiver) -> None:
        # The socket is bound and listening already: the server takes it as
        # it is (binding again would also look the host name up, which can
        # leave the machine).
        super().__init__(sock.getsockname(), _CallbackHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.receiver = receiver


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = _REQUEST_TIMEOUT
    server_version = "usersession"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes the request line, authorization code included,
        # to stderr.
        return

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != CALLBACK_PATH:
            self._answer(404, _page("Not found", "This is not the login redirect."))
            return
        self._answer(*self.server.receiver.deliver(query))

    def do_POST(self) -> None:
        self._answer(405, _page("Method not allowed", "Use GET."))

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _answer(self, status: int, page: str) -> None:
        body = page.encode("utf-8")
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # The page's URL holds the code: never pass it on (RFC 6749 10.6).
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", "default-src 'none'")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        self.close_connection = True

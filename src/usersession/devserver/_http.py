"""HTTP plumbing shared by the development servers.

A :class:`Listener` runs one ``ThreadingHTTPServer`` on a loopback address and
hands every parsed request to an :class:`Application`. The application answers
through an :class:`Exchange`, which can also drop the connection or sleep in a
way that :meth:`Listener.stop` interrupts, so fault injection never keeps a
test waiting after the server is gone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import selectors
import socket
import socketserver
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

logger = logging.getLogger("usersession.devserver")

#: Largest request body read into memory; bigger bodies get 413.
MAX_BODY_BYTES = 64 * 1024 * 1024

#: Idle keep-alive connections are closed after this many seconds.
IDLE_TIMEOUT = 60.0

_JSON = "application/json"
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request, body included."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in the order received."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def query_param(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = urllib.parse.parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    """An answer to send; ``oauth_error`` marks OAuth error answers for counting."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    oauth_error: str | None = None

    @classmethod
    def json(
        cls,
        status: int,
        payload: Mapping[str, Any],
        headers: Iterable[tuple[str, str]] = (),
        *,
        oauth_error: str | None = None,
    ) -> Response:
        """A JSON answer."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, _JSON, tuple(headers), oauth_error)

    @classmethod
    def empty(cls, status: int, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """An answer without a body."""
        return cls(status, b"", None, tuple(headers))


@dataclass
class Exchange:
    """What an application can do with the connection of one request."""

    _handler: _Handler
    sent: Response | None = field(default=None, init=False)
    dropped: bool = field(default=False, init=False)

    def send(self, response: Response) -> None:
        """Send the answer; a client that went away is not an error here."""
        if self.sent is not None or self.dropped:
            raise RuntimeError("this request was already answered")
        self.sent = response
        try:
            self._handler.write_response(response)
        except OSError:
            self._handler.close_connection = True

    def drop(self) -> None:
        """Close the connection without sending anything."""
        self.dropped = True
        self._handler.close_connection = True

    def sleep(self, seconds: float) -> bool:
        """Wait; return True if the server is stopping and the wait was cut short."""
        return self._handler.server.stopping.wait(seconds)


class Application(Protocol):
    """Something that answers requests."""

    def serve(self, request: Request, exchange: Exchange) -> None:
        """Answer one request through ``exchange``."""


def describe_exception(exc: BaseException) -> str:
    """Type and stack of an exception, without its message.

    Exception messages can carry request data (a ``KeyError`` of a token, say),
    so only the frames are kept when a handler fails.
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"{type(exc).__name__} (message withheld)\n{frames}"


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers offer
    server_version = "usersession-devserver"
    timeout = IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to each answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # The default access log goes to stderr and would print request lines;
        # _dispatch logs at DEBUG instead, without query strings or headers.
        return

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return  # parse_request already answered with an error
            self._dispatch()
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as exc:
            # The rest of the body is unread, so the connection cannot be reused.
            self.close_connection = True
            self.write_response(
                Response.json(exc.status, {"error": "invalid_request"}),
            )
            return
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers=tuple(self.headers.items()),
            body=body,
        )
        exchange = Exchange(self)
        try:
            self.server.app.serve(request, exchange)
        except Exception as exc:
            logger.error("devserver handler failed: %s", describe_exception(exc))
        if exchange.sent is None and not exchange.dropped:
            # A bug in an application must still leave the connection usable.
            exchange.send(Response.json(500, {"error": "server_error"}))
        status = exchange.sent.status if exchange.sent is not None else None
        logger.debug(
            "devserver %s %s %s -> %s",
            self.server.name,
            self.command,
            path,
            status if status is not None else "dropped",
        )

    def _read_body(self) -> bytes:
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            # RFC 9112 6.3: both framings at once is a smuggling vector; refuse.
            if lengths:
                raise _BadRequest(HTTPStatus.BAD_REQUEST)
            codings = [c.strip().lower() for e in encodings for c in e.split(",")]
            if codings != ["chunked"]:
                raise _BadRequest(HTTPStatus.NOT_IMPLEMENTED)
            return self._read_chunked()
        if not lengths:
            return b""
        values = {v.strip() for v in lengths}
        if len(values) != 1:
            raise _BadRequest(HTTPStatus.BAD_REQUEST)
        text = values.pop()
        if not _DIGITS.fullmatch(text):  # str.isdigit() would accept "²"
            raise _BadRequest(HTTPStatus.BAD_REQUEST)
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise ConnectionResetError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        # RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... 0 CRLF
        # trailer-section CRLF.
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _BadRequest(HTTPStatus.BAD_REQUEST)
            size_text = line.split(b";", 1)[0].strip()
            # Stricter than int(x, 16), which also takes "0x10", "+1" or "1_0".
            if not _HEX.fullmatch(size_text):
                raise _BadRequest(HTTPStatus.BAD_REQUEST)
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            chunks.append(self._read_exactly(size))
            if self.rfile.readline(3).rstrip(b"\r\n") != b"":
                raise _BadRequest(HTTPStatus.BAD_REQUEST)
        while True:  # trailer fields are read and ignored
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(chunks)

    def write_response(self, response: Response) -> None:
        """Write one complete answer with an exact Content-Length."""
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        if response.status not in (204, 304):
            # RFC 9110 8.6: no Content-Length on 204; a 304's would describe
            # the cached representation, which there is none of.
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Concurrency tests open dozens of connections at once; the default backlog
    # of 5 makes the kernel drop SYNs, which costs a client a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Application, name: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.name = name
        self.stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        # serve_forever() polls for shutdown; a socket pair wakes serve()
        # instead, so that stop() takes no polling interval.
        self._wake_reader, self._wake_writer = socket.socketpair()
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self._wake_reader.close()
            self._wake_writer.close()
            raise
        # A client that resets between select() and accept() must not block
        # the loop in accept().
        self.socket.setblocking(False)

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving`."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self.stopping.is_set():
                        self._accept()

    def _accept(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # nothing to accept after all
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self) -> None:
        """Make :meth:`serve` return, and every interruptible sleep end."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can leave the machine; the address is all we need.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"usersession-devserver-{self.name}-conn",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback, message included, to stderr.
        logger.debug("devserver %s connection error", self.name)

    def close_connections(self, timeout: float) -> None:
        """Cut every open connection and wait for its thread to end."""
        self.stopping.set()
        with self._connections_lock:
            items = list(self._connections.items())
        for sock, _ in items:
            # shutdown() wakes a thread blocked reading the next request; the
            # socket may already be closed by its own thread.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in items:
            thread.join(timeout)


def check_loopback(host: str) -> None:
    """Refuse to listen anywhere but on a loopback address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback IP address, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback IP address, not {host!r}")


class Listener:
    """One listening socket on loopback, served by daemon threads."""

    def __init__(self, app: Application, host: str, name: str, port: int = 0) -> None:
        check_loopback(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 to 65535, not {port}")
        self._app = app
        self._host = host
        self._name = name
        self._requested_port = port
        self._port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def port(self) -> int:
        """The port actually bound."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` with brackets around an IPv6 host."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind the port asked for (0: a free one) and start serving."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("a stopped server cannot be started again")
            if self._port is not None:
                raise RuntimeError("the server is already started")
            self._open(self._requested_port)

    def _open(self, port: int) -> None:
        server = _Server((self._host, port), self._app, self._name)
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve,
            name=f"usersession-devserver-{self._name}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def _close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.stop_serving()
        thread.join(5.0)
        server.server_close()  # from here on, connecting is refused
        server.close_connections(timeout=5.0)

    def refuse_connections(self, refuse: bool) -> None:
        """Close the listening socket (and open connections), or reopen it.

        Reopening binds the same port again, so URLs handed out stay valid.
        """
        with self._lock:
            if self._port is None or self._stopped:
                raise RuntimeError("the server is not running")
            if refuse:
                self._close()
            elif self._server is None:
                self._open(self._port)

    def stop(self) -> None:
        """Stop serving, close every socket and join the threads."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._close()

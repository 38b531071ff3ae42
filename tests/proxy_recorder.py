"""Loopback-only servers for the conformance suite: a recording forward proxy
and a recording origin.

`LoopbackProxy` is the safety net of every test that names a host other than
loopback: the HTTP library under test is told to use it (with the environment
ignored), so a request that should never be sent ends up here, recorded, and
goes no further. It only ever connects to 127.0.0.1 or ::1, and only when
asked to forward; it can also hold the answers it forwards until the test
releases them, which makes "this 401 arrives after that refresh" certain
instead of a matter of timing.

`OriginRecorder` is a second origin on another port that records what it
received (origin B of the redirect tests).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import ClassVar

#: Seconds a held answer, an idle connection or an upstream call may take.
PATIENCE = 30.0

#: Where the proxy may forward to: loopback names and the address it uses.
_LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}

#: Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True)
class Seen:
    """One request a recording server received.

    Attributes:
        method: The HTTP method.
        target: The request target as sent (an absolute URI for a proxy).
        headers: Header values by lower-case name; repeated ones joined.
        authorization_headers: How many Authorization headers came.
        body: The request body.
    """

    method: str
    target: str
    headers: dict[str, str]
    authorization_headers: int
    body: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: _RecordingServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), owner.handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN; nothing needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = PATIENCE
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def record(self, body: bytes) -> Seen:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        seen = Seen(
            method=self.command,
            target=self.path,
            headers=headers,
            authorization_headers=len(self.headers.get_all("Authorization") or []),
            body=body,
        )
        self.server.owner._record(seen)
        return seen

    def reply(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        *,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        for name, value in headers or [("Content-Type", "text/plain")]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _RecordingServer:
    """A threaded HTTP server on 127.0.0.1 that records every request."""

    handler: ClassVar[type[_Handler]]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._connections: set[socket.socket] = set()
        self._server = _Server(self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[Seen]:
        """A copy of the requests received so far."""
        with self._lock:
            return list(self._seen)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close(self) -> None:
        """Stop serving, end every connection and join every thread."""
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(PATIENCE)

    def __enter__(self) -> _RecordingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ProxyHandler(_Handler):
    server: _Server

    def do_CONNECT(self) -> None:
        # A tunnel (for https) is never opened: recorded, then refused.
        self.record(b"")
        self.reply(502, b"no tunnels here", close=True)

    def proxy(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, LoopbackProxy)
        body = self.read_body()
        self.record(body)
        url = urllib.parse.urlsplit(self.path)
        address = _LOOPBACK.get(url.hostname or "")
        if not owner.forward or url.scheme != "http" or address is None:
            # Nothing leaves: no connection is made for this request.
            self.reply(502, b"not forwarded by the loopback proxy")
            return
        status, reason, headers, answer = self._upstream(address, url, body)
        owner._hold()
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _upstream(
        self, address: str, url: urllib.parse.SplitResult, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            address, url.port or 80, timeout=PATIENCE
        )
        try:
            path = url.path or "/"
            if url.query:
                path = f"{path}?{url.query}"
            connection.putrequest(
                self.command, path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            answer = response.read()
            headers = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP
            ]
            return response.status, response.reason, headers, answer
        finally:
            connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = proxy


class LoopbackProxy(_RecordingServer):
    """A forward HTTP proxy on 127.0.0.1 that never reaches beyond loopback.

    Every request is recorded. With ``forward=False`` (the default) nothing
    is forwarded: each request is answered 502 by the proxy itself. With
    ``forward=True`` a plain-http request for 127.0.0.1, ::1 or localhost is
    sent on to that loopback address; any other target still gets 502, and
    no connection is made for it. ``hold=True`` holds each forwarded answer,
    once it has arrived from upstream, until `release` is called.
    """

    handler = _ProxyHandler

    def __init__(self, *, forward: bool = False, hold: bool = False) -> None:
        self.forward = forward
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._held = 0
        super().__init__()

    @property
    def held(self) -> int:
        """Answers that arrived from upstream while the proxy was holding."""
        with self._lock:
            return self._held

    def release(self) -> None:
        """Let every held answer, and all later ones, go to the client."""
        self._released.set()

    def _hold(self) -> None:
        with self._lock:
            if self._released.is_set():
                return
            self._held += 1
        if not self._released.wait(PATIENCE):
            raise AssertionError("the proxy's held answers were never released")

    def close(self) -> None:
        self.release()
        super().close()

    def __enter__(self) -> LoopbackProxy:
        return self


class _OriginHandler(_Handler):
    def answer(self) -> None:
        self.record(self.read_body())
        if self.path.startswith("/deny"):
            self.reply(
                401,
                b'{"error": "invalid_token"}',
                [
                    ("Content-Type", "application/json"),
                    ("WWW-Authenticate", 'Bearer realm="b", error="invalid_token"'),
                ],
            )
        else:
            self.reply(200, b'{"ok": true}', [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer


class OriginRecorder(_RecordingServer):
    """Another origin on 127.0.0.1 (its own port) that records each request.

    ``/deny`` answers 401 with a Bearer ``invalid_token`` challenge; any other
    path answers 200 ``{"ok": true}``.
    """

    handler = _OriginHandler

    def __enter__(self) -> OriginRecorder:
        return self

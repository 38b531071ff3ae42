"""The servers of the comparison, each in a process of its own.

``python compare_servers.py authority`` runs the development authorization
server and its demo API (rotation and reuse detection on) and takes
commands, one JSON object a line, on standard input: log a user in, expire
or revoke tokens, inject faults, read counters. The driver talks to it
through `Authority`.

``python compare_servers.py api`` runs a small asyncio HTTP/1.1 server for
the overhead runs: it answers 200 to a request whose ``Authorization`` is
``Bearer <token>`` for a token it was told about, 401 otherwise. It is fast
and single-threaded, so what the overhead runs measure is the client.

Both listen on 127.0.0.1 only and print their address first. When they
stop, the driver collects what the loopback guard refused in them
(each handle's `refused`, set by `close()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import compare_guard

HERE = Path(__file__).resolve().parent

# -- The authorization server -------------------------------------------------


def _authority_main() -> None:
    import httpx

    from usersession.devserver import DevServer, Fault, token_hash

    with DevServer(access_token_lifetime=3600.0, rotate_refresh_tokens=True) as dev:
        # A client of our own to ask the introspection endpoint whether a
        # refresh token still works (rotated or revoked ones do not).
        checker_secret = secrets.token_urlsafe(16)
        dev.add_client("compare-checker", checker_secret)
        checker = httpx.Client(auth=("compare-checker", checker_secret), timeout=10)

        def handle(command: dict[str, Any]) -> Any:
            op = command["op"]
            if op == "info":
                return {
                    "issuer": dev.issuer,
                    "token_endpoint": dev.token_endpoint,
                    "authorization_endpoint": dev.authorization_endpoint,
                    "revocation_endpoint": dev.revocation_endpoint,
                    "api_url": dev.api_url,
                    "client_id": dev.client_id,
                    "client_secret": dev.client_secret,
                }
            if op == "login":
                return dev.login(command["subject"], "openid offline_access")
            if op == "expire":
                dev.expire_access_tokens()
                return None
            if op == "revoke_access":
                return dev.revoke_access_token(command["token"])
            if op == "inject":
                fault = Fault.status(command["status"])
                dev.inject(command["endpoint"], fault, times=command.get("times", 1))
                return None
            if op == "clear_faults":
                dev.clear_faults()
                return None
            if op == "reset":
                dev.reset_stats()
                return None
            if op == "stats":
                return vars(dev.stats())
            if op == "api_seen":
                return [vars(seen) for seen in dev.api_seen()]
            if op == "refresh_token_active":
                answer = checker.post(
                    dev.introspection_endpoint, data={"token": command["token"]}
                )
                return answer.json().get("active") is True
            if op == "refused":
                return list(compare_guard.REFUSED)
            if op == "token_hash":
                return token_hash(command["token"])
            raise ValueError(f"unknown op {op!r}")

        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            try:
                reply = {"ok": handle(json.loads(line))}
            except Exception as exc:  # reported to the driver, which raises
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
        checker.close()


class Authority:
    """The driver's handle on the authorization server process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(Path(__file__)), "authority"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        assert self._process.stdout is not None
        first = self._process.stdout.readline()
        if not first or not json.loads(first).get("ready"):
            raise RuntimeError("the authorization server did not start")
        info = self.call("info")
        self.issuer: str = info["issuer"]
        self.token_endpoint: str = info["token_endpoint"]
        self.authorization_endpoint: str = info["authorization_endpoint"]
        self.revocation_endpoint: str = info["revocation_endpoint"]
        self.api_url: str = info["api_url"]
        self.client_id: str = info["client_id"]
        self.client_secret: str = info["client_secret"]

    def call(self, op: str, **args: Any) -> Any:
        with self._lock:
            stdin, stdout = self._process.stdin, self._process.stdout
            assert stdin is not None
            assert stdout is not None
            stdin.write(json.dumps({"op": op, **args}) + "\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError("the authorization server process is gone")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"authorization server: {reply['error']}")
        return reply["ok"]

    def login(self, subject: str) -> dict[str, Any]:
        payload: dict[str, Any] = self.call("login", subject=subject)
        return payload

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = self.call("stats")
        return counts

    def refresh_token_active(self, token: str | None) -> bool:
        return token is not None and bool(
            self.call("refresh_token_active", token=token)
        )

    def close(self) -> None:
        # What the guard refused in the server, asked while it still answers.
        try:
            self.refused: list[str] | None = list(self.call("refused"))
        except (RuntimeError, OSError, ValueError):
            self.refused = None
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


# -- The fast API -------------------------------------------------------------

_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 11\r\n\r\n" + b'{"ok":true}'
)
_UNAUTHORIZED = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
    b'WWW-Authenticate: Bearer error="invalid_token"\r\n'
    b"Content-Length: 2\r\n\r\n{}"
)
_CONTROL_PATH = b"/_allow"


class _FastProtocol(asyncio.Protocol):
    allowed: set[bytes]
    control_secret: bytes

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            lines = head.split(b"\r\n")
            length = 0
            authorization = None
            control = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value.strip())
                elif key == b"authorization":
                    authorization = value.strip()
                elif key == b"x-compare-control":
                    control = value.strip()
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            target = lines[0].split(b" ")[1] if b" " in lines[0] else b""
            assert self._transport is not None
            if target == _CONTROL_PATH and control == self.control_secret:
                self.allowed.add(b"Bearer " + body.strip())
                self._transport.write(_OK)
            elif authorization in self.allowed:
                self._transport.write(_OK)
            else:
                self._transport.write(_UNAUTHORIZED)


async def _api_main() -> None:
    _FastProtocol.allowed = set()
    _FastProtocol.control_secret = sys.argv[2].encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FastProtocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
    # Serve until the driver closes our standard input.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    print(compare_guard.report(), flush=True)


class FastAPI:
    """The driver's handle on the fast API process."""

    def __init__(self) -> None:
        self._secret = secrets.token_urlsafe(16)
        self._process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(Path(__file__)), "api", self._secret],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url: str = json.loads(self._process.stdout.readline())["url"]

    def allow(self, token: str) -> None:
        import httpx

        answer = httpx.post(
            f"{self.url}/_allow",
            content=token.encode(),
            headers={"X-Compare-Control": self._secret},
        )
        answer.raise_for_status()

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        # Its last line: what the guard refused in it (None if it never came).
        self.refused: list[str] | None = None
        assert self._process.stdout is not None
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            self.refused = list(json.loads(self._process.stdout.readline())["refused"])
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


if __name__ == "__main__":
    compare_guard.install()
    if sys.argv[1] == "authority":
        _authority_main()
    elif sys.argv[1] == "api":
        asyncio.run(_api_main())
    else:
        raise SystemExit(f"unknown server {sys.argv[1]!r}")

"""A throwaway ``redis-server`` on loopback, for tests of `RedisStore`.

It listens on 127.0.0.1 only, on a free port, keeps nothing on disk (no RDB
snapshots, no append-only file, a temporary working directory), and is
stopped when the test is done. Readiness is checked with a raw ``PING`` so the
helper does not depend on the client library it is used to test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

__all__ = ["RedisServer", "require_redis_server"]

#: How long a fresh server may take to answer PING on a slow machine.
_START_TIMEOUT = 15.0


def require_redis_server() -> str:
    """Return the path of ``redis-server``, or skip the test when it is missing.

    When the environment variable ``CI`` is set the test fails instead: CI
    must never pass by silently skipping the Redis tests.
    """
    path = shutil.which("redis-server")
    if path is not None:
        return path
    reason = (
        "redis-server is not installed (Debian: apt-get install redis-server); "
        "the RedisStore tests need a real server"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set, so this is a failure", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int, password: str | None) -> bool:
    commands = b"PING\r\n"
    if password is not None:
        secret = password.encode()
        commands = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
        commands += b"PING\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(commands)
            answer = b""
            while b"+PONG" not in answer:
                chunk = conn.recv(256)
                if not chunk:
                    return False
                answer += chunk
            return True
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1.

    Args:
        password: When given, clients must AUTH with it (``requirepass``).
    """

    def __init__(self, *, password: str | None = None) -> None:
        self.executable = require_redis_server()
        self.password = password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(127.0.0.1:{self.port}, {state})"

    @property
    def url(self) -> str:
        """The URL a client connects with, password included."""
        auth = "" if self.password is None else f":{self.password}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start on a free port (or the previous one, after `stop`)."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="usersession-redis-")
        reuse = self.port != 0
        # A port picked as free can be taken before the server binds it, so
        # a fresh start tries a few; a restart keeps its port on purpose.
        for _ in range(1 if reuse else 5):
            if not reuse:
                self.port = _free_port()
            if self._launch(Path(self._dir.name)):
                return self
        raise RuntimeError(f"redis-server did not start: {self._log_tail()}")

    def _launch(self, directory: Path) -> bool:
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if _ping(self.port, self.password):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def _log_tail(self) -> str:
        if self._dir is None:
            return "no log"
        log = Path(self._dir.name) / "redis.log"
        with contextlib.suppress(OSError):
            return log.read_text(errors="replace")[-2000:]
        return "no log"

    def stop(self) -> None:
        """Stop the server; its data is gone (nothing is persisted)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Running the ``usersession`` command in tests: a private home, and helpers.

Every invocation gets HOME, XDG_CONFIG_HOME and XDG_DATA_HOME inside the
test's temporary directory, no display (so no browser can ever open), and the
tests' usersession first on the path.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from processes import child_env

#: How the device flow shows its code (see `_cli_login`).
USER_CODE = re.compile(r"enter the code:\s+(\S+)")

#: Variables that could open a browser, reach a display or hold a secret.
_SCRUBBED = ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "SSH_CONNECTION", "SSH_TTY")


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """An environment whose config, data and home are under `root`."""
    env = child_env()
    for name in _SCRUBBED:
        env.pop(name, None)
    for name in ("home", "config", "data"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_DATA_HOME=str(root / "data"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def command(*args: str) -> list[str]:
    """The argv of ``usersession ARGS`` with this interpreter."""
    return [sys.executable, "-m", "usersession", *args]


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 60.0, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    """Run ``usersession ARGS`` to its end; text output."""
    return subprocess.run(
        command(*args),
        env=env,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _interruptible() -> None:
    # A suite started in the background (``pytest &``) inherits SIGINT
    # ignored, and so would every process it starts; these are sent Ctrl-C
    # on purpose, so they get the default disposition a terminal gives.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Running:
    """A ``usersession`` process whose stderr (or stdout) is read as it comes."""

    def __init__(self, env: dict[str, str], *args: str, watch: str = "stderr") -> None:
        self.process = subprocess.Popen(
            command(*args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )
        self.seen = ""
        self._chunks: queue.Queue[str | None] = queue.Queue()
        stream = self.process.stderr if watch == "stderr" else self.process.stdout
        assert stream is not None
        self._other = self.process.stdout if watch == "stderr" else self.process.stderr
        self._pump = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._pump.start()

    def _read(self, stream: object) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            self._chunks.put(line)
        self._chunks.put(None)

    def wait_for(
        self, pattern: re.Pattern[str], timeout: float = 30.0
    ) -> re.Match[str]:
        """Read until `pattern` shows; fail the test if it does not in time."""
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.search(self.seen)
            if found:
                return found
            left = deadline - time.monotonic()
            try:
                chunk = self._chunks.get(timeout=max(0.0, left))
            except queue.Empty:
                chunk = None
            if chunk is None:
                self.kill()
                raise AssertionError(
                    f"{pattern.pattern!r} never showed; the process said:\n{self.seen}"
                )
            self.seen += chunk

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for the end; return the exit code, the other stream and the
        rest of the watched one."""
        code = self.process.wait(timeout)
        self._pump.join(10)
        while (chunk := self._chunks.get(timeout=10)) is not None:
            self.seen += chunk
        other = self._other.read() if self._other is not None else ""
        self.close()
        return code, other, self.seen

    def kill(self) -> None:
        """Kill the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        """Kill it if needed and close its pipes."""
        self.kill()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def approve_on_device_page(verification_uri: str, user_code: str) -> None:
    """Approve a user code the way a person does: through the dev server's
    ``/device`` page, over HTTP."""
    with httpx.Client(timeout=10.0, follow_redirects=True) as http:
        page = http.get(verification_uri)
        assert page.status_code == 200, page.text
        answer = http.post(
            verification_uri,
            data={"user_code": user_code, "action": "approve"},
        )
        assert answer.status_code == 200, answer.text

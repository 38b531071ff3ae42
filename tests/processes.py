"""Child Python processes for the store tests: start, talk to, kill.

A child runs a short script with this interpreter and imports the same
usersession as the tests. It talks one line at a time on stdin and stdout;
its stderr goes to a file, shown when the child does not say what it should.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import usersession

#: The directory that holds the usersession package the tests import.
_SOURCE = str(Path(usersession.__file__).resolve().parent.parent)

#: Hold a `FileLock` on argv[1] (waiting at most argv[2] seconds, default 0)
#: until a line arrives on stdin.
HOLD_LOCK = """
import sys
from pathlib import Path
from usersession._filestore import FileLock

timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
with FileLock(Path(sys.argv[1]), timeout).hold():
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def child_env() -> dict[str, str]:
    """This environment, with the tests' usersession first on the path."""
    env = dict(os.environ)
    parts = [_SOURCE, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(part for part in parts if part)
    return env


class Child:
    """A child process running `script` with `args` in its argv."""

    def __init__(self, script: str, *args: object) -> None:
        # Closed in close(): it outlives this method.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *(str(arg) for arg in args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=child_env(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read_lines, daemon=True)
        self._pump.start()

    def _read_lines(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, timeout: float = 15.0) -> str:
        """The child's next line; fails the test if none comes in time."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.kill()
            raise AssertionError(f"the child said nothing more:\n{self.stderr()}")
        return line

    def say(self, line: str = "") -> None:
        """Send one line to the child's stdin."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(15)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the child to exit; return its exit status."""
        return self.process.wait(timeout)

    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Kill the child if it still runs, and release every resource."""
        self.kill()
        self._pump.join(15)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


@contextlib.contextmanager
def child(script: str, *args: object) -> Iterator[Child]:
    """A `Child` that is killed and cleaned up when the block ends."""
    process = Child(script, *args)
    try:
        yield process
    finally:
        process.close()


@contextlib.contextmanager
def lock_held_elsewhere(lock_path: Path) -> Iterator[Child]:
    """Another process holds the lock on `lock_path` during the block."""
    with child(HOLD_LOCK, lock_path) as holder:
        assert holder.expect() == "locked"
        yield holder
        holder.say()
        assert holder.expect() == "released"
        assert holder.wait() == 0

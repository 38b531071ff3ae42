"""The interactive parts of the ``usersession`` command, in a real terminal.

Each test runs the command in a tmux pane (a pseudo-terminal, as a person
would), reads the screen with ``capture-pane`` and types with ``send-keys``.
Without tmux these tests are skipped, except in CI (``CI`` set), where a
missing tmux is a failure: install it with ``apt-get install tmux``.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from usersession.devserver import DevServer

from cli_env import USER_CODE, approve_on_device_page, cli_env

TMUX = shutil.which("tmux")
_EXITED = re.compile(r"\[usersession exited (\d+)\]")
_names = itertools.count()


class Pane:
    """One tmux server of the test's own, with one pane running a command."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        assert TMUX is not None
        self._tmux = TMUX
        self._name = f"usersession-test-{os.getpid()}-{next(_names)}"
        self._env = env
        self._config = root / "tmux.conf"
        # Keep the pane after the command ends, to read its last screen and
        # its exit status.
        self._config.write_text("set -g remain-on-exit on\n")

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [self._tmux, "-L", self._name, "-f", str(self._config), *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, *args: str) -> None:
        """Run ``usersession ARGS`` in a new 100x30 pane.

        The shell around it prints the exit status when it ends (tmux's own
        ``pane_dead_status`` is sometimes left empty). Its ``trap`` keeps a
        Ctrl-C meant for the command from ending the shell first, and unlike
        an ignored signal it is not inherited: the command gets Ctrl-C as a
        person's program does.
        """
        command = shlex.join([sys.executable, "-m", "usersession", *args])
        script = f'trap : INT; {command}; echo "[usersession exited $?]"'
        self._run("new-session", "-d", "-s", "cli", "-x", "100", "-y", "30", script)

    def screen(self) -> str:
        """What the pane shows, wrapped lines joined."""
        return self._run("capture-pane", "-p", "-J", "-t", "cli")

    def keys(self, *keys: str) -> None:
        """Type `keys` (tmux key names, such as ``C-c``)."""
        self._run("send-keys", "-t", "cli", *keys)

    def wait_until(
        self, done: Callable[[str], bool], what: str, timeout: float = 30.0
    ) -> str:
        """Read the screen until `done(screen)`; fail the test if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if done(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def wait_for_exit(self, timeout: float = 30.0) -> int:
        """The command's exit status, once it ends."""
        screen = self.wait_until(
            lambda s: _EXITED.search(s) is not None, "the command end", timeout
        )
        found = _EXITED.search(screen)
        assert found is not None
        return int(found.group(1))

    def close(self) -> None:
        """Stop this test's tmux server and everything in it."""
        subprocess.run(
            [self._tmux, "-L", self._name, "kill-server"],
            env=self._env,
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    if TMUX is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing in CI; install it: apt-get install tmux")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    terminal = Pane(tmp_path, cli_env(tmp_path, TERM="xterm"))
    try:
        yield terminal
    finally:
        terminal.close()


@pytest.fixture
def dev() -> Iterator[DevServer]:
    with DevServer() as server:
        server.login_settings.device_interval = 1.0
        yield server


def test_device_login_in_a_terminal_shows_the_code_waits_visibly_and_succeeds(
    pane: Pane, dev: DevServer
) -> None:
    pane.start(
        "login", "--device", "--issuer", dev.issuer, "--client-id", dev.public_client_id
    )
    screen = pane.wait_until(lambda s: USER_CODE.search(s) is not None, "the code")
    found = USER_CODE.search(screen)
    assert found is not None
    assert f"{dev.issuer}/device" in screen

    # The waiting line is one line, rewritten in place as time passes.
    waiting = re.compile(r"[|/\\-] Waiting for approval\.\.\. (\d+) s")
    first = pane.wait_until(lambda s: waiting.search(s) is not None, "the wait")
    pane.wait_until(
        lambda s: (m := waiting.search(s)) is not None and m.group(1) != "0",
        "the seconds go up",
    )
    later = pane.screen()
    assert len(waiting.findall(first)) == len(waiting.findall(later)) == 1

    # The person approves on the dev server's page, in their browser.
    approve_on_device_page(f"{dev.issuer}/device", found.group(1))
    assert pane.wait_for_exit() == 0
    screen = pane.screen()
    assert "Approved." in screen
    assert "Logged in (profile default)" in screen
    assert "Waiting for approval" not in screen  # the line was cleared
    assert "Traceback" not in screen


def test_ctrl_c_during_a_login_in_a_terminal_exits_130(
    pane: Pane, dev: DevServer
) -> None:
    pane.start("login", "--issuer", dev.issuer, "--client-id", dev.public_client_id)
    pane.wait_until(lambda s: "Waiting for approval" in s, "the wait")
    pane.keys("C-c")
    assert pane.wait_for_exit() == 130
    screen = pane.screen()
    assert "usersession: interrupted" in screen
    assert "Traceback" not in screen


def test_dev_server_in_a_terminal_stops_cleanly_on_ctrl_c(pane: Pane) -> None:
    pane.start("dev-server", "--auth-port", "0", "--api-port", "0")
    screen = pane.wait_until(lambda s: "Press Ctrl-C to stop." in s, "the banner")
    assert re.search(r"issuer\s+http://127\.0\.0\.1:\d+", screen)
    assert "usersession login --issuer http://127.0.0.1:" in screen
    pane.keys("C-c")
    assert pane.wait_for_exit() == 0
    screen = pane.screen()
    assert "usersession dev-server: stopped" in screen
    assert "Traceback" not in screen
    assert "KeyboardInterrupt" not in screen

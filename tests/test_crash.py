"""A process killed (SIGKILL) in the middle of a refresh (P2, X2).

A child process refreshes through a `FileStore` against the development
server, and the test kills it at one of four points:

- ``waiting``: the token request is at the server, which holds its answer;
- ``answered``: the new tokens arrived, nothing is saved yet;
- ``temp-written``: the new file is written and synced beside the store,
  but not yet renamed over it;
- ``saved``: the rename is done.

The child stops at the exact point through a `FileStore` subclass that says
where it is on stdout and then sleeps until it is killed. Afterwards a fresh
process must find the complete old pair or the complete new pair, never a
mix and never the temporary file, and must get the lock at once: the kernel
drops a flock when its holder dies.
"""

from __future__ import annotations

import hashlib
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from usersession import FileStore, Tokens
from usersession.devserver import DevServer, Fault

from conftest import Mode, login
from processes import child

_REFRESHER = """
import asyncio
import hashlib
import sys
import time

from usersession import FileStore, Provider, User

token_endpoint, client_id, secret, path, stop_at, mode = sys.argv[1:]


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def reached(point):
    print(point, flush=True)
    if point == stop_at:
        time.sleep(60)  # killed here


class Pausing(FileStore):
    def save(self, tokens):
        print("new", digest(tokens.access_token), digest(tokens.refresh_token),
              flush=True)
        reached("answered")
        super().save(tokens)

    def _commit(self, temp):
        reached("temp-written")
        super()._commit(temp)
        reached("saved")


user = User(Provider(token_endpoint, client_id, secret), store=Pausing(path))
print("ready", flush=True)
if mode == "sync":
    user.refresh()
else:
    asyncio.run(user.arefresh())
print("done", flush=True)
"""

_INSPECTOR = """
import hashlib
import sys

from usersession import FileStore


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


store = FileStore(sys.argv[1], lock_timeout=0)
with store.lock():
    print("lock free", flush=True)
tokens = store.load()
print(digest(tokens.access_token), digest(tokens.refresh_token), flush=True)
"""

Pair = tuple[str, str]


def pair(tokens: Tokens) -> Pair:
    assert tokens.refresh_token is not None
    return (
        hashlib.sha256(tokens.access_token.encode()).hexdigest(),
        hashlib.sha256(tokens.refresh_token.encode()).hexdigest(),
    )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".tokens.json.*.tmp"))


@pytest.mark.parametrize("stop_at", ["waiting", "answered", "temp-written", "saved"])
def test_p2_a_refresh_killed_at_any_point_leaves_a_whole_pair(
    dev: DevServer, mode: Mode, tmp_path: Path, stop_at: str
) -> None:
    """P2, X2: after SIGKILL at `stop_at`, the file holds the whole old pair
    (killed before the rename) or the whole new pair the server issued
    (after it), no temporary file is read, and the lock is free at once."""
    path = tmp_path / "tokens.json"
    old = login(dev, store=FileStore(path)).tokens
    assert old is not None
    if stop_at == "waiting":
        dev.inject("token", Fault.delay(30))  # ends when the server stops

    args = (dev.token_endpoint, dev.client_id, dev.client_secret, path, stop_at)
    new: Pair | None = None
    with child(_REFRESHER, *args, mode) as refresher:
        assert refresher.expect() == "ready"
        if stop_at == "waiting":
            wait_until(lambda: dev.stats().token_requests == 1)
        else:
            while (line := refresher.expect()) != stop_at:
                if line.startswith("new "):
                    access, refresh = line.split()[1:]
                    new = (access, refresh)
        refresher.kill()
        assert refresher.process.returncode == -signal.SIGKILL

    with child(_INSPECTOR, path) as inspector:
        assert inspector.expect(5) == "lock free"
        found = tuple(inspector.expect().split())
        assert inspector.wait() == 0

    if stop_at == "saved":
        assert new is not None and new != pair(old)
        assert found == new
        assert temp_files(tmp_path) == []
    else:
        assert found == pair(old)
    if stop_at == "waiting":
        assert new is None and dev.stats().refresh_grants == 0
    if stop_at == "temp-written":
        # The new tokens were on disk beside the store, owner-only, and
        # were not taken for it.
        [temp] = temp_files(tmp_path)
        assert stat.S_IMODE(temp.stat().st_mode) == 0o600
    assert dev.stats().token_requests == 1

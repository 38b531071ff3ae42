"""`FileStore`: tokens in an owner-only JSON file, shared by processes (P1-P4,
X2, C07)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import usersession
from usersession import FileStore, Tokens, User
from usersession.devserver import DevServer

from conftest import Mode, login, provider_for, send
from processes import HOLD_LOCK, child, lock_held_elsewhere

needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def sample(**changes: object) -> Tokens:
    tokens = Tokens("at-1", "rt-1", 1_900_000_000.0, "openid", "idt-1", lifetime=60.0)
    return dataclasses.replace(tokens, **changes)  # type: ignore[arg-type]


def refresh(user: User, mode: Mode) -> Tokens:
    if mode == "sync":
        return user.refresh()
    return asyncio.run(user.arefresh())


def leftovers(directory: Path) -> list[str]:
    """Files in `directory` that are neither a store nor its lock."""
    return sorted(
        p.name for p in directory.iterdir() if not p.name.endswith((".json", ".lock"))
    )


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def skip_unless_permissions_apply(directory: Path) -> None:
    """Skip when this process reads and writes whatever it likes (root)."""
    probe = directory / "probe"
    probe.write_text("")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return
    finally:
        probe.unlink()
    pytest.skip("permission checks do not apply to this process (root)")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- P1: a user and its store ------------------------------------------------


def test_p1_a_user_without_tokens_takes_the_files_tokens(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P1: created with tokens, a user saves them; created without, it takes
    the file's tokens and sends with them."""
    path = tmp_path / "tokens.json"
    first = login(dev, store=FileStore(path))
    assert first.tokens is not None
    assert FileStore(path).load() == first.tokens

    second = User(provider_for(dev), store=FileStore(path))
    assert second.tokens == first.tokens
    assert send(second, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().token_requests == 0


def test_p1_an_empty_store_leaves_the_user_logged_out(tmp_path: Path) -> None:
    """P1: no file, no tokens: the user is logged out, and logout clears."""
    store = FileStore(tmp_path / "none.json")
    provider = usersession.Provider(
        "https://as.example/token", "cid", token_endpoint_auth_method="none"
    )
    user = User(provider, store=store)
    assert not user.is_logged_in
    user.set_tokens(sample())
    assert store.load() == sample()
    user.logout()
    assert store.load() is None
    assert not store.path.exists()


# -- P2: the file ------------------------------------------------------------


def test_p2_the_file_is_versioned_json(tmp_path: Path) -> None:
    """P2: a small versioned JSON document that round-trips every field."""
    store = FileStore(tmp_path / "tokens.json")
    assert store.load() is None
    store.save(sample())
    document = json.loads(store.path.read_text(encoding="utf-8"))
    assert document == {"format": 1, "tokens": sample().to_dict()}
    assert store.load() == sample()
    assert store.load().lifetime == 60.0  # type: ignore[union-attr]


@needs_flock
def test_x2_the_file_and_its_directory_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    """X2: 0600 files and a 0700 directory, even under a permissive umask."""
    store = FileStore(tmp_path / "new" / "dir" / "tokens.json")
    with umask(0):
        store.save(sample())
        with store.lock():
            pass
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700

    # A file someone loosened is owner-only again after the next save.
    store.path.chmod(0o644)
    store.save(sample(access_token="at-2"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_x2_each_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    """X2: every save is a new file renamed into place (a new inode), no
    temporary file stays behind, and a reader never sees a partial file."""
    store = FileStore(tmp_path / "tokens.json")
    store.save(sample())
    inode = store.path.stat().st_ino
    store.save(sample(access_token="at-2"))
    assert store.path.stat().st_ino != inode
    assert leftovers(tmp_path) == []

    # A reader racing 200 saves sees only complete sets of tokens.
    # Long values make each write big enough to be seen half-done, were it
    # written in place.
    versions = [sample(access_token=f"at-{i}-" + "x" * 5000) for i in range(2)]
    store.save(versions[1])
    seen: list[Tokens | BaseException | None] = []
    done = threading.Event()

    def reader() -> None:
        reader_store = FileStore(store.path)
        while not done.is_set():
            try:
                seen.append(reader_store.load())
            except BaseException as exc:
                seen.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            store.save(versions[i % 2])
    finally:
        done.set()
        thread.join(10)
    assert seen
    assert all(item in versions for item in seen), {type(x) for x in seen}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x00\xffgarbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(
            b'{"format": 1, "tokens": {"access_token": "at-1", "ref', id="truncated"
        ),
        pytest.param(b'["at-1", "rt-1"]', id="not-an-object"),
        pytest.param(b'{"tokens": {"access_token": "at-1"}}', id="no-format"),
        pytest.param(b'{"format": 1}', id="no-tokens"),
        pytest.param(b'{"format": 1, "tokens": ["at-1"]}', id="tokens-not-object"),
        pytest.param(b'{"format": 1, "tokens": {"refresh_token": "r"}}', id="no-at"),
        pytest.param(
            b'{"format": 1, "tokens": {"access_token": "at-1", "refresh_token": 5}}',
            id="refresh-token-not-string",
        ),
        pytest.param(
            b'{"format": 1, "tokens": {"access_token": "at-1", "expires_at": "soon"}}',
            id="expiry-not-number",
        ),
        pytest.param(
            b'{"format": 1, "tokens": {"access_token": "at-1", "expires_at": NaN}}',
            id="expiry-nan",
        ),
        pytest.param(
            b'{"format": true, "tokens": {"access_token": "at-1"}}', id="format-bool"
        ),
    ],
)
def test_p2_an_unreadable_file_is_moved_aside_never_read_as_logged_out(
    tmp_path: Path, content: bytes
) -> None:
    """P2: a file that is not saved tokens is renamed to
    <file>.unreadable-<timestamp> and StoreError says where; it is kept
    byte for byte, and the error never quotes it."""
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    store = FileStore(path)
    with pytest.raises(usersession.StoreError) as caught:
        store.load()
    [aside] = tmp_path.glob("tokens.json.unreadable-*")
    assert str(aside) in str(caught.value)
    assert "at-1" not in str(caught.value)
    assert caught.value.__cause__ is None  # a JSON error would carry the text
    assert aside.read_bytes() == content
    assert not path.exists()
    assert store.load() is None  # moved aside: now the store is empty


def test_p2_a_directory_in_the_files_place_is_moved_aside(tmp_path: Path) -> None:
    """P2: a directory where the file should be is not "logged out"."""
    path = tmp_path / "tokens.json"
    path.mkdir()
    with pytest.raises(usersession.StoreError, match="moved to"):
        FileStore(path).load()
    [aside] = tmp_path.glob("tokens.json.unreadable-*")
    assert aside.is_dir()


def test_p2_a_file_that_cannot_be_opened_is_moved_aside(tmp_path: Path) -> None:
    """P2: permission denied is an unreadable file, not a missing one."""
    skip_unless_permissions_apply(tmp_path)
    store = FileStore(tmp_path / "tokens.json")
    store.save(sample())
    store.path.chmod(0)
    with pytest.raises(usersession.StoreError, match="moved to"):
        store.load()
    assert list(tmp_path.glob("tokens.json.unreadable-*"))


def test_p2_a_file_of_a_newer_format_is_left_alone(tmp_path: Path) -> None:
    """P2: a newer usersession's file is an error, and is not moved aside:
    the newer version still needs it."""
    path = tmp_path / "tokens.json"
    path.write_text('{"format": 2, "tokens": {"access_token": "at-1"}}')
    with pytest.raises(usersession.StoreError, match="newer version"):
        FileStore(path).load()
    assert path.exists()
    assert not list(tmp_path.glob("*.unreadable-*"))


def test_p2_a_user_on_an_unreadable_file_is_an_error_not_logged_out(
    tmp_path: Path,
) -> None:
    """P2: creating a user over a damaged file raises StoreError."""
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    provider = usersession.Provider(
        "https://as.example/token", "cid", token_endpoint_auth_method="none"
    )
    with pytest.raises(usersession.StoreError):
        User(provider, store=FileStore(path))


def test_p2_a_cleared_store_loads_as_none(tmp_path: Path) -> None:
    """P2: clear removes the tokens; a document holding none is empty too."""
    store = FileStore(tmp_path / "tokens.json")
    store.clear()  # nothing to clear is fine
    store.save(sample())
    store.clear()
    assert store.load() is None
    assert leftovers(tmp_path) == []
    store.path.write_text('{"format": 1, "tokens": null}')
    assert store.load() is None


def test_p2_async_forms(tmp_path: Path) -> None:
    """P2: aload, asave, aclear and alock do what the sync forms do."""
    store = FileStore(tmp_path / "tokens.json")

    async def main() -> None:
        assert await store.aload() is None
        async with store.alock():
            await store.asave(sample())
        assert await store.aload() == sample()
        await store.aclear()
        assert await store.aload() is None

    asyncio.run(main())


# -- P2: adopting what another process saved ---------------------------------


def test_p2_a_refresher_adopts_tokens_another_user_saved(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P2: after taking the lock the refresher re-reads the file; finding
    newer tokens there, it adopts them and does not call the token endpoint."""
    path = tmp_path / "tokens.json"
    first = login(dev, store=FileStore(path))
    second = User(provider_for(dev), store=FileStore(path))
    old = first.tokens
    assert old is not None

    new = refresh(first, mode)
    assert dev.stats().token_requests == 1
    assert FileStore(path).load() == new

    # `second` still sends the old token; the API rejects it, and the
    # refresh that follows finds the new tokens in the file.
    dev.revoke_access_token(old.access_token)
    response = send(second, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert [hop.status_code for hop in response.history] == [401]
    assert second.tokens == new
    stats = dev.stats()
    assert (stats.token_requests, stats.invalid_grant_answers) == (1, 0)


def test_p3_users_refreshing_at_once_make_one_token_request(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P3: four users on one file, each with its own FileStore object,
    refresh at the same moment: one token request, one set of tokens."""
    path = tmp_path / "tokens.json"
    login(dev, store=FileStore(path))
    users = [User(provider_for(dev), store=FileStore(path)) for _ in range(4)]
    barrier = threading.Barrier(len(users))
    results: list[Tokens | BaseException] = []

    def one(user: User) -> None:
        barrier.wait()
        try:
            results.append(refresh(user, mode))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    assert all(result == results[0] for result in results), results
    stats = dev.stats()
    assert (stats.token_requests, stats.invalid_grant_answers) == (1, 0)


_FLEET_MEMBER = """
import sys
import usersession

token_endpoint, client_id, secret, path, url = sys.argv[1:]
provider = usersession.Provider(token_endpoint, client_id, secret)
user = usersession.User(provider, store=usersession.FileStore(path))
print("ready", flush=True)
sys.stdin.readline()
with usersession.Client(user, timeout=30) as client:
    print(client.get(url).status_code, flush=True)
"""


@needs_flock
def test_p3_processes_sharing_a_file_refresh_once(
    dev: DevServer, tmp_path: Path
) -> None:
    """P3: three processes load tokens that are due, then send at once:
    exactly one token request, with rotation on and no invalid_grant."""
    path = tmp_path / "tokens.json"
    tokens = Tokens.from_response(dev.login())
    FileStore(path).save(dataclasses.replace(tokens, expires_at=time.time() + 5))
    args = (dev.token_endpoint, dev.client_id, dev.client_secret, path)
    with contextlib.ExitStack() as stack:
        members = [
            stack.enter_context(child(_FLEET_MEMBER, *args, f"{dev.api_url}/me"))
            for _ in range(3)
        ]
        for member in members:
            assert member.expect() == "ready"
        for member in members:
            member.say("go")
        assert [member.expect() for member in members] == ["200"] * 3
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert stats.invalid_grant_answers == 0


# -- P4: a store that fails --------------------------------------------------


@needs_flock
def test_p4_a_lock_held_too_long_makes_the_refresh_fail_for_now(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P4: another process holds the lock past lock_timeout: the refresh
    fails for now, the user stays logged in, and succeeds once it is free."""
    store = FileStore(tmp_path / "tokens.json", lock_timeout=0.2)
    user = login(dev, store=store)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    url = f"{dev.api_url}/me"
    with lock_held_elsewhere(store.lock_path):
        with pytest.raises(usersession.RefreshUnavailable) as caught:
            send(user, mode, "GET", url)
        assert isinstance(caught.value.__cause__, usersession.StoreError)
        assert user.is_logged_in
        assert dev.stats().token_requests == 0
    assert send(user, mode, "GET", url).status_code == 200
    assert dev.stats().token_requests == 1


def test_p4_a_directory_gone_bad_makes_the_refresh_fail_for_now(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P4: the store's directory is replaced by a plain file (so nothing can
    be created in it, even by root): RefreshUnavailable, still logged in."""
    directory = tmp_path / "store"
    store = FileStore(directory / "tokens.json")
    user = login(dev, store=store)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    directory.rename(tmp_path / "moved")
    directory.write_text("not a directory")
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert user.is_logged_in
    assert dev.stats().token_requests == 0


def test_p4_a_read_only_directory_makes_the_refresh_fail_for_now(
    dev: DevServer, tmp_path: Path
) -> None:
    """P4: a read-only directory: RefreshUnavailable, still logged in."""
    skip_unless_permissions_apply(tmp_path)
    store = FileStore(tmp_path / "store" / "tokens.json")
    user = login(dev, store=store)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    store.path.parent.chmod(0o500)
    try:
        with pytest.raises(usersession.RefreshUnavailable):
            send(user, "sync", "GET", f"{dev.api_url}/me")
    finally:
        store.path.parent.chmod(0o700)
    assert user.is_logged_in


def test_p4_a_file_damaged_during_a_session_fails_one_refresh_for_now(
    dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P4: the refresher re-reads a damaged file: it is moved aside, this
    refresh fails for now, and the next one refreshes and saves again."""
    store = FileStore(tmp_path / "tokens.json")
    user = login(dev, store=store)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    store.path.write_text("{damaged")
    url = f"{dev.api_url}/me"
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, mode, "GET", url)
    assert user.is_logged_in
    assert list(tmp_path.glob("tokens.json.unreadable-*"))
    assert send(user, mode, "GET", url).status_code == 200
    assert store.load() == user.tokens


def test_p4_errors_are_store_errors_without_tokens(tmp_path: Path) -> None:
    """P4: OS errors become StoreError with the path and no token."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = FileStore(blocker / "tokens.json")
    with pytest.raises(usersession.StoreError, match="could not save") as caught:
        store.save(sample())
    assert "at-1" not in str(caught.value) and "rt-1" not in str(caught.value)
    with pytest.raises(usersession.StoreError, match="could not open"):
        store.load()
    with pytest.raises(usersession.StoreError, match="could not open the lock"):
        store.lock().__enter__()
    with pytest.raises(usersession.StoreError, match="finite"):
        FileStore(tmp_path / "t.json").save(sample(expires_at=float("nan")))


# -- The lock ----------------------------------------------------------------


@needs_flock
def test_the_lock_waits_for_another_process(tmp_path: Path) -> None:
    """lock() waits while another process holds the lock, and gets it as
    soon as that process lets go."""
    store = FileStore(tmp_path / "tokens.json", lock_timeout=10)
    taken = threading.Event()

    def take() -> None:
        with store.lock():
            taken.set()

    with lock_held_elsewhere(store.lock_path):
        thread = threading.Thread(target=take)
        thread.start()
        assert not taken.wait(0.3)
    assert taken.wait(5)
    thread.join(5)


@needs_flock
def test_the_lock_times_out_with_store_error(tmp_path: Path) -> None:
    """lock() and alock() give up after lock_timeout with StoreError."""
    store = FileStore(tmp_path / "tokens.json", lock_timeout=0.2)
    before = open_descriptors()

    async def alock() -> None:
        async with store.alock():
            pass

    with lock_held_elsewhere(store.lock_path):
        started = time.monotonic()
        with pytest.raises(usersession.StoreError, match="timed out"):
            store.lock().__enter__()
        assert 0.2 <= time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(usersession.StoreError, match="timed out"):
            asyncio.run(alock())
        assert 0.2 <= time.monotonic() - started < 3
    assert open_descriptors() == before


@needs_flock
def test_alock_waits_without_blocking_the_event_loop(tmp_path: Path) -> None:
    """alock() polls: the loop keeps running while it waits, and it gets the
    lock soon after the other process lets go."""
    store = FileStore(tmp_path / "tokens.json", lock_timeout=10)
    with child(HOLD_LOCK, store.lock_path) as holder:
        assert holder.expect() == "locked"

        async def main() -> None:
            waiter = asyncio.create_task(_enter(store))
            for _ in range(20):
                await asyncio.sleep(0.01)  # the loop is free while alock waits
            assert not waiter.done()
            holder.say()  # the other process lets go
            await asyncio.wait_for(waiter, 5)

        asyncio.run(main())
        assert holder.expect() == "released"


async def _enter(store: FileStore) -> None:
    async with store.alock():
        pass


@needs_flock
def test_cancelling_an_alock_waiter_leaves_nothing_held(tmp_path: Path) -> None:
    """Cancelling a task waiting in alock() (or holding it) leaks no lock
    and no descriptor: another process can take the lock at once."""
    store = FileStore(tmp_path / "tokens.json", lock_timeout=10)

    async def waiting_then_cancelled() -> None:
        task = asyncio.create_task(_enter(store))
        await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def holding_then_cancelled() -> None:
        entered = asyncio.Event()

        async def hold() -> None:
            async with store.alock():
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(hold())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with lock_held_elsewhere(store.lock_path):
        before = open_descriptors()
        asyncio.run(waiting_then_cancelled())
        assert open_descriptors() == before
    before = open_descriptors()
    asyncio.run(holding_then_cancelled())
    assert open_descriptors() == before
    with child(_TRY_LOCK, store.lock_path) as other:
        assert other.expect() == "locked"


_TRY_LOCK = """
import sys
from pathlib import Path
from usersession._filestore import FileLock

with FileLock(Path(sys.argv[1]), 0).hold():
    print("locked", flush=True)
"""


@needs_flock
def test_the_lock_excludes_other_threads_and_store_objects(tmp_path: Path) -> None:
    """Two FileStore objects on one path exclude each other in one process,
    as two processes do; the lock is taken again once released."""
    path = tmp_path / "tokens.json"
    one, two = FileStore(path, lock_timeout=0), FileStore(path, lock_timeout=0)
    with one.lock():
        with pytest.raises(usersession.StoreError, match="timed out"):
            two.lock().__enter__()
        with pytest.raises(usersession.StoreError, match="timed out"):
            one.lock().__enter__()
    with two.lock():
        pass


# -- Paths, names, repr ------------------------------------------------------


def test_the_default_path_is_in_the_users_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no path, <name>.json under $XDG_DATA_HOME/usersession, or under
    ~/.local/share/usersession when XDG_DATA_HOME is unset or relative."""
    if sys.platform in ("win32", "darwin"):
        pytest.skip("the XDG layout is for Linux and other Unix systems")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert FileStore().path == tmp_path / "xdg" / "usersession" / "default.json"
    assert FileStore(name="work").path == tmp_path / "xdg/usersession/work.json"
    for value in ("", "relative/dir"):
        monkeypatch.setenv("XDG_DATA_HOME", value)
        expected = tmp_path / "home/.local/share/usersession/default.json"
        assert FileStore().path == expected
    monkeypatch.delenv("XDG_DATA_HOME")
    store = FileStore()
    store.save(sample())
    assert store.load() == sample()
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "x" * 101, "é"])
def test_profile_names_cannot_reach_outside_the_directory(name: str) -> None:
    with pytest.raises(ValueError, match="invalid profile name"):
        FileStore(name=name)


def test_a_relative_path_is_fixed_when_the_store_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore("tokens.json")
    assert store.path == tmp_path / "tokens.json"
    assert store.lock_path == tmp_path / "tokens.json.lock"


def test_x1_repr_shows_the_path_never_a_token(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.save(sample())
    assert repr(store) == f"FileStore({str(tmp_path / 'tokens.json')!r})"
    assert "at-1" not in repr(store) and "rt-1" not in repr(store)


def test_a_lock_timeout_must_be_a_finite_number() -> None:
    for value in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lock_timeout"):
            FileStore("x.json", lock_timeout=value)


def test_file_store_is_a_token_store(tmp_path: Path) -> None:
    assert isinstance(FileStore(tmp_path / "t.json"), usersession.TokenStore)


# -- C07 ---------------------------------------------------------------------


def test_c07_a_null_expiry_round_trips_through_the_file(tmp_path: Path) -> None:
    """C07: tokens whose expiry is unknown are saved with a null expiry and
    load back unknown, across a refresh too."""
    path = tmp_path / "tokens.json"
    with DevServer(include_expires_in=False) as dev:
        user = login(dev, store=FileStore(path))
        assert user.tokens is not None and user.tokens.expires_at is None
        assert json.loads(path.read_text())["tokens"]["expires_at"] is None
        loaded = User(provider_for(dev), store=FileStore(path)).tokens
        assert loaded == user.tokens and loaded is not None
        assert loaded.expires_at is None and loaded.lifetime is None

        new = user.refresh()
        assert new.expires_at is None
        assert json.loads(path.read_text())["tokens"]["expires_at"] is None
        assert FileStore(path).load() == new

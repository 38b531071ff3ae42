"""`RedisStore` against a real redis-server: P1-P4 across users, loops and
processes, the refresh lock, and secrets.

The server is started by `redis_server.RedisServer` on 127.0.0.1. Without
``redis-server`` (or the ``redis`` package) these tests skip, unless the
environment variable ``CI`` is set: then they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import usersession
from usersession import RedisStore, StoreError, Tokens
from usersession.devserver import DevServer, Fault

from conftest import Mode, login, provider_for, send
from redis_server import RedisServer, require_redis_server

if TYPE_CHECKING:
    import redis

#: The directory holding the usersession package under test, for children.
_SOURCE = str(Path(usersession.__file__).resolve().parent.parent)

MakeStore = Callable[..., RedisStore]


def _require_redis_py() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        reason = "the redis package is missing (pip install 'usersession[redis]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set, so this is a failure")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module; each test uses keys of its own."""
    require_redis_server()
    _require_redis_py()
    with RedisServer() as server:
        yield server


@pytest.fixture
def key() -> str:
    return f"usersession-test:{uuid.uuid4().hex}"


@pytest.fixture
def make_store(redis_server: RedisServer, key: str) -> Iterator[MakeStore]:
    """Build stores on the module's server (this test's key by default),
    closed when the test ends. Each store stands for one process."""
    made: list[RedisStore] = []

    def make(url: str | None = None, **options: Any) -> RedisStore:
        options.setdefault("key", key)
        store = RedisStore(redis_server.url if url is None else url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client, to look at what the store wrote."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def subscribers(raw: redis.Redis, key: str) -> int:
    [(_, count)] = raw.pubsub_numsub(f"{key}:events")
    return int(count)


def full_tokens(expires_at: float | None) -> Tokens:
    return Tokens(
        "at-round-trip",
        "rt-round-trip",
        expires_at,
        "openid profile",
        "id-round-trip",
        lifetime=None if expires_at is None else 3600.0,
    )


# -- Child processes -------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (_SOURCE, env.get("PYTHONPATH", "")) if part
    )
    return env


@contextlib.contextmanager
def child(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A Python child running `script`; killed if still alive at the end."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def read_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "the child said nothing in time"
    return process.stdout.readline().strip()


HOLD_LOCK = """
import sys, time
from usersession import RedisStore

store = RedisStore(sys.argv[1], key=sys.argv[2], lock_ttl=float(sys.argv[3]))
with store.lock():
    print("locked", flush=True)
    time.sleep(600)
"""

REFRESH_ONCE = """
import json, sys
import usersession

config = json.loads(sys.argv[1])
provider = usersession.Provider(
    config["token_endpoint"], config["client_id"], config["client_secret"]
)
store = usersession.RedisStore(config["url"], key=config["key"])
user = usersession.User(provider, store=store)
print("ready", flush=True)
sys.stdin.readline()
with usersession.Client(user, timeout=30) as client:
    print(client.get(config["api"]).status_code, flush=True)
store.close()
"""


# -- P1: saving, loading, clearing -------------------------------------------------


@pytest.mark.parametrize("expires_at", [None, 1_900_000_000.5])
def test_p1_round_trip_sync_and_async(
    make_store: MakeStore, raw: redis.Redis, key: str, expires_at: float | None
) -> None:
    """P1: what is saved loads back equal, sync or async, expiry or none;
    clear forgets it."""
    store = make_store()
    tokens = full_tokens(expires_at)
    assert store.load() is None
    store.save(tokens)
    assert store.load() == tokens
    document = json.loads(raw.get(key) or b"")
    assert document["version"] == 1
    assert document["tokens"]["expires_at"] == expires_at

    async def async_side() -> tuple[Tokens | None, Tokens | None]:
        loaded = await store.aload()
        await store.aclear()
        gone = await store.aload()
        await store.asave(tokens)
        return loaded, gone

    assert asyncio.run(async_side()) == (tokens, None)
    assert store.load() == tokens
    store.clear()
    assert store.load() is None
    assert not raw.exists(key)


def test_p1_a_user_with_the_store_and_no_tokens_takes_its_tokens(
    dev: DevServer, make_store: MakeStore, mode: Mode
) -> None:
    """P1: a second process's `User` starts from the saved tokens."""
    first = login(dev, store=make_store())
    second = usersession.User(provider_for(dev), store=make_store())
    assert second.tokens == first.tokens
    assert send(second, mode, "GET", f"{dev.api_url}/me").status_code == 200


def test_an_unreadable_document_is_moved_aside_and_reported(
    make_store: MakeStore, raw: redis.Redis, key: str
) -> None:
    """A damaged value is never read as "logged out": load raises StoreError
    (quoting nothing of it) and moves it aside, out of later refreshes' way."""
    store = make_store()
    damaged = b'{"version": 1, "tokens": {"refresh_token": "rt-damaged-secret"}}'
    raw.set(key, damaged)
    with pytest.raises(StoreError, match="unreadable") as caught:
        store.load()
    assert "rt-damaged-secret" not in str(caught.value)
    assert raw.get(f"{key}:unreadable") == damaged
    assert store.load() is None

    raw.set(key, b"not json")
    with pytest.raises(StoreError, match="unreadable"):
        asyncio.run(store.aload())
    assert raw.get(f"{key}:unreadable") == b"not json"


def test_a_newer_document_is_reported_and_left_alone(
    make_store: MakeStore, raw: redis.Redis, key: str
) -> None:
    store = make_store()
    newer = json.dumps({"version": 2, "tokens": {}}).encode()
    raw.set(key, newer)
    with pytest.raises(StoreError, match="version 2"):
        store.load()
    assert raw.get(key) == newer


# -- P2 and P3: sharing one key --------------------------------------------------


@pytest.mark.parametrize(
    ("first_mode", "second_mode"),
    [("sync", "sync"), ("async", "async"), ("sync", "async"), ("async", "sync")],
)
def test_p2_a_second_user_adopts_the_refresh_without_calling_the_token_endpoint(
    dev: DevServer, make_store: MakeStore, first_mode: Mode, second_mode: Mode
) -> None:
    """P2: after one user refreshed, the other, whose token is rejected next,
    takes the lock, re-reads the store and adopts the new tokens."""
    first = login(dev, store=make_store())
    second = usersession.User(provider_for(dev), store=make_store())
    assert first.tokens is not None
    dev.revoke_access_token(first.tokens.access_token)

    assert send(first, first_mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().token_requests == 1
    assert send(second, second_mode, "GET", f"{dev.api_url}/me").status_code == 200
    stats = dev.stats()
    assert stats.token_requests == 1
    assert stats.invalid_grant_answers == 0
    assert second.tokens == first.tokens


def test_p3_users_refreshing_at_once_make_one_token_request(
    dev: DevServer, make_store: MakeStore, mode: Mode
) -> None:
    """P3: four users (four stores, as four processes would have) whose token
    is rejected at the same moment: one token request, rotation and all."""
    users = [login(dev, store=make_store())]
    for _ in range(3):
        users.append(usersession.User(provider_for(dev), store=make_store()))
    assert users[0].tokens is not None
    dev.revoke_access_token(users[0].tokens.access_token)
    dev.inject("token", Fault.delay(0.3))
    url = f"{dev.api_url}/me"

    if mode == "sync":
        barrier = threading.Barrier(len(users))
        statuses: list[int] = []

        def one(user: usersession.User) -> None:
            with usersession.Client(user, timeout=30) as client:
                barrier.wait()
                statuses.append(client.get(url).status_code)

        threads = [threading.Thread(target=one, args=(u,)) for u in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    else:

        async def one_async(user: usersession.User) -> int:
            async with usersession.AsyncClient(user, timeout=30) as client:
                return (await client.get(url)).status_code

        async def all_at_once() -> list[int]:
            return list(await asyncio.gather(*(one_async(u) for u in users)))

        statuses = asyncio.run(all_at_once())

    assert statuses == [200] * len(users)
    stats = dev.stats()
    assert stats.token_requests == 1
    assert stats.invalid_grant_answers == 0
    assert len({user.tokens for user in users}) == 1


def test_p3_processes_sharing_a_key_make_one_token_request(
    dev: DevServer, make_store: MakeStore, redis_server: RedisServer, key: str
) -> None:
    """P3: three real processes whose token is rejected at the same moment."""
    first = login(dev, store=make_store())
    assert first.tokens is not None
    dev.revoke_access_token(first.tokens.access_token)
    dev.inject("token", Fault.delay(0.3))
    config = json.dumps(
        {
            "token_endpoint": dev.token_endpoint,
            "client_id": dev.client_id,
            "client_secret": dev.client_secret,
            "url": redis_server.url,
            "key": key,
            "api": f"{dev.api_url}/me",
        }
    )
    with contextlib.ExitStack() as stack:
        children = [stack.enter_context(child(REFRESH_ONCE, config)) for _ in range(3)]
        for process in children:
            assert read_line(process) == "ready"
        for process in children:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        answers = [read_line(process) for process in children]
    assert answers == ["200"] * 3
    stats = dev.stats()
    assert stats.token_requests == 1
    assert stats.invalid_grant_answers == 0


# -- The refresh lock --------------------------------------------------------------


def test_the_lock_admits_one_holder_at_a_time(make_store: MakeStore) -> None:
    """Threads and tasks on two event loops, each with a store of its own,
    never hold the lock together."""
    inside = 0
    most = 0
    entries = 0
    guard = threading.Lock()

    def enter() -> None:
        nonlocal inside, most, entries
        with guard:
            inside += 1
            entries += 1
            most = max(most, inside)

    def leave() -> None:
        nonlocal inside
        with guard:
            inside -= 1

    def sync_side(store: RedisStore) -> None:
        for _ in range(3):
            with store.lock():
                enter()
                time.sleep(0.005)
                leave()

    def async_side(stores: list[RedisStore]) -> None:
        async def one(store: RedisStore) -> None:
            for _ in range(3):
                async with store.alock():
                    enter()
                    await asyncio.sleep(0.005)
                    leave()

        async def both() -> None:
            await asyncio.gather(*(one(store) for store in stores))

        asyncio.run(both())

    threads = [
        threading.Thread(target=sync_side, args=(make_store(),)),
        threading.Thread(target=sync_side, args=(make_store(),)),
        threading.Thread(target=async_side, args=([make_store(), make_store()],)),
        threading.Thread(target=async_side, args=([make_store()],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert (most, entries) == (1, 15)


def test_a_lock_held_too_long_raises_store_error(make_store: MakeStore) -> None:
    holder = make_store()
    waiter = make_store(lock_timeout=0.2)
    with holder.lock():
        with pytest.raises(StoreError, match="still held"), waiter.lock():
            pass

        async def try_async() -> None:
            async with waiter.alock():
                pass

        with pytest.raises(StoreError, match="still held"):
            asyncio.run(try_async())
    with waiter.lock():
        pass


def test_only_the_owner_releases_the_lock(
    make_store: MakeStore,
    raw: redis.Redis,
    key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A holder whose lock expired and was taken by another cannot release
    the new owner's lock; it warns that its lock had expired."""
    stalled, second, third = make_store(), make_store(), make_store(lock_timeout=0.1)
    lock_key = f"{key}:lock"
    with contextlib.ExitStack() as first_hold:
        first_hold.enter_context(stalled.lock())
        raw.pexpire(lock_key, 1)  # the stalled holder's lock expires
        wait_until(lambda: not raw.exists(lock_key), "the lock expired")
        with second.lock():
            owner = raw.get(lock_key)
            first_hold.close()  # the stalled holder finally releases
            assert raw.get(lock_key) == owner
            with pytest.raises(StoreError), third.lock():
                pass
        assert not raw.exists(lock_key)
    assert any("had expired" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("side", ["sync", "async"])
def test_waiters_are_released_as_soon_as_the_holder_releases(
    make_store: MakeStore, raw: redis.Redis, key: str, side: Mode
) -> None:
    """The release is published: a waiter wakes on the message, not on its
    fallback re-check, which is set to 30 s here so only the message can
    explain a wake-up within the (generous) bound."""
    holder = make_store()
    waiter = make_store()
    waiter._recheck = 30.0
    latencies: list[float] = []
    got: list[float] = []

    def wait_sync() -> None:
        with waiter.lock():
            got.append(time.monotonic())

    def wait_async() -> None:
        async def go() -> None:
            async with waiter.alock():
                got.append(time.monotonic())

        asyncio.run(go())

    for _ in range(5):
        got.clear()
        thread = threading.Thread(target=wait_sync if side == "sync" else wait_async)
        with holder.lock():
            thread.start()
            wait_until(lambda: subscribers(raw, key) == 1, "the waiter listens")
            releasing = time.monotonic()
        thread.join(10)
        latencies.append(got[0] - releasing)
    print(
        f"{side} pickup after release: median "
        f"{statistics.median(latencies) * 1000:.2f} ms, "
        f"max {max(latencies) * 1000:.2f} ms"
    )
    assert max(latencies) < 5.0


def test_a_killed_holders_lock_expires_and_then_frees_the_next_refresher(
    dev: DevServer,
    make_store: MakeStore,
    redis_server: RedisServer,
    raw: redis.Redis,
    key: str,
    mode: Mode,
) -> None:
    """A process killed with SIGKILL while holding the lock cannot release
    it: the lock expires after lock_ttl, and the next refresher waits for
    that and no longer."""
    ttl = 1.5
    user = login(dev, store=make_store(lock_ttl=ttl))
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    with child(HOLD_LOCK, redis_server.url, key, str(ttl)) as holder:
        assert read_line(holder) == "locked"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    killed = time.monotonic()
    assert raw.pttl(f"{key}:lock") > 0  # the lock outlived its holder

    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    waited = time.monotonic() - killed
    print(f"refresh done {waited:.3f} s after the holder was killed (ttl {ttl} s)")
    assert waited < ttl + 5.0
    assert dev.stats().token_requests == 1


def test_cancelling_an_async_waiter_leaves_nothing_held(
    make_store: MakeStore, raw: redis.Redis, key: str
) -> None:
    holder = make_store()
    waiter = make_store()
    lock_key = f"{key}:lock"
    entered: list[bool] = []

    async def wait_for_lock() -> None:
        async with waiter.alock():
            entered.append(True)

    async def scenario() -> None:
        task = asyncio.create_task(wait_for_lock())
        deadline = time.monotonic() + 10
        while subscribers(raw, key) != 1:
            assert time.monotonic() < deadline, "the waiter never listened"
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clients_before = len(raw.client_list())
    with holder.lock():
        owner = raw.get(lock_key)
        asyncio.run(scenario())
        assert raw.get(lock_key) == owner
        wait_until(lambda: subscribers(raw, key) == 0, "the waiter stops listening")
    assert not raw.exists(lock_key)
    assert not entered
    # The holder's sync client keeps its pooled connection; the cancelled
    # waiter's connections are all gone.
    wait_until(
        lambda: len(raw.client_list()) <= clients_before + 1, "connections close"
    )

    async def take_it() -> None:
        async with waiter.alock():
            entered.append(True)

    asyncio.run(asyncio.wait_for(take_it(), 5))
    assert entered == [True]


def test_a_cancellation_at_any_moment_of_the_wait_is_never_lost(
    make_store: MakeStore, raw: redis.Redis, key: str
) -> None:
    """Cancel waiters at random moments while they re-try the lock every
    2 ms, so cancellations land on every step of the wait (a send, a read, a
    subscription). Each one ends the waiter at once and takes nothing.

    On Python 3.11, asyncio.wait_for (which redis-py wraps around sends when
    a socket timeout is set) could swallow such a cancellation, leaving the
    "cancelled" waiter to go on waiting and take the lock later."""
    holder = make_store()
    waiter = make_store()
    waiter._recheck = 0.002
    lock_key = f"{key}:lock"
    chance = random.Random(20240611)
    entered: list[bool] = []

    async def wait_for_lock() -> None:
        async with waiter.alock():
            entered.append(True)

    async def one(delay: float) -> None:
        task = asyncio.create_task(wait_for_lock())
        await asyncio.sleep(delay)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the cancelled waiter went on waiting"
        assert task.cancelled()

    with holder.lock():
        owner = raw.get(lock_key)
        for _ in range(40):
            asyncio.run(one(chance.uniform(0.0, 0.03)))
        assert raw.get(lock_key) == owner
        wait_until(lambda: subscribers(raw, key) == 0, "the waiters stop listening")
    assert not entered
    assert not raw.exists(lock_key)


# -- P4: Redis unreachable ---------------------------------------------------------


def test_p4_a_stopped_redis_makes_the_refresh_fail_for_now(
    dev: DevServer, mode: Mode
) -> None:
    """P4: with Redis down, a refresh fails with RefreshUnavailable and the
    user keeps every token; when Redis is back, the next request refreshes
    once (the restarted server kept nothing, so the user's own refresh
    token is used)."""
    require_redis_server()
    _require_redis_py()
    with RedisServer() as server:
        store = RedisStore(server.url, key="p4")
        try:
            user = login(dev, store=store)
            tokens = user.tokens
            assert tokens is not None
            dev.revoke_access_token(tokens.access_token)
            server.stop()
            with pytest.raises(usersession.RefreshUnavailable) as caught:
                send(user, mode, "GET", f"{dev.api_url}/me")
            assert "store" in str(caught.value)
            assert user.is_logged_in
            assert user.tokens is tokens
            assert dev.stats().token_requests == 0

            server.start()
            assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
            assert dev.stats().token_requests == 1
            assert store.load() == user.tokens
        finally:
            store.close()


def test_p4_every_operation_on_an_unreachable_redis_raises_store_error(
    redis_server: RedisServer,
) -> None:
    """A port where nothing listens: each operation, sync and async, raises
    StoreError naming the store, without its password."""
    with RedisServer() as gone:
        url = f"redis://:pw-never-shown@127.0.0.1:{gone.port}/0"
    store = RedisStore(url, key="nowhere", lock_timeout=1.0)
    tokens = Tokens("at-unreachable", "rt-unreachable")

    async def async_ops() -> list[str]:
        messages = []
        for operation in (store.aload, store.aclear, lambda: store.asave(tokens)):
            with pytest.raises(StoreError) as caught:
                await operation()
            messages.append(str(caught.value))
        with pytest.raises(StoreError) as caught:
            async with store.alock():
                pass
        return [*messages, str(caught.value)]

    messages = asyncio.run(async_ops())
    for operation in (store.load, store.clear, lambda: store.save(tokens)):
        with pytest.raises(StoreError) as caught:
            operation()
        messages.append(str(caught.value))
    with pytest.raises(StoreError) as caught, store.lock():
        pass
    messages.append(str(caught.value))
    store.close()
    for message in messages:
        assert "redis://***@127.0.0.1" in message
        assert "ConnectionError" in message
        assert "pw-never-shown" not in message
        assert "at-unreachable" not in message


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_p4_a_redis_that_never_answers_fails_within_the_socket_timeout() -> None:
    """A hung server: sync and async operations give up after socket_timeout
    with StoreError, and an async waiter is bounded the same way."""
    _require_redis_py()
    with silent_server() as port:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(StoreError, match="Timeout"):
            store.load()
        sync_took = time.monotonic() - started

        async def async_side() -> float:
            began = time.monotonic()
            with pytest.raises(StoreError, match="Timeout"):
                async with store.alock():
                    pass
            return time.monotonic() - began

        async_took = asyncio.run(async_side())
        store.close()
    assert sync_took < 5.0
    assert async_took < 5.0


# -- Secrets, construction, packaging ----------------------------------------------


def test_no_token_or_password_in_logs_reprs_or_errors(
    dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """X1: the whole life of two users sharing a password-protected Redis,
    a lost lock, a damaged value and an outage, logged at DEBUG, never shows
    a token or the password."""
    require_redis_server()
    _require_redis_py()
    import redis

    password = "redis-pass-7f3a9c2e"
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    seen_tokens: set[str] = set()

    def remember(user: usersession.User) -> None:
        tokens = user.tokens
        if tokens is not None:
            seen_tokens.update(
                t for t in (tokens.access_token, tokens.refresh_token) if t
            )
            seen_tokens.update(t for t in (tokens.id_token,) if t)

    with RedisServer(password=password) as server:
        first_store = RedisStore(server.url, key="x1", lock_ttl=5)
        second_store = RedisStore(server.url, key="x1")
        try:
            first = login(dev, store=first_store)
            second = usersession.User(provider_for(dev), store=second_store)
            shown += [repr(first_store), str(first_store), repr(first), repr(second)]
            remember(first)
            assert first.tokens is not None
            dev.revoke_access_token(first.tokens.access_token)
            assert send(first, "sync", "GET", f"{dev.api_url}/me").status_code == 200
            assert send(second, "async", "GET", f"{dev.api_url}/me").status_code == 200
            remember(first)

            with contextlib.closing(redis.Redis.from_url(server.url)) as raw:
                with second_store.lock():  # a lost lock logs a warning
                    raw.delete("x1:lock")
                raw.set("x1", b'{"version": 1, "tokens": []}')
            with pytest.raises(StoreError) as damaged:
                second_store.load()
            shown.append(str(damaged.value))
            second_store.save(first.tokens)

            wrong = RedisStore(server.url.replace(password, "wrong-pass-1234"))
            with pytest.raises(StoreError) as refused:
                wrong.load()
            wrong.close()
            shown += [str(refused.value), repr(wrong)]

            assert first.tokens is not None
            dev.revoke_access_token(first.tokens.access_token)
            server.stop()
            with pytest.raises(usersession.RefreshUnavailable) as outage:
                send(first, "sync", "GET", f"{dev.api_url}/me")
            shown += [str(outage.value), repr(outage.value.__cause__)]
            remember(first)
        finally:
            first_store.close()
            second_store.close()

    shown += [record.getMessage() for record in caplog.records]
    shown += [caplog.text]
    assert any("had expired" in text for text in shown)
    assert any("could not load" in text for text in shown)
    assert len(seen_tokens) >= 5
    for text in shown:
        assert password not in text
        for token in seen_tokens:
            assert token not in text


def test_the_url_must_be_a_redis_url_and_its_password_stays_hidden() -> None:
    _require_redis_py()
    with pytest.raises(ValueError, match="unusable") as caught:
        RedisStore("http://:hidden-pass-42@127.0.0.1:1/0")
    assert "hidden-pass-42" not in str(caught.value)
    store = RedisStore("redis://user:hidden-pass-42@127.0.0.1:1/0?db=1")
    assert repr(store) == "RedisStore('redis://***@127.0.0.1:1/0?...', key=" + (
        "'usersession:default')"
    )
    store.close()
    with pytest.raises(ValueError, match="lock_ttl"):
        RedisStore(lock_ttl=0)


def test_without_the_redis_package_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``import usersession`` never needs redis; building a RedisStore
    without it names the extra to install."""
    script = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import usersession\n"
        "try:\n"
        "    usersession.RedisStore()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=60,
        check=True,
    )
    assert "pip install 'usersession[redis]'" in result.stdout

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"usersession\[redis\]"):
        RedisStore()


def test_the_store_is_a_token_store(make_store: MakeStore) -> None:
    assert isinstance(make_store(), usersession.TokenStore)


def test_require_redis_server_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without redis-server the tests skip, except under CI, where they fail."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_redis_server()

"""`RedisStore`: one user's tokens in Redis, shared by processes and machines.

Every process that builds a `RedisStore` with the same URL and key shares
the tokens and the refresh lock, so a fleet refreshes once per expiry and the
others adopt the result (P2, P3).

Layout, for a key ``K``:

* ``K`` holds the tokens as one small versioned JSON document.
* ``K:lock`` is the refresh lock: ``SET K:lock <owner> NX PX <ttl>``, where
  the owner is a random value only its taker knows. Only the owner deletes
  it (compare-and-delete in a Lua script), so a holder that stalled past the
  TTL cannot release the lock someone else has taken since.
* ``K:events`` is a pub/sub channel: releasing the lock publishes on it, and
  waiters listen there instead of polling, so they wake within a round trip.
  They also re-try the lock every `_RECHECK` seconds, so a lost message or a
  holder killed before it could release strands no one for longer than that
  beyond the lock's TTL.
* ``K:unreadable`` receives a document that cannot be read, moved aside.

Every operation is written once, as a plan: a generator that yields Redis
commands and receives their answers. Two thin edges run plans, one with a
`redis.Redis` client for threads and one with a `redis.asyncio.Redis` client
for coroutines.

``redis`` is imported only when a store is built, so ``import usersession``
works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import StoreError
from ._secrets import scrub
from ._tokens import Tokens

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisStore"]

logger = logging.getLogger("usersession")

T = TypeVar("T")

#: The version of the saved document; a newer one is never overwritten by
#: a move aside, since it is not damaged, only unknown to this version.
_VERSION = 1

#: Waiters re-try the lock this often even without a release message.
_RECHECK = 0.2

#: How long a waiter allows Redis to confirm its subscription.
_SUBSCRIBE_TIMEOUT = 2.0

#: Defaults for the Redis clients, chosen so a store that hangs or is down
#: fails a refresh for now within seconds, on every redis-py version. A lost
#: connection is re-tried twice (every command here is safe to repeat); a
#: timeout is not, since waiting twice as long helps nobody.
_SOCKET_TIMEOUT = 5.0
_RETRIES = 2

# Take the lock if it is free; succeed too if we hold it already, so that a
# command re-sent after its answer was lost cannot lock out its own sender.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

# Delete the lock only if we still own it, and tell the waiters at once.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
"""

# Move an unreadable document aside, unless someone replaced it meanwhile.
_MOVE_ASIDE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


# -- What a plan asks an edge to do ---------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Command:
    """Send one Redis command; the plan receives its answer."""

    args: tuple[str | bytes | int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class _Subscribe:
    """Subscribe to the store's events channel, waiting up to `timeout`
    seconds for Redis to confirm, so no later release can go unheard."""

    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Listen:
    """Wait up to `timeout` seconds for a message on the events channel."""

    timeout: float


_Op = _Command | _Subscribe | _Listen
_Plan = Generator[_Op, Any, T]


def _send(client: Any, command: _Command) -> Any:
    # Both clients have execute_command (the async one returns an awaitable);
    # redis-py leaves it unannotated.
    return client.execute_command(*command.args)


class _Unreadable(ValueError):
    """The saved document is damaged (the reason never quotes it)."""


class _Newer(ValueError):
    """The saved document was written by a newer version of usersession."""


def _encode(tokens: Tokens) -> str:
    return json.dumps({"version": _VERSION, "tokens": tokens.to_dict()})


def _decode(raw: bytes | str) -> Tokens:
    try:
        document = json.loads(raw)
    except ValueError:
        raise _Unreadable("it is not JSON") from None
    if not isinstance(document, dict):
        raise _Unreadable("it is not a JSON object")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _Unreadable("it has no version")
    if version > _VERSION:
        raise _Newer(f"it has version {version}; this usersession reads {_VERSION}")
    data = document.get("tokens")
    if version != _VERSION or not isinstance(data, dict):
        raise _Unreadable("it holds no tokens")
    try:
        return Tokens.from_dict(data)
    except ValueError as exc:
        raise _Unreadable(str(exc)) from None


def _redact(url: str) -> str:
    """The URL without its credentials or query, fit for messages and reprs."""
    parts = urllib.parse.urlsplit(url)
    _, at, hostport = parts.netloc.rpartition("@")
    # A lone name before "@" may be a password by mistake: hide it all.
    netloc = f"***@{hostport}" if at else hostport
    query = "..." if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.retry
    except ImportError as exc:
        raise ImportError(
            "RedisStore needs the redis package: pip install 'usersession[redis]'"
        ) from exc
    return redis


class RedisStore:
    """Tokens kept in Redis, with a refresh lock that spans machines.

    Processes and machines that use the same Redis URL and `key` share one
    user's tokens: when they refresh at the same moment, one holds the lock
    and calls the token endpoint, and the others take its tokens from Redis
    when they get the lock (P3: one token-endpoint call per expiry).

    Any failure to reach Redis raises `StoreError`, which makes a refresh
    fail for now and never logs the user out (P4). Messages and ``repr``
    never show the URL's credentials or a token.

    A store may be used from any number of threads and event loops: the sync
    methods share one thread-safe `redis.Redis` client, and each async
    operation opens and closes its own `redis.asyncio.Redis` client, since an
    asyncio connection belongs to the event loop that opened it.

    Args:
        url: The Redis server, as ``redis://[[user]:password@]host[:port][/db]``
            (``rediss://`` for TLS, ``unix://`` for a socket).
        key: The Redis key of this user's tokens. The lock and the events
            channel use keys derived from it (``<key>:lock``,
            ``<key>:events``).
        lock_ttl: Seconds after which a lock whose holder died is freed. It
            must exceed the longest refresh (the provider's request timeout),
            or a slow holder may lose the lock while it refreshes.
        lock_timeout: The longest `lock` waits before raising `StoreError`.
        **redis_options: Passed to ``redis.Redis.from_url`` and
            ``redis.asyncio.Redis.from_url`` (``password``, ``ssl_ca_certs``,
            ``socket_timeout``, ...). Unless given, socket timeouts are 5 s
            and a lost connection is re-tried twice; a ``retry`` given here
            goes to both clients, so it should suit both.

    Raises:
        ImportError: The ``redis`` package is not installed.
        ValueError: The URL or a setting is invalid.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str = "usersession:default",
        lock_ttl: float = 30.0,
        lock_timeout: float = 30.0,
        **redis_options: Any,
    ) -> None:
        if not key:
            raise ValueError("RedisStore needs a non-empty key")
        if not lock_ttl > 0:
            raise ValueError("lock_ttl must be positive")
        if not lock_timeout >= 0:
            raise ValueError("lock_timeout must not be negative")
        self._redis = _import_redis()
        self._url = url
        self.key = key
        self.lock_ttl = lock_ttl
        self.lock_timeout = lock_timeout
        self._lock_key = f"{key}:lock"
        self._channel = f"{key}:events"
        self._aside_key = f"{key}:unreadable"
        self._recheck = _RECHECK
        self._options = self._with_defaults(redis_options, self._redis.retry)
        aoptions = self._with_defaults(redis_options, self._redis.asyncio.retry)
        # On Python 3.11, redis-py bounds each asyncio send with
        # asyncio.wait_for when socket_timeout is set, and that wait_for
        # swallows a cancellation that arrives as the send completes: a
        # cancelled waiter would go on waiting for the lock. So the asyncio
        # client gets no socket timeout, and the async edge bounds each
        # command itself with asyncio.timeout, which cancels correctly.
        self._atimeout: float | None = aoptions["socket_timeout"]
        self._aoptions = aoptions | {"socket_timeout": None}
        self._errors: tuple[type[BaseException], ...] = (
            self._redis.RedisError,
            OSError,
        )
        parts = urllib.parse.urlsplit(url)
        # Scrubbed from every message, as written in the URL and decoded.
        self._secrets = [
            secret
            for value in (parts.password, parts.username)
            if value
            for secret in (value, urllib.parse.unquote(value))
        ] + [redis_options.get("password")]
        try:
            client: redis.Redis = self._redis.Redis.from_url(url, **self._options)
        except ValueError as exc:
            # Whatever redis-py says must not quote the URL's password.
            detail = scrub(str(exc), self._secrets)
            raise ValueError(f"{_redact(url)} is unusable: {detail}") from None
        self._client = client

    def _with_defaults(
        self, options: dict[str, Any], retry_module: Any
    ) -> dict[str, Any]:
        # The sync and the asyncio clients each need a Retry of their own kind.
        defaults: dict[str, Any] = {
            "socket_timeout": _SOCKET_TIMEOUT,
            "socket_connect_timeout": _SOCKET_TIMEOUT,
            "retry": retry_module.Retry(
                self._redis.backoff.ExponentialBackoff(cap=0.2, base=0.02),
                _RETRIES,
                supported_errors=(self._redis.ConnectionError,),
            ),
        }
        return defaults | options

    def __repr__(self) -> str:
        return f"RedisStore({_redact(self._url)!r}, key={self.key!r})"

    # -- The plans: each operation, once, for both edges --------------------------

    def _load_plan(self) -> _Plan[Tokens | None]:
        raw = yield _Command(("GET", self.key))
        if raw is None:
            return None
        try:
            return _decode(raw)
        except _Newer as exc:
            message = f"{self!r}: cannot read the saved tokens: {exc}"
            raise StoreError(message) from None
        except _Unreadable as exc:
            # Never read a damaged document as "logged out" (P2), but do not
            # leave it in the way of every later refresh either.
            yield _Command(("EVAL", _MOVE_ASIDE, 2, self.key, self._aside_key, raw))
            raise StoreError(
                f"{self!r}: the saved tokens are unreadable ({exc}); moved them "
                f"aside to {self._aside_key!r}"
            ) from None

    def _save_plan(self, tokens: Tokens) -> _Plan[None]:
        yield _Command(("SET", self.key, _encode(tokens)))

    def _clear_plan(self) -> _Plan[None]:
        yield _Command(("DEL", self.key))

    def _acquire_plan(self, owner: str) -> _Plan[None]:
        started = time.monotonic()
        deadline = started + self.lock_timeout
        ttl_ms = max(1, round(self.lock_ttl * 1000))
        take = _Command(("EVAL", _ACQUIRE, 1, self._lock_key, owner, ttl_ms))
        if (yield take):
            return
        yield _Subscribe(min(_SUBSCRIBE_TIMEOUT, self.lock_timeout))
        while True:
            # Once subscribed, try again: the holder may have released before
            # the subscription began, and that message is gone.
            if (yield take):
                logger.debug(
                    "refresh lock of %r taken after %.3f s",
                    self.key,
                    time.monotonic() - started,
                )
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreError(
                    f"{self!r}: the refresh lock is still held by someone else "
                    f"after {self.lock_timeout:g} s"
                )
            yield _Listen(min(remaining, self._recheck))

    def _release_plan(self, owner: str) -> _Plan[bool]:
        released = yield _Command(
            ("EVAL", _RELEASE, 1, self._lock_key, owner, self._channel)
        )
        return bool(released)

    # -- Errors -----------------------------------------------------------------

    @contextlib.contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Turn a Redis or network error into `StoreError`."""
        try:
            yield
        except self._errors as exc:
            detail = scrub(str(exc), self._secrets)[:200]
            if not detail and isinstance(exc, TimeoutError):
                detail = "no answer in time"  # asyncio.timeout says nothing
            raise StoreError(
                f"{self!r}: could not {action}: {type(exc).__name__}: {detail}"
            ) from exc

    def _released(self, released: bool | None, held: bool) -> None:
        if not held:
            return
        if released is None:
            logger.warning(
                "%r: could not release the refresh lock; it will free "
                "itself within %g s",
                self,
                self.lock_ttl,
            )
        elif not released:
            logger.warning(
                "%r: the refresh lock had expired before it was released; "
                "lock_ttl (%g s) is shorter than this refresh took",
                self,
                self.lock_ttl,
            )

    # -- The sync edge ------------------------------------------------------------

    def _run(self, plan: _Plan[T], action: str) -> T:
        pubsub: Any = None
        reply: Any = None
        try:
            with self._failures(action):
                while True:
                    try:
                        op = plan.send(reply)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    if isinstance(op, _Command):
                        reply = _send(self._client, op)
                    elif isinstance(op, _Subscribe):
                        pubsub = self._client.pubsub()
                        pubsub.subscribe(self._channel)
                        reply = pubsub.get_message(timeout=op.timeout)
                    else:
                        reply = pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=op.timeout
                        )
        finally:
            plan.close()
            if pubsub is not None:
                with contextlib.suppress(*self._errors):
                    pubsub.close()

    def load(self) -> Tokens | None:
        """Return the saved tokens, or ``None`` when there are none.

        Raises:
            StoreError: Redis failed, or the saved document is unreadable (it
                is then moved aside to ``<key>:unreadable``).
        """
        return self._run(self._load_plan(), "load the tokens")

    def save(self, tokens: Tokens) -> None:
        """Replace the saved tokens.

        Raises:
            StoreError: Redis failed.
        """
        self._run(self._save_plan(tokens), "save the tokens")

    def clear(self) -> None:
        """Forget the saved tokens.

        Raises:
            StoreError: Redis failed.
        """
        self._run(self._clear_plan(), "clear the tokens")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the refresh lock shared by everyone using this key.

        Raises:
            StoreError: Redis failed, or the lock stayed taken for
                `lock_timeout` seconds.
        """
        owner = secrets.token_hex(16)
        try:
            self._run(self._acquire_plan(owner), "take the refresh lock")
        except BaseException:
            # The lock may be ours even so, if only an answer was lost.
            self._release(owner, held=False)
            raise
        try:
            yield
        finally:
            self._release(owner, held=True)

    def _release(self, owner: str, *, held: bool) -> None:
        # Never raise here: the refresh this lock guarded may have new tokens
        # to hand out, and an unreleased lock frees itself after lock_ttl.
        released: bool | None = None
        with contextlib.suppress(StoreError):
            released = self._run(self._release_plan(owner), "release the lock")
        self._released(released, held)

    def close(self) -> None:
        """Close the sync client's connections; the store stays usable."""
        self._client.close()

    # -- The async edge -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _aclient(self) -> AsyncIterator[redis.asyncio.Redis]:
        # One client per use: an asyncio connection is bound to the loop that
        # opened it, and a `User` may be used from several loops in turn.
        client: redis.asyncio.Redis = self._redis.asyncio.Redis.from_url(
            self._url, **self._aoptions
        )
        try:
            yield client
        finally:
            await client.aclose()

    async def _arun(
        self, client: redis.asyncio.Redis, plan: _Plan[T], action: str
    ) -> T:
        pubsub: Any = None
        reply: Any = None
        try:
            with self._failures(action):
                while True:
                    try:
                        op = plan.send(reply)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    if isinstance(op, _Command):
                        async with asyncio.timeout(self._atimeout):
                            reply = await _send(client, op)
                    elif isinstance(op, _Subscribe):
                        pubsub = client.pubsub()
                        async with asyncio.timeout(self._atimeout):
                            await pubsub.subscribe(self._channel)
                        reply = await pubsub.get_message(timeout=op.timeout)
                    else:
                        reply = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=op.timeout
                        )
        finally:
            plan.close()
            if pubsub is not None:
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()

    async def _aonce(self, plan: _Plan[T], action: str) -> T:
        async with self._aclient() as client:
            return await self._arun(client, plan, action)

    async def aload(self) -> Tokens | None:
        """The async form of `load`."""
        return await self._aonce(self._load_plan(), "load the tokens")

    async def asave(self, tokens: Tokens) -> None:
        """The async form of `save`."""
        await self._aonce(self._save_plan(tokens), "save the tokens")

    async def aclear(self) -> None:
        """The async form of `clear`."""
        await self._aonce(self._clear_plan(), "clear the tokens")

    @contextlib.asynccontextmanager
    async def alock(self) -> AsyncIterator[None]:
        """The async form of `lock`.

        Cancelling a task that waits for the lock leaves nothing held.
        """
        owner = secrets.token_hex(16)
        async with self._aclient() as client:
            try:
                await self._arun(
                    client, self._acquire_plan(owner), "take the refresh lock"
                )
            except BaseException:
                # Also on cancellation: the lock may be ours if only an answer
                # was lost.
                await self._arelease(client, owner, held=False)
                raise
            try:
                yield
            finally:
                await self._arelease(client, owner, held=True)

    async def _arelease(
        self, client: redis.asyncio.Redis, owner: str, *, held: bool
    ) -> None:
        released: bool | None = None
        with contextlib.suppress(StoreError):
            released = await self._arun(
                client, self._release_plan(owner), "release the lock"
            )
        self._released(released, held)

    async def aclose(self) -> None:
        """The async form of `close`.

        Async operations close their connections as they finish, so only the
        sync client has any to close.
        """
        self.close()

"""`RedisIntrospectionCache`: introspection answers shared by a fleet of APIs.

Each API server keeps its own in-memory cache; this one sits behind it, so a
token that one server has introspected is known to the others without a
call of their own. Keys are ``<prefix><namespace>:<SHA-256 of the token>``
(the `Introspector` supplies all but the prefix): a token never reaches
Redis. Each value expires by itself (``SET ... PX``) no later than the TTL
and the token's ``exp`` allow.

``redis`` is imported only when a cache is built, so ``import usersession``
works without it.
"""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from typing import TYPE_CHECKING, Any

from ._redisstore import _redact
from ._secrets import scrub

if TYPE_CHECKING:
    import redis

__all__ = ["RedisIntrospectionCache"]

#: A cache must answer fast or not at all: past this, the endpoint is asked.
_SOCKET_TIMEOUT = 1.0


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(
            "RedisIntrospectionCache needs the redis package: "
            "pip install 'usersession[redis]'"
        ) from exc
    return redis


class RedisIntrospectionCache:
    """Active introspection answers in Redis, shared by API servers.

    Give one to each server's `Introspector` (``cache=``). Failures are
    never fatal: the introspector treats them as a miss and asks the
    introspection endpoint.

    The sync methods share one thread-safe `redis.Redis` client; each async
    operation opens its own `redis.asyncio.Redis` client, since an asyncio
    connection belongs to the event loop that opened it.

    Args:
        url: The Redis server, as ``redis://[[user]:password@]host[:port][/db]``
            (``rediss://`` for TLS, ``unix://`` for a socket).
        prefix: Put before every key.
        **redis_options: Passed to ``redis.Redis.from_url`` and
            ``redis.asyncio.Redis.from_url``. Unless given, socket timeouts
            are 1 s.

    Raises:
        ImportError: The ``redis`` package is not installed.
        ValueError: The URL is unusable.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "usersession:introspection:",
        **redis_options: Any,
    ) -> None:
        self._redis = _import_redis()
        self._url = url
        self.prefix = prefix
        options: dict[str, Any] = {
            "socket_timeout": _SOCKET_TIMEOUT,
            "socket_connect_timeout": _SOCKET_TIMEOUT,
        } | redis_options
        self._options = options
        # The async edge bounds each command with asyncio.timeout rather than
        # redis-py's socket timeout (see RedisStore for why).
        self._atimeout: float | None = options["socket_timeout"]
        self._aoptions = options | {"socket_timeout": None}
        parts = urllib.parse.urlsplit(url)
        self._secrets = [parts.password, parts.username, options.get("password")]
        try:
            client: redis.Redis = self._redis.Redis.from_url(url, **options)
        except ValueError as exc:
            detail = scrub(str(exc), self._secrets)
            raise ValueError(f"{_redact(url)} is unusable: {detail}") from None
        self._client = client

    def __repr__(self) -> str:
        return (
            f"RedisIntrospectionCache({_redact(self._url)!r}, prefix={self.prefix!r})"
        )

    @staticmethod
    def _milliseconds(ttl: float) -> int:
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        # Rounded down, so a value never outlives what it was given.
        return max(1, math.floor(ttl * 1000))

    def get(self, key: str) -> bytes | str | None:
        """The value under `key`, or ``None``."""
        value: bytes | str | None = self._client.get(self.prefix + key)
        return value

    def set(self, key: str, value: str, ttl: float) -> None:
        """Store `value` under `key`; Redis drops it after `ttl` seconds."""
        self._client.set(self.prefix + key, value, px=self._milliseconds(ttl))

    async def _acall(self, *args: Any) -> Any:
        # redis-py leaves execute_command unannotated.
        client: Any = self._redis.asyncio.Redis.from_url(self._url, **self._aoptions)
        try:
            async with asyncio.timeout(self._atimeout):
                return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def aget(self, key: str) -> bytes | str | None:
        """The async form of `get`."""
        value: bytes | str | None = await self._acall("GET", self.prefix + key)
        return value

    async def aset(self, key: str, value: str, ttl: float) -> None:
        """The async form of `set`."""
        await self._acall(
            "SET", self.prefix + key, value, "PX", self._milliseconds(ttl)
        )

    def close(self) -> None:
        """Close the sync client's connections; the cache stays usable."""
        self._client.close()

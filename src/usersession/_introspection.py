"""`Introspector`: the resource-server side, validating bearer tokens by
token introspection (RFC 7662).

An API that receives usersession's tokens asks the authorization server
whether each one is active, authenticating as a client of its own, and
keeps the active answers for a while so that a busy API does not ask for
every request:

* Only a JSON ``true`` in ``active`` makes a token active (V1). A string
  ``"true"``, a missing ``active`` or anything else means inactive.
* No trustworthy answer (no connection, a timeout, a 5xx, a 401 or 403 to
  our own client authentication, an answer that is not an introspection
  answer) fails closed as "unavailable", and is never cached (V2).
* Active answers are kept at most until the smaller of the TTL and the
  token's ``exp``, under a hash of the token, in a bounded LRU; checks of
  one uncached token made at the same moment share one introspection call,
  across threads and asyncio tasks alike (V3).

Inactive answers are not cached. Tokens that are not active are mostly junk
or expired tokens, which the next request rarely repeats; caching them
would let a client flooding the API with made-up tokens push the real,
active ones out of the bounded cache. Concurrent checks of one inactive
token still share a single call.

Every check is written once, as a plan: a generator that yields what it
needs done (a read or write of the shared cache, the introspection request)
and receives the outcome. A sync edge and an async edge run plans.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Protocol

import httpx

from ._errors import InsufficientScope, IntrospectionUnavailable, InvalidToken
from ._flight import Rendezvous
from ._oauth import parse_retry_after
from ._provider import Provider
from ._secrets import SECRET_FIELDS, excerpt, fingerprint

__all__ = ["Claims", "IntrospectionCache", "Introspector"]

logger = logging.getLogger("usersession")

#: The version of the documents written to a shared cache.
_SHARED_VERSION = 1

#: Each kind of failure is logged as a WARNING at most this often (seconds).
_WARNING_INTERVAL = 60.0


# -- Claims --------------------------------------------------------------------


def _optional_string(answer: Mapping[str, Any], name: str) -> str | None:
    value = answer.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{name} is not a string")


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Claims:
    """What the authorization server said about an active token.

    Immutable. Its ``repr`` names the subject, client and scope, never the
    token.

    Attributes:
        sub: The subject (RFC 7662 section 2.2), usually the user.
        scope: The token's scopes.
        client_id: The client the token was issued to.
        exp: When the token expires, in epoch seconds, if said.
        raw: The whole introspection answer, read-only, less any field that
            could hold a credential (``token``, ``access_token``, ...).
    """

    sub: str | None
    scope: frozenset[str]
    client_id: str | None
    exp: float | None
    raw: Mapping[str, Any] = dataclasses.field(hash=False)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Claims:
        """Read the claims of an introspection answer (RFC 7662 section 2.2).

        It does not check ``active``; the caller decides that.

        Raises:
            ValueError: A field has the wrong type: ``sub``, ``client_id``
                or ``scope`` not a string, ``exp`` not a finite number.
        """
        scope = _optional_string(answer, "scope")
        exp = answer.get("exp")
        if exp is not None and (
            isinstance(exp, bool)
            or not isinstance(exp, int | float)
            or not math.isfinite(exp)
        ):
            raise ValueError("exp is not a number")
        raw = {key: value for key, value in answer.items() if key not in SECRET_FIELDS}
        return cls(
            sub=_optional_string(answer, "sub"),
            # RFC 7662 section 2.2: a space-separated list, as in RFC 6749 3.3.
            scope=frozenset(scope.split()) if scope else frozenset(),
            client_id=_optional_string(answer, "client_id"),
            exp=None if exp is None else float(exp),
            raw=MappingProxyType(raw),
        )

    def missing(self, scopes: Iterable[str]) -> frozenset[str]:
        """The scopes among `scopes` that this token lacks."""
        return frozenset(scopes) - self.scope

    def has_scopes(self, *scopes: str) -> bool:
        """Whether the token holds every scope given."""
        return not self.missing(scopes)

    def __repr__(self) -> str:
        return (
            f"Claims(sub={self.sub!r}, client_id={self.client_id!r}, "
            f"scope={' '.join(sorted(self.scope))!r}, exp={self.exp!r})"
        )


# -- The shared cache -------------------------------------------------------------


class IntrospectionCache(Protocol):
    """A cache of introspection answers shared by several API servers.

    Keys are hashes of tokens, never tokens; values are short JSON documents
    holding the answer (less any credential) and the moment it stops being
    usable. `ttl` is the most seconds the value may be kept. Methods may
    raise: any failure counts as a miss, and the introspection endpoint is
    asked instead. `RedisIntrospectionCache` is one.
    """

    def get(self, key: str) -> str | bytes | None:
        """The value stored under `key`, or ``None``."""
        ...

    def set(self, key: str, value: str, ttl: float) -> None:
        """Store `value` under `key` for at most `ttl` seconds."""
        ...

    async def aget(self, key: str) -> str | bytes | None:
        """The async form of `get`."""
        ...

    async def aset(self, key: str, value: str, ttl: float) -> None:
        """The async form of `set`."""
        ...


# -- What a plan asks an edge to do, and what a check comes to --------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _CacheGet:
    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class _CacheSet:
    key: str
    value: str
    ttl: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Active:
    claims: Claims
    until: float | None = None  # epoch seconds a shared cache allowed


@dataclasses.dataclass(frozen=True, slots=True)
class _Inactive:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Unavailable:
    reason: str
    upstream_status: int | None = None
    body_excerpt: str | None = None
    retry_after: float | None = None


_Result = _Active | _Inactive | _Unavailable
_Answer = httpx.Response | httpx.RequestError
_Op = _CacheGet | _CacheSet | httpx.Request
_Plan = Generator[_Op, Any, _Result]


@dataclasses.dataclass(slots=True)
class _Entry:
    claims: Claims
    deadline: float  # on the monotonic clock


class _Flight(Rendezvous[_Result]):
    """One introspection under way, which any thread or event loop can wait for."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch


def _token_key(token: str) -> str:
    # The cache never holds a token: a full SHA-256 names it instead.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _required(scopes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    return tuple(dict.fromkeys(scopes))


# -- The introspector ---------------------------------------------------------------


class Introspector:
    """Validates bearer tokens at the authorization server's introspection
    endpoint (RFC 7662), for an API that receives them.

    One introspector serves every thread and event loop of a process. Use
    `check` from threads and `acheck` from coroutines; `close` (or
    `aclose`, from the event loop that made the async checks) when done.

    Args:
        provider: The authorization server, with its ``introspection_endpoint``
            and this API's own confidential client: introspection requests
            are authenticated by the provider's method (RFC 6749 section
            2.3.1; RFC 7662 section 2.1 requires the caller to be known).
        ttl: The most seconds an active answer is kept; 0 keeps none. A
            token revoked at the server is still accepted until its cached
            answer runs out, so this is the longest a revocation can take
            to reach this API.
        max_entries: The most answers kept in memory; the least recently
            used go first. 0 keeps none.
        cache: A cache shared with other API servers (such as
            `RedisIntrospectionCache`), consulted when this process has no
            answer; the same TTL rule applies.
        client_ids: When given, only tokens issued to one of these clients
            (the answer's ``client_id``) are accepted; others are treated as
            inactive.
        timeout: Seconds allowed for each introspection request; by default
            the provider's timeout.
        token_type_hint: Sent with each request (RFC 7662 section 2.1);
            ``None`` sends none.
        clock: The wall clock, in epoch seconds, that ``exp`` is compared
            with.
        monotonic: The clock the TTL runs on.

    Raises:
        ValueError: The provider has no introspection endpoint, or is a
            public client, or a setting is out of range.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        cache: IntrospectionCache | None = None,
        client_ids: Collection[str] | None = None,
        timeout: float | None = None,
        token_type_hint: str | None = "access_token",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if provider.introspection_endpoint is None:
            raise ValueError("the provider has no introspection_endpoint")
        if provider.token_endpoint_auth_method == "none":
            # RFC 7662 section 2.1: the endpoint must know who is asking.
            raise ValueError(
                "introspection needs client authentication; give the provider "
                "the API's client_secret"
            )
        if not (math.isfinite(ttl) and ttl >= 0):
            raise ValueError("ttl must be a finite number of seconds, 0 or more")
        if isinstance(max_entries, bool) or max_entries < 0:
            raise ValueError("max_entries must be 0 or more")
        wait = provider.timeout if timeout is None else timeout
        if not (math.isfinite(wait) and wait > 0):
            raise ValueError("timeout must be a positive number of seconds")
        self._provider = provider
        self._endpoint: str = provider.introspection_endpoint
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.timeout = float(wait)
        self._shared = cache
        self._client_ids = None if client_ids is None else frozenset(client_ids)
        self._hint = token_type_hint
        self._clock = clock
        self._monotonic = monotonic
        # A waiter gives up (unavailable) if the call it waits for has not
        # ended by then: the request's own timeouts, plus the shared cache.
        self._wait_limit = 3 * self.timeout + 5.0
        # Shared-cache keys name the endpoint and client too: two APIs that
        # trust different servers, or that the server answers differently,
        # must not read each other's answers.
        scope = f"{self._endpoint}\0{provider.client_id}".encode()
        self._namespace = hashlib.sha256(scope).hexdigest()[:16]
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._epoch = 0
        self._calls = 0
        self._client: httpx.Client | None = None
        self._aclient: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None
        self._aclient = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"Introspector(endpoint={self._endpoint!r}, "
            f"client_id={self._provider.client_id!r}, ttl={self.ttl:g})"
        )

    @property
    def calls(self) -> int:
        """How many introspection requests this introspector has sent."""
        with self._lock:
            return self._calls

    @property
    def cached(self) -> int:
        """How many answers are cached in memory (some may have run out)."""
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every answer cached in this process.

        Calls already under way when this is called answer their waiters but
        leave nothing in the cache. The shared cache is left alone.
        """
        with self._lock:
            self._entries.clear()
            self._epoch += 1

    def forget(self, token: str) -> None:
        """Forget the answer cached in this process for one token (as `clear`
        does, the calls under way leave nothing behind)."""
        with self._lock:
            self._entries.pop(_token_key(token), None)
            self._epoch += 1

    # -- Checking -------------------------------------------------------------------

    def check(self, token: str, *, scopes: Iterable[str] = ()) -> Claims:
        """Return the claims of an active token that holds every scope asked.

        Args:
            token: The bearer token, as the request carried it.
            scopes: The scopes the resource needs (a collection, or one
                space-separated string).

        Raises:
            InvalidToken: The token is not active (answer 401).
            InsufficientScope: It lacks a scope asked for (answer 403).
            IntrospectionUnavailable: No trustworthy answer now (answer 503).
        """
        required = _required(scopes)
        key, found, leader = self._begin(token)
        if isinstance(found, Claims):
            return self._accept(_Active(found), required)
        if leader:
            result: _Result = _Unavailable("the check was interrupted")
            try:
                result = self._run(self._plan(key, token))
            except Exception as exc:
                result = self._failed(exc)
            finally:
                self._finish(key, found, result)
        else:
            result = found.wait(self._wait_limit) or _Unavailable(
                "another check of this token did not end in time"
            )
        return self._accept(result, required)

    async def acheck(self, token: str, *, scopes: Iterable[str] = ()) -> Claims:
        """The async form of `check`.

        The introspection call runs in a task of its own: cancelling the
        coroutine that started it stops only that coroutine's wait, and the
        others waiting for the same token still get the answer.
        """
        required = _required(scopes)
        key, found, leader = self._begin(token)
        if isinstance(found, Claims):
            return self._accept(_Active(found), required)
        if leader:
            task = asyncio.get_running_loop().create_task(
                self._alead(key, found, token)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        result = await found.wait_async(self._wait_limit) or _Unavailable(
            "another check of this token did not end in time"
        )
        return self._accept(result, required)

    async def _alead(self, key: str, flight: _Flight, token: str) -> None:
        result: _Result = _Unavailable("the check was interrupted")
        try:
            result = await self._arun(self._plan(key, token))
        except Exception as exc:
            result = self._failed(exc)
        finally:
            self._finish(key, flight, result)

    @staticmethod
    def _failed(exc: Exception) -> _Unavailable:
        # Fail closed; the message of an unexpected error is not quoted, in
        # case it holds the request.
        logger.error("introspection failed unexpectedly: %s", type(exc).__name__)
        return _Unavailable(f"the check failed ({type(exc).__name__})")

    def _begin(self, token: str) -> tuple[str, Claims | _Flight, bool]:
        """A cached answer; or the call under way for this token; or a new
        call that the caller must make (True)."""
        if not token:
            raise InvalidToken("the access token is not active (empty)")
        key = _token_key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if self._usable(entry):
                    self._entries.move_to_end(key)
                    return key, entry.claims, False
                del self._entries[key]
            flight = self._flights.get(key)
            if flight is not None:
                return key, flight, False
            flight = self._flights[key] = _Flight(self._epoch)
            return key, flight, True

    def _usable(self, entry: _Entry) -> bool:
        if self._monotonic() >= entry.deadline:
            return False
        exp = entry.claims.exp
        return exp is None or self._clock() < exp

    def _finish(self, key: str, flight: _Flight, result: _Result) -> None:
        # The answer goes into the cache and the call leaves the table in one
        # step, so a check arriving now finds one or the other, never neither.
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if isinstance(result, _Active) and flight.epoch == self._epoch:
                self._store(key, result)
        flight.complete(result)

    def _lifetime(self, active: _Active, now: float) -> float:
        # V3: at most the TTL, and never past the token's exp (nor past what
        # the shared cache allowed).
        lifetime = self.ttl
        if active.claims.exp is not None:
            lifetime = min(lifetime, active.claims.exp - now)
        if active.until is not None:
            lifetime = min(lifetime, active.until - now)
        return lifetime

    def _store(self, key: str, active: _Active) -> None:
        if self.max_entries == 0:
            return
        lifetime = self._lifetime(active, self._clock())
        if lifetime <= 0:
            return
        self._entries[key] = _Entry(active.claims, self._monotonic() + lifetime)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _accept(self, result: _Result, required: tuple[str, ...]) -> Claims:
        if isinstance(result, _Unavailable):
            raise IntrospectionUnavailable(
                f"token introspection is unavailable: {result.reason}",
                upstream_status=result.upstream_status,
                body_excerpt=result.body_excerpt,
                retry_after=result.retry_after,
            )
        if isinstance(result, _Inactive):
            raise InvalidToken(f"the access token is not active ({result.reason})")
        claims = result.claims
        if claims.exp is not None and self._clock() >= claims.exp:
            raise InvalidToken("the access token is not active (expired)")
        if self._client_ids is not None and claims.client_id not in self._client_ids:
            raise InvalidToken(
                "the access token is not active (issued to a client this "
                "resource does not serve)"
            )
        missing = claims.missing(required)
        if missing:
            raise InsufficientScope(
                f"the access token lacks scope {' '.join(sorted(missing))}",
                required=required,
                missing=missing,
            )
        return claims

    # -- The plan: one check, for both edges ---------------------------------------

    def _plan(self, key: str, token: str) -> _Plan:
        shared_key = f"{self._namespace}:{key}"
        name = fingerprint(token)
        if self._shared is not None:
            document = yield _CacheGet(shared_key)
            found = self._from_shared(document)
            if found is not None:
                logger.debug("introspection of %s: active (shared cache)", name)
                return found
        with self._lock:
            self._calls += 1
        answer: _Answer = yield self._request(token)
        result = self._interpret(answer, token)
        if isinstance(result, _Active):
            logger.debug("introspection of %s: active", name)
            if self._shared is not None:
                now = self._clock()
                lifetime = self._lifetime(result, now)
                if lifetime > 0:
                    document = json.dumps(
                        {
                            "version": _SHARED_VERSION,
                            "until": now + lifetime,
                            "answer": dict(result.claims.raw),
                        }
                    )
                    yield _CacheSet(shared_key, document, lifetime)
        elif isinstance(result, _Inactive):
            logger.debug("introspection of %s: inactive (%s)", name, result.reason)
        else:
            self._warn(
                "unavailable",
                "introspection of %s: unavailable (%s); answering 503",
                name,
                result.reason,
            )
        return result

    def _request(self, token: str) -> httpx.Request:
        form = {"token": token}
        if self._hint is not None:
            form["token_type_hint"] = self._hint
        # RFC 7662 section 2.1: a form POST, with the client authenticated by
        # the provider's method (RFC 6749 section 2.3.1).
        request = self._provider.authenticated_request(self._endpoint, form)
        request.extensions["timeout"] = httpx.Timeout(self.timeout).as_dict()
        return request

    def _interpret(self, answer: _Answer, token: str) -> _Result:
        if isinstance(answer, httpx.RequestError):
            return _Unavailable(f"no answer ({type(answer).__name__})")
        status = answer.status_code
        secrets = (token, self._provider.client_secret)
        if status != 200:
            reason = f"the endpoint answered HTTP {status}"
            if status in (401, 403):
                # Our own client authentication failed: a configuration error
                # on this side, never a verdict on the token.
                reason += "; it refused this API's client credentials"
            # RFC 9110 10.2.3: a 429 or 503 may say when to come back; the
            # API passes that on in its own 503.
            retry_after = parse_retry_after(
                answer.headers.get("Retry-After"), self._clock()
            )
            return _Unavailable(
                reason, status, excerpt(answer.content, secrets), retry_after
            )
        try:
            payload = answer.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _Unavailable(
                "the answer is not a JSON object",
                status,
                excerpt(answer.content, secrets),
            )
        # RFC 7662 section 2.2: "active" is a boolean; only JSON true counts.
        if payload.get("active") is not True:
            return _Inactive("the server says so")
        try:
            claims = Claims.from_answer(payload)
        except ValueError as exc:
            return _Unavailable(f"the answer is malformed: {exc}", status)
        if claims.exp is not None and claims.exp <= self._clock():
            return _Inactive("expired")
        return _Active(claims)

    def _from_shared(self, document: str | bytes | None) -> _Active | None:
        if document is None:
            return None
        try:
            data = json.loads(document)
            if not isinstance(data, dict) or data.get("version") != _SHARED_VERSION:
                raise ValueError("unknown document")
            until, answer = data.get("until"), data.get("answer")
            if isinstance(until, bool) or not isinstance(until, int | float):
                raise ValueError("no until")
            if not isinstance(answer, dict) or answer.get("active") is not True:
                raise ValueError("no active answer")
            claims = Claims.from_answer(answer)
        except ValueError:
            logger.debug("introspection: ignored an unreadable shared cache entry")
            return None
        now = self._clock()
        if until <= now or (claims.exp is not None and claims.exp <= now):
            return None
        return _Active(claims, float(until))

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A WARNING at most once a minute for each kind of trouble, so an
        outage does not log once per request; DEBUG records in between."""
        now = time.monotonic()
        with self._lock:
            loud = now - self._warned.get(kind, -math.inf) >= _WARNING_INTERVAL
            if loud:
                self._warned[kind] = now
        logger.log(logging.WARNING if loud else logging.DEBUG, message, *args)

    def _cache_failed(self, exc: BaseException, action: str) -> None:
        self._warn(
            "cache",
            "introspection: could not %s the shared cache (%s); asking the "
            "endpoint instead",
            action,
            type(exc).__name__,
        )

    # -- The sync edge -----------------------------------------------------------------

    def _run(self, plan: _Plan) -> _Result:
        reply: Any = None
        try:
            while True:
                try:
                    op = plan.send(reply)
                except StopIteration as stop:
                    result: _Result = stop.value
                    return result
                reply = None
                if isinstance(op, httpx.Request):
                    reply = self._send(op)
                elif self._shared is None:
                    continue
                elif isinstance(op, _CacheGet):
                    try:
                        reply = self._shared.get(op.key)
                    except Exception as exc:
                        self._cache_failed(exc, "read")
                else:
                    try:
                        self._shared.set(op.key, op.value, op.ttl)
                    except Exception as exc:
                        self._cache_failed(exc, "write")
        finally:
            plan.close()

    def _send(self, request: httpx.Request) -> _Answer:
        try:
            if (
                self._provider._transport is None
                and self._provider._async_transport is not None
            ):
                # Only an async transport was given: the provider drives it.
                return self._provider.send(request)
            with self._lock:
                if self._client is None:
                    self._client = self._provider._client()
                client = self._client
            return client.send(request)
        except httpx.RequestError as exc:
            return exc

    # -- The async edge -------------------------------------------------------------

    async def _arun(self, plan: _Plan) -> _Result:
        reply: Any = None
        try:
            while True:
                try:
                    op = plan.send(reply)
                except StopIteration as stop:
                    result: _Result = stop.value
                    return result
                reply = None
                if isinstance(op, httpx.Request):
                    reply = await self._asend(op)
                elif self._shared is None:
                    continue
                elif isinstance(op, _CacheGet):
                    try:
                        reply = await self._shared.aget(op.key)
                    except Exception as exc:
                        self._cache_failed(exc, "read")
                else:
                    try:
                        await self._shared.aset(op.key, op.value, op.ttl)
                    except Exception as exc:
                        self._cache_failed(exc, "write")
        finally:
            plan.close()

    async def _asend(self, request: httpx.Request) -> _Answer:
        # An asyncio connection belongs to the loop that opened it: the pooled
        # client serves the first loop; checks from other loops (rare) get a
        # client of their own for one call.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._aclient is None or self._aclient[0].is_closed():
                self._aclient = (loop, self._provider._async_client())
            owner, pooled = self._aclient
        try:
            if owner is loop:
                return await pooled.send(request)
            async with self._provider._async_client() as client:
                return await client.send(request)
        except httpx.RequestError as exc:
            return exc

    # -- Closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections of sync checks. The introspector stays usable."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close every connection, from the event loop that made the async
        checks. The introspector stays usable."""
        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            pooled = self._aclient
            if pooled is not None and pooled[0] is loop:
                self._aclient = None
        if pooled is not None and pooled[0] is loop:
            await pooled[1].aclose()

    def __enter__(self) -> Introspector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Introspector:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

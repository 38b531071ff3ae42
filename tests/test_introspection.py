"""The resource-server side: `Introspector` against the development server's
introspection endpoint over real sockets (V1-V3, C09, C10), sync and async.

Each test that exists in both forms takes the `mode` fixture: `check` from
threads, or `acheck` from asyncio tasks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import usersession
from usersession import (
    Claims,
    InsufficientScope,
    IntrospectionUnavailable,
    Introspector,
    InvalidToken,
    RedisIntrospectionCache,
)
from usersession.devserver import DevServer, Fault

from conftest import Mode
from introspection_support import (
    Clocks,
    api_provider,
    check_in,
    introspections,
    introspector_for,
)
from redis_server import RedisServer, require_redis_server


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def token_of(dev: DevServer, scope: str = "openid profile", **options: Any) -> str:
    token: str = dev.login("alice", scope, **options)["access_token"]
    return token


def json_fault(payload: Any) -> Fault:
    return Fault.status(200, json.dumps(payload), "application/json")


def mock_introspector(
    answer: Any, *, status: int = 200, **options: Any
) -> tuple[Introspector, list[httpx.Request]]:
    """An introspector whose endpoint is an httpx mock answering `answer`."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return httpx.Response(status, content=body)

    method = options.pop("method", "client_secret_basic")
    provider = usersession.Provider(
        "http://127.0.0.1:9/token",
        "api:client",
        "s%cr:t",
        token_endpoint_auth_method=method,
        introspection_endpoint="http://127.0.0.1:9/introspect",
        transport=httpx.MockTransport(handle),
    )
    return Introspector(provider, **options), seen


# V1: the request, and what counts as active


def test_v1_request_is_an_authenticated_rfc7662_form_post() -> None:
    """V1: POST token=...&token_type_hint=access_token with HTTP Basic client
    authentication, id and secret form-encoded (RFC 6749 2.3.1)."""
    introspector, seen = mock_introspector({"active": True, "sub": "ann"})
    assert introspector.check("tok-1").sub == "ann"
    (request,) = seen
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    form = httpx.QueryParams(request.content.decode())
    assert dict(form) == {"token": "tok-1", "token_type_hint": "access_token"}
    assert request.headers["authorization"] == "Basic " + base64_pair(
        "api%3Aclient", "s%25cr%3At"
    )


def base64_pair(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_v1_client_secret_post_and_no_hint() -> None:
    """V1: the provider's method is used; client_secret_post puts the
    credentials in the form."""
    introspector, seen = mock_introspector(
        {"active": True}, method="client_secret_post", token_type_hint=None
    )
    introspector.check("tok-2")
    form = dict(httpx.QueryParams(seen[0].content.decode()))
    assert form == {
        "token": "tok-2",
        "client_id": "api:client",
        "client_secret": "s%cr:t",
    }
    assert "authorization" not in seen[0].headers


def test_v1_a_public_client_cannot_introspect() -> None:
    """V1: RFC 7662 2.1 needs the caller authenticated."""
    provider = usersession.Provider(
        "http://127.0.0.1:9/token",
        "public",
        token_endpoint_auth_method="none",
        introspection_endpoint="http://127.0.0.1:9/introspect",
    )
    with pytest.raises(ValueError, match="client authentication"):
        Introspector(provider)
    with pytest.raises(ValueError, match="introspection_endpoint"):
        Introspector(usersession.Provider("http://127.0.0.1:9/token", "c", "s"))


@pytest.mark.parametrize(
    "answer",
    [
        {"active": "true", "sub": "ann"},
        {"sub": "ann"},
        {"active": 1},
        {"active": None},
        {"active": [True]},
        {"active": False, "sub": "ann"},
    ],
    ids=["string", "missing", "one", "null", "list", "false"],
)
def test_v1_only_json_true_is_active(answer: dict[str, Any]) -> None:
    """V1, C09 (e): anything but a JSON boolean true in `active` is inactive,
    and inactive answers are not cached."""
    introspector, seen = mock_introspector(answer)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            introspector.check("tok")
    assert len(seen) == 2


def test_v1_claims_are_immutable_and_hold_no_secret() -> None:
    """V1: the claims carry sub, scope (a frozenset), client_id, exp and the
    answer less any credential field."""
    exp = int(time.time()) + 600
    introspector, _ = mock_introspector(
        {
            "active": True,
            "sub": "ann",
            "scope": "read  write",
            "client_id": "app",
            "exp": exp,
            "token": "tok-secret",
            "aud": "api",
        }
    )
    claims = introspector.check("tok-secret")
    assert claims.sub == "ann"
    assert claims.scope == frozenset({"read", "write"})
    assert claims.client_id == "app"
    assert claims.exp == float(exp)
    assert claims.raw["aud"] == "api"
    assert "token" not in claims.raw
    assert claims.has_scopes("read") and not claims.has_scopes("read", "admin")
    with pytest.raises(TypeError):
        claims.raw["sub"] = "mallory"  # type: ignore[index]
    with pytest.raises(AttributeError):
        claims.sub = "mallory"  # type: ignore[misc]
    assert "tok-secret" not in repr(claims) and "tok-secret" not in str(claims)
    assert repr(claims) == (
        f"Claims(sub='ann', client_id='app', scope='read write', exp={float(exp)!r})"
    )


def test_v1_active_token_and_scopes(dev: DevServer, mode: Mode) -> None:
    """V1: an active token's claims; a scope the route needs and the token
    lacks is InsufficientScope naming it (the integrations answer 403)."""
    introspector = introspector_for(dev)
    token = token_of(dev, "openid profile")
    claims = check_in(mode, introspector, token, ["profile"])
    assert isinstance(claims, Claims)
    assert (claims.sub, claims.client_id) == ("alice", dev.client_id)
    assert claims.scope == {"openid", "profile"}
    refused = check_in(mode, introspector, token, "profile admin")
    assert isinstance(refused, InsufficientScope)
    assert refused.required == ("profile", "admin")
    assert refused.missing == {"admin"}
    assert refused.status_code == 403 and refused.error == "insufficient_scope"
    assert introspections(dev) == 1  # the second check came from the cache
    introspector.close()


def test_v1_unknown_and_revoked_tokens_are_invalid(dev: DevServer, mode: Mode) -> None:
    """V1: the server's {"active": false} is InvalidToken (401 invalid_token)."""
    introspector = introspector_for(dev)
    refused = check_in(mode, introspector, "at_unknown")
    assert isinstance(refused, InvalidToken)
    assert (refused.status_code, refused.error) == (401, "invalid_token")
    token = token_of(dev)
    dev.revoke_access_token(token)
    assert isinstance(check_in(mode, introspector, token), InvalidToken)
    introspector.close()


def test_v1_tokens_of_other_clients_can_be_refused(dev: DevServer, mode: Mode) -> None:
    """V1: with client_ids, a token issued to another client is inactive here."""
    dev.add_client("other-app", "other-secret")
    mine = token_of(dev)
    theirs = dev.login("bob", "openid", client_id="other-app")["access_token"]
    introspector = introspector_for(dev, client_ids=[dev.client_id])
    assert isinstance(check_in(mode, introspector, mine), Claims)
    assert isinstance(check_in(mode, introspector, theirs), InvalidToken)
    introspector.close()


# C09: what the introspection endpoint may answer


def test_c09_a_inactive_answer_is_401_invalid_token(dev: DevServer, mode: Mode) -> None:
    """C09 (a): 200 {"active": false} is InvalidToken, and is not cached:
    the next check asks again."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", json_fault({"active": False}))
    assert isinstance(check_in(mode, introspector, token), InvalidToken)
    assert isinstance(check_in(mode, introspector, token), Claims)
    assert introspections(dev) == 2
    introspector.close()


@pytest.mark.parametrize(
    "fault",
    [
        Fault.oauth_error("invalid_client", 401, "client authentication failed"),
        Fault.status(500),
        Fault.hang(3.0),
    ],
    ids=["b-401-json", "c-500", "d-silent-3s"],
)
def test_c09_bcd_v2_failures_are_unavailable_and_never_cached(
    dev: DevServer, mode: Mode, fault: Fault
) -> None:
    """C09 (b)(c)(d), V2: a 401 JSON answer (our client auth failed), a 500,
    or no answer for 3 s (the client gives up after 0.3 s) fail closed as
    IntrospectionUnavailable (503), and nothing is cached: the next check
    makes a new call and succeeds."""
    introspector = introspector_for(dev, timeout=0.3)
    token = token_of(dev)
    dev.inject("introspection", fault)
    started = time.monotonic()
    refused = check_in(mode, introspector, token)
    assert time.monotonic() - started < 2.5
    assert isinstance(refused, IntrospectionUnavailable)
    assert refused.status_code == 503 and refused.error is None
    assert refused.upstream_status == (
        None if fault.kind == "hang" else fault.http_status
    )
    assert introspector.cached == 0
    assert isinstance(check_in(mode, introspector, token), Claims)
    assert introspections(dev) == 2
    introspector.close()


@pytest.mark.parametrize(
    "answer",
    [{"active": "true", "sub": "alice"}, {"sub": "alice", "scope": "openid"}],
    ids=["string-true", "no-active"],
)
def test_c09_e_string_or_missing_active_is_inactive(
    dev: DevServer, mode: Mode, answer: dict[str, Any]
) -> None:
    """C09 (e): "active": "true" as a string, or no active at all: inactive."""
    introspector = introspector_for(dev)
    dev.inject("introspection", json_fault(answer))
    assert isinstance(check_in(mode, introspector, token_of(dev)), InvalidToken)
    introspector.close()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"active": true, "exp": "soon"}', "application/json"),
        (b'{"active": true, "scope": ["a"]}', "application/json"),
        (b'{"active": tr', "application/json"),
        (b"[true]", "application/json"),
        (b"<html>502</html>", "text/html"),
    ],
    ids=["exp-string", "scope-list", "cut-short", "list", "html"],
)
def test_v2_malformed_answers_are_unavailable(
    dev: DevServer, mode: Mode, body: bytes, content_type: str
) -> None:
    """V2: an answer that is not an introspection answer fails closed."""
    introspector = introspector_for(dev)
    dev.inject("introspection", Fault.malformed(body, content_type))
    refused = check_in(mode, introspector, token_of(dev))
    assert isinstance(refused, IntrospectionUnavailable)
    assert introspector.cached == 0
    introspector.close()


def test_v2_refused_connections_are_unavailable(dev: DevServer, mode: Mode) -> None:
    """V2: introspection unreachable fails closed."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.refuse_connections()
    refused = check_in(mode, introspector, token)
    assert isinstance(refused, IntrospectionUnavailable)
    assert refused.upstream_status is None
    dev.refuse_connections(False)
    assert isinstance(check_in(mode, introspector, token), Claims)
    introspector.close()


# V3: the cache


def test_v3_active_answers_last_the_ttl(
    dev: DevServer, mode: Mode, clocks: Clocks
) -> None:
    """V3: one call within the TTL, a fresh one after it."""
    introspector = introspector_for(dev, clocks, ttl=30.0)
    token = token_of(dev)
    for _ in range(3):
        assert isinstance(check_in(mode, introspector, token), Claims)
    assert introspections(dev) == 1
    clocks.advance(29.9)
    check_in(mode, introspector, token)
    assert introspections(dev) == 1
    clocks.advance(0.1)
    check_in(mode, introspector, token)
    assert introspections(dev) == 2
    introspector.close()


def test_v3_never_past_exp(mode: Mode, clocks: Clocks) -> None:
    """V3: an answer whose exp comes before the TTL is kept only until exp;
    then the token is inactive (here by the API's clock) and not cached."""
    with DevServer(access_token_lifetime=10.0) as dev:
        introspector = introspector_for(dev, clocks, ttl=30.0)
        token = token_of(dev)
        claims = check_in(mode, introspector, token)
        assert isinstance(claims, Claims) and claims.exp is not None
        clocks.now = claims.exp - 0.01
        assert isinstance(check_in(mode, introspector, token), Claims)
        assert introspections(dev) == 1
        clocks.now = claims.exp
        # The server's clock has not moved: it says active, but exp is past.
        assert isinstance(check_in(mode, introspector, token), InvalidToken)
        assert isinstance(check_in(mode, introspector, token), InvalidToken)
        assert introspections(dev) == 3
        assert introspector.cached == 0
        introspector.close()


def test_v3_exp_in_the_past_is_inactive_and_not_cached() -> None:
    """V3: an active answer whose exp has passed is inactive, never cached."""
    introspector, seen = mock_introspector({"active": True, "exp": time.time() - 1})
    for _ in range(2):
        with pytest.raises(InvalidToken, match="expired"):
            introspector.check("tok")
    assert len(seen) == 2
    assert introspector.cached == 0


def test_v3_cache_keys_are_hashes_of_tokens(dev: DevServer) -> None:
    """V3: the cache holds SHA-256 hashes of tokens, never tokens."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    introspector.check(token)
    keys = list(introspector._entries)
    assert keys == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr(introspector._entries)
    introspector.close()


def test_v3_cache_is_bounded_least_recently_used_first(dev: DevServer) -> None:
    """V3: at most max_entries answers; the least recently used go first."""
    introspector = introspector_for(dev, max_entries=3)
    tokens = [token_of(dev) for _ in range(4)]
    for token in tokens[:3]:
        introspector.check(token)
    introspector.check(tokens[0])  # now the most recently used
    introspector.check(tokens[3])  # evicts tokens[1]
    assert introspector.cached == 3
    assert introspections(dev) == 4
    introspector.check(tokens[0])
    introspector.check(tokens[2])
    assert introspections(dev) == 4
    introspector.check(tokens[1])
    assert introspections(dev) == 5
    introspector.close()


def test_v3_ttl_zero_or_no_entries_caches_nothing(dev: DevServer) -> None:
    """V3: ttl=0 or max_entries=0 turn the cache off."""
    token = token_of(dev)
    for options in ({"ttl": 0.0}, {"max_entries": 0}):
        introspector = introspector_for(dev, **options)
        introspector.check(token)
        introspector.check(token)
        assert introspector.cached == 0
        introspector.close()
    assert introspections(dev) == 4
    with pytest.raises(ValueError, match="ttl"):
        introspector_for(dev, ttl=-1.0)
    with pytest.raises(ValueError, match="max_entries"):
        introspector_for(dev, max_entries=-1)


def test_v3_inactive_answers_are_not_cached(dev: DevServer, mode: Mode) -> None:
    """V3: inactive answers are not cached (a flood of made-up tokens would
    otherwise push the active ones out): each check asks again."""
    introspector = introspector_for(dev)
    for _ in range(3):
        assert isinstance(check_in(mode, introspector, "at_junk"), InvalidToken)
    assert introspections(dev) == 3
    assert introspector.cached == 0
    introspector.close()


def test_v3_clear_and_forget(dev: DevServer) -> None:
    """V3: clear() and forget() drop cached answers."""
    introspector = introspector_for(dev)
    first, second = token_of(dev), token_of(dev)
    introspector.check(first)
    introspector.check(second)
    introspector.forget(first)
    assert introspector.cached == 1
    introspector.clear()
    assert introspector.cached == 0
    introspector.close()


def test_v3_clear_during_a_call_keeps_its_answer_out(dev: DevServer) -> None:
    """V3: an answer that arrives after clear() reaches its waiters but is not
    cached (it may predate what made the caller clear)."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.3))
    result: list[Claims] = []
    thread = threading.Thread(target=lambda: result.append(introspector.check(token)))
    thread.start()
    time.sleep(0.1)
    introspector.clear()
    thread.join(5)
    assert len(result) == 1
    assert introspector.cached == 0
    introspector.close()


# C10: cache and revocation


@pytest.mark.parametrize("lifetime", [3600.0, None], ids=["exp-1h", "no-exp"])
def test_c10_revocation_is_seen_once_the_ttl_has_passed(
    mode: Mode, clocks: Clocks, lifetime: float | None
) -> None:
    """C10, V3: TTL 30 s; T active with exp an hour away (and, separately,
    no exp). Use T, revoke it at the AS (RFC 7009), use it again: one
    introspection call within the TTL; after it, a fresh call and a 401."""
    with DevServer(access_token_lifetime=lifetime) as dev:
        introspector = introspector_for(dev, clocks, ttl=30.0)
        token = token_of(dev)
        claims = check_in(mode, introspector, token)
        assert isinstance(claims, Claims)
        assert (claims.exp is None) == (lifetime is None)
        revoked = httpx.post(
            dev.revocation_endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(dev.client_id, dev.client_secret),
        )
        assert revoked.status_code == 200
        clocks.advance(29.0)
        assert isinstance(check_in(mode, introspector, token), Claims)
        assert introspections(dev) == 1
        clocks.advance(1.0)
        refused = check_in(mode, introspector, token)
        assert isinstance(refused, InvalidToken)
        assert refused.status_code == 401
        assert introspections(dev) == 2
        introspector.close()


# V3: one call for many concurrent checks


def test_v3_fifty_threads_one_uncached_token_one_call(dev: DevServer) -> None:
    """V3: 50 threads checking one uncached token make one introspection
    call (the server counts it), widened with a 300 ms delay."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.3))
    barrier = threading.Barrier(50)
    results: list[Claims | BaseException] = []

    def one() -> None:
        barrier.wait()
        try:
            results.append(introspector.check(token))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 50
    assert all(isinstance(r, Claims) and r.sub == "alice" for r in results)
    assert introspections(dev) == 1
    assert introspector.calls == 1
    introspector.close()


def test_v3_fifty_tasks_one_uncached_token_one_call(dev: DevServer) -> None:
    """V3: 50 asyncio tasks checking one uncached token make one call."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.3))

    async def main() -> list[Claims]:
        try:
            return await asyncio.gather(
                *(introspector.acheck(token) for _ in range(50))
            )
        finally:
            await introspector.aclose()

    results = asyncio.run(main())
    assert len(results) == 50 and all(r.sub == "alice" for r in results)
    assert introspections(dev) == 1


def test_v3_threads_and_tasks_together_share_one_call(dev: DevServer) -> None:
    """V3: threads and tasks of another thread's event loop share one call."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.3))
    results: list[Claims] = []

    async def tasks() -> None:
        try:
            results.extend(
                await asyncio.gather(*(introspector.acheck(token) for _ in range(20)))
            )
        finally:
            await introspector.aclose()

    threads = [
        threading.Thread(target=lambda: results.append(introspector.check(token)))
        for _ in range(20)
    ]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 40
    assert introspections(dev) == 1


def test_v3_one_call_for_concurrent_checks_of_an_inactive_token(
    dev: DevServer,
) -> None:
    """V3: inactive answers are shared by the checks waiting for them too."""
    introspector = introspector_for(dev)
    dev.inject("introspection", Fault.delay(0.3))

    async def main() -> list[BaseException | Claims]:
        try:
            return await asyncio.gather(
                *(introspector.acheck("at_junk") for _ in range(10)),
                return_exceptions=True,
            )
        finally:
            await introspector.aclose()

    results = asyncio.run(main())
    assert all(isinstance(r, InvalidToken) for r in results)
    assert introspections(dev) == 1


def test_v3_cancelling_the_first_waiter_breaks_no_other(dev: DevServer) -> None:
    """V3: the task that started the call is cancelled; the call goes on in a
    task of its own and the other waiters get the answer, cached once."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.4))

    async def main() -> tuple[list[Any], bool]:
        try:
            first = asyncio.create_task(introspector.acheck(token))
            await asyncio.sleep(0.05)
            others = [asyncio.create_task(introspector.acheck(token)) for _ in range(5)]
            await asyncio.sleep(0.05)
            first.cancel()
            done = await asyncio.gather(*others, return_exceptions=True)
            return done, first.cancelled()
        finally:
            await introspector.aclose()

    others, cancelled = asyncio.run(main())
    assert cancelled
    assert all(isinstance(r, Claims) for r in others)
    assert introspections(dev) == 1
    assert introspector.cached == 1 and introspector._flights == {}
    introspector.check(token)  # from the cache
    assert introspections(dev) == 1


def test_v3_a_cancelled_waiter_leaves_the_rest_waiting(dev: DevServer) -> None:
    """V3: cancelling a waiter (a timeout) affects that waiter alone."""
    introspector = introspector_for(dev)
    token = token_of(dev)
    dev.inject("introspection", Fault.delay(0.4))

    async def main() -> list[Any]:
        try:
            hasty = asyncio.wait_for(introspector.acheck(token), 0.1)
            patient = [introspector.acheck(token) for _ in range(3)]
            return await asyncio.gather(hasty, *patient, return_exceptions=True)
        finally:
            await introspector.aclose()

    hasty, *patient = asyncio.run(main())
    assert isinstance(hasty, TimeoutError)
    assert all(isinstance(r, Claims) for r in patient)
    assert introspections(dev) == 1


# The shared cache in Redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


def test_v3_shared_redis_cache_serves_a_fleet(
    dev: DevServer, mode: Mode, clocks: Clocks, redis_server: RedisServer
) -> None:
    """V3: two API servers sharing a Redis cache make one call per token;
    the Redis key is a hash of the token, and expires by the TTL rule."""
    import redis

    prefix = f"test:{time.monotonic_ns()}:"
    token = token_of(dev)
    first = introspector_for(
        dev,
        clocks,
        ttl=30.0,
        cache=RedisIntrospectionCache(redis_server.url, prefix=prefix),
    )
    second = introspector_for(
        dev,
        clocks,
        ttl=30.0,
        cache=RedisIntrospectionCache(redis_server.url, prefix=prefix),
    )
    assert isinstance(check_in(mode, first, token), Claims)
    assert isinstance(check_in(mode, second, token), Claims)
    assert introspections(dev) == 1
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        (key,) = raw.keys(prefix + "*")
        name, value = str(key), str(raw.get(key))
        assert name.endswith(":" + hashlib.sha256(token.encode()).hexdigest())
        assert token not in name and token not in value
        assert json.loads(value)["answer"]["sub"] == "alice"
        assert 0 < raw.pttl(key) <= 30_000
    finally:
        raw.close()
    # Past the TTL (by the API's clocks), neither server trusts the entry.
    clocks.advance(30.0)
    third = introspector_for(
        dev, clocks, cache=RedisIntrospectionCache(redis_server.url, prefix=prefix)
    )
    assert isinstance(check_in(mode, third, token), Claims)
    assert introspections(dev) == 2
    for introspector in (first, second, third):
        introspector.close()


def test_v3_shared_cache_entries_end_at_exp(
    redis_server: RedisServer, clocks: Clocks
) -> None:
    """V3: a shared entry lives no longer than the token's exp."""
    import redis

    with DevServer(access_token_lifetime=5.0) as dev:
        prefix = f"test:{time.monotonic_ns()}:"
        cache = RedisIntrospectionCache(redis_server.url, prefix=prefix)
        introspector = introspector_for(dev, ttl=30.0, cache=cache)
        introspector.check(token_of(dev))
        raw = redis.Redis.from_url(redis_server.url)
        try:
            (key,) = raw.keys(prefix + "*")
            assert 0 < raw.pttl(key) <= 5_000
        finally:
            raw.close()
        introspector.close()


def test_v2_an_unreachable_shared_cache_is_a_miss(dev: DevServer, mode: Mode) -> None:
    """V2: a shared cache that fails never fails a check: the endpoint is
    asked instead."""
    cache = RedisIntrospectionCache("redis://127.0.0.1:9/0")
    introspector = introspector_for(dev, cache=cache)
    assert isinstance(check_in(mode, introspector, token_of(dev)), Claims)
    assert introspections(dev) == 1
    introspector.close()
    assert "RedisIntrospectionCache('redis://127.0.0.1:9/0'" in repr(cache)
    assert "***" in repr(RedisIntrospectionCache("redis://u:pw@127.0.0.1:9/0"))


def test_redis_cache_without_redis_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the redis package, the shared cache says which extra to
    install; usersession itself imports without it."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"usersession\[redis\]"):
        RedisIntrospectionCache()


def test_v1_an_empty_token_is_invalid_without_a_call() -> None:
    """V1: an empty token is not active; nothing is asked."""
    introspector, seen = mock_introspector({"active": True})
    with pytest.raises(InvalidToken):
        introspector.check("")
    assert seen == []


# X1: no token or secret anywhere


def test_x1_debug_logging_shows_no_token_or_secret(
    dev: DevServer, caplog: pytest.LogCaptureFixture, mode: Mode
) -> None:
    """X1: with DEBUG logging everywhere, active, inactive, failed and
    echoing answers leave no token or client secret in any record, repr,
    str or exception message."""
    caplog.set_level(logging.DEBUG)
    provider = api_provider(dev, timeout=0.3)
    secret = provider.client_secret
    assert secret is not None
    introspector = Introspector(provider)
    token = token_of(dev)
    seen: list[object] = [introspector, provider]
    seen.append(check_in(mode, introspector, token))
    dev.revoke_access_token(token)
    introspector.clear()
    seen.append(check_in(mode, introspector, token))
    echo = f"token={token} client_secret={secret} Bearer {token}"
    for fault in (
        Fault.status(500, echo),
        Fault.malformed(echo.encode(), "text/plain"),
        Fault.hang(1.0),
        Fault.oauth_error("invalid_client", 401),
    ):
        dev.inject("introspection", fault)
        seen.append(check_in(mode, introspector, token))
    wrong = usersession.Provider(
        dev.token_endpoint,
        "test-api",
        "wrong-secret-value",
        introspection_endpoint=dev.introspection_endpoint,
    )
    with Introspector(wrong) as refused:
        seen.append(check_in(mode, refused, token))
    introspector.close()
    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(item) for item in seen] + [str(item) for item in seen]
    texts += [
        f"{item.body_excerpt}"
        for item in seen
        if isinstance(item, IntrospectionUnavailable)
    ]
    assert any("sha256:" in text for text in texts)
    for text in texts:
        for value in (token, secret, "wrong-secret-value"):
            assert value not in text

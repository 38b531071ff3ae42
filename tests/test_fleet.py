"""C02 and P3: many processes sharing one store refresh once per expiry.

Eight real processes, each with two threads and four asyncio tasks sending
requests for the same user, share one token store through several access
token expiries, with refresh-token rotation and reuse detection on at the
server. The server counts every token request and records how old the
replaced token was at each refresh: a second refresh for the same expiry
would replace a token only moments old.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import usersession
from usersession._fleet import FleetSpec, combine, run_fleet, store_from_spec
from usersession.devserver import DevServer

from conftest import provider_for
from redis_server import RedisServer, require_redis_server

LIFETIME = 4.0
DURATION = 9.0
PROCESSES = 8


@pytest.fixture(params=["file", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file:{tmp_path / 'tokens.json'}"
        return
    require_redis_server()
    pytest.importorskip("redis")
    with RedisServer() as server:
        yield f"{server.url}#usersession:fleet:{time.time_ns()}"


def test_c02_p3_eight_processes_one_refresh_per_expiry(store_spec: str) -> None:
    """C02/P3: 8 processes x 6 concurrent requests through two expiries and
    more: every refresh replaced a token that was due, no invalid_grant,
    no failed request, nobody logged out, and the store holds the newest
    pair."""
    with DevServer(access_token_lifetime=LIFETIME) as dev:
        store = store_from_spec(store_spec)
        user = usersession.User(
            provider_for(dev),
            usersession.Tokens.from_response(dev.login()),
            store=store,
        )
        spec = FleetSpec(
            token_endpoint=dev.token_endpoint,
            client_id=dev.client_id,
            client_secret=dev.client_secret,
            url=f"{dev.api_url}/me",
            store=store_spec,
            threads=2,
            tasks=4,
            duration=DURATION,
        )
        total = combine(run_fleet(spec, PROCESSES))
        stats = dev.stats()
        ages = dev.refresh_ages()
        newest = store.load()
        close = getattr(store, "close", None)
        if close is not None:
            close()

    assert total.failed == 0, total.errors
    assert total.ok == total.sent > PROCESSES * 10
    assert stats.invalid_grant_answers == 0
    assert stats.reuse_detections == 0
    # Refreshed at half-life: due every 2 s, so 9 s hold at least 3 expiries.
    assert len(ages) >= 3
    assert stats.token_requests == stats.refresh_grants == len(ages)
    # A second refresh for one expiry would replace a token moments old; a
    # due token looks younger at the server only by a token answer's delay.
    due_age = LIFETIME - min(user.leeway, LIFETIME / 2)
    assert min(ages) >= due_age / 2, ages
    assert newest is not None
    assert newest.refresh_token is not None
    # The store holds the pair the server issued last: it still refreshes.
    assert newest.access_token != user.tokens.access_token if user.tokens else True

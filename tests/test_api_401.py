"""Section 3 of the contract: what a 401 from the API sets off (R1-R7)."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault, token_hash

from conftest import Mode, count, fire, login, send


def reject_always(dev: DevServer) -> None:
    """Make the API answer 401 invalid_token to every request."""
    dev.inject("api", Fault.oauth_error("invalid_token", status=401), times=None)


@pytest.mark.parametrize(
    "challenge",
    [
        'Bearer error="insufficient_scope", scope="admin"',
        'Basic realm="files"',
        'Digest realm="x", nonce="n"',
    ],
)
def test_r1_other_401s_go_to_the_caller_without_a_refresh(
    dev: DevServer, mode: Mode, challenge: str
) -> None:
    """R1: insufficient_scope or a foreign scheme is not a rejected token."""
    user = login(dev)
    dev.inject("api", Fault.status(401, b"no", headers={"WWW-Authenticate": challenge}))
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 401
    assert response.history == []
    assert dev.stats().token_requests == 0
    assert user.is_logged_in


def test_r1_a_bare_401_counts_as_a_rejection(dev: DevServer, mode: Mode) -> None:
    """R1: a 401 with no challenge at all starts a refresh."""
    user = login(dev)
    dev.inject("api", Fault.status(401, b"no"))
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert [hop.status_code for hop in response.history] == [401]
    assert dev.stats().refresh_grants == 1


def test_r1_a_403_never_starts_a_refresh(dev: DevServer, mode: Mode) -> None:
    """R1: 403 insufficient_scope goes to the caller as it is."""
    user = login(dev, leeway=0)
    response = send(user, mode, "GET", f"{dev.api_url}/scoped?scope=admin")
    assert response.status_code == 403
    assert dev.stats().token_requests == 0


def test_r4_new_requests_wait_for_the_refresh_under_way(
    dev: DevServer, mode: Mode
) -> None:
    """R4: once a refresh has started, the API sees no new request with the
    old token; the requests made meanwhile go out with the new one."""
    user = login(dev)
    assert user.tokens is not None
    old = user.tokens.access_token
    dev.revoke_access_token(old)
    dev.inject("token", Fault.delay(0.5))

    results: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: results.append(send(user, mode, "GET", f"{dev.api_url}/me"))
    )
    first.start()
    deadline = time.monotonic() + 5
    while dev.stats().token_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    later = fire(user, mode, 10, f"{dev.api_url}/me")
    first.join()

    assert count(later, 200) == 10
    assert results[0].status_code == 200
    assert dev.stats().token_requests == 1
    old_hash = token_hash(old)
    assert [s.token_hash for s in dev.api_seen()].count(old_hash) == 1


def test_r5_a_request_is_resent_at_most_once(dev: DevServer, mode: Mode) -> None:
    """R5: when the new token is rejected too, that 401 goes to the caller
    and the user stays logged in."""
    user = login(dev)
    reject_always(dev)
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 401
    assert [hop.status_code for hop in response.history] == [401]
    assert dev.stats().api_requests == 2
    assert dev.stats().refresh_grants == 1
    assert user.is_logged_in


def test_r6_loop_guard_limits_refreshes_after_401s(
    dev: DevServer, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    """R6: at most 5 refreshes started by 401s per 60 s; then 401s pass
    through unchanged with one warning per window; a new window refills."""
    clock = [100.0]
    user = login(dev, monotonic=lambda: clock[0])
    reject_always(dev)
    with caplog.at_level(logging.WARNING, logger="usersession"):
        for _ in range(8):
            assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 401
    assert dev.stats().token_requests == 5
    assert dev.stats().api_requests == 5 * 2 + 3
    warnings = [r for r in caplog.records if "budget" in r.getMessage()]
    assert len(warnings) == 1
    assert user.is_logged_in

    clock[0] += 61
    send(user, mode, "GET", f"{dev.api_url}/me")
    assert dev.stats().token_requests == 6


def test_r6_proactive_refreshes_do_not_count(dev: DevServer, mode: Mode) -> None:
    """R6: refreshes before expiry leave the 401 budget untouched."""
    now = [0.0]
    mono = [0.0]
    user = login(dev, clock=lambda: now[0], monotonic=lambda: mono[0], refresh_limit=1)
    tokens = user.tokens
    assert tokens is not None and tokens.expires_at is not None
    for step in range(3):
        now[0] = tokens.expires_at + step * 7200  # due again each time
        mono[0] += 7200
        assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    user_tokens = user.tokens
    assert user_tokens is not None
    dev.revoke_access_token(user_tokens.access_token)
    now[0] = 0.0
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().refresh_grants == 4


def _one_shot_sync() -> Iterator[bytes]:
    yield b"part one, "
    yield b"part two"


async def _one_shot_async() -> AsyncIterator[bytes]:
    yield b"part one, "
    yield b"part two"


def test_r7_a_one_shot_stream_is_never_resent(dev: DevServer, mode: Mode) -> None:
    """R7: a generator body meets a 401: tokens refreshed, the caller gets
    the 401, the API saw the body once and never an empty one."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    body = _one_shot_sync() if mode == "sync" else _one_shot_async()
    response = send(user, mode, "POST", f"{dev.api_url}/upload", content=body)
    assert response.status_code == 401
    assert dev.stats().refresh_grants == 1
    uploads = [s for s in dev.api_seen() if s.path == "/upload"]
    assert [s.body_bytes for s in uploads] == [18]
    assert send(user, mode, "POST", f"{dev.api_url}/upload", content=b"x").json() == {
        "received": 1,
        "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
    }


def test_r7_an_iterator_is_never_resent(dev: DevServer) -> None:
    """R7: a plain iterator is as one-shot as a generator."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    response = send(
        user, "sync", "POST", f"{dev.api_url}/upload", content=iter([b"abc", b"def"])
    )
    assert response.status_code == 401
    assert [s.body_bytes for s in dev.api_seen()] == [6]


@pytest.mark.parametrize(
    "kind", ["bytes", "text", "json", "form", "seekable-file", "multipart-file"]
)
def test_r7_replayable_bodies_are_resent_byte_for_byte(
    dev: DevServer, mode: Mode, kind: str
) -> None:
    """R7: bytes, text, JSON, forms and seekable files are resent exactly."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    payload = b"0123456789" * 10_000
    options: dict[str, object]
    if kind == "bytes":
        options = {"content": payload}
    elif kind == "text":
        options = {"content": payload.decode()}
    elif kind == "json":
        options = {"json": {"data": payload.decode()}}
    elif kind == "form":
        options = {"data": {"data": payload.decode()}}
    elif kind == "seekable-file":
        options = {"content": io.BytesIO(payload)}
    else:
        options = {"files": {"upload": ("a.bin", io.BytesIO(payload))}}
    if mode == "async" and kind == "seekable-file":
        pytest.skip("httpx.AsyncClient cannot send a sync file object")
    response = send(user, mode, "POST", f"{dev.api_url}/upload", **options)
    assert response.status_code == 200
    sizes = [s.body_bytes for s in dev.api_seen()]
    assert len(sizes) == 2
    assert sizes[0] == sizes[1] == response.json()["received"]
    if kind in ("bytes", "text", "seekable-file"):
        assert response.json()["received"] == len(payload)


def test_r2_late_401_after_refresh_resends_without_a_second_refresh(
    dev: DevServer,
) -> None:
    """R2: a 401 for an older generation resends with the current token."""
    user = login(dev)
    first = user._acquire()
    user.refresh()
    assert dev.stats().refresh_grants == 1
    again = user._recover(first.generation)
    assert again is not None
    assert again.generation > first.generation
    assert again.tokens is user.tokens
    assert dev.stats().token_requests == 1

    async def async_side() -> usersession._user.Grant | None:
        return await user._arecover(first.generation)

    assert asyncio.run(async_side()) == again

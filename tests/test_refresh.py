"""Section 4 of the contract: the refresh itself (F1-F6)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault, token_hash

from conftest import Mode, count, fire, login, provider_for, send


def capture_token_request(
    auth_method: str, client_id: str, secret: str | None
) -> tuple[httpx.Request, usersession.Tokens]:
    captured: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"access_token": "a2", "expires_in": 60})

    provider = usersession.Provider(
        "https://as.example/token",
        client_id,
        secret,
        token_endpoint_auth_method=auth_method,  # type: ignore[arg-type]
        transport=httpx.MockTransport(token_endpoint),
    )
    user = usersession.User(provider, usersession.Tokens("a1", "r1/+= x"))
    tokens = user.refresh()
    [request] = captured
    return request, tokens


def test_f1_refresh_request_with_basic_client_authentication() -> None:
    """F1: form POST, grant_type=refresh_token, HTTP Basic with the id and
    secret form-encoded first (RFC 6749 2.3.1), Accept JSON, no bearer."""
    request, tokens = capture_token_request(
        "client_secret_basic", "my client:1", "s%cret/+"
    )
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert urllib.parse.parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["r1/+= x"],
    }
    scheme, _, blob = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(blob).decode() == "my+client%3A1:s%25cret%2F%2B"
    assert tokens.access_token == "a2"
    assert tokens.refresh_token == "r1/+= x"


def test_f1_client_secret_post_and_public_clients() -> None:
    """F1: client_secret_post puts both in the form; none sends the id only."""
    request, _ = capture_token_request("client_secret_post", "cid", "sec")
    assert "Authorization" not in request.headers
    form = urllib.parse.parse_qs(request.content.decode())
    assert form["client_id"] == ["cid"]
    assert form["client_secret"] == ["sec"]

    request, _ = capture_token_request("none", "cid", None)
    assert "Authorization" not in request.headers
    form = urllib.parse.parse_qs(request.content.decode())
    assert form["client_id"] == ["cid"]
    assert "client_secret" not in form


def test_f2_refresh_keeps_the_refresh_token_the_answer_omits(mode: Mode) -> None:
    """F2: without rotation the server omits refresh_token; it is kept."""
    with DevServer(access_token_lifetime=3600.0, rotate_refresh_tokens=False) as dev:
        user = login(dev)
        assert user.tokens is not None
        first_refresh = user.tokens.refresh_token
        for _ in range(2):
            dev.revoke_access_token(user.tokens.access_token)
            assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
        assert user.tokens.refresh_token == first_refresh
        assert user.tokens.id_token is not None
        assert dev.stats().refresh_grants == 2


def test_f2_expiry_counts_from_when_the_request_was_sent() -> None:
    """F2: a slow token endpoint does not stretch the new token's life."""
    now = [1000.0]

    def slow_token_endpoint(request: httpx.Request) -> httpx.Response:
        now[0] += 100.0  # the answer takes 100 s to arrive
        return httpx.Response(200, json={"access_token": "a2", "expires_in": 60})

    provider = usersession.Provider(
        "https://as.example/token",
        "c",
        "s",
        transport=httpx.MockTransport(slow_token_endpoint),
    )
    user = usersession.User(
        provider, usersession.Tokens("a1", "r1"), clock=lambda: now[0]
    )
    assert user.refresh().expires_at == 1060.0


def test_f3_no_way_to_refresh_logs_the_user_out(dev: DevServer, mode: Mode) -> None:
    """F3: a rejected token and no refresh token: UserRefreshFailed, no TE call."""
    payload = dev.login(refresh_token=False)
    user = usersession.User(
        provider_for(dev), usersession.Tokens.from_response(payload)
    )
    dev.revoke_access_token(payload["access_token"])
    with pytest.raises(usersession.UserRefreshFailed):
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert not user.is_logged_in
    assert dev.stats().token_requests == 0


def test_f3_error_inside_a_2xx_answer_is_a_refusal(dev: DevServer, mode: Mode) -> None:
    """F3: a 200 whose JSON carries an error code is a failure for good."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject(
        "token",
        Fault.status(200, b'{"error":"invalid_grant"}', "application/json"),
    )
    with pytest.raises(usersession.UserRefreshFailed) as caught:
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert caught.value.error == "invalid_grant"
    assert user.store.load() is None


def test_f4_retry_after_is_honoured(dev: DevServer, mode: Mode) -> None:
    """F4: no new attempt before Retry-After; until then requests that need
    a refresh fail at once; afterwards one refresh succeeds."""
    clock = [50.0]
    user = login(dev, monotonic=lambda: clock[0])
    assert user.tokens is not None
    r1 = user.tokens.refresh_token
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.status(503, "busy", headers={"Retry-After": "30"}))

    with pytest.raises(usersession.RefreshUnavailable) as caught:
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert caught.value.retry_after == 30.0
    assert caught.value.status_code == 503
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert dev.stats().token_requests == 1

    clock[0] += 30
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().token_requests == 2
    assert user.tokens.refresh_token != r1


def test_f4_proactive_refresh_failure_falls_back_to_the_old_token(
    dev: DevServer, mode: Mode
) -> None:
    """F4: when a refresh before expiry fails for now, the request is sent
    with the old token, which still works."""
    now = [0.0]
    user = login(dev, clock=lambda: now[0])
    tokens = user.tokens
    assert tokens is not None and tokens.expires_at is not None
    now[0] = tokens.expires_at - 5
    dev.inject("token", Fault.status(500, "oops"))
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert [s.token_hash for s in dev.api_seen()] == [token_hash(tokens.access_token)]
    assert user.tokens is tokens


class RecordingStore(usersession.MemoryStore):
    """A store that notes what the API had seen when each save happened."""

    def __init__(self, dev: DevServer) -> None:
        super().__init__()
        self.dev = dev
        self.seen_at_save: list[list[str | None]] = []

    def save(self, tokens: usersession.Tokens) -> None:
        self.seen_at_save.append([s.token_hash for s in self.dev.api_seen()])
        super().save(tokens)

    async def asave(self, tokens: usersession.Tokens) -> None:
        self.save(tokens)


def test_f5_new_tokens_are_saved_before_any_waiter_is_released(
    dev: DevServer, mode: Mode
) -> None:
    """F5: when the store saves, no request has used the new token yet."""
    store = RecordingStore(dev)
    user = usersession.User(
        provider_for(dev),
        usersession.Tokens.from_response(dev.login()),
        store=store,
    )
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.delay(0.2))
    outcomes = fire(user, mode, 10, f"{dev.api_url}/me")
    assert count(outcomes, 200) == 10
    new_hash = token_hash(user.tokens.access_token)
    assert len(store.seen_at_save) == 2  # the login, then the refresh
    assert new_hash not in store.seen_at_save[1]
    assert store.load() == user.tokens


def test_f6_cancelling_the_request_that_started_the_refresh(dev: DevServer) -> None:
    """F6: the refresh goes on and is saved; other waiters get 200; no lock
    stays held."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.delay(0.4))

    async def scenario() -> list[int]:
        async with usersession.AsyncClient(user) as client:
            starter = asyncio.create_task(client.get(f"{dev.api_url}/me"))
            while dev.stats().token_requests == 0:
                await asyncio.sleep(0.01)
            others = [
                asyncio.create_task(client.get(f"{dev.api_url}/me")) for _ in range(5)
            ]
            await asyncio.sleep(0.05)
            starter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starter
            answers = await asyncio.gather(*others)
            after = await asyncio.wait_for(client.get(f"{dev.api_url}/me"), 5)
            return [a.status_code for a in answers] + [after.status_code]

    assert asyncio.run(scenario()) == [200] * 6
    assert dev.stats().refresh_grants == 1
    assert dev.stats().invalid_grant_answers == 0
    assert user.store.load() == user.tokens


def test_f6_cancelling_a_waiter_affects_only_that_waiter(dev: DevServer) -> None:
    """F6: a waiter that times out leaves the refresh and the others alone."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.delay(0.4))

    async def scenario() -> tuple[int, int]:
        async with usersession.AsyncClient(user) as client:
            tasks = [
                asyncio.create_task(client.get(f"{dev.api_url}/me")) for _ in range(6)
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.get(f"{dev.api_url}/me"), 0.1)
            answers = await asyncio.gather(*tasks)
            return sum(a.status_code == 200 for a in answers), len(answers)

    assert asyncio.run(scenario()) == (6, 6)
    assert dev.stats().refresh_grants == 1


def test_r3_one_refresh_across_threads_and_event_loops(dev: DevServer) -> None:
    """R3: threads and two event loops (in two threads) share one refresh."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.delay(0.3))
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def sync_side() -> None:
        barrier.wait()
        with usersession.Client(user) as client:
            status = client.get(f"{dev.api_url}/me").status_code
        with lock:
            results.append(status)

    def async_side() -> None:
        async def go() -> list[int]:
            barrier.wait()
            async with usersession.AsyncClient(user) as client:
                answers = await asyncio.gather(
                    *(client.get(f"{dev.api_url}/me") for _ in range(5))
                )
            return [a.status_code for a in answers]

        statuses = asyncio.run(go())
        with lock:
            results.extend(statuses)

    threads = [threading.Thread(target=sync_side) for _ in range(2)] + [
        threading.Thread(target=async_side) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 12
    assert dev.stats().token_requests == 1


class UnreachableStore(usersession.MemoryStore):
    """A store whose lock cannot be taken: a networked store that is down."""

    broken = False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        if self.broken:
            raise usersession.StoreError("store is down")
        yield

    @contextlib.asynccontextmanager
    async def alock(self) -> AsyncIterator[None]:
        if self.broken:
            raise usersession.StoreError("store is down")
        yield


def test_p4_an_unreachable_store_makes_refreshes_fail_for_now(
    dev: DevServer, mode: Mode
) -> None:
    """P4: a store failure is RefreshUnavailable; the user stays logged in."""
    store = UnreachableStore()
    user = usersession.User(
        provider_for(dev), usersession.Tokens.from_response(dev.login()), store=store
    )
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    store.broken = True
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert user.is_logged_in
    assert dev.stats().token_requests == 0
    store.broken = False
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200


def test_f6_an_event_loop_closing_mid_refresh_loses_no_rotated_token(
    dev: DevServer,
) -> None:
    """F6: the loop that asked for the refresh ends while the server's
    answer (already rotated) is on its way; the refresh still completes and
    is saved, and the next request anywhere uses the new tokens."""
    user = login(dev)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.late_answer(0.5))

    async def impatient() -> None:
        async with usersession.AsyncClient(user) as client:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.get(f"{dev.api_url}/me"), 0.1)

    asyncio.run(impatient())  # the loop is closed from here on
    assert send(user, "sync", "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().token_requests == 1
    assert dev.stats().reuse_detections == 0
    assert user.store.load() == user.tokens


def test_s2_a_zero_lifetime_does_not_call_the_token_endpoint_per_request(
    mode: Mode,
) -> None:
    """S2: tokens issued with expires_in 0 are refreshed at most once a
    second before use, not once per request."""
    calls = 0

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"access_token": f"a{calls}", "expires_in": 0})

    async def async_token_endpoint(request: httpx.Request) -> httpx.Response:
        return token_endpoint(request)

    provider = usersession.Provider(
        "https://as.example/token",
        "c",
        "s",
        transport=httpx.MockTransport(token_endpoint),
        async_transport=httpx.MockTransport(async_token_endpoint),
    )
    user = usersession.User(
        provider,
        usersession.Tokens.from_response(
            {"access_token": "a0", "refresh_token": "r", "expires_in": 0}
        ),
    )

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def async_api(request: httpx.Request) -> httpx.Response:
        return api(request)

    if mode == "sync":
        with usersession.Client(user, transport=httpx.MockTransport(api)) as client:
            for _ in range(50):
                client.get("https://api.example/")
    else:

        async def go() -> None:
            async with usersession.AsyncClient(
                user, transport=httpx.MockTransport(async_api)
            ) as client:
                for _ in range(50):
                    await client.get("https://api.example/")

        asyncio.run(go())
    assert calls <= 2


def test_f3_no_refresh_token_and_a_token_still_valid_keeps_the_user(
    dev: DevServer, mode: Mode
) -> None:
    """A token inside the leeway with no refresh token is still sent; only a
    rejection ends the session (F3)."""
    now = [0.0]
    payload = dev.login(refresh_token=False)
    user = usersession.User(
        provider_for(dev),
        usersession.Tokens.from_response(payload),
        clock=lambda: now[0],
    )
    assert user.tokens is not None and user.tokens.expires_at is not None
    now[0] = user.tokens.expires_at - 5
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert user.is_logged_in
    assert dev.stats().token_requests == 0


def test_refresh_from_an_event_callback_is_refused(dev: DevServer) -> None:
    """A callback that calls refresh() would start a refresh per refresh."""
    user = login(dev)
    errors: list[BaseException] = []

    def again(tokens: usersession.Tokens) -> None:
        try:
            user.refresh()
        except usersession.ClientError as exc:
            errors.append(exc)

    user.on_refreshed(again)
    user.refresh()
    assert len(errors) == 1
    assert "callback" in str(errors[0])
    assert dev.stats().token_requests == 1


def test_f4_during_retry_after_the_error_says_no_call_was_made(
    dev: DevServer,
) -> None:
    clock = [10.0]
    user = login(dev, monotonic=lambda: clock[0])
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.status(503, "busy", headers={"Retry-After": "30"}))
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, "sync", "GET", f"{dev.api_url}/me")
    clock[0] += 20
    with pytest.raises(usersession.RefreshUnavailable) as caught:
        send(user, "sync", "GET", f"{dev.api_url}/me")
    assert caught.value.retry_after == 10.0
    assert "wait 10.0 s more" in str(caught.value)
    assert dev.stats().token_requests == 1

"""One conformance suite, run against all six edges of usersession.

Every test takes the `edge` fixture (httpx-sync, httpx-async, httpx2-sync,
httpx2-async, requests, aiohttp) and pins one rule of the contract through
that library's own idioms (see edges.py), so that no adapter can drift from
the contract. What happened is counted where it happened: on the
development server (its token endpoint and demo API), on a second origin,
or on a loopback proxy.

Requests that name a host other than loopback are always routed through a
`LoopbackProxy` on 127.0.0.1 with the environment ignored, so nothing can
leave the machine even if the library under test were broken. Where one
answer must arrive after something else has happened (a late 401), the
proxy holds it until the test releases it: the order is certain, not a
matter of timing. No assertion depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import requests

from usersession import (
    InsecureTransport,
    InvalidUser,
    RefreshUnavailable,
    Tokens,
    User,
    UserRefreshFailed,
)
from usersession.devserver import DevServer, Fault, token_hash

from conftest import login, provider_for
from edges import (
    EDGES,
    PATIENCE,
    Answer,
    AsyncEdge,
    Body,
    Call,
    Edge,
    Outcome,
    SyncEdge,
    run_in_threads,
    status_of,
)
from proxy_recorder import LoopbackProxy, OriginRecorder

E = TypeVar("E", bound=BaseException)

#: A body big enough to be sent in several pieces by every library.
PAYLOAD = bytes(range(256)) * 800  # 204,800 bytes
TEXT = "0123456789" * 20_000  # 200,000 ASCII characters


# -- Fixtures and helpers --------------------------------------------------------


@pytest.fixture(params=list(EDGES), ids=list(EDGES))
def edge(request: pytest.FixtureRequest) -> Edge:
    """Each of the six edges. The test extra installs every library, so an
    edge that does not import is a failure, never a skip."""
    return _available(EDGES[request.param])


ASYNC_EDGES = [name for name, chosen in EDGES.items() if isinstance(chosen, AsyncEdge)]


@pytest.fixture(params=ASYNC_EDGES, ids=ASYNC_EDGES)
def async_edge(request: pytest.FixtureRequest) -> AsyncEdge[Any]:
    """Each edge whose requests are asyncio tasks."""
    chosen = _available(EDGES[request.param])
    assert isinstance(chosen, AsyncEdge)
    return chosen


def _available(chosen: Edge) -> Edge:
    reason = chosen.missing()
    assert reason is None, reason
    return chosen


@pytest.fixture
def origin_b() -> Iterator[OriginRecorder]:
    """Origin B: 127.0.0.1 on another port, recording what it receives."""
    with OriginRecorder() as recorder:
        yield recorder


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def start(dev: DevServer, **user_options: object) -> tuple[User, Tokens]:
    """A user logged in at `dev`, and its first tokens (A1/R1)."""
    user = login(dev, **user_options)
    tokens = user.tokens
    assert tokens is not None and tokens.refresh_token is not None
    return user, tokens


def current(user: User) -> Tokens:
    tokens = user.tokens
    assert tokens is not None, "the user is logged out"
    return tokens


def raises_exactly(kind: type[E], call: Callable[[], object]) -> E:
    """The error `call` raised, which must be of class `kind` itself: the
    library's own error, propagated unchanged by the HTTP library."""
    with pytest.raises(kind) as info:
        call()
    error = info.value
    assert type(error) is kind, f"expected {kind.__name__} itself, got {error!r}"
    return error


def statuses(outcomes: list[Outcome]) -> list[int | str]:
    return [status_of(outcome) for outcome in outcomes]


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


async def await_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Background:
    """One call running in a thread of its own (its own event loop, if any)."""

    def __init__(self, call: Callable[[], Answer]) -> None:
        self._call = call
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = self._call()
        except BaseException as exc:
            self._outcome = exc

    def outcome(self) -> Outcome:
        self._thread.join(PATIENCE)
        assert not self._thread.is_alive(), "the background request never finished"
        assert self._outcome is not None
        return self._outcome


def redirect_url(dev: DevServer, target: str) -> str:
    return f"{dev.api_url}/redirect?to={urllib.parse.quote(target, safe='')}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def logged_out_events(user: User) -> list[UserRefreshFailed | None]:
    events: list[UserRefreshFailed | None] = []
    user.on_logged_out(events.append)
    return events


def reject_token() -> Fault:
    """What the API says to a rejected token (RFC 6750 invalid_token)."""
    return Fault.oauth_error("invalid_token", status=401)


# -- S1-S6: sending --------------------------------------------------------------


def test_s1_logged_out_user_raises_invalid_user_and_nothing_is_sent(
    edge: Edge, dev: DevServer
) -> None:
    """S1: a logged-out user raises InvalidUser; the API and the token
    endpoint see nothing."""
    user = User(provider_for(dev))
    assert not user.is_logged_in
    raises_exactly(InvalidUser, lambda: edge.send(user, "GET", f"{dev.api_url}/me"))
    assert dev.api_seen() == []
    assert dev.stats().token_requests == 0


def test_s2_token_within_the_leeway_is_refreshed_before_sending(
    edge: Edge, dev: DevServer
) -> None:
    """S2: a token inside the 30 s leeway is refreshed first: one token-endpoint
    call, and the API sees only the new token, never a 401."""
    clock = FakeClock(time.time())
    user, first = start(dev, clock=clock)
    assert first.expires_at is not None
    # The user's clock says the token is 10 s from expiry; the server's still
    # says an hour, so only the client's judgement can cause a refresh.
    clock.now = first.expires_at - 10
    answer = edge.send(user, "GET", f"{dev.api_url}/me")
    assert answer.status == 200
    assert answer.history == ()
    second = current(user)
    assert second.access_token != first.access_token
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert stats.api_unauthorized == 0
    assert [(s.status, s.token_hash) for s in dev.api_seen()] == [
        (200, token_hash(second.access_token))
    ]


def test_s3_exactly_one_bearer_header_replaces_the_callers_and_opt_out_sends_none(
    edge: Edge, dev: DevServer
) -> None:
    """S3: the caller's Authorization header (any spelling of its name) is
    replaced by exactly one Bearer header; the edge's opt-out sends one request
    without any, and the next request on the same session has the token again."""
    user, first = start(dev)
    echo = f"{dev.api_url}/echo"
    bearer = f"Bearer {first.access_token}"
    outcomes = edge.send_many(
        user,
        [
            Call("GET", echo, headers=[("Authorization", "Bearer caller-token")]),
            Call("GET", echo, headers=[("authorization", "Basic Y2FsbGVyOng=")]),
            Call("GET", echo, without_token=True),
            Call("GET", echo),
        ],
    )
    answers = [o for o in outcomes if isinstance(o, Answer)]
    assert len(answers) == 4, statuses(outcomes)
    replaced, lower, opted_out, after = answers
    assert replaced.json["authorization"] == bearer
    assert lower.json["authorization"] == bearer
    assert "authorization" not in opted_out.json
    assert after.json["authorization"] == bearer
    seen = dev.api_seen()
    assert [s.authorization_headers for s in seen] == [1, 1, 0, 1]
    assert dev.stats().token_requests == 0


def test_s4_plain_http_to_another_host_raises_insecure_transport_before_sending(
    edge: Edge, dev: DevServer
) -> None:
    """S4: plain http to a non-loopback host raises InsecureTransport before a
    byte is sent: the loopback proxy every request goes through sees nothing."""
    user, first = start(dev)
    with LoopbackProxy() as proxy:
        error = raises_exactly(
            InsecureTransport,
            lambda: edge.send(user, "GET", "http://api.example/data", proxy=proxy.url),
        )
        assert proxy.seen == []
    assert first.access_token not in str(error)
    assert dev.stats().token_requests == 0
    assert user.tokens == first


def test_s4_allowed_origins_keep_the_token_from_other_origins(
    edge: Edge, dev: DevServer
) -> None:
    """S4: with allowed_origins, a listed origin gets the token and any other
    origin gets the request without it (plain http to a remote host included:
    no token, nothing refused; the loopback proxy records it and forwards
    nothing)."""
    user, first = start(dev)
    echo = f"{dev.api_url}/echo"
    bearer = f"Bearer {first.access_token}"
    listed = edge.send(user, "GET", echo, allowed_origins=[dev.api_url])
    assert listed.json["authorization"] == bearer
    other = edge.send(user, "GET", echo, allowed_origins=["https://elsewhere.example"])
    assert "authorization" not in other.json
    assert [s.has_authorization for s in dev.api_seen()] == [True, False]

    with LoopbackProxy() as proxy:
        remote = edge.send(
            user,
            "GET",
            "http://api.example/data",
            proxy=proxy.url,
            allowed_origins=[dev.api_url],
        )
        seen = proxy.seen
    assert remote.status == 502  # the proxy's own answer: nothing forwarded
    assert [(s.method, s.target) for s in seen] == [("GET", "http://api.example/data")]
    assert seen[0].authorization_headers == 0
    assert dev.stats().token_requests == 0


def test_s5_c08_redirect_to_another_host_drops_the_token(
    edge: Edge, dev: DevServer
) -> None:
    """S5/C08: a 302 from origin A to another host (localhost, same port)
    reaches it without Authorization."""
    user, first = start(dev)
    target = f"http://localhost:{dev.api.port}/echo"
    answer = edge.send(user, "GET", redirect_url(dev, target))
    assert answer.status == 200
    assert answer.history == (302,)
    assert "authorization" not in answer.json  # what B echoed
    hop, arrival = dev.api_seen()
    assert hop.path == "/redirect" and hop.token_hash == token_hash(first.access_token)
    assert arrival.path == "/echo" and not arrival.has_authorization
    assert dev.stats().token_requests == 0


def test_s5_c08_redirect_to_another_port_drops_the_token(
    edge: Edge, dev: DevServer, origin_b: OriginRecorder
) -> None:
    """S5/C08: a 302 from origin A to the same host on another port reaches B
    without Authorization."""
    user, first = start(dev)
    answer = edge.send(user, "GET", redirect_url(dev, f"{origin_b.url}/record"))
    assert answer.status == 200
    assert answer.history == (302,)
    [arrival] = origin_b.seen
    assert arrival.path == "/record"
    assert arrival.authorization_headers == 0
    [hop] = dev.api_seen()
    assert hop.token_hash == token_hash(first.access_token)
    assert dev.stats().token_requests == 0


def test_s5_c08_redirect_within_the_origin_keeps_the_token(
    edge: Edge, dev: DevServer
) -> None:
    """S5/C08: a 302 within origin A (relative or absolute Location) keeps
    exactly one Authorization header with the token."""
    user, first = start(dev)
    a1 = token_hash(first.access_token)
    for target in ("/echo", f"{dev.api_url}/echo"):
        answer = edge.send(user, "GET", redirect_url(dev, target))
        assert answer.status == 200
        assert answer.history == (302,)
        assert answer.json["authorization"] == f"Bearer {first.access_token}"
    seen = dev.api_seen()
    assert [(s.path, s.authorization_headers, s.token_hash) for s in seen] == [
        ("/redirect", 1, a1),
        ("/echo", 1, a1),
    ] * 2


def test_s5_a_chain_back_to_the_origin_without_the_token_starts_no_refresh(
    edge: Edge, dev: DevServer
) -> None:
    """S5: A redirects to B (another host), B back to A. The token was
    dropped on the way to B and does not come back, so A's 401 answers a
    request that carried no token: it goes to the caller, no refresh."""
    user, first = start(dev)
    back = f"{dev.api_url}/me"
    via_b = f"http://localhost:{dev.api.port}/redirect?to={urllib.parse.quote(back)}"
    answer = edge.send(user, "GET", redirect_url(dev, via_b))
    assert answer.status == 401
    assert answer.history == (302, 302)
    assert dev.stats().token_requests == 0
    assert user.tokens == first
    a1 = token_hash(first.access_token)
    assert [(s.path, s.token_hash, s.status) for s in dev.api_seen()] == [
        ("/redirect", a1, 302),
        ("/redirect", None, 302),
        ("/me", None, 401),
    ]


def test_r2_a_rejected_token_at_a_redirect_target_on_the_origin_is_resent(
    edge: Edge, dev: DevServer
) -> None:
    """R2/R5: a redirect within the origin leads to a 401 for A1: one
    refresh, and the chain goes on with A2 to a 200; A1 is not sent again."""
    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    answer = edge.send(user, "GET", redirect_url(dev, f"{dev.api_url}/me"))
    assert answer.status == 200
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    second = current(user)
    a1, a2 = token_hash(first.access_token), token_hash(second.access_token)
    seen = [(s.path, s.token_hash, s.status) for s in dev.api_seen()]
    assert seen[:2] == [("/redirect", a1, 302), ("/me", a1, 401)]
    assert seen[-1] == ("/me", a2, 200)
    assert all(token == a2 for _, token, _ in seen[2:])


@pytest.mark.parametrize("other", ["host", "port"])
def test_s5_c08_401_from_a_redirect_target_starts_no_refresh(
    edge: Edge, dev: DevServer, origin_b: OriginRecorder, other: str
) -> None:
    """S5/C08: a 401 from origin B, reached by a redirect from A, goes to the
    caller and starts no refresh; B never sees the token."""
    user, first = start(dev)
    if other == "host":
        target = f"http://localhost:{dev.api.port}/me"  # 401 with a Bearer challenge
    else:
        target = f"{origin_b.url}/deny"  # 401 Bearer error="invalid_token"
    answer = edge.send(user, "GET", redirect_url(dev, target))
    assert answer.status == 401
    assert answer.history == (302,)
    assert dev.stats().token_requests == 0
    assert user.tokens == first
    if other == "host":
        hop, arrival = dev.api_seen()
        assert arrival.path == "/me" and not arrival.has_authorization
    else:
        [arrival_b] = origin_b.seen
        assert arrival_b.authorization_headers == 0
        [hop] = dev.api_seen()
    assert hop.path == "/redirect"


def test_s6_the_id_token_is_never_sent(edge: Edge, dev: DevServer) -> None:
    """S6: a user whose tokens carry an id token sends the access token, never
    the id token, before and after a refresh."""
    user, first = start(dev)
    assert first.id_token
    echo = f"{dev.api_url}/echo"
    answer = edge.send(user, "GET", echo)
    assert answer.json["authorization"] == f"Bearer {first.access_token}"
    dev.api.inject(reject_token())  # the next answer: 401 invalid_token
    refreshed = edge.send(user, "GET", echo)
    assert refreshed.status == 200
    second = current(user)
    assert second.access_token != first.access_token
    assert refreshed.json["authorization"] == f"Bearer {second.access_token}"
    id_tokens = {t for t in (first.id_token, second.id_token) if t}
    for echoed in (answer, refreshed):
        assert not any(t in echoed.content.decode() for t in id_tokens)
    assert dev.stats().token_requests == 1


# -- R1-R7: a 401 from the API ---------------------------------------------------

_NOT_A_REJECTION = {
    "insufficient_scope": 'Bearer realm="api", error="insufficient_scope", '
    'scope="admin"',
    "basic": 'Basic realm="files"',
}


@pytest.mark.parametrize("case", ["insufficient_scope", "basic", "403"])
def test_r1_401_not_rejecting_the_token_and_403_start_no_refresh(
    edge: Edge, dev: DevServer, case: str
) -> None:
    """R1: a 401 with error="insufficient_scope", a 401 whose challenges are all
    Basic, and a 403 go to the caller untouched; no refresh, no resend."""
    user, first = start(dev)
    if case == "403":
        url = f"{dev.api_url}/scoped?scope=admin"  # 403 insufficient_scope
        expected = 403
    else:
        challenge = _NOT_A_REJECTION[case]
        dev.api.inject(
            Fault.status(401, b"no", headers={"WWW-Authenticate": challenge})
        )
        url = f"{dev.api_url}/me"
        expected = 401
    answer = edge.send(user, "GET", url)
    assert answer.status == expected
    assert answer.history == ()
    if case != "403":
        assert answer.headers["www-authenticate"] == _NOT_A_REJECTION[case]
        assert answer.content == b"no"
    stats = dev.stats()
    assert (stats.token_requests, stats.api_requests) == (0, 1)
    assert user.is_logged_in and user.tokens == first


def test_r2_r3_r4_c01_concurrent_401s_under_rotation_make_one_refresh(
    edge: Edge, dev: DevServer
) -> None:
    """C01 (R2, R3, R4): A1 revoked, the token endpoint slowed to 200 ms and
    rotating; 20 requests at once make exactly one token-endpoint call, one
    refresh grant and no invalid_grant; all 20 get 200; the store holds the
    new pair. A request sent with A1 before the storm, whose 401 reaches the
    client only after the refresh, is resent with A2 and makes no second
    token-endpoint call."""
    user, first = start(dev)
    url = f"{dev.api_url}/me"
    dev.revoke_access_token(first.access_token)

    with LoopbackProxy(forward=True, hold=True) as gate:
        late = Background(lambda: edge.send(user, "GET", url, proxy=gate.url))
        # The API has answered the late request 401; the proxy holds it.
        wait_until(lambda: gate.held == 1, "the late 401 to be held")
        assert dev.stats().api_unauthorized == 1

        dev.inject("token", Fault.delay(0.2))  # R1 -> A2/R2 after 200 ms
        outcomes = edge.fire(user, 20, url)

        assert statuses(outcomes) == [200] * 20
        stats = dev.stats()
        assert stats.token_requests == 1
        assert stats.refresh_grants == 1
        assert stats.invalid_grant_answers == 0
        assert stats.reuse_detections == 0
        second = current(user)
        assert user.is_logged_in
        assert second.access_token != first.access_token
        assert second.refresh_token not in (None, first.refresh_token)
        assert user.store.load() == second  # R2 saved

        gate.release()  # now the late 401 for A1 reaches the client
        late_outcome = late.outcome()

    assert isinstance(late_outcome, Answer), late_outcome
    assert late_outcome.status == 200
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert user.tokens == second
    # Server side: every 401 was for A1, every 200 for A2 (the late resend too).
    a1, a2 = token_hash(first.access_token), token_hash(second.access_token)
    seen = dev.api_seen()
    assert {s.token_hash for s in seen if s.status == 401} == {a1}
    assert [s.token_hash for s in seen if s.status == 200] == [a2] * 21
    assert seen[-1].token_hash == a2  # the late request's resend came last


def test_r5_a_resent_request_meeting_401_again_goes_to_the_caller(
    edge: Edge, dev: DevServer
) -> None:
    """R5: the resent request gets 401 too: that 401 goes to the caller, one
    token-endpoint call was made, and the user stays logged in."""
    user, first = start(dev)
    events = logged_out_events(user)
    dev.api.inject(reject_token(), times=2)
    answer = edge.send(user, "GET", f"{dev.api_url}/me")
    assert answer.status == 401
    second = current(user)
    assert second.access_token != first.access_token
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert [(s.status, s.token_hash) for s in dev.api_seen()] == [
        (401, token_hash(first.access_token)),
        (401, token_hash(second.access_token)),
    ]
    assert user.is_logged_in and events == []


def test_r6_the_loop_guard_stops_refreshes_after_the_limit(
    edge: Edge, dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """R6: with refresh_limit=2, the third refresh a 401 would start within the
    window does not happen: that 401 goes to the caller unchanged, and one
    warning is logged for the window."""
    user, _ = start(dev, refresh_limit=2, monotonic=FakeClock(1_000.0))
    dev.api.inject(reject_token(), times=None)  # every token is rejected
    url = f"{dev.api_url}/me"
    with caplog.at_level(logging.WARNING):
        outcomes = edge.send_many(user, [Call("GET", url)] * 4)
    assert statuses(outcomes) == [401] * 4
    stats = dev.stats()
    assert stats.token_requests == 2
    assert stats.api_requests == 2 * 2 + 2  # two sent and resent, two sent once
    warnings = [
        r
        for r in caplog.records
        if r.name.startswith("usersession") and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert user.is_logged_in


_REPLAYABLE = {
    "bytes": Body.raw(PAYLOAD),
    "form": Body.form({"data": TEXT}),
    "json": Body.json({"data": TEXT, "n": [1, 2, 3]}),
    "file": Body.file(PAYLOAD),
}


@pytest.mark.parametrize("kind", list(_REPLAYABLE))
def test_r7_replayable_bodies_are_resent_byte_for_byte(
    edge: Edge, dev: DevServer, kind: str
) -> None:
    """R7: bytes, a form, JSON and a seekable file meeting a 401 are resent
    byte for byte: the API saw both sends with the whole body, and the
    resend's size and SHA-256 are those of the body."""
    body = _REPLAYABLE[kind]
    expected = edge.wire_bytes(body)
    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    answer = edge.send(user, "POST", f"{dev.api_url}/upload", body=body)
    assert answer.status == 200
    assert answer.json == {"received": len(expected), "sha256": sha256(expected)}
    second = current(user)
    assert [(s.status, s.body_bytes, s.token_hash) for s in dev.api_seen()] == [
        (401, len(expected), token_hash(first.access_token)),
        (200, len(expected), token_hash(second.access_token)),
    ]
    assert dev.stats().token_requests == 1


def test_r7_a_one_shot_stream_is_never_resent(edge: Edge, dev: DevServer) -> None:
    """R7: a one-shot stream meeting a 401 is never resent (and never replaced
    by an empty or partial body): the caller gets the 401, the API saw one
    request carrying the whole body, and the tokens were still refreshed."""
    body = Body.stream(PAYLOAD, chunk_size=50_000)
    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    answer = edge.send(user, "POST", f"{dev.api_url}/upload", body=body)
    assert answer.status == 401
    assert [(s.status, s.body_bytes) for s in dev.api_seen()] == [(401, len(PAYLOAD))]
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    second = current(user)
    assert second.access_token != first.access_token
    # The next upload goes out with the new token at once.
    again = edge.send(user, "POST", f"{dev.api_url}/upload", body=body)
    assert again.json == {"received": len(PAYLOAD), "sha256": sha256(PAYLOAD)}
    assert dev.stats().token_requests == 1


# -- F3-F6: the refresh ----------------------------------------------------------


def test_f3_c03_invalid_grant_logs_the_user_out_for_good(
    edge: Edge, dev: DevServer
) -> None:
    """F3/C03: the token endpoint answers 400 invalid_grant: the request raises
    UserRefreshFailed carrying the code, the user is logged out (event once,
    store empty), a later request raises InvalidUser without sending, and the
    token endpoint was called once in all."""
    user, first = start(dev)
    events = logged_out_events(user)
    assert first.refresh_token is not None
    dev.revoke_refresh_token(first.refresh_token)  # A1 rejected, R1 dead
    url = f"{dev.api_url}/me"

    error = raises_exactly(UserRefreshFailed, lambda: edge.send(user, "GET", url))
    assert error.error == "invalid_grant"
    assert error.status_code == 400
    assert not user.is_logged_in and user.tokens is None
    assert user.store.load() is None
    assert len(events) == 1

    raises_exactly(InvalidUser, lambda: edge.send(user, "GET", url))
    later = edge.fire(user, 5, url)
    assert all(type(o) is InvalidUser for o in later), statuses(later)
    stats = dev.stats()
    assert (stats.token_requests, stats.api_requests) == (1, 1)
    assert stats.invalid_grant_answers == 1
    assert len(events) == 1


def test_f4_c06_token_endpoint_503_keeps_the_user_and_every_token(
    edge: Edge, dev: DevServer
) -> None:
    """F4/C06: the token endpoint answers 503 (Retry-After: 30): the request
    raises RefreshUnavailable with the status and retry_after; the user stays
    logged in with every token kept, in memory and store; no new attempt is
    made before the Retry-After has passed; afterwards one refresh succeeds."""
    monotonic = FakeClock(1_000.0)
    user, first = start(dev, monotonic=monotonic)
    events = logged_out_events(user)
    dev.revoke_access_token(first.access_token)
    dev.inject(
        "token",
        Fault.status(503, "Service Unavailable", headers={"Retry-After": "30"}),
    )
    url = f"{dev.api_url}/me"

    error = raises_exactly(RefreshUnavailable, lambda: edge.send(user, "GET", url))
    assert error.status_code == 503
    assert error.retry_after == 30.0
    assert user.is_logged_in and user.tokens == first
    assert user.store.load() == first
    assert events == []
    assert dev.stats().token_requests == 1

    monotonic.advance(29.0)  # still inside the Retry-After
    raises_exactly(RefreshUnavailable, lambda: edge.send(user, "GET", url))
    assert dev.stats().token_requests == 1
    assert user.tokens == first

    monotonic.advance(1.5)
    answer = edge.send(user, "GET", url)
    assert answer.status == 200
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (2, 1)
    assert stats.invalid_grant_answers == 0
    assert events == []


def test_f6_cancelling_the_task_that_started_the_refresh_does_not_stop_it(
    async_edge: AsyncEdge[Any], dev: DevServer
) -> None:
    """F6 (async edges): the task whose 401 started the refresh is cancelled;
    the refresh goes on, the requests waiting for it get 200, the rotated
    refresh token is kept (a later refresh with it succeeds), one
    token-endpoint call, and no lock is left held."""
    edge = async_edge
    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    dev.inject("token", Fault.delay(0.5))
    url = f"{dev.api_url}/me"

    async def scenario() -> list[Outcome]:
        async with edge.session(user) as session:
            starter = asyncio.ensure_future(edge.request(session, "GET", url))
            await await_until(
                lambda: dev.stats().token_requests == 1, "the refresh to start"
            )
            others = [
                asyncio.ensure_future(edge.request(session, "GET", url))
                for _ in range(5)
            ]
            await asyncio.sleep(0.05)  # let them reach the wait
            starter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starter
            outcomes = await asyncio.gather(*others, return_exceptions=True)
            after = await asyncio.wait_for(edge.request(session, "GET", url), PATIENCE)
            return [*outcomes, after]

    outcomes = asyncio.run(scenario())
    assert statuses(outcomes) == [200] * 6
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    second = current(user)
    assert second.refresh_token not in (None, first.refresh_token)
    assert user.store.load() == second

    # The rotated refresh token was not lost: the next refresh uses it.
    dev.revoke_access_token(second.access_token)
    assert edge.send(user, "GET", url).status == 200
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (2, 2)
    assert stats.invalid_grant_answers == 0


# -- C15: sessions sharing a user ------------------------------------------------


def test_c15_r3_two_sessions_sharing_one_user_make_one_refresh(
    edge: Edge, dev: DevServer
) -> None:
    """C15 (R3): two separate sessions of the edge share one User; ten requests
    each meet 401 at the same moment: one token-endpoint call, all 200."""
    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    dev.inject("token", Fault.delay(0.2))
    outcomes = edge.fire(user, 20, f"{dev.api_url}/me", clients=2)
    assert statuses(outcomes) == [200] * 20
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert stats.invalid_grant_answers == 0


def test_c15_r3_mixed_edges_share_one_refresh(dev: DevServer) -> None:
    """C15 (R3): a requests session (and a plain requests.Session with
    usersession's UserAuth), an httpx client, an httpx2 client, and on one
    event loop in one more thread an httpx AsyncClient, an httpx2 AsyncClient
    and an aiohttp session, all sharing one User, meet a 401 at the same
    moment: exactly one token-endpoint call, everyone 200."""
    for chosen in EDGES.values():
        _available(chosen)
    from usersession import requests as us_requests

    sync_edges = [e for e in EDGES.values() if isinstance(e, SyncEdge)]
    async_edges = [e for e in EDGES.values() if isinstance(e, AsyncEdge)]
    requests_edge = EDGES["requests"]
    assert isinstance(requests_edge, SyncEdge)
    per_session = 4

    user, first = start(dev)
    dev.revoke_access_token(first.access_token)
    dev.inject("token", Fault.delay(0.2))
    url = f"{dev.api_url}/me"
    async_outcomes: list[Outcome] = []

    with contextlib.ExitStack() as stack:
        calls: list[Callable[[], Answer]] = []
        for sync_edge in sync_edges:
            session = stack.enter_context(sync_edge.session(user))
            calls += [_bound(sync_edge, session, url)] * per_session
        plain = stack.enter_context(requests.Session())
        plain.trust_env = False
        plain.auth = us_requests.UserAuth(user)
        calls += [_bound(requests_edge, plain, url)] * per_session
        barrier = threading.Barrier(len(calls) + 1, timeout=PATIENCE)

        def async_side() -> None:
            async def main() -> list[Outcome]:
                async with contextlib.AsyncExitStack() as astack:
                    requests_ = []
                    for async_edge in async_edges:
                        session = await astack.enter_async_context(
                            async_edge.session(user)
                        )
                        requests_ += [
                            async_edge.request(session, "GET", url)
                            for _ in range(per_session)
                        ]
                    barrier.wait()  # nothing else runs on this loop yet
                    return list(
                        await asyncio.gather(*requests_, return_exceptions=True)
                    )

            try:
                async_outcomes.extend(asyncio.run(main()))
            except BaseException as exc:
                async_outcomes.append(exc)

        async_thread = threading.Thread(target=async_side)
        async_thread.start()
        sync_outcomes = run_in_threads(calls, barrier)
        async_thread.join(PATIENCE * 2)
        assert not async_thread.is_alive()

    outcomes = sync_outcomes + async_outcomes
    expected = per_session * (len(sync_edges) + 1 + len(async_edges))
    assert statuses(outcomes) == [200] * expected
    stats = dev.stats()
    assert (stats.token_requests, stats.refresh_grants) == (1, 1)
    assert stats.invalid_grant_answers == 0


def _bound(edge: SyncEdge[Any], session: object, url: str) -> Callable[[], Answer]:
    return lambda: edge.request(session, "GET", url)


# -- X1: secrets -----------------------------------------------------------------


@contextlib.contextmanager
def debug_logging_everywhere(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """DEBUG on the root logger and on every logger that set a level."""
    loggers = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    try:
        for logger in loggers:
            if logger.level != logging.NOTSET:
                logger.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


def _error_texts(error: BaseException) -> list[str]:
    texts: list[str] = []
    seen: list[BaseException] = []
    current_error: BaseException | None = error
    while current_error is not None and current_error not in seen:
        seen.append(current_error)
        texts += [str(current_error), repr(current_error)]
        for name in ("body_excerpt", "description"):
            value = getattr(current_error, name, None)
            if value:
                texts.append(str(value))
        current_error = current_error.__cause__ or current_error.__context__
    return texts


def test_x1_no_secret_in_logs_reprs_or_errors(
    edge: Edge, dev: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """X1: with DEBUG logging on every logger through a refresh after a 401, a
    refresh unavailable (a 502 echoing the refresh token), a refresh refused
    for good (a description quoting it) and a later request: no log record,
    no repr()/str() of the session or its auth objects, and no error message
    holds an access, refresh or id token or the client secret."""
    secrets: set[str] = {dev.client_secret}
    texts: list[str] = []
    url = f"{dev.api_url}/me"

    def remember(tokens: Tokens) -> None:
        secrets.update(
            t for t in (tokens.access_token, tokens.refresh_token, tokens.id_token) if t
        )

    with debug_logging_everywhere(caplog):
        user, first = start(dev)
        remember(first)
        texts += edge.describe(user)
        texts += [repr(user), str(user), repr(first), str(first)]

        dev.revoke_access_token(first.access_token)
        assert edge.send(user, "GET", url).status == 200  # refresh after a 401
        second = current(user)
        remember(second)
        texts += edge.describe(user)

        dev.revoke_access_token(second.access_token)
        echoed = f"<html>bad gateway for {second.refresh_token}</html>"
        dev.inject("token", Fault.status(502, echoed, "text/html"))
        unavailable = raises_exactly(
            RefreshUnavailable, lambda: edge.send(user, "GET", url)
        )
        texts += _error_texts(unavailable)

        dev.inject(
            "token",
            Fault.oauth_error(
                "invalid_grant", description=f"token {second.refresh_token} spent"
            ),
        )
        refused = raises_exactly(UserRefreshFailed, lambda: edge.send(user, "GET", url))
        texts += _error_texts(refused)
        invalid = raises_exactly(InvalidUser, lambda: edge.send(user, "GET", url))
        texts += _error_texts(invalid)
        texts += edge.describe(user)

    records = caplog.records
    assert any(r.levelno == logging.DEBUG for r in records)
    texts += [r.getMessage() for r in records]
    texts += caplog.text.splitlines()
    assert len(secrets) >= 5
    leaks = [
        (token_hash(secret), text[:300])  # the secret named by its hash only
        for secret in secrets
        for text in texts
        if secret in text
    ]
    assert leaks == []

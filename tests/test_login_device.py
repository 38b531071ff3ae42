"""G2: the device authorization grant (RFC 8628), and case C11's pacing.

The pacing is decided by `PollSchedule` without I/O; these tests drive the
whole flow with a fake clock and fake sleeps against a strict fake token
endpoint (no real waiting), against the development server, and once in
real time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

import usersession
from usersession._device import DEVICE_CODE_GRANT, PollSchedule
from usersession.devserver import DevServer

from conftest import Mode
from login_helpers import FakeClock, SecretRecorder, leaks

DEVICE_CODE = "device-code-that-must-stay-secret-0123456789"
AS = "https://as.example"


def run_device_login(
    mode: Mode, provider: usersession.Provider, clock: FakeClock, **options: Any
) -> usersession.User:
    if mode == "sync":
        return usersession.device_login(
            provider, sleep=clock.sleep, clock=clock, **options
        )
    return asyncio.run(
        usersession.adevice_login(provider, sleep=clock.asleep, clock=clock, **options)
    )


class StrictDeviceServer:
    """A fake authorization server for the device flow, on a fake clock.

    The first polls get the `script`ed answers (an OAuth error code, or an
    HTTP status for a failed answer). After that it answers ``slow_down`` to
    any poll sooner than the required interval after the previous poll,
    then succeeds at poll `succeed_at`, and says ``authorization_pending``
    until then. Every ``slow_down`` adds 5 s to the required interval
    (RFC 8628 3.5).
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        interval: int | None = 1,
        expires_in: int = 600,
        script: Sequence[str | int] = (),
        succeed_at: int = 1,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.expires_in = expires_in
        self.script = list(script)
        self.succeed_at = succeed_at
        self.required = 5.0 if interval is None else float(interval)
        self.polls: list[float] = []
        self.answers: list[str | int] = []
        self.device_requests: list[dict[str, str]] = []

    def provider(self, **options: Any) -> usersession.Provider:
        transport = httpx.MockTransport(self.handle)
        return usersession.Provider(
            f"{AS}/token",
            "device-client",
            token_endpoint_auth_method="none",
            device_authorization_endpoint=f"{AS}/device",
            transport=transport,
            async_transport=transport,
            **options,
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        if request.url.path == "/device":
            self.device_requests.append(form)
            answer: dict[str, Any] = {
                "device_code": DEVICE_CODE,
                "user_code": "BCDF-GHJK",
                "verification_uri": f"{AS}/activate",
                "verification_uri_complete": f"{AS}/activate?user_code=BCDF-GHJK",
                "expires_in": self.expires_in,
            }
            if self.interval is not None:
                answer["interval"] = self.interval
            return httpx.Response(200, json=answer)
        assert form == {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": DEVICE_CODE,
            "client_id": "device-client",
        }
        now = self.clock()
        last = self.polls[-1] if self.polls else None
        self.polls.append(now)
        answer_code: str | int
        if len(self.polls) <= len(self.script):
            answer_code = self.script[len(self.polls) - 1]
        elif last is not None and now - last < self.required:
            answer_code = "slow_down"
        elif len(self.polls) >= self.succeed_at:
            return httpx.Response(
                200,
                json={
                    "access_token": "at-1",
                    "refresh_token": "rt-1",
                    "expires_in": 60,
                },
            )
        else:
            answer_code = "authorization_pending"
        self.answers.append(answer_code)
        if isinstance(answer_code, int):
            return httpx.Response(answer_code, text="busy")
        if answer_code == "slow_down":
            self.required += 5
        return httpx.Response(400, json={"error": answer_code})

    def times(self) -> list[float]:
        """Poll times, in seconds since the login started."""
        return [round(t - self.clock.start, 6) for t in self.polls]


def gaps(times: Sequence[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


# The schedule alone (no I/O)


def test_g2_c11_poll_schedule_paces_without_io() -> None:
    schedule = PollSchedule(interval=1.0, expires_in=30.0, now=100.0)
    assert schedule.wait(100.0) == 1.0
    assert schedule.wait(100.4) == pytest.approx(0.6)
    assert schedule.wait(102.0) == 0.0  # overdue: poll now
    schedule.pending(101.0)
    assert schedule.wait(101.0) == 1.0
    schedule.slow_down(102.0)  # RFC 8628 3.5: +5 s, for good
    assert (schedule.interval, schedule.wait(102.0)) == (6.0, 6.0)
    schedule.pending(108.0)
    assert schedule.wait(108.0) == 6.0
    schedule.slow_down(114.0)
    assert schedule.interval == 11.0
    schedule.back_off(125.0)  # no answer: half the polling frequency
    assert schedule.interval == 22.0
    # 147 s is past the 130 s deadline: one last poll just before it instead.
    assert schedule.wait(125.0) == 4.5
    schedule.pending(129.5)
    assert schedule.wait(129.5) is None


# C11 against a strict fake token endpoint, on a fake clock


def test_c11_g2_pending_then_slow_down_then_success(mode: Mode) -> None:
    """Interval 1 s; pending, then slow_down; the server keeps answering
    slow_down to any poll sooner than 6 s after the last; it succeeds later.
    Every poll after the first slow_down is at least 6 s from the last."""
    clock = FakeClock()
    server = StrictDeviceServer(
        clock, interval=1, script=["authorization_pending", "slow_down"], succeed_at=4
    )
    shown: list[usersession.DeviceCode] = []
    user = run_device_login(mode, server.provider(), clock, on_code=shown.append)

    assert user.is_logged_in and user.tokens is not None
    assert user.tokens.access_token == "at-1"
    assert server.times() == [1.0, 2.0, 8.0, 14.0]
    assert server.answers == [
        "authorization_pending",
        "slow_down",
        "authorization_pending",
    ]
    first_slow_down = server.answers.index("slow_down")
    assert all(gap >= 6.0 for gap in gaps(server.times()[first_slow_down:]))
    assert len(shown) == 1 and shown[0].user_code == "BCDF-GHJK"
    assert shown[0].verification_uri == f"{AS}/activate"
    assert clock.elapsed == 14.0  # no real time: only the fake clock moved


def test_c11_g2_each_slow_down_adds_five_seconds(mode: Mode) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(
        clock, interval=1, script=["slow_down"] * 3, succeed_at=4
    )
    run_device_login(mode, server.provider(), clock, on_code=lambda code: None)
    assert server.times() == [1.0, 7.0, 18.0, 34.0]
    assert gaps(server.times()) == [6.0, 11.0, 16.0]


def test_c11_g2_five_seconds_when_no_interval_is_given(mode: Mode) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock, interval=None, succeed_at=3)
    shown: list[usersession.DeviceCode] = []
    run_device_login(mode, server.provider(), clock, on_code=shown.append)
    assert shown[0].interval == 5.0
    assert server.times() == [5.0, 10.0, 15.0]
    assert server.answers == ["authorization_pending"] * 2


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("expired_token", usersession.DeviceCodeExpired),
        ("access_denied", usersession.AccessDenied),
        ("invalid_grant", usersession.LoginError),
    ],
)
def test_c11_g2_distinct_errors_end_the_login(
    mode: Mode, code: str, error_type: type[usersession.LoginError]
) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock, script=["authorization_pending", code])
    with pytest.raises(usersession.LoginError) as caught:
        run_device_login(mode, server.provider(), clock, on_code=lambda c: None)
    assert type(caught.value) is error_type
    assert caught.value.error == code
    assert len(server.polls) == 2  # no poll after the verdict
    assert DEVICE_CODE not in str(caught.value)


def test_g2_login_times_out_when_expires_in_passes(mode: Mode) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock, interval=5, expires_in=12, succeed_at=99)
    with pytest.raises(usersession.LoginTimedOut, match="expired after 12 s"):
        run_device_login(mode, server.provider(), clock, on_code=lambda c: None)
    # A poll at 15 s would be too late: the last one goes out at 11.5 s.
    assert server.times() == [5.0, 10.0, 11.5]
    assert clock.elapsed == 11.5


def test_g2_polls_less_often_after_failed_answers(mode: Mode) -> None:
    """RFC 8628 3.5: no answer (or a 5xx) halves the polling frequency."""
    clock = FakeClock()
    server = StrictDeviceServer(clock, interval=2, script=[503, 500], succeed_at=3)
    run_device_login(mode, server.provider(), clock, on_code=lambda c: None)
    assert server.times() == [2.0, 6.0, 14.0]


def test_g2_sends_scope_and_public_client_id(mode: Mode) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock)
    run_device_login(
        mode, server.provider(), clock, scope="openid api", on_code=lambda c: None
    )
    assert server.device_requests == [
        {"scope": "openid api", "client_id": "device-client"}
    ]


def test_g2_default_on_code_prints_uri_and_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock)
    usersession.device_login(server.provider(), sleep=clock.sleep, clock=clock)
    err = capsys.readouterr().err
    assert f"{AS}/activate" in err and "BCDF-GHJK" in err
    assert DEVICE_CODE not in err


def test_g2_device_code_repr_hides_the_device_code() -> None:
    clock = FakeClock()
    server = StrictDeviceServer(clock)
    shown: list[usersession.DeviceCode] = []
    usersession.device_login(
        server.provider(), sleep=clock.sleep, clock=clock, on_code=shown.append
    )
    code = shown[0]
    assert DEVICE_CODE not in repr(code) and DEVICE_CODE not in str(code)
    assert "BCDF-GHJK" in repr(code)
    assert code.verification_uri_complete == f"{AS}/activate?user_code=BCDF-GHJK"
    assert (code.expires_in, code.interval) == (600.0, 1.0)


def test_g2_provider_without_device_endpoint_says_how_to_fix(mode: Mode) -> None:
    provider = usersession.Provider(
        f"{AS}/token", "c", token_endpoint_auth_method="none"
    )
    with pytest.raises(usersession.LoginError, match="device_authorization_endpoint"):
        run_device_login(mode, provider, FakeClock())


def test_g2_unusable_device_authorization_answers() -> None:
    def answer_with(response: httpx.Response) -> usersession.LoginError:
        transport = httpx.MockTransport(lambda request: response)
        provider = usersession.Provider(
            f"{AS}/token",
            "c",
            token_endpoint_auth_method="none",
            device_authorization_endpoint=f"{AS}/device",
            transport=transport,
        )
        with pytest.raises(usersession.LoginError) as caught:
            usersession.device_login(provider, sleep=FakeClock().sleep)
        return caught.value

    refused = answer_with(
        httpx.Response(401, json={"error": "invalid_client", "error_description": "x"})
    )
    assert (refused.error, refused.status_code) == ("invalid_client", 401)
    leaky = answer_with(httpx.Response(500, text=f"device_code={DEVICE_CODE} oops"))
    assert leaky.status_code == 500 and DEVICE_CODE not in str(leaky)
    missing = answer_with(httpx.Response(200, json={"device_code": "d"}))
    assert "user_code" in str(missing)


# Against the development server


@pytest.fixture
def recorder() -> SecretRecorder:
    return SecretRecorder()


def test_g2_device_login_at_the_dev_server(
    dev: DevServer, mode: Mode, recorder: SecretRecorder
) -> None:
    store = usersession.MemoryStore()
    shown: list[usersession.DeviceCode] = []

    def approve(code: usersession.DeviceCode) -> None:
        shown.append(code)
        dev.approve_device(code.user_code)

    clock = FakeClock()
    provider = recorder.provider(dev)
    user = run_device_login(
        mode, provider, clock, scope="openid api", store=store, on_code=approve
    )

    assert user.provider is provider and user.store is store
    assert store.load() == user.tokens and user.tokens is not None
    assert user.tokens.refresh_token is not None and user.tokens.scope == "openid api"
    assert shown[0].verification_uri == dev.device_verification_uri
    assert clock.sleeps == [5.0]  # the dev server's default interval
    stats = dev.stats()
    assert (stats.device_authorizations, stats.device_polls) == (1, 1)
    assert stats.device_code_grants == 1
    with usersession.Client(user) as client:
        assert client.get(f"{dev.api_url}/me").json()["sub"] == "alice"


def test_g2_dev_server_denial_and_expiry(mode: Mode) -> None:
    server_time = [1_000_000.0]
    with DevServer(clock=lambda: server_time[0]) as dev:
        provider = usersession.Provider.discover(
            dev.issuer, dev.public_client_id, token_endpoint_auth_method="none"
        )
        with pytest.raises(usersession.AccessDenied):
            run_device_login(
                mode,
                provider,
                FakeClock(),
                on_code=lambda code: dev.deny_device(code.user_code),
            )

        def let_it_expire(code: usersession.DeviceCode) -> None:
            server_time[0] += code.expires_in

        with pytest.raises(usersession.DeviceCodeExpired):
            run_device_login(mode, provider, FakeClock(), on_code=let_it_expire)
        with pytest.raises(ValueError, match="no pending device login"):
            dev.approve_device("BCDF-GHJK")


def test_c11_g2_real_time_run_at_the_dev_server(dev: DevServer) -> None:
    """Real sleeps and a server that answers slow_down to any poll sooner
    than the interval: interval 1 s, one authorization_pending, then the
    approval. Two polls, about 2 s, and no slow_down."""
    dev.login_settings.device_interval = 1
    timers: list[threading.Timer] = []

    def approve_later(code: usersession.DeviceCode) -> None:
        timer = threading.Timer(1.5, dev.approve_device, args=(code.user_code,))
        timers.append(timer)
        timer.start()

    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    started = time.monotonic()
    try:
        user = usersession.device_login(provider, on_code=approve_later)
    finally:
        for timer in timers:
            timer.cancel()
    elapsed = time.monotonic() - started
    assert user.is_logged_in
    assert 2.0 <= elapsed < 4.0
    stats = dev.stats()
    assert (stats.device_polls, stats.device_code_grants) == (2, 1)


def test_x1_device_login_logs_no_secret(
    dev: DevServer,
    mode: Mode,
    recorder: SecretRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[usersession.DeviceCode] = []

    def approve(code: usersession.DeviceCode) -> None:
        shown.append(code)
        dev.approve_device(code.user_code)

    user = run_device_login(mode, recorder.provider(dev), FakeClock(), on_code=approve)
    assert user.tokens is not None
    secrets = {
        *recorder.secrets,
        shown[0]._device_code,
        user.tokens.access_token,
        dev.client_secret,
    }
    assert shown[0]._device_code in recorder.secrets
    assert len(caplog.records) > 5
    assert leaks(caplog.records, secrets, repr(user), repr(shown[0])) == []


# The development server's device endpoints, over plain HTTP


@pytest.fixture
def paced() -> Iterator[tuple[DevServer, list[float]]]:
    server_time = [1_000_000.0]
    with DevServer(clock=lambda: server_time[0]) as dev:
        yield dev, server_time


def _start(dev: DevServer, http: httpx.Client) -> dict[str, Any]:
    response = http.post(
        dev.device_authorization_endpoint, data={"client_id": dev.public_client_id}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    payload: dict[str, Any] = response.json()
    return payload


def _poll(dev: DevServer, http: httpx.Client, device_code: str) -> str:
    response = http.post(
        dev.token_endpoint,
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": device_code,
            "client_id": dev.public_client_id,
        },
    )
    body = response.json()
    return "tokens" if response.status_code == 200 else str(body["error"])


def test_c11_dev_server_answers_slow_down_to_early_polls(
    paced: tuple[DevServer, list[float]],
) -> None:
    dev, now = paced
    dev.login_settings.device_interval = 1
    with httpx.Client() as http:
        start = _start(dev, http)
        assert start["interval"] == 1 and start["expires_in"] == 600
        assert start["verification_uri"] == dev.device_verification_uri
        code = start["device_code"]

        def poll_after(seconds: float) -> str:
            now[0] += seconds
            return _poll(dev, http, code)

        assert poll_after(1) == "authorization_pending"
        assert poll_after(0.5) == "slow_down"  # interval now 6 s
        assert poll_after(5.9) == "slow_down"  # too soon again: now 11 s
        assert poll_after(11) == "authorization_pending"
        dev.login_settings.forced_slow_downs = 1
        assert poll_after(20) == "slow_down"  # forced; interval now 16 s
        assert poll_after(16) == "authorization_pending"
        dev.approve_device(start["user_code"].replace("-", "").lower())
        assert poll_after(16) == "tokens"
        assert poll_after(16) == "invalid_grant"  # a device code is single-use


def test_g2_dev_server_interval_absent_and_expiry(
    paced: tuple[DevServer, list[float]],
) -> None:
    dev, now = paced
    dev.login_settings.device_interval = None
    dev.login_settings.device_expires_in = 30
    with httpx.Client() as http:
        start = _start(dev, http)
        assert "interval" not in start and start["expires_in"] == 30
        assert _poll(dev, http, start["device_code"]) == "authorization_pending"
        now[0] += 4.9
        assert _poll(dev, http, start["device_code"]) == "slow_down"  # 5 s default
        now[0] += 30
        assert _poll(dev, http, start["device_code"]) == "expired_token"
        with pytest.raises(ValueError):
            dev.approve_device(start["user_code"])
        assert _poll(dev, http, "unknown") == "invalid_grant"


def test_g2_dev_server_verification_page(dev: DevServer) -> None:
    with httpx.Client() as http:
        start = _start(dev, http)
        page = http.get(start["verification_uri_complete"])
        assert page.status_code == 200 and "<form" in page.text
        assert start["user_code"] in page.text
        denied = http.post(
            dev.device_verification_uri,
            data={"user_code": start["user_code"], "action": "deny"},
        )
        assert denied.status_code == 200 and "denied" in denied.text
        assert _poll(dev, http, start["device_code"]) == "access_denied"
        again = http.post(
            dev.device_verification_uri,
            data={"user_code": start["user_code"], "action": "approve"},
        )
        assert again.status_code == 400
        second = _start(dev, http)
        approved = http.post(
            dev.device_verification_uri,
            data={"user_code": second["user_code"], "action": "approve"},
        )
        assert approved.status_code == 200
        assert _poll(dev, http, second["device_code"]) == "tokens"


def test_g2_dev_server_lists_the_device_endpoint(dev: DevServer) -> None:
    metadata = dev.metadata()
    assert (
        metadata["device_authorization_endpoint"] == dev.device_authorization_endpoint
    )
    assert DEVICE_CODE_GRANT in metadata["grant_types_supported"]
    provider = usersession.Provider.discover(
        dev.issuer, dev.client_id, dev.client_secret
    )
    assert provider.device_authorization_endpoint == dev.device_authorization_endpoint

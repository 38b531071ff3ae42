"""Section 5 of the contract: logout (L1)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault

from conftest import Mode, login, send


def do_logout(user: usersession.User, mode: Mode) -> None:
    if mode == "sync":
        user.logout()
    else:
        asyncio.run(user.alogout())


def test_l1_logout_revokes_refresh_then_access_token(
    dev: DevServer, mode: Mode
) -> None:
    """L1: both tokens are revoked, memory and store cleared, event once."""
    user = login(dev)
    tokens = user.tokens
    assert tokens is not None
    events: list[object] = []
    user.on_logged_out(events.append)
    do_logout(user, mode)
    do_logout(user, mode)  # a second logout is harmless and silent
    assert events == [None]
    assert not user.is_logged_in
    assert user.store.load() is None
    assert dev.stats().revocation_requests == 2
    # The grant is gone at the server: the old refresh token no longer works.
    answer = httpx.post(
        dev.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
        auth=(dev.client_id, dev.client_secret),
    )
    assert answer.json()["error"] == "invalid_grant"
    with pytest.raises(usersession.InvalidUser):
        send(user, mode, "GET", f"{dev.api_url}/me")


def test_l1_logout_does_not_wait_for_a_refresh_and_discards_its_answer(
    dev: DevServer, mode: Mode
) -> None:
    """L1: a refresh under way at logout: the waiting request fails with
    InvalidUser at once; the late answer never brings the user back."""
    # No revocation endpoint, so the late answer is a success to discard.
    provider = usersession.Provider(
        dev.token_endpoint, dev.client_id, dev.client_secret
    )
    user = usersession.User(provider, usersession.Tokens.from_response(dev.login()))
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    dev.inject("token", Fault.delay(0.6))
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(send(user, mode, "GET", f"{dev.api_url}/me"))
        except usersession.ClientError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=request)
    worker.start()
    deadline = time.monotonic() + 5
    while dev.stats().token_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    do_logout(user, "sync")
    worker.join(5)
    released = time.monotonic() - started
    assert isinstance(outcome[0], usersession.InvalidUser)
    # Released before the token endpoint (0.6 s) answers; generous bound.
    assert released < 0.5
    deadline = time.monotonic() + 5
    while dev.stats().refresh_grants == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let the client finish handling the late answer
    assert not user.is_logged_in
    assert user.store.load() is None
    assert dev.stats().refresh_grants == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503, "down"),
        Fault.hang(2.0),
        Fault.drop(),
        Fault.oauth_error("unsupported_token_type", status=400),
    ],
    ids=["503", "timeout", "dropped", "unsupported_token_type"],
)
def test_c14_failed_revocation_still_logs_out(
    mode: Mode, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    """C14: whatever revocation answers, the user is logged out locally,
    with a WARNING, and no bearer token is sent afterwards."""
    with DevServer(access_token_lifetime=3600.0) as dev:
        provider = usersession.Provider(
            dev.token_endpoint,
            dev.client_id,
            dev.client_secret,
            revocation_endpoint=dev.revocation_endpoint,
            timeout=0.5,
        )
        user = usersession.User(provider, usersession.Tokens.from_response(dev.login()))
        dev.inject("revocation", fault, times=None)
        with caplog.at_level(logging.WARNING, logger="usersession"):
            do_logout(user, mode)
        assert not user.is_logged_in
        assert user.store.load() is None
        assert any(
            r.levelno == logging.WARNING and "revocation" in r.getMessage()
            for r in caplog.records
        )
        seen_before = len(dev.api_seen())
        with pytest.raises(usersession.InvalidUser):
            send(user, mode, "GET", f"{dev.api_url}/me")
        assert len(dev.api_seen()) == seen_before


def test_l1_new_login_after_logout_works(dev: DevServer, mode: Mode) -> None:
    """After logout, set_tokens logs the user in again normally."""
    user = login(dev)
    do_logout(user, mode)
    user.set_tokens(usersession.Tokens.from_response(dev.login()))
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert user.store.load() == user.tokens

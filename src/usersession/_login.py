"""Logging in: the ways a `User` comes to exist.

- `device_login`: the device authorization grant (RFC 8628), for programs
  without a browser at hand; the person approves on another device.
- `browser_login`: the authorization code grant (RFC 6749 section 4.1) with
  PKCE S256 (RFC 7636) and a loopback redirect (RFC 8252).
- `client_credentials`: a service acting for itself (RFC 6749 section 4.4).

Each flow is written once, as a generator that yields what it needs done (a
request to the authorization server, a pause, the wait for the loopback
redirect) and is sent the outcome. `_run` performs those steps with blocking
calls and `_arun` with awaits; the public functions are thin edges over the
two, so the sync and async forms cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

import httpx

from ._device import (
    DEVICE_CODE_GRANT,
    DeviceCode,
    PollSchedule,
    read_device_authorization,
)
from ._errors import LoginError, LoginTimedOut
from ._grant import read_token_answer
from ._loopback import LoopbackReceiver, read_callback
from ._pkce import new_state, new_verifier, s256_challenge
from ._provider import Provider
from ._secrets import fingerprint
from ._store import TokenStore
from ._tokens import Tokens
from ._user import User

__all__ = [
    "DeviceCode",
    "abrowser_login",
    "aclient_credentials",
    "adevice_login",
    "browser_login",
    "client_credentials",
    "device_login",
]

logger = logging.getLogger("usersession")

Sleep = Callable[[float], object]
AsyncSleep = Callable[[float], Awaitable[object]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Redirect:
    receiver: LoopbackReceiver
    timeout: float


#: What a flow asks its driver to do. A request is answered with the
#: response or the `httpx.TransportError` that stood in for one; a pause with
#: None; a redirect with the code, the `LoginError` it ended with, or None.
_Step = httpx.Request | _Pause | _Redirect
_Flow = Generator[_Step, Any, Tokens]


# -- Drivers ----------------------------------------------------------------


def _run(flow: _Flow, provider: Provider, sleep: Sleep) -> Tokens:
    answer: Any = None
    try:
        while True:
            try:
                step = flow.send(answer)
            except StopIteration as stop:
                tokens: Tokens = stop.value
                return tokens
            if isinstance(step, httpx.Request):
                try:
                    answer = provider.send(step)
                except httpx.TransportError as exc:
                    answer = exc
            elif isinstance(step, _Pause):
                sleep(step.seconds)
                answer = None
            else:
                answer = step.receiver.wait(step.timeout)
    finally:
        flow.close()


async def _arun(flow: _Flow, provider: Provider, sleep: AsyncSleep) -> Tokens:
    answer: Any = None
    try:
        while True:
            try:
                step = flow.send(answer)
            except StopIteration as stop:
                tokens: Tokens = stop.value
                return tokens
            if isinstance(step, httpx.Request):
                try:
                    answer = await provider.asend(step)
                except httpx.TransportError as exc:
                    answer = exc
            elif isinstance(step, _Pause):
                await sleep(step.seconds)
                answer = None
            else:
                answer = await step.receiver.wait_async(step.timeout)
    finally:
        flow.close()


def _logged_in(user: User, how: str) -> User:
    tokens = user.tokens
    logger.info(
        "logged in (%s): access token %s",
        how,
        fingerprint(None if tokens is None else tokens.access_token),
    )
    return user


def _no_endpoint(name: str) -> LoginError:
    return LoginError(
        f"the provider has no {name}; use Provider.discover, or pass {name}= "
        "to Provider"
    )


# -- Device authorization (RFC 8628) --------------------------------------------


def show_device_code(code: DeviceCode) -> None:
    """Tell the person where to go and what to type, on standard error."""
    lines = [
        f"To log in, open {_printable(code.verification_uri)} in a browser "
        f"and enter the code {_printable(code.user_code)}",
    ]
    if code.verification_uri_complete:
        lines.append(f"(or open {_printable(code.verification_uri_complete)})")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _printable(text: str) -> str:
    # The server wrote these: drop control characters, which could move the
    # cursor or rewrite what the terminal already shows.
    return "".join(char for char in text if char.isprintable())


def _device_flow(
    provider: Provider,
    scope: str | None,
    on_code: Callable[[DeviceCode], object],
    clock: Callable[[], float],
) -> _Flow:
    endpoint = provider.device_authorization_endpoint
    if endpoint is None:
        raise _no_endpoint("device_authorization_endpoint")

    # 1. Ask for the codes, with client authentication (RFC 8628 3.1; a
    #    public client sends its client_id).
    answer = yield provider.authenticated_request(
        endpoint, {} if scope is None else {"scope": scope}
    )
    code = read_device_authorization(answer, secrets=[provider.client_secret])
    schedule = PollSchedule(
        interval=code.interval, expires_in=code.expires_in, now=clock()
    )

    # 2. Show the person the verification URI and the user code (3.3).
    on_code(code)
    logger.info(
        "device login: waiting for approval (polling every %g s, for %g s)",
        code.interval,
        code.expires_in,
    )

    # 3. Poll the token endpoint until the person decides (3.4, 3.5).
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": code._device_code}
    secrets = [code._device_code, provider.client_secret]
    while True:
        delay = schedule.wait(clock())
        if delay is None:
            raise LoginTimedOut(
                f"the device code expired after {code.expires_in:g} s without "
                "an approval"
            )
        if delay > 0:
            yield _Pause(delay)
        issued_at = time.time()
        answer = yield provider.token_request(form)
        result = read_token_answer(answer, issued_at=issued_at, secrets=secrets)
        if isinstance(result, Tokens):
            return result
        if result.error == "authorization_pending":
            logger.debug("device login: authorization pending")
            schedule.pending(clock())
        elif result.error == "slow_down":
            schedule.slow_down(clock())
            logger.info(
                "device login: slow_down; polling every %g s from now on",
                schedule.interval,
            )
        elif _worth_retrying(result):
            schedule.back_off(clock())
            logger.warning(
                "device login: no answer from the token endpoint (%s); "
                "polling every %g s from now on",
                result,
                schedule.interval,
            )
        else:
            raise result


def _worth_retrying(error: LoginError) -> bool:
    if error.error == "temporarily_unavailable":
        return True
    status = error.status_code
    return error.error is None and (status is None or status == 429 or status >= 500)


def device_login(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
    on_code: Callable[[DeviceCode], object] | None = None,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> User:
    """Log a person in with the device authorization grant (RFC 8628).

    Asks the provider's device authorization endpoint for a user code, shows
    it, then polls the token endpoint at the interval the server asked for
    (5 s when it did not say) until the person approves or declines on
    another device. Each ``slow_down`` adds 5 s to the interval for good;
    a poll that gets no answer doubles it.

    Args:
        provider: The authorization server; it needs a
            ``device_authorization_endpoint``.
        scope: The scope to ask for (space-separated), or the server's default.
        store: Where the user's tokens are kept; they are saved to it.
        on_code: Called once with the `DeviceCode` to show the person; by
            default the URI and code are printed to standard error.
        sleep: Pauses between polls (tests pass a fake).
        clock: A monotonic clock, seconds, for the pacing and the expiry.

    Returns:
        The logged-in `User`, bound to `provider` (and `store`).

    Raises:
        AccessDenied: The person declined (``access_denied``).
        DeviceCodeExpired: The server says the code expired (``expired_token``).
        LoginTimedOut: The code's ``expires_in`` passed while polling.
        LoginError: Any other refusal, or an unusable answer.
    """
    flow = _device_flow(provider, scope, on_code or show_device_code, clock)
    tokens = _run(flow, provider, sleep)
    return _logged_in(User(provider, tokens, store=store), "device authorization")


async def adevice_login(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
    on_code: Callable[[DeviceCode], object] | None = None,
    sleep: AsyncSleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> User:
    """The async form of `device_login`: `sleep` is awaited, and `on_code`
    is a plain function, called on the event loop's thread."""
    flow = _device_flow(provider, scope, on_code or show_device_code, clock)
    tokens = await _arun(flow, provider, sleep)
    return _logged_in(User(provider, tokens, store=store), "device authorization")


# -- Authorization code with PKCE and a loopback redirect -----------------------


def _send_person(
    url: str,
    open_browser: bool | Callable[[str], object],
    on_url: Callable[[str], object] | None,
) -> None:
    if callable(open_browser):
        open_browser(url)
        return
    if open_browser and _open_system_browser(url):
        logger.info("opened the system browser for the login")
        return
    (on_url or _print_url)(url)


def _open_system_browser(url: str) -> bool:
    try:
        return webbrowser.open(url, new=1)
    except webbrowser.Error:
        return False


def _print_url(url: str) -> None:
    print(
        f"To log in, open this address in a browser:\n\n    {url}\n",
        file=sys.stderr,
        flush=True,
    )


def _browser_flow(
    provider: Provider,
    scope: str | None,
    port: int,
    open_browser: bool | Callable[[str], object],
    timeout: float,
    on_url: Callable[[str], object] | None,
) -> _Flow:
    endpoint = provider.authorization_endpoint
    if endpoint is None:
        raise _no_endpoint("authorization_endpoint")
    state = new_state()
    verifier = new_verifier()
    secrets = [verifier, provider.client_secret]

    def check(params: Mapping[str, str]) -> str:
        return read_callback(
            params,
            state=state,
            issuer=provider.issuer,
            require_iss=provider.require_iss,
            secrets=secrets,
        )

    # 1. Listen first: the redirect URI names the port actually bound
    #    (RFC 8252 section 7.3).
    with LoopbackReceiver(port, check) as receiver:
        redirect_uri = receiver.redirect_uri

        # 2. The authorization request (RFC 6749 4.1.1, RFC 7636 4.3).
        params = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": s256_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if scope is not None:
            params["scope"] = scope
        url = str(httpx.URL(endpoint).copy_merge_params(params))
        logger.info(
            "browser login: waiting up to %g s for the redirect to %s",
            timeout,
            redirect_uri,
        )
        _send_person(url, open_browser, on_url)

        # 3. One redirect back, within the time allowed.
        outcome = yield _Redirect(receiver, timeout)
    if outcome is None:
        raise LoginTimedOut(
            f"the browser did not come back to {redirect_uri} within {timeout:g} s"
        )
    if isinstance(outcome, LoginError):
        raise outcome
    code: str = outcome

    # 4. Redeem the code with the verifier and the same redirect URI
    #    (RFC 6749 4.1.3, RFC 7636 4.5).
    issued_at = time.time()
    answer = yield provider.token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
    )
    result = read_token_answer(answer, issued_at=issued_at, secrets=[code, *secrets])
    if isinstance(result, LoginError):
        raise result
    return result


def browser_login(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
    port: int = 0,
    open_browser: bool | Callable[[str], object] = True,
    timeout: float = 300.0,
    on_url: Callable[[str], object] | None = None,
) -> User:
    """Log a person in through their browser: the authorization code grant
    with PKCE S256 and a loopback redirect (RFC 6749 4.1, RFC 7636, RFC 8252).

    A socket is bound on 127.0.0.1 first, and the redirect URI
    ``http://127.0.0.1:<port>/callback`` names the port actually bound. The
    person is sent to the authorization URL; the one redirect that comes back
    must carry this login's ``state`` (and, when it names one, the provider's
    issuer, RFC 9207); its code is then redeemed with the PKCE verifier.

    Args:
        provider: The authorization server; it needs an
            ``authorization_endpoint``.
        scope: The scope to ask for (space-separated), or the server's default.
        store: Where the user's tokens are kept; they are saved to it.
        port: The preferred loopback port; when it is taken (or 0), any free
            port. Servers that follow RFC 8252 7.3 accept any port.
        open_browser: True: open the system browser when there is one; a
            callable: call it with the URL instead (it plays the browser);
            False: only show the URL.
        timeout: Seconds to wait for the redirect.
        on_url: Shows the URL when no browser is opened; by default it is
            printed to standard error.

    Returns:
        The logged-in `User`, bound to `provider` (and `store`).

    Raises:
        AccessDenied: The person declined (``access_denied``).
        LoginTimedOut: No redirect came within `timeout`.
        LoginError: A redirect with a wrong ``state`` or ``iss``, an error
            answer, or a refused code exchange.
    """
    flow = _browser_flow(provider, scope, port, open_browser, timeout, on_url)
    tokens = _run(flow, provider, time.sleep)
    return _logged_in(User(provider, tokens, store=store), "authorization code")


async def abrowser_login(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
    port: int = 0,
    open_browser: bool | Callable[[str], object] = True,
    timeout: float = 300.0,
    on_url: Callable[[str], object] | None = None,
) -> User:
    """The async form of `browser_login`. `open_browser` and `on_url` are
    plain functions, called on the event loop's thread; the redirect is
    awaited without blocking the loop."""
    flow = _browser_flow(provider, scope, port, open_browser, timeout, on_url)
    tokens = await _arun(flow, provider, asyncio.sleep)
    return _logged_in(User(provider, tokens, store=store), "authorization code")


# -- Client credentials (RFC 6749 section 4.4) ----------------------------------


def _client_credentials_form(scope: str | None) -> dict[str, str]:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    return form


class _ServiceUser(User):
    """A service logged in with its own credentials: it has no refresh
    token, and its refresh repeats the client credentials grant (RFC 6749
    section 4.4.3 says no refresh token should be issued for it)."""

    def __init__(
        self,
        provider: Provider,
        tokens: Tokens,
        *,
        scope: str | None,
        store: TokenStore | None,
    ) -> None:
        self._grant_form = _client_credentials_form(scope)
        super().__init__(provider, tokens, store=store)

    def _refresh_form(self, tokens: Tokens) -> dict[str, str] | None:
        return dict(self._grant_form)


def _client_credentials_flow(provider: Provider, scope: str | None) -> _Flow:
    issued_at = time.time()
    answer = yield provider.token_request(_client_credentials_form(scope))
    result = read_token_answer(
        answer, issued_at=issued_at, secrets=[provider.client_secret]
    )
    if isinstance(result, LoginError):
        raise result
    return result


def client_credentials(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
) -> User:
    """A `User` for a service acting for itself (RFC 6749 section 4.4).

    The first token is fetched now; when it expires or an API rejects it,
    the "refresh" repeats the grant with the same scope.

    Args:
        provider: The authorization server; the client must be confidential.
        scope: The scope to ask for (space-separated), or the server's default.
        store: Where the tokens are kept; they are saved to it.

    Raises:
        LoginError: The token endpoint refused the grant or could not be
            reached.
    """
    tokens = _run(_client_credentials_flow(provider, scope), provider, time.sleep)
    user = _ServiceUser(provider, tokens, scope=scope, store=store)
    return _logged_in(user, "client credentials")


async def aclient_credentials(
    provider: Provider,
    *,
    scope: str | None = None,
    store: TokenStore | None = None,
) -> User:
    """The async form of `client_credentials`."""
    flow = _client_credentials_flow(provider, scope)
    tokens = await _arun(flow, provider, asyncio.sleep)
    user = _ServiceUser(provider, tokens, scope=scope, store=store)
    return _logged_in(user, "client credentials")

"""`User`: one person's tokens, kept alive by one refresh at a time.

The rules a `User` enforces (one refresh at a time, held requests, the
generation check on a 401, the loop guard, what a failed refresh does) are
decided here under one thread lock, with no I/O. Each refresh then runs in a
thread of its own, whoever asked for it, and threads and coroutines of any
event loop wait for its outcome the same way (see `Flight`). Sync and async
callers therefore share every decision and every line of the refresh.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ._errors import ClientError, InvalidUser, RefreshUnavailable, UserRefreshFailed
from ._flight import Ended, Flight, Result
from ._oauth import Refreshed, Refused, Unavailable, classify_token_answer, no_answer
from ._provider import Provider
from ._secrets import fingerprint
from ._store import MemoryStore, TokenStore
from ._tokens import Tokens

__all__ = ["Grant", "HeldTime", "User"]

logger = logging.getLogger("usersession")

RefreshedCallback = Callable[[Tokens], None]
LoggedOutCallback = Callable[[UserRefreshFailed | None], None]

#: After a proactive refresh fails for now, requests keep using the old,
#: still valid token for this long before the next proactive attempt.
_PROACTIVE_PAUSE = 5.0

#: The least time between two proactive refreshes of one user.
_MIN_PROACTIVE_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """The tokens a request is sent with, and their generation (R2)."""

    tokens: Tokens
    generation: int


@dataclasses.dataclass(frozen=True, slots=True)
class HeldTime:
    """How long requests waited for refreshes, since the user was created.

    Attributes:
        requests: Requests that waited for a refresh (theirs or another's).
        seconds: Their waiting, added up.
        longest: The longest single wait, in seconds.
    """

    requests: int = 0
    seconds: float = 0.0
    longest: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Join:
    flight: Flight


@dataclasses.dataclass(frozen=True, slots=True)
class _Lead:
    flight: Flight


_Decision = Grant | _Join | _Lead


class User:
    """A person (or service) logged in with OAuth 2.0, and their tokens.

    One `User` object may be shared by any number of clients, threads and
    asyncio event loops: they refresh its tokens one at a time, and requests
    made while a refresh is under way wait for it.

    Args:
        provider: The authorization server that issued the tokens.
        tokens: The tokens of a login. When omitted, the store's are used.
        store: Where the tokens are kept; a new `MemoryStore` by default.
        leeway: Refresh this many seconds before the access token expires
            (at most half the token's lifetime, when known).
        refresh_limit: At most this many refreshes started by 401 answers...
        refresh_window: ...in any window of this many seconds. A 401 beyond
            that budget goes to the caller unchanged (proactive refreshes are
            not counted).
        wait_timeout: The longest a request waits for a refresh under way.
        clock: Wall clock, seconds since the epoch (for expiry).
        monotonic: Monotonic clock, seconds (for budgets and backoff).

    Raises:
        StoreError: The store could not be read (or written, when `tokens`
            are given) at creation.
    """

    def __init__(
        self,
        provider: Provider,
        tokens: Tokens | None = None,
        *,
        store: TokenStore | None = None,
        leeway: float = 30.0,
        refresh_limit: int = 5,
        refresh_window: float = 60.0,
        wait_timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.store: TokenStore = MemoryStore() if store is None else store
        self.leeway = leeway
        self.refresh_limit = refresh_limit
        self.refresh_window = refresh_window
        self.wait_timeout = wait_timeout
        self._clock = clock
        self._monotonic = monotonic

        self._lock = threading.Lock()
        self._generation = 0
        #: The grant the last send found fresh (see `_decide_send`).
        self._fresh: Grant | None = None
        self._flight: Flight | None = None
        self._failure: tuple[int, UserRefreshFailed] | None = None
        self._unavailable: RefreshUnavailable | None = None
        self._not_before = float("-inf")
        self._proactive_pause_until = float("-inf")
        self._next_proactive_at = float("-inf")
        self._reactive_starts: collections.deque[float] = collections.deque()
        self._budget_warned_at = float("-inf")
        self._on_refreshed: list[RefreshedCallback] = []
        self._on_logged_out: list[LoggedOutCallback] = []
        self._held = HeldTime()

        if tokens is None:
            tokens = self.store.load()
        else:
            self.store.save(tokens)
        self._tokens = tokens

    def __repr__(self) -> str:
        tokens = self._tokens
        state = (
            "logged out"
            if tokens is None
            else f"access_token={fingerprint(tokens.access_token)}"
        )
        return f"User({self.provider.client_id!r}, {state})"

    # -- What callers see -------------------------------------------------------

    @property
    def tokens(self) -> Tokens | None:
        """The current tokens, or ``None`` when logged out."""
        return self._tokens

    @property
    def held(self) -> HeldTime:
        """How long requests have waited for refreshes so far."""
        return self._held

    @property
    def is_logged_in(self) -> bool:
        """True while the user has tokens."""
        return self._tokens is not None

    def on_refreshed(self, callback: RefreshedCallback) -> Callable[[], None]:
        """Call `callback(tokens)` each time the user gets new tokens.

        Callbacks run in the refresh's own thread, after the new tokens are
        saved and before any waiting request is released, so keep them short.
        An exception in one is logged (its type only) and ignored; calling
        `refresh` from one raises `ClientError`.

        Returns:
            A function that unsubscribes the callback.
        """
        self._on_refreshed.append(callback)
        return lambda: _discard(self._on_refreshed, callback)

    def on_logged_out(self, callback: LoggedOutCallback) -> Callable[[], None]:
        """Call `callback(error)` once when the user is logged out.

        `error` is the `UserRefreshFailed` that ended the session, or ``None``
        after `logout`.

        Returns:
            A function that unsubscribes the callback.
        """
        self._on_logged_out.append(callback)
        return lambda: _discard(self._on_logged_out, callback)

    def set_tokens(self, tokens: Tokens) -> None:
        """Log the user in with `tokens` (a new login), saving them to the store."""
        self._adopt_login(tokens)
        self.store.save(tokens)

    async def aset_tokens(self, tokens: Tokens) -> None:
        """The async form of `set_tokens`."""
        self._adopt_login(tokens)
        await self.store.asave(tokens)

    def refresh(self) -> Tokens:
        """Refresh the tokens now (or join the refresh under way).

        Returns:
            The new tokens.

        Raises:
            UserRefreshFailed: The server refused; the user is logged out.
            RefreshUnavailable: The refresh could not be done now.
            InvalidUser: The user is logged out.
        """
        _refuse_in_callback("refresh()")
        decision = self._decide_forced()
        return self._after_flight(decision.flight, self._await(decision), False).tokens

    async def arefresh(self) -> Tokens:
        """The async form of `refresh`."""
        _refuse_in_callback("arefresh()")
        decision = self._decide_forced()
        outcome = await self._aawait(decision)
        return self._after_flight(decision.flight, outcome, False).tokens

    def logout(self) -> None:
        """Log the user out: forget the tokens, then revoke them (RFC 7009).

        The tokens are cleared in memory and in the store whatever the
        revocation endpoint answers; a failed revocation is logged as a
        warning. Requests waiting for a refresh fail with `InvalidUser`.
        """
        tokens = self._end_session()
        try:
            self.store.clear()
        except Exception as exc:
            logger.warning("could not clear the token store at logout: %r", exc)
        if tokens is None:
            return
        self._announce_logout(None)
        for request in self._revocations(tokens):
            try:
                response = self.provider.send(request)
            except httpx.TransportError as exc:
                _revocation_failed(type(exc).__name__)
            else:
                _revocation_answered(response)

    async def alogout(self) -> None:
        """The async form of `logout`."""
        tokens = self._end_session()
        try:
            await self.store.aclear()
        except Exception as exc:
            logger.warning("could not clear the token store at logout: %r", exc)
        if tokens is None:
            return
        self._announce_logout(None)
        for request in self._revocations(tokens):
            try:
                response = await self.provider.asend(request)
            except httpx.TransportError as exc:
                _revocation_failed(type(exc).__name__)
            else:
                _revocation_answered(response)

    # -- What UserAuth asks, sync and async -------------------------------------

    def _acquire(self) -> Grant:
        """The tokens to send a request with, refreshing first when they are
        due; waits for a refresh under way."""
        decision = self._decide_send()
        if isinstance(decision, Grant):
            return decision
        return self._after_flight(decision.flight, self._await(decision), True)

    async def _aacquire(self) -> Grant:
        """The async form of `acquire`."""
        decision = self._decide_send()
        if isinstance(decision, Grant):
            return decision
        outcome = await self._aawait(decision)
        return self._after_flight(decision.flight, outcome, True)

    def _recover(self, generation: int) -> Grant | None:
        """Tokens to resend with after the API rejected the tokens of
        `generation` (the count of token changes the request was sent with).

        If the user has newer tokens already, those; if a refresh is under
        way, its result; otherwise the result of a new refresh. Returns
        ``None`` when the 401 should go to the caller as it is (the loop
        guard's budget is spent).
        """
        decision = self._decide_recover(generation)
        if decision is None or isinstance(decision, Grant):
            return decision
        return self._after_flight(decision.flight, self._await(decision), False)

    async def _arecover(self, generation: int) -> Grant | None:
        """The async form of `recover`."""
        decision = self._decide_recover(generation)
        if decision is None or isinstance(decision, Grant):
            return decision
        outcome = await self._aawait(decision)
        return self._after_flight(decision.flight, outcome, False)

    # -- Decisions (no I/O) -----------------------------------------------------

    def _logged_out_error(self, generation: int | None = None) -> InvalidUser:
        failure = self._failure
        if failure is not None and failure[0] == generation:
            return failure[1].clone()
        return InvalidUser("the user is logged out; log in again")

    def _start(self, tokens: Tokens, *, proactive: bool) -> _Lead:
        flight = Flight(tokens, self._generation, proactive=proactive)
        self._flight = flight
        logger.debug(
            "refresh started (%s) for access token %s",
            "expiring" if proactive else "rejected",
            fingerprint(tokens.access_token),
        )
        return _Lead(flight)

    def _decide_send(self) -> _Decision:
        # The common case without the lock: the tokens the last send found
        # fresh are still the user's, nothing is under way, and they are
        # still not due. Each read is atomic and the tokens are read first,
        # so a pass means those tokens were current at that moment, as if
        # the lock had been taken then.
        fresh = self._fresh
        if (
            fresh is not None
            and self._tokens is fresh.tokens
            and self._generation == fresh.generation
            and self._flight is None
            and not fresh.tokens.is_due(self.leeway, self._clock())
        ):
            return fresh
        with self._lock:
            tokens = self._tokens
            if tokens is None:
                raise self._logged_out_error()
            return self._decide_send_locked(tokens)

    def _decide_send_locked(self, tokens: Tokens) -> _Decision:
        # R4: while a refresh is under way, new requests wait for it.
        if self._flight is not None:
            return _Join(self._flight)
        grant = Grant(tokens, self._generation)
        now = self._clock()
        if not tokens.is_due(self.leeway, now):
            self._fresh = grant
            return grant
        # Without a refresh token nothing can renew the token early; let the
        # API judge it, and a rejection end the session (F3).
        if self._refresh_form(tokens) is None:
            return grant
        expired = tokens.is_expired(now)
        mono = self._monotonic()
        if mono < self._not_before:
            # F4: the server asked us to wait; a token that still works is
            # better than an error.
            if not expired:
                return grant
            raise self._unavailable_error()
        if not expired and mono < self._proactive_pause_until:
            return grant
        if mono < self._next_proactive_at:
            # A server that issues tokens due at once (a lifetime of a second
            # or less, even 0) must not get a call per request; the API will
            # say whether this token still works.
            return grant
        return self._start(tokens, proactive=True)

    def _decide_recover(self, generation: int) -> _Decision | None:
        with self._lock:
            tokens = self._tokens
            if tokens is None:
                raise self._logged_out_error(generation)
            # R2: the user moved on since this request was sent: resend with
            # the current token, as a new request would go out (a resend is
            # the request's last chance, so not with a token about to expire).
            if self._generation != generation:
                return self._decide_send_locked(tokens)
            if self._flight is not None:
                return _Join(self._flight)
            mono = self._monotonic()
            if mono < self._not_before:
                raise self._unavailable_error()
            if not self._within_budget(mono):
                return None
            self._reactive_starts.append(mono)
            return self._start(tokens, proactive=False)

    def _decide_forced(self) -> _Join | _Lead:
        with self._lock:
            tokens = self._tokens
            if tokens is None:
                raise self._logged_out_error()
            if self._flight is not None:
                return _Join(self._flight)
            if self._monotonic() < self._not_before:
                raise self._unavailable_error()
            return self._start(tokens, proactive=False)

    def _unavailable_error(self) -> RefreshUnavailable:
        # No request was made: say so, and how long is left of the wait.
        remaining = max(0.0, self._not_before - self._monotonic())
        last = self._unavailable
        return RefreshUnavailable(
            f"the token endpoint asked us to wait {remaining:.1f} s more before "
            "refreshing; the user is still logged in",
            status_code=None if last is None else last.status_code,
            body_excerpt=None if last is None else last.body_excerpt,
            retry_after=remaining,
            error=None if last is None else last.error,
        )

    def _within_budget(self, mono: float) -> bool:
        # R6: a loop guard against an API that rejects every new token.
        window_start = mono - self.refresh_window
        starts = self._reactive_starts
        while starts and starts[0] <= window_start:
            starts.popleft()
        if len(starts) < self.refresh_limit:
            return True
        if self._budget_warned_at <= window_start:
            self._budget_warned_at = mono
            logger.warning(
                "refresh budget spent: %d refreshes after 401 answers in %.0f s; "
                "passing further 401 answers to the caller",
                len(starts),
                self.refresh_window,
            )
        return False

    def _after_flight(self, flight: Flight, outcome: Result, sending: bool) -> Grant:
        if isinstance(outcome, Refused):
            raise outcome.error.clone()
        if isinstance(outcome, Ended):
            raise InvalidUser(str(outcome.error))
        with self._lock:
            tokens = self._tokens
            if tokens is None:
                raise self._logged_out_error(flight.generation)
            grant = Grant(tokens, self._generation)
            if isinstance(outcome, Refreshed) or self._generation != flight.generation:
                return grant
            # F4: a proactive refresh failed for now, and the old token has
            # not expired yet: send the request with it.
            if sending and flight.proactive and not tokens.is_expired(self._clock()):
                return grant
        raise outcome.error.clone()

    def _settle(self, flight: Flight, outcome: Result) -> bool:
        """Apply a refresh's outcome, then release its waiters.

        Returns False when the user logged out or logged in anew meanwhile:
        the outcome is then discarded and never brings the old session back.
        """
        with self._lock:
            if self._flight is not flight:
                return False
            self._flight = None
            if isinstance(outcome, Refreshed):
                self._tokens = outcome.tokens
                self._generation += 1
                self._unavailable = None
                self._not_before = float("-inf")
                self._proactive_pause_until = float("-inf")
                if flight.proactive:
                    self._next_proactive_at = (
                        self._monotonic() + _MIN_PROACTIVE_INTERVAL
                    )
            elif isinstance(outcome, Refused):
                self._tokens = None
                self._generation += 1
                self._failure = (flight.generation, outcome.error)
            elif isinstance(outcome, Unavailable):
                mono = self._monotonic()
                self._unavailable = outcome.error
                if outcome.error.retry_after is not None:
                    self._not_before = mono + outcome.error.retry_after
                if flight.proactive:
                    self._proactive_pause_until = mono + _PROACTIVE_PAUSE

        # Events fire before any waiting request is released, so a listener
        # hears of new tokens before they are used.
        if isinstance(outcome, Refreshed):
            logger.info(
                "tokens %s: access token %s replaces %s",
                "adopted from the store" if outcome.adopted else "refreshed",
                fingerprint(outcome.tokens.access_token),
                fingerprint(flight.tokens.access_token),
            )
            for callback in list(self._on_refreshed):
                _call_safely(callback, outcome.tokens)
        elif isinstance(outcome, Refused):
            logger.warning(
                "refresh refused (%s); the user is logged out", outcome.error.error
            )
            self._announce_logout(outcome.error)
        elif isinstance(outcome, Unavailable):
            logger.warning("refresh unavailable: %s", outcome.error)
        flight.complete(outcome)
        return True

    def _adopt_login(self, tokens: Tokens) -> None:
        with self._lock:
            self._tokens = tokens
            self._generation += 1
            self._failure = None
            self._unavailable = None
            self._not_before = float("-inf")
            self._proactive_pause_until = float("-inf")
            # New tokens from a login are judged on their own expiry, not
            # held back by the pacing of refreshes of the old ones.
            self._next_proactive_at = float("-inf")
            flight, self._flight = self._flight, None
        if flight is not None:
            flight.complete(Refreshed(tokens, adopted=True))

    def _end_session(self) -> Tokens | None:
        with self._lock:
            tokens, self._tokens = self._tokens, None
            self._generation += 1
            self._failure = None
            flight, self._flight = self._flight, None
        if flight is not None:
            flight.complete(Ended(InvalidUser("the user logged out")))
        return tokens

    def _announce_logout(self, error: UserRefreshFailed | None) -> None:
        logger.info("user logged out")
        for callback in list(self._on_logged_out):
            _call_safely(callback, error)

    # -- The refresh itself ---------------------------------------------------

    def _refresh_form(self, tokens: Tokens) -> dict[str, str] | None:
        """The token request fields that renew `tokens`, or None if none can."""
        if tokens.refresh_token is None:
            return None
        return {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}

    def _refresh(self, flight: Flight) -> Result:
        """Renew `flight.tokens`, holding the store's lock. Runs in its own
        thread (see `_start_thread`)."""
        # 1. Someone sharing the store may have refreshed already (P2): take
        #    their tokens if they are fresh, or at least their refresh token.
        base = flight.tokens
        stored = self.store.load()
        if stored is not None and stored.access_token != base.access_token:
            if not stored.is_due(self.leeway, self._clock()):
                return Refreshed(stored, adopted=True)
            base = stored

        # 2. Ask the token endpoint (RFC 6749 section 6).
        form = self._refresh_form(base)
        if form is None:
            outcome: Result = Refused(
                UserRefreshFailed(
                    "the access token can no longer be used and the user has no "
                    "refresh token; the user is logged out"
                )
            )
        else:
            issued_at = self._clock()
            try:
                answer = self.provider.send(self.provider.token_request(form))
            except httpx.TransportError as exc:
                outcome = no_answer(exc)
            else:
                outcome = classify_token_answer(
                    answer.status_code,
                    answer.content,
                    previous=base,
                    issued_at=issued_at,
                    now=self._clock(),
                    retry_after=answer.headers.get("Retry-After"),
                    secrets=[self.provider.client_secret],
                )

        # 3. Save before any waiting request is released (F5). New tokens the
        #    server issued are kept in memory even if the store fails, since
        #    the old refresh token may already be spent.
        try:
            if isinstance(outcome, Refreshed):
                self.store.save(outcome.tokens)
            elif isinstance(outcome, Refused):
                self.store.clear()
        except Exception as exc:
            logger.error("the token store could not record the refresh: %r", exc)
        return outcome

    def _lead(self, flight: Flight) -> None:
        outcome: Result | None = None
        try:
            with self.store.lock():
                outcome = self._refresh(flight)
        except Exception as exc:
            outcome = _store_trouble(exc)
        finally:
            stale = self._conclude(flight, outcome)
            if stale is not None:
                _undo(self, stale)

    def _start_thread(self, flight: Flight) -> None:
        # F6: every refresh runs in a thread of its own, whoever started it.
        # A request that stops waiting (cancelled, timed out, interrupted,
        # its event loop closed) neither stops the refresh nor loses a
        # rotated refresh token the server already issued. The thread is not
        # a daemon: a program that exits meanwhile saves the new tokens first.
        threading.Thread(
            target=self._lead, args=(flight,), name="usersession-refresh"
        ).start()

    def _conclude(self, flight: Flight, outcome: Result | None) -> Tokens | None:
        """Settle the flight; return tokens that must leave the store again
        because the user logged out or in anew while they were fetched."""
        if outcome is None:
            outcome = Unavailable(RefreshUnavailable("the refresh was interrupted"))
        if self._settle(flight, outcome):
            return None
        if isinstance(outcome, Refreshed) and not outcome.adopted:
            return outcome.tokens
        return None

    def _note_held(self, started: float) -> None:
        waited = self._monotonic() - started
        with self._lock:
            held = self._held
            self._held = HeldTime(
                held.requests + 1, held.seconds + waited, max(held.longest, waited)
            )

    def _await(self, decision: _Join | _Lead) -> Result:
        started = self._monotonic()
        try:
            return self._await_outcome(decision)
        finally:
            self._note_held(started)

    async def _aawait(self, decision: _Join | _Lead) -> Result:
        started = self._monotonic()
        try:
            return await self._aawait_outcome(decision)
        finally:
            self._note_held(started)

    def _await_outcome(self, decision: _Join | _Lead) -> Result:
        if isinstance(decision, _Lead):
            self._start_thread(decision.flight)
        return self._checked(decision.flight.wait(self.wait_timeout))

    async def _aawait_outcome(self, decision: _Join | _Lead) -> Result:
        if isinstance(decision, _Lead):
            self._start_thread(decision.flight)
        return self._checked(await decision.flight.wait_async(self.wait_timeout))

    def _checked(self, outcome: Result | None) -> Result:
        if outcome is None:
            raise RefreshUnavailable(
                f"a refresh under way did not finish within {self.wait_timeout:g} s"
            )
        return outcome

    # -- Revocation at logout (RFC 7009) ------------------------------------------

    def _revocations(self, tokens: Tokens) -> list[httpx.Request]:
        endpoint = self.provider.revocation_endpoint
        if endpoint is None:
            return []
        # The refresh token first: revoking it ends the grant on most servers,
        # which also invalidates the access token (RFC 7009 section 2.1).
        pairs = [
            (tokens.refresh_token, "refresh_token"),
            (tokens.access_token, "access_token"),
        ]
        return [
            self.provider.authenticated_request(
                endpoint, {"token": token, "token_type_hint": hint}
            )
            for token, hint in pairs
            if token
        ]


def _revocation_failed(reason: str) -> None:
    logger.warning("token revocation failed at logout: %s", reason)


def _revocation_answered(response: httpx.Response) -> None:
    if response.status_code != 200:
        logger.warning(
            "token revocation failed at logout: HTTP %d", response.status_code
        )


def _undo(user: User, tokens: Tokens) -> None:
    # A refresh finished after logout or a new login. Its tokens were already
    # saved; put the store back to what the user now is.
    current = user.tokens
    try:
        if current is not None:
            user.store.save(current)
        elif user.store.load() == tokens:
            user.store.clear()
    except Exception as exc:
        logger.error("could not restore the token store: %r", exc)


def _store_trouble(exc: Exception) -> Unavailable:
    logger.warning("refresh failed for now: the token store failed: %r", exc)
    error = RefreshUnavailable(
        f"the token store failed ({type(exc).__name__}); the user is still logged in"
    )
    error.__cause__ = exc
    return Unavailable(error)


def _discard(callbacks: list[Any], callback: Any) -> None:
    if callback in callbacks:
        callbacks.remove(callback)


_in_callback = threading.local()


def _call_safely(callback: Callable[[Any], object], argument: Any) -> None:
    _in_callback.active = True
    try:
        result = callback(argument)
        if isinstance(result, Awaitable):
            logger.warning("event callbacks must be plain functions, not coroutines")
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception as exc:
        # The exception's text could quote a token the callback was given,
        # so only its type is logged.
        logger.error("a user event callback raised %s", type(exc).__name__)
    finally:
        _in_callback.active = False


def _refuse_in_callback(what: str) -> None:
    if getattr(_in_callback, "active", False):
        raise ClientError(
            f"{what} cannot be called from a user event callback: the refresh "
            "that called the callback is still finishing"
        )

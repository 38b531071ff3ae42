"""The one flow that every HTTP library's adapter shares.

`Bearer.flow` decides everything that happens to one request: whether it
carries the user's token, what it waits for before it goes out, whether a
401 means the token was rejected, whether to refresh, and whether the body
can be sent a second time. It only *asks* for waiting and sending.
`Bearer.sync_steps` and `Bearer.async_steps` do the waiting (with threads or
with an event loop) and hand out each request that is to go on the wire, so
httpx, httpx2, requests and aiohttp all run the same decisions, and the
sync and async sides cannot drift apart.

What the flow needs to know of a library's requests and responses, and the
two things it needs done to them (set a header, release a response), is a
`Wire`: a handful of one-line methods per library.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any, Generic, TypeVar

import httpx

from ._body import Replay
from ._challenge import is_token_rejection
from ._errors import ClientError, RefreshUnavailable
from ._secrets import fingerprint
from ._urls import Origin, URLParts, check_transport, origin_of, url_parts
from ._user import Grant, User

__all__ = ["Bearer", "Wire", "parse_origin"]

logger = logging.getLogger("usersession")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Wire(abc.ABC, Generic[Req, Resp]):
    """How one HTTP library's requests and responses look to the flow."""

    __slots__ = ()

    @abc.abstractmethod
    def url(self, request: Req) -> URLParts | str:
        """Where `request` goes."""

    @abc.abstractmethod
    def describe(self, request: Req) -> str:
        """Method and URL without query, for the debug log."""

    @abc.abstractmethod
    def authorize(self, request: Req, authorization: str, target: Origin) -> None:
        """Set the one ``Authorization`` header, attached for `target`."""

    @abc.abstractmethod
    def replay(self, request: Req) -> Replay:
        """Whether, and how, the body can be sent again (called before sending)."""

    @abc.abstractmethod
    def status(self, response: Resp) -> int:
        """The status code."""

    @abc.abstractmethod
    def challenges(self, response: Resp) -> list[str]:
        """Every ``WWW-Authenticate`` value."""

    @abc.abstractmethod
    def answered_url(self, response: Resp) -> URLParts | str:
        """The URL of the request this response answers (the last hop's)."""

    @abc.abstractmethod
    def answered_authorization(self, response: Resp) -> str | None:
        """The ``Authorization`` header of the request this response answers."""

    def release(self, response: Resp) -> None:
        """Read what is left of `response` and give its connection back."""
        raise NotImplementedError

    async def arelease(self, response: Resp) -> None:
        """The same, for a library's async responses."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class _Send:
    request: Any


@dataclasses.dataclass(frozen=True, slots=True)
class _Acquire:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class _Recover:
    generation: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Release:
    response: Any


_Step = _Send | _Acquire | _Recover | _Release


class Bearer(Generic[Req, Resp]):
    """A `User`'s token on the requests of one HTTP library.

    Args:
        user: Whose token to send.
        wire: The library's requests and responses.
        allowed_origins: If given, the only origins that receive the token.
    """

    __slots__ = ("allowed_origins", "user", "wire")

    def __init__(
        self,
        user: User,
        wire: Wire[Req, Resp],
        allowed_origins: Iterable[str] | None = None,
    ) -> None:
        self.user = user
        self.wire = wire
        self.allowed_origins: frozenset[Origin] | None = (
            None
            if allowed_origins is None
            else frozenset(parse_origin(origin) for origin in allowed_origins)
        )

    def flow(self, request: Req) -> Generator[_Step, Any, None]:
        """Every decision about `request`, as steps for a driver to perform."""
        wire = self.wire
        url = url_parts(wire.url(request))
        target = origin_of(url)
        if self.allowed_origins is not None and target not in self.allowed_origins:
            yield _Send(request)
            return
        # S4: refuse before a byte is sent, and before any refresh.
        check_transport(url)
        replay = wire.replay(request)

        grant: Grant | None = yield _Acquire()
        assert grant is not None
        _authorize(wire, request, grant, target)
        response: Resp = yield _Send(request)

        if wire.status(response) != 401:
            return
        # S5: a 401 to a request that did not carry this token says nothing
        # about it: another origin answered, or a redirect chain came back
        # to this origin after the token had been dropped on the way.
        if origin_of(wire.answered_url(response)) != target:
            return
        if wire.answered_authorization(response) != _bearer(grant):
            return
        # R1: only a rejected token is worth a refresh.
        if not is_token_rejection(wire.challenges(response)):
            return
        logger.debug(
            "401 for access token %s (%s)",
            fingerprint(grant.tokens.access_token),
            wire.describe(request),
        )
        # Give the connection back to the pool before waiting for a refresh.
        yield _Release(response)

        if not replay.replayable:
            # R7: refresh so the next request succeeds, but never resend a
            # body that is gone; the caller gets this 401.
            try:
                yield _Recover(grant.generation)
            except RefreshUnavailable as exc:
                logger.debug("refresh after a one-shot upload failed for now: %s", exc)
            return

        fresh: Grant | None = yield _Recover(grant.generation)
        if fresh is None:
            return
        # R5: one resend at most; its answer, whatever it is, is the caller's.
        replay.rewind()
        _authorize(wire, request, fresh, target)
        yield _Send(request)

    def sync_steps(self, request: Req) -> Generator[Req, Resp, None]:
        """The flow with its waits done in this thread: yields each request
        to send and takes its response."""
        flow = self.flow(request)
        reply: Any = None
        error: ClientError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration:
                return
            error = None
            if isinstance(step, _Send):
                reply = yield step.request
            elif isinstance(step, _Acquire):
                reply = self.user._acquire()
            elif isinstance(step, _Recover):
                try:
                    reply = self.user._recover(step.generation)
                except ClientError as exc:
                    error = exc
            else:
                self.wire.release(step.response)
                reply = None

    async def async_steps(self, request: Req) -> AsyncGenerator[Req, Resp]:
        """The flow with its waits awaited on the running event loop."""
        flow = self.flow(request)
        reply: Any = None
        error: ClientError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration:
                return
            error = None
            if isinstance(step, _Send):
                reply = yield step.request
            elif isinstance(step, _Acquire):
                reply = await self.user._aacquire()
            elif isinstance(step, _Recover):
                try:
                    reply = await self.user._arecover(step.generation)
                except ClientError as exc:
                    error = exc
            else:
                await self.wire.arelease(step.response)
                reply = None


def _bearer(grant: Grant) -> str:
    # S6: always the access token, never the id token.
    return f"Bearer {grant.tokens.access_token}"


def _authorize(
    wire: Wire[Any, Any], request: Any, grant: Grant, target: Origin
) -> None:
    # S3: exactly one Authorization header, replacing any the caller set.
    wire.authorize(request, _bearer(grant), target)


def parse_origin(text: str) -> Origin:
    """An origin given by a person: ``https://api.example.com[:port]``."""
    url = httpx.URL(text)
    if url.scheme not in ("http", "https") or not url.host or url.path not in "/":
        raise ValueError(
            f"allowed_origins takes origins like 'https://api.example.com' or "
            f"'http://127.0.0.1:8000', not {text!r}"
        )
    return origin_of(url)

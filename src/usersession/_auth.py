"""`UserAuth`: the user's bearer token on every request of any httpx client.

One flow decides what happens to a request (whether it carries the token,
whether a 401 earns a refresh and a resend); a sync and an async driver
perform the waiting it asks for. Both therefore behave the same by
construction.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import httpx

from ._body import replay_for
from ._challenge import is_token_rejection
from ._errors import ClientError, RefreshUnavailable
from ._secrets import fingerprint
from ._urls import Origin, check_transport, origin_of
from ._user import Grant, User

__all__ = ["ORIGIN_EXTENSION", "UserAuth"]

logger = logging.getLogger("usersession")

#: Request extension naming the origin the token was attached for; a
#: redirect to any other origin must not carry it (see `Client`).
ORIGIN_EXTENSION = "usersession.origin"


@dataclasses.dataclass(frozen=True, slots=True)
class _Send:
    request: httpx.Request


@dataclasses.dataclass(frozen=True, slots=True)
class _Acquire:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class _Recover:
    generation: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Release:
    response: httpx.Response


_Step = _Send | _Acquire | _Recover | _Release


class UserAuth(httpx.Auth):
    """An httpx auth that sends a `User`'s access token and keeps it fresh.

    Use it with any `httpx.Client` or `httpx.AsyncClient`. `usersession.Client`
    and `usersession.AsyncClient` use it too, and add one guard it cannot
    give: the token is also dropped on a redirect from ``http`` to ``https``
    on the same host, which httpx itself keeps it for.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the token is sent only to these origins
            (``"https://api.example.com"``, with an optional port); a request
            to any other origin goes out without it.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self, user: User, *, allowed_origins: Iterable[str] | None = None
    ) -> None:
        self.user = user
        self.allowed_origins: frozenset[Origin] | None = (
            None
            if allowed_origins is None
            else frozenset(_parse_origin(origin) for origin in allowed_origins)
        )

    def __repr__(self) -> str:
        return f"UserAuth({self.user!r})"

    def _flow(self, request: httpx.Request) -> Generator[_Step, Any, None]:
        target = origin_of(request.url)
        if self.allowed_origins is not None and target not in self.allowed_origins:
            yield _Send(request)
            return
        # S4: refuse before a byte is sent, and before any refresh.
        check_transport(request.url)
        replay = replay_for(request)

        grant: Grant | None = yield _Acquire()
        assert grant is not None
        _authorize(request, grant, target)
        response: httpx.Response = yield _Send(request)

        if response.status_code != 401:
            return
        # S5: a 401 from an origin that never saw the token says nothing
        # about the token.
        if origin_of(response.request.url) != target:
            return
        # R1: only a rejected token is worth a refresh.
        if not is_token_rejection(response.headers.get_list("WWW-Authenticate")):
            return
        logger.debug(
            "401 for access token %s (%s %s)",
            fingerprint(grant.tokens.access_token),
            request.method,
            request.url.copy_with(query=None, fragment=None),
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
        _authorize(request, fresh, target)
        yield _Send(request)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._flow(request)
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
                step.response.read()
                reply = None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._flow(request)
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
                await step.response.aread()
                reply = None


def _authorize(request: httpx.Request, grant: Grant, target: Origin) -> None:
    # S3: exactly one Authorization header, replacing any the caller set.
    # S6: always the access token, never the id token.
    request.headers["Authorization"] = f"Bearer {grant.tokens.access_token}"
    request.extensions = {**request.extensions, ORIGIN_EXTENSION: target}


def _parse_origin(text: str) -> Origin:
    url = httpx.URL(text)
    if url.scheme not in ("http", "https") or not url.host or url.path not in "/":
        raise ValueError(
            f"allowed_origins takes origins like 'https://api.example.com' or "
            f"'http://127.0.0.1:8000', not {text!r}"
        )
    return origin_of(url)

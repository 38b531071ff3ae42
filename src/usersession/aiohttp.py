"""The user's session on aiohttp: `client_session` and `UserMiddleware`.

`client_session(user)` makes an `aiohttp.ClientSession` whose requests carry
the user's token, with the decisions every usersession client runs (one
refresh at a time per user, held requests, one resend, bodies never resent
empty). Needs the extra: ``pip install 'usersession[aiohttp]'`` (aiohttp
3.12.2 or later, for client middleware and reusable payloads).

aiohttp runs a client middleware once for every hop of a redirect chain, as
if each hop were a new request. To keep the token from a hop to another
origin (RFC 6454), `UserMiddleware` also listens to the session's request
tracing, which tells it when a call starts and when it follows a redirect;
that is why a session needs both the middleware and its `trace_config`,
which `client_session` installs.

Example::

    from usersession.aiohttp import client_session

    async with client_session(user) as session:
        async with session.get("https://api.example.com/me") as response:
            print(await response.json())
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from ._bearer import Bearer, Wire
from ._body import Replay
from ._urls import Origin, loggable, origin_of
from ._user import User

_NEEDS = (
    "usersession.aiohttp needs aiohttp 3.12.2 or later; install it with "
    "pip install 'usersession[aiohttp]'"
)

try:
    import aiohttp
    from aiohttp import ClientRequest, ClientResponse
    from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
    from aiohttp.payload import Payload
except ImportError as exc:
    raise ImportError(_NEEDS, name="aiohttp") from exc

# Client middleware came in 3.12; telling a body that can go again from one
# that is spent (Payload.consumed) in 3.12.2.
if not hasattr(Payload, "consumed"):
    raise ImportError(_NEEDS, name="aiohttp")

__all__ = ["UserMiddleware", "client_session"]


class _AiohttpWire(Wire[ClientRequest, ClientResponse]):
    __slots__ = ()

    def url(self, request: ClientRequest) -> Any:
        return request.url

    def describe(self, request: ClientRequest) -> str:
        return f"{request.method} {loggable(str(request.url))}"

    def authorize(
        self, request: ClientRequest, authorization: str, target: Origin
    ) -> None:
        request.headers["Authorization"] = authorization

    def replay(self, request: ClientRequest) -> Replay:
        # aiohttp knows whether a body can go again only once it has sent it:
        # bytes, forms, JSON and seekable files can (it rewinds files itself),
        # a drained async iterator or stream is marked consumed.
        def replayable() -> bool:
            body: Any = request.body
            return body == b"" or not bool(getattr(body, "consumed", True))

        return Replay(replayable)

    def status(self, response: ClientResponse) -> int:
        return response.status

    def challenges(self, response: ClientResponse) -> list[str]:
        return response.headers.getall("WWW-Authenticate", [])

    def answered_url(self, response: ClientResponse) -> Any:
        return response.url

    def answered_authorization(self, response: ClientResponse) -> str | None:
        return response.request_info.headers.get("Authorization")

    async def arelease(self, response: ClientResponse) -> None:
        # Reading the whole body keeps it for the caller and gives the
        # connection back to the pool; release() would make it unreadable.
        await response.read()


_WIRE = _AiohttpWire()


class UserMiddleware:
    """aiohttp client middleware sending a `User`'s access token.

    Install it together with its `trace_config`::

        auth = UserMiddleware(user)
        aiohttp.ClientSession(middlewares=[auth], trace_configs=[auth.trace_config])

    (`client_session` does this). One request goes out without the token
    with ``middlewares=()``.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the token is sent only to these origins;
            a request to any other origin goes out without it.

    Attributes:
        trace_config: The `aiohttp.TraceConfig` to install on the same
            session (``trace_configs=[middleware.trace_config]``).
    """

    def __init__(
        self, user: User, *, allowed_origins: Iterable[str] | None = None
    ) -> None:
        self._bearer: Bearer[ClientRequest, ClientResponse] = Bearer(
            user, _WIRE, allowed_origins
        )
        # The calls under way in each task, innermost last. A call's hops
        # run one after another in the task that made the call.
        self._calls: weakref.WeakKeyDictionary[
            asyncio.Task[Any], list[SimpleNamespace]
        ] = weakref.WeakKeyDictionary()
        self.trace_config = aiohttp.TraceConfig()
        self.trace_config.on_request_start.append(self._call_started)
        self.trace_config.on_request_redirect.append(self._call_redirected)
        self.trace_config.on_request_end.append(self._call_ended)
        self.trace_config.on_request_exception.append(self._call_ended)

    @property
    def user(self) -> User:
        return self._bearer.user

    @property
    def allowed_origins(self) -> frozenset[Origin] | None:
        return self._bearer.allowed_origins

    def __repr__(self) -> str:
        return f"usersession.aiohttp.UserMiddleware({self.user!r})"

    async def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        call = self._current_call()
        if call is None:
            raise RuntimeError(
                "UserMiddleware needs its trace config on the session: "
                "aiohttp.ClientSession(middlewares=[m], trace_configs=[m.trace_config])"
                ", or usersession.aiohttp.client_session(user)"
            )
        here = origin_of(request.url)
        if getattr(call, "redirected", False):
            # S5: a hop keeps the token only while the chain stays on the
            # origin it was attached for; once it left, it is gone for good.
            if getattr(call, "origin", None) != here:
                call.origin = None
                return await handler(request)
        else:
            call.origin = here
        steps = self._bearer.async_steps(request)
        try:
            outgoing = await anext(steps)
            while True:
                response = await handler(outgoing)
                try:
                    outgoing = await steps.asend(response)
                except StopAsyncIteration:
                    return response
        except BaseException:
            await steps.aclose()
            raise

    def _current_call(self) -> SimpleNamespace | None:
        task = asyncio.current_task()
        calls = None if task is None else self._calls.get(task)
        return calls[-1] if calls else None

    async def _call_started(
        self, session: Any, context: SimpleNamespace, params: Any
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._calls.setdefault(task, []).append(context)

    async def _call_redirected(
        self, session: Any, context: SimpleNamespace, params: Any
    ) -> None:
        context.redirected = True

    async def _call_ended(
        self, session: Any, context: SimpleNamespace, params: Any
    ) -> None:
        task = asyncio.current_task()
        calls = None if task is None else self._calls.get(task)
        if calls and context in calls:
            calls.remove(context)


def client_session(
    user: User,
    *,
    allowed_origins: Iterable[str] | None = None,
    middlewares: Sequence[ClientMiddlewareType] = (),
    trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    **kwargs: Any,
) -> aiohttp.ClientSession:
    """An `aiohttp.ClientSession` whose requests carry `user`'s access token.

    Every keyword argument of `aiohttp.ClientSession` is accepted. Your own
    middlewares run first; the token is set last, just before sending.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the only origins that receive the token.
    """
    auth = UserMiddleware(user, allowed_origins=allowed_origins)
    return aiohttp.ClientSession(
        middlewares=(*middlewares, auth),
        trace_configs=[*(trace_configs or ()), auth.trace_config],
        **kwargs,
    )

"""What the httpx and httpx2 edges share.

httpx2 continues httpx with the same requests, responses, auth protocol and
event hooks under another module name. Everything here works on either
library's objects; the public classes of each edge (`usersession.Client`,
`usersession.httpx2.Client`, ...) are thin shells over it that differ only in
the base class they extend.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import Any, ClassVar

from ._bearer import Bearer, Wire
from ._body import Replay, replay_for
from ._urls import Origin, URLParts, loggable, origin_of
from ._user import User

__all__ = [
    "ORIGIN_EXTENSION",
    "BearerAuth",
    "HttpxWire",
    "astrip_foreign_token",
    "client_kwargs",
    "strip_foreign_token",
]

#: Request extension naming the origin the token was attached for; a
#: redirect to any other origin must not carry it (see `strip_foreign_token`).
ORIGIN_EXTENSION = "usersession.origin"


class HttpxWire(Wire[Any, Any]):
    """httpx's (or httpx2's) requests and responses.

    Args:
        byte_stream: The library's in-memory body class (``httpx.ByteStream``).
    """

    __slots__ = ("_byte_stream",)

    def __init__(self, byte_stream: type) -> None:
        self._byte_stream = byte_stream

    def url(self, request: Any) -> URLParts:
        url: URLParts = request.url
        return url

    def describe(self, request: Any) -> str:
        return f"{request.method} {loggable(str(request.url))}"

    def authorize(self, request: Any, authorization: str, target: Origin) -> None:
        request.headers["Authorization"] = authorization
        # A new dict: the caller's own extensions mapping stays untouched.
        request.extensions = {**request.extensions, ORIGIN_EXTENSION: target}

    def replay(self, request: Any) -> Replay:
        return replay_for(request, self._byte_stream)

    def status(self, response: Any) -> int:
        status: int = response.status_code
        return status

    def challenges(self, response: Any) -> list[str]:
        values: list[str] = response.headers.get_list("WWW-Authenticate")
        return values

    def answered_url(self, response: Any) -> URLParts:
        url: URLParts = response.request.url
        return url

    def answered_authorization(self, response: Any) -> str | None:
        value: str | None = response.request.headers.get("Authorization")
        return value

    def release(self, response: Any) -> None:
        response.read()

    async def arelease(self, response: Any) -> None:
        await response.aread()


class BearerAuth:
    """The body of `UserAuth` for httpx and httpx2; each library's class
    adds only its own ``Auth`` base, its wire and its name."""

    requires_request_body = False
    requires_response_body = False

    _wire: ClassVar[HttpxWire]
    _name: ClassVar[str]

    def __init__(
        self, user: User, *, allowed_origins: Iterable[str] | None = None
    ) -> None:
        self._bearer: Bearer[Any, Any] = Bearer(user, self._wire, allowed_origins)

    @property
    def user(self) -> User:
        return self._bearer.user

    @property
    def allowed_origins(self) -> frozenset[Origin] | None:
        return self._bearer.allowed_origins

    def __repr__(self) -> str:
        return f"{self._name}({self.user!r})"

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        return self._bearer.sync_steps(request)

    def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        return self._bearer.async_steps(request)


def strip_foreign_token(request: Any) -> None:
    """Request hook: drop the token from a request to another origin.

    S5: the token goes only to the origin it was attached for. httpx drops it
    on cross-origin redirects except from http to https on the same host; a
    change of scheme is a change of origin (RFC 6454), so drop it there too.
    """
    origin = request.extensions.get(ORIGIN_EXTENSION)
    if origin is not None and origin_of(request.url) != origin:
        request.headers.pop("Authorization", None)


async def astrip_foreign_token(request: Any) -> None:
    strip_foreign_token(request)


def client_kwargs(kwargs: dict[str, Any], strip: Callable[..., Any]) -> dict[str, Any]:
    """A client's keyword arguments with the redirect guard added last."""
    if "auth" in kwargs:
        raise TypeError(
            "usersession clients always send the user's token; to send one "
            "request without it, pass auth=None to that request"
        )
    given: Mapping[str, list[Callable[..., Any]]] = kwargs.get("event_hooks") or {}
    hooks = {key: list(value) for key, value in given.items()}
    # Last, so that no hook of the caller's can put the header back.
    hooks["request"] = [*hooks.get("request", []), strip]
    return {**kwargs, "event_hooks": hooks}

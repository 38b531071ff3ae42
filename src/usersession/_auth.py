"""`UserAuth`: the user's bearer token on every request of any httpx client."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable

import httpx

from ._bearer import Bearer
from ._httpx_family import ORIGIN_EXTENSION, HttpxWire
from ._urls import Origin
from ._user import User

__all__ = ["ORIGIN_EXTENSION", "UserAuth"]

_WIRE = HttpxWire(httpx.ByteStream)


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
        self._bearer: Bearer[httpx.Request, httpx.Response] = Bearer(
            user, _WIRE, allowed_origins
        )

    @property
    def user(self) -> User:
        return self._bearer.user

    @property
    def allowed_origins(self) -> frozenset[Origin] | None:
        return self._bearer.allowed_origins

    def __repr__(self) -> str:
        return f"usersession.UserAuth({self.user!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        return self._bearer.sync_steps(request)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self._bearer.async_steps(request)

"""`UserAuth`: the user's bearer token on every request of any httpx client."""

from __future__ import annotations

import httpx

from ._httpx_family import ORIGIN_EXTENSION, BearerAuth, HttpxWire

__all__ = ["ORIGIN_EXTENSION", "UserAuth"]


class UserAuth(BearerAuth, httpx.Auth):
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

    _wire = HttpxWire(httpx.ByteStream)
    _name = "usersession.UserAuth"

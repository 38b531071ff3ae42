"""The user's session on httpx2: `Client`, `AsyncClient` and `UserAuth`.

httpx2 continues httpx under a new module name with the same API. These
classes behave exactly as ``usersession.Client``, ``usersession.AsyncClient``
and ``usersession.UserAuth`` do on httpx: they run the same code, and differ
only in the httpx2 class they extend. Needs the extra:
``pip install 'usersession[httpx2]'``.

Example::

    from usersession.httpx2 import Client

    with Client(user) as client:
        client.get("https://api.example.com/me")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._httpx_family import (
    BearerAuth,
    HttpxWire,
    astrip_foreign_token,
    client_kwargs,
    strip_foreign_token,
)
from ._user import User

try:
    import httpx2
except ImportError as exc:
    raise ImportError(
        "usersession.httpx2 needs the httpx2 package; install it with "
        "pip install 'usersession[httpx2]'",
        name="httpx2",
    ) from exc

__all__ = ["AsyncClient", "Client", "UserAuth"]


class UserAuth(BearerAuth, httpx2.Auth):
    """An httpx2 auth that sends a `User`'s access token and keeps it fresh.

    Use it with any `httpx2.Client` or `httpx2.AsyncClient`. `Client` and
    `AsyncClient` below use it too, and also drop the token on a redirect
    from ``http`` to ``https`` on the same host, which httpx2 itself keeps
    it for.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the token is sent only to these origins;
            a request to any other origin goes out without it.
    """

    _wire = HttpxWire(httpx2.ByteStream)
    _name = "usersession.httpx2.UserAuth"


class Client(httpx2.Client):
    """An `httpx2.Client` whose requests carry `user`'s access token.

    Every keyword argument of `httpx2.Client` is accepted, except ``auth``.
    A single request can go out without the token with ``auth=None``.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the only origins that receive the token.
    """

    def __init__(
        self,
        user: User,
        *,
        allowed_origins: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = client_kwargs(kwargs, strip_foreign_token)
        super().__init__(auth=UserAuth(user, allowed_origins=allowed_origins), **kwargs)
        self.user = user


class AsyncClient(httpx2.AsyncClient):
    """An `httpx2.AsyncClient` whose requests carry `user`'s access token.

    Every keyword argument of `httpx2.AsyncClient` is accepted, except
    ``auth``. A single request can go out without the token with
    ``auth=None``.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the only origins that receive the token.
    """

    def __init__(
        self,
        user: User,
        *,
        allowed_origins: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = client_kwargs(kwargs, astrip_foreign_token)
        super().__init__(auth=UserAuth(user, allowed_origins=allowed_origins), **kwargs)
        self.user = user

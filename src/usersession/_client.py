"""`Client` and `AsyncClient`: httpx clients bound to one `User`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from ._auth import UserAuth
from ._httpx_family import astrip_foreign_token, client_kwargs, strip_foreign_token
from ._user import User

__all__ = ["AsyncClient", "Client"]


class Client(httpx.Client):
    """An `httpx.Client` whose requests carry `user`'s access token.

    Every keyword argument of `httpx.Client` is accepted, except ``auth``.
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


class AsyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose requests carry `user`'s access token.

    Every keyword argument of `httpx.AsyncClient` is accepted, except
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

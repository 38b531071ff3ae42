"""`Client` and `AsyncClient`: httpx clients bound to one `User`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from ._auth import ORIGIN_EXTENSION, UserAuth
from ._urls import origin_of
from ._user import User

__all__ = ["AsyncClient", "Client"]


def _strip_foreign_token(request: httpx.Request) -> None:
    # S5: the token goes only to the origin it was attached for. httpx drops
    # it on cross-origin redirects except from http to https on the same
    # host; a change of scheme is a change of origin (RFC 6454), so drop it
    # there too.
    origin = request.extensions.get(ORIGIN_EXTENSION)
    if origin is not None and origin_of(request.url) != origin:
        request.headers.pop("Authorization", None)


async def _astrip_foreign_token(request: httpx.Request) -> None:
    _strip_foreign_token(request)


def _hooks(
    given: Mapping[str, list[Callable[..., Any]]] | None,
    strip: Callable[..., Any],
) -> dict[str, list[Callable[..., Any]]]:
    hooks = {key: list(value) for key, value in (given or {}).items()}
    # Last, so that no hook of the caller's can put the header back.
    hooks["request"] = [*hooks.get("request", []), strip]
    return hooks


def _no_auth_kwarg(kwargs: Mapping[str, Any]) -> None:
    if "auth" in kwargs:
        raise TypeError(
            "usersession clients always send the user's token; to send one "
            "request without it, pass auth=None to that request"
        )


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
        _no_auth_kwarg(kwargs)
        kwargs["event_hooks"] = _hooks(kwargs.get("event_hooks"), _strip_foreign_token)
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
        _no_auth_kwarg(kwargs)
        kwargs["event_hooks"] = _hooks(kwargs.get("event_hooks"), _astrip_foreign_token)
        super().__init__(auth=UserAuth(user, allowed_origins=allowed_origins), **kwargs)
        self.user = user

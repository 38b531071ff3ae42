"""The user's session on requests: `Session` and `UserAuth`.

`Session` is a `requests.Session` bound to a `User`; `UserAuth` puts the same
behaviour on a session you already have (``session.auth = UserAuth(user)``).
Both run the decisions every usersession client runs (one refresh at a time
per user, held requests, one resend, bodies never resent empty). Needs the
extra: ``pip install 'usersession[requests]'``.

requests applies an auth while it prepares a request and reports each
response to hooks, so `UserAuth` waits for a refresh under way when the
request is prepared, and a response hook handles a 401: it waits for the
refresh and resends the request once through the same connection adapter.

Example::

    from usersession.requests import Session

    with Session(user) as session:
        session.get("https://api.example.com/me")
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ._bearer import Bearer, Wire
from ._body import FIXED, Replay, seekable_file
from ._urls import Origin, loggable, origin_of
from ._user import User

try:
    import requests
    from requests.auth import AuthBase
except ImportError as exc:
    raise ImportError(
        "usersession.requests needs the requests package; install it with "
        "pip install 'usersession[requests]'",
        name="requests",
    ) from exc

__all__ = ["NO_TOKEN", "Session", "UserAuth"]


class _RequestsWire(Wire[requests.PreparedRequest, requests.Response]):
    __slots__ = ()

    def url(self, request: requests.PreparedRequest) -> str:
        return request.url or ""

    def describe(self, request: requests.PreparedRequest) -> str:
        return f"{request.method} {loggable(request.url or '')}"

    def authorize(
        self, request: requests.PreparedRequest, authorization: str, target: Origin
    ) -> None:
        request.headers["Authorization"] = authorization

    def replay(self, request: requests.PreparedRequest) -> Replay:
        body: Any = request.body
        # Bytes, text, forms, JSON and multipart: requests renders them in
        # memory. A file is sent from where it stands; anything else (a
        # generator or iterator) streams once.
        if body is None or isinstance(body, bytes | str):
            return FIXED
        return seekable_file(body)

    def status(self, response: requests.Response) -> int:
        return response.status_code

    def challenges(self, response: requests.Response) -> list[str]:
        # requests joins repeated fields with commas, which is still a valid
        # list of challenges (RFC 9110 11.6.1).
        value = response.headers.get("WWW-Authenticate")
        return [] if value is None else [value]

    def answered_url(self, response: requests.Response) -> str:
        return response.request.url or ""

    def answered_authorization(self, response: requests.Response) -> str | None:
        value = response.request.headers.get("Authorization")
        return value.decode("latin-1") if isinstance(value, bytes) else value

    def release(self, response: requests.Response) -> None:
        # Keep the body for the caller, give the connection back to the pool.
        _ = response.content
        response.close()


_WIRE = _RequestsWire()


class _Resume:
    """Response hook of one request: carries its flow past the first answer."""

    __slots__ = ("_steps",)

    def __init__(
        self,
        steps: Generator[requests.PreparedRequest, requests.Response, None],
    ) -> None:
        self._steps: (
            Generator[requests.PreparedRequest, requests.Response, None] | None
        ) = steps

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        steps = self._steps
        # A redirect that requests follows comes back through this hook with
        # its next hop; the flow judges the answer at the end of the chain,
        # as it does on httpx.
        if steps is None or response.is_redirect:
            return response
        try:
            again = steps.send(response)
        except StopIteration:
            self._steps = None
            return response
        # R5: the one resend. A connection adapter's send runs no hooks, so
        # its answer is final, whatever it is.
        self._steps = None
        resent = _resend(again, response, kwargs)
        steps.close()
        return resent

    def __repr__(self) -> str:
        return "usersession.requests response hook"


def _resend(
    request: requests.PreparedRequest, rejected: requests.Response, kwargs: Any
) -> requests.Response:
    # Resend the hop that met the 401, which the flow found on the token's
    # own origin: after a redirect that is not the first request, and
    # requests builds any further hop from the one sent last.
    prepared = rejected.request.copy()
    prepared.headers["Authorization"] = request.headers["Authorization"]
    adapter: Any = rejected.connection
    resent: requests.Response = adapter.send(prepared, **kwargs)
    resent.history.append(rejected)
    resent.request = prepared
    return resent


class UserAuth(AuthBase):
    """A requests auth that sends a `User`'s access token and keeps it fresh.

    Set it on any session (``session.auth = UserAuth(user)``) or pass it to
    one call (``requests.get(url, auth=UserAuth(user))``). `Session` uses it
    too, and also drops the token on every redirect that changes origin;
    requests itself keeps it for a redirect from ``http`` to ``https`` on the
    same host.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the token is sent only to these origins;
            a request to any other origin goes out without it.
    """

    def __init__(
        self, user: User, *, allowed_origins: Iterable[str] | None = None
    ) -> None:
        self._bearer: Bearer[requests.PreparedRequest, requests.Response] = Bearer(
            user, _WIRE, allowed_origins
        )

    @property
    def user(self) -> User:
        return self._bearer.user

    @property
    def allowed_origins(self) -> frozenset[Origin] | None:
        return self._bearer.allowed_origins

    def __repr__(self) -> str:
        return f"usersession.requests.UserAuth({self.user!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        steps = self._bearer.sync_steps(request)
        # S1, S2, S4 and R4 happen here, before requests opens a connection.
        first = next(steps)
        request.register_hook("response", _Resume(steps))
        return first


class _NoToken(AuthBase):
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def __repr__(self) -> str:
        return "usersession.requests.NO_TOKEN"


#: Pass as ``auth=NO_TOKEN`` to send one request of a `Session` without the
#: token (requests falls back to the session's auth for ``auth=None``).
NO_TOKEN: AuthBase = _NoToken()


class Session(requests.Session):
    """A `requests.Session` whose requests carry `user`'s access token.

    A single request goes out without the token with ``auth=NO_TOKEN``.

    Args:
        user: Whose token to send.
        allowed_origins: If given, the only origins that receive the token.
    """

    def __init__(
        self, user: User, *, allowed_origins: Iterable[str] | None = None
    ) -> None:
        super().__init__()
        self.auth = UserAuth(user, allowed_origins=allowed_origins)
        self.user = user

    def __repr__(self) -> str:
        return f"usersession.requests.Session({self.user!r})"

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        # S5: a redirect that changes scheme, host or port (RFC 6454) never
        # carries the token; requests alone keeps it from http to https.
        previous = response.request.url or ""
        if origin_of(prepared_request.url or "") != origin_of(previous):
            prepared_request.headers.pop("Authorization", None)
        super().rebuild_auth(prepared_request, response)

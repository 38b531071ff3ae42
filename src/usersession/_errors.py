"""The errors usersession raises.

Every error derives from `ClientError`:

    ClientError
     ├── InvalidUser            logged out, or no access token
     │    └── UserRefreshFailed refused for good; the user is now logged out
     ├── RefreshUnavailable     no refresh now; the user stays logged in
     ├── InsecureTransport      a token would travel over plain HTTP
     └── StoreError             a token store could not be read or written

`UserRefreshFailed` is an `InvalidUser`, so a program that only wants to know
"must this person log in again?" can catch `InvalidUser` alone.

No error message ever holds a token, a client secret or a verifier: the
excerpts of server answers that errors carry are scrubbed first.
"""

from __future__ import annotations

import httpx

__all__ = [
    "ClientError",
    "InsecureTransport",
    "InvalidUser",
    "RefreshUnavailable",
    "StoreError",
    "UserRefreshFailed",
]


class ClientError(Exception):
    """Base class of every error raised by usersession."""


class InvalidUser(ClientError):
    """The user is logged out, or has no access token to send.

    Raised before any byte of the request is sent. The way out is a new login.
    """


class UserRefreshFailed(InvalidUser):
    """The authorization server refused the refresh for good.

    The user has been logged out: tokens are cleared in memory and in the
    store. Every request that was waiting for this refresh raises this error.

    Attributes:
        error: The OAuth error code from the token endpoint (RFC 6749 section
            5.2), such as ``"invalid_grant"``; ``"invalid_client"`` for a
            401 that named no code; ``None`` when no token request was made
            (the user had no refresh token).
        description: The server's ``error_description``, scrubbed of secrets.
        status_code: The HTTP status of the token endpoint's answer, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        description: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status_code = status_code

    def clone(self) -> UserRefreshFailed:
        """Return a fresh copy, so each waiting request raises its own object."""
        return UserRefreshFailed(
            str(self),
            error=self.error,
            description=self.description,
            status_code=self.status_code,
        )


class RefreshUnavailable(ClientError):
    """The refresh could not be done now; the user stays logged in.

    Causes: the token endpoint could not be reached or timed out, answered
    5xx or 429, said ``temporarily_unavailable``, or answered something that
    is not a token response. Every token is kept, so a later request can try
    again.

    Attributes:
        status_code: The HTTP status of the answer, or ``None`` when there was
            no answer (connection error, timeout).
        body_excerpt: The first characters of the answer, scrubbed of secrets.
        retry_after: Seconds the server asked us to wait (``Retry-After``,
            given in seconds or as an HTTP date), or ``None``.
        error: The OAuth error code when the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.error = error

    def clone(self) -> RefreshUnavailable:
        """Return a fresh copy, so each waiting request raises its own object."""
        copy = RefreshUnavailable(
            str(self),
            status_code=self.status_code,
            body_excerpt=self.body_excerpt,
            retry_after=self.retry_after,
            error=self.error,
        )
        copy.__cause__ = self.__cause__
        return copy


class InsecureTransport(ClientError):
    """A token would have been sent over plain HTTP to a host that is not loopback.

    Tokens travel only over HTTPS, or over HTTP to 127.0.0.0/8, ``::1`` or
    ``localhost``. Use an ``https://`` URL.
    """

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class StoreError(ClientError):
    """A token store could not be read or written.

    A refresh that meets this error fails for now (`RefreshUnavailable`),
    never for good: an unreachable store never logs a user out.
    """

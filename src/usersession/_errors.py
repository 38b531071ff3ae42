"""The errors usersession raises.

Every error derives from `ClientError`:

    ClientError
     ├── InvalidUser            logged out, or no access token
     │    └── UserRefreshFailed refused for good; the user is now logged out
     ├── RefreshUnavailable     no refresh now; the user stays logged in
     ├── InsecureTransport      a token would travel over plain HTTP
     ├── StoreError             a token store could not be read or written
     ├── LoginError             a login did not produce tokens
     │    ├── AccessDenied      the person (or the server) said no
     │    ├── DeviceCodeExpired the device code expired before approval
     │    └── LoginTimedOut     no answer came in the time allowed
     └── TokenCheckError        (resource servers) a bearer token was not accepted
          ├── InvalidToken      not active: unknown, expired, revoked (401)
          ├── InsufficientScope active, but lacks a scope needed (403)
          └── IntrospectionUnavailable  no trustworthy answer now (503)

`UserRefreshFailed` is an `InvalidUser`, so a program that only wants to know
"must this person log in again?" can catch `InvalidUser` alone.

No error message ever holds a token, a client secret or a verifier: the
excerpts of server answers that errors carry are scrubbed first.
"""

from __future__ import annotations

import httpx

__all__ = [
    "AccessDenied",
    "ClientError",
    "DeviceCodeExpired",
    "InsecureTransport",
    "InsufficientScope",
    "IntrospectionUnavailable",
    "InvalidToken",
    "InvalidUser",
    "LoginError",
    "LoginTimedOut",
    "RefreshUnavailable",
    "StoreError",
    "TokenCheckError",
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


class LoginError(ClientError):
    """A login (device, browser or client credentials) did not produce tokens.

    Attributes:
        error: The OAuth error code the server sent (RFC 6749 sections 4.1.2.1
            and 5.2, RFC 8628 section 3.5), or ``None`` when there was none.
        description: The server's ``error_description``, scrubbed of secrets
            and cut short.
        status_code: The HTTP status of the server's answer, if any.
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


class AccessDenied(LoginError):
    """The person declined the login, or the server refused it
    (``access_denied``)."""


class DeviceCodeExpired(LoginError):
    """The authorization server says the device code expired before the person
    approved it (``expired_token``, RFC 8628 section 3.5). Start again."""


class LoginTimedOut(LoginError):
    """No approval came in time: the browser never returned to the loopback
    redirect, or the device code's ``expires_in`` passed while polling."""


class TokenCheckError(ClientError):
    """A resource server could not accept a bearer token (RFC 6750 section 3.1).

    Raised by `Introspector` and turned into an HTTP answer by the ASGI and
    WSGI integrations. The message never quotes the token.

    Attributes:
        status_code: The HTTP status a resource server answers with.
        error: The RFC 6750 error code for the ``WWW-Authenticate``
            challenge, or ``None`` when the answer carries no challenge.
    """

    status_code = 401
    error: str | None = "invalid_token"


class InvalidToken(TokenCheckError):
    """The token is not active (RFC 7662 section 2.2): unknown, expired,
    revoked, issued to a client this resource does not serve, or answered
    with anything but a JSON ``true`` in ``active``. Answer 401
    ``invalid_token``."""


class InsufficientScope(TokenCheckError):
    """The token is active but lacks a scope the resource needs. Answer 403
    ``insufficient_scope`` naming the scope (RFC 6750 section 3.1).

    Attributes:
        required: Every scope the resource needs, in the order given.
        missing: Those the token lacks.
    """

    status_code = 403
    error = "insufficient_scope"

    def __init__(
        self, message: str, *, required: tuple[str, ...], missing: frozenset[str]
    ) -> None:
        super().__init__(message)
        self.required = required
        self.missing = missing


class IntrospectionUnavailable(TokenCheckError):
    """No trustworthy introspection answer could be had now: the endpoint was
    unreachable, timed out, answered 5xx, refused our client authentication
    (401 or 403) or sent something that is not an introspection answer.

    The resource fails closed: answer 503. Nothing is cached, so the next
    request asks again.

    Attributes:
        status_code: Always 503, the status to answer with.
        upstream_status: The introspection endpoint's HTTP status, or
            ``None`` when no answer came.
        body_excerpt: The start of its answer, scrubbed of secrets.
        retry_after: Seconds until the endpoint asked to be called again
            (its ``Retry-After``), or ``None``.
    """

    status_code = 503
    error = None

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after

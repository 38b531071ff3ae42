"""The development server: an authorization server and a demo API."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from .._errors import InvalidToken
from .._introspection import Introspector
from .._provider import Provider
from ._api import DemoAPI, SeenRequest
from ._authserver import AUTH_FAULT_ENDPOINTS, AuthorizationServerApp
from ._faults import Fault, FaultQueue
from ._http import Listener
from ._logins import LoginSettings
from ._stats import Counters, Stats
from ._tokens import TokenTables

#: Endpoint names accepted by :meth:`DevServer.inject`.
ENDPOINTS = (*AUTH_FAULT_ENDPOINTS, "api")


class DevServer:
    """An OAuth 2.0 authorization server and a protected demo API on loopback.

    Both listen on 127.0.0.1 (two ports, so two origins) and keep everything
    in memory. Logins are issued directly with :meth:`login`, or over HTTP:
    the authorization endpoint (PKCE S256 required, loopback redirects, the
    request approved at once for :attr:`login_settings` ``.subject``) and the
    device flow (approve with :meth:`approve_device`, or on the ``/device``
    page). The token, revocation and introspection endpoints speak real HTTP.
    Counters and injectable faults make it fit for concurrency tests.

    Args:
        access_token_lifetime: Seconds an access token lives; None: forever.
        refresh_token_lifetime: Seconds a refresh token lives; None: forever.
        rotate_refresh_tokens: Issue a new refresh token on every refresh and
            treat a second use of the old one as theft (the grant is revoked).
            Without rotation the refresh token stays valid and refresh answers
            omit it.
        include_expires_in: Put ``expires_in`` in token answers; False hides
            the expiry from clients.
        clock: Wall clock in epoch seconds, for expiry; tests can pass a fake
            to move server time forward.
        host: Loopback address to listen on.
        port: The authorization server's port; 0 (the default) takes a free
            one.
        api_port: The demo API's port; 0 (the default) takes a free one.

    Example:
        >>> with DevServer() as dev:  # doctest: +SKIP
        ...     tokens = dev.login("alice")
    """

    def __init__(
        self,
        *,
        access_token_lifetime: float | None = 60.0,
        refresh_token_lifetime: float | None = None,
        rotate_refresh_tokens: bool = True,
        include_expires_in: bool = True,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        api_port: int = 0,
    ) -> None:
        self._tables = TokenTables(
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            include_expires_in=include_expires_in,
            clock=clock,
        )
        self._counters = Counters()
        self._faults = FaultQueue(AUTH_FAULT_ENDPOINTS)
        self._app = AuthorizationServerApp(
            self._tables, self._counters, self._faults, lambda: self.issuer
        )
        self._listener = Listener(self._app, host, "auth", port)
        self.api = DemoAPI(self._validate, host=host, port=api_port)
        """The demo API, validating tokens by introspection at this server."""
        self.client_id = "usersession-dev"
        """The default confidential client."""
        self._client_secret = secrets.token_urlsafe(24)
        self.public_client_id = "usersession-dev-public"
        """The default public client (token_endpoint_auth_method none)."""
        self._tables.add_client(self.client_id, self._client_secret)
        self._tables.add_client(self.public_client_id, None)
        self.api_client_id = "usersession-dev-api"
        """The demo API's own confidential client, for introspection."""
        self._api_client_secret = secrets.token_urlsafe(24)
        self._tables.add_client(self.api_client_id, self._api_client_secret)
        self._clock = clock
        self._introspector: Introspector | None = None
        # A revoked token must be refused by the demo API at once, as before
        # it validated by introspection: the server tells its cache.
        self._tables.on_invalidate.append(self._forget_introspections)

    def __repr__(self) -> str:
        # No secret here: reprs end up in logs and assertion messages.
        try:
            return f"DevServer(issuer={self.issuer!r}, api_url={self.api_url!r})"
        except RuntimeError:
            return "DevServer(not started)"

    # Lifecycle

    def start(self) -> DevServer:
        """Bind the ports on loopback (free ones by default) and start serving.

        Raises:
            RuntimeError: Already started, or stopped (a server runs once).
            OSError: A port asked for is taken.
        """
        self._listener.start()
        # The demo API checks tokens the way a real resource server would:
        # RFC 7662 introspection at this server, with a client of its own,
        # through usersession's Introspector (answers cached 30 s at most).
        self._introspector = Introspector(
            Provider(
                self.token_endpoint,
                self.api_client_id,
                self._api_client_secret,
                introspection_endpoint=self.introspection_endpoint,
                timeout=5.0,
            ),
            clock=self._clock,
        )
        try:
            self.api.start()
        except BaseException:
            self._listener.stop()
            self._introspector.close()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers, close every socket and join the threads."""
        self.api.stop()
        self._listener.stop()
        if self._introspector is not None:
            self._introspector.close()

    def __enter__(self) -> DevServer:
        return self.start()

    def _validate(self, token: str) -> dict[str, Any] | None:
        """The demo API's validator: the claims of a live access token.

        Raises:
            IntrospectionUnavailable: Introspection failed; the demo API
                answers 503.
        """
        introspector = self._introspector
        if introspector is None:
            raise RuntimeError("the server is not started")
        try:
            claims = introspector.check(token)
        except InvalidToken:
            return None
        # Refresh tokens are active at introspection too, but only access
        # tokens (token_type Bearer here) are accepted as bearer tokens.
        if claims.raw.get("token_type") != "Bearer":
            return None
        return dict(claims.raw)

    def _forget_introspections(self) -> None:
        if self._introspector is not None:
            self._introspector.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Addresses

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:<port>``, the authorization server's issuer."""
        return self._listener.base_url

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL."""
        return f"{self.issuer}/token"

    @property
    def revocation_endpoint(self) -> str:
        """The RFC 7009 revocation endpoint URL."""
        return f"{self.issuer}/revoke"

    @property
    def introspection_endpoint(self) -> str:
        """The RFC 7662 introspection endpoint URL."""
        return f"{self.issuer}/introspect"

    @property
    def authorization_endpoint(self) -> str:
        """The authorization endpoint URL (RFC 6749 3.1)."""
        return f"{self.issuer}/authorize"

    @property
    def device_authorization_endpoint(self) -> str:
        """The RFC 8628 device authorization endpoint URL."""
        return f"{self.issuer}/device_authorization"

    @property
    def device_verification_uri(self) -> str:
        """The page where a person approves or denies a device login."""
        return f"{self.issuer}/device"

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document URL."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def api_url(self) -> str:
        """Base URL of the demo API (another port, so another origin)."""
        return self.api.url

    @property
    def client_secret(self) -> str:
        """The default client's secret, random per server."""
        return self._client_secret

    def metadata(self) -> dict[str, Any]:
        """The authorization server metadata document (RFC 8414)."""
        return self._app.metadata()

    # Clients and tokens

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] | None = None,
    ) -> None:
        """Register a client; ``client_secret`` None makes it public.

        Args:
            client_id: The client's id.
            client_secret: Its secret; None for a public client.
            redirect_uris: Where the authorization endpoint may send it back;
                a loopback ``http`` URI without a port matches any port
                (RFC 8252 7.3). Default: ``http://127.0.0.1/callback``, and
                the same on ``[::1]`` and ``localhost``.
        """
        self._tables.add_client(client_id, client_secret)
        if redirect_uris is not None:
            self._app.logins.register_redirect_uris(client_id, redirect_uris)

    # Logins over HTTP

    @property
    def login_settings(self) -> LoginSettings:
        """How the authorization endpoint and the device flow behave: the
        subject approved, denial, a wrong ``state`` or ``iss``, the device
        ``interval`` (or none) and ``expires_in``, forced ``slow_down``.
        Change its attributes at any time."""
        return self._app.logins.settings

    def approve_device(self, user_code: str, subject: str | None = None) -> None:
        """Approve the device login showing `user_code` (dashes optional).

        Args:
            user_code: The user code from the device authorization answer.
            subject: Who logs in; default ``login_settings.subject``.

        Raises:
            ValueError: No pending, unexpired device login has that code.
        """
        if not self._app.logins.decide_device(user_code, approve=True, subject=subject):
            raise ValueError("no pending device login has that user code")

    def deny_device(self, user_code: str) -> None:
        """Deny the device login showing `user_code`: its polls then get
        ``access_denied``.

        Raises:
            ValueError: No pending, unexpired device login has that code.
        """
        if not self._app.logins.decide_device(user_code, approve=False):
            raise ValueError("no pending device login has that user code")

    def redirect_uris_seen(self) -> list[tuple[str, str]]:
        """The ``redirect_uri`` of the latest authorization requests and
        token requests that carried one, as ``(endpoint, uri)`` pairs with
        endpoint ``"authorization"`` or ``"token"``, oldest first."""
        return self._app.logins.redirect_uris_seen()

    def login(
        self,
        subject: str = "alice",
        scope: str = "openid profile offline_access",
        client_id: str | None = None,
        *,
        refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Issue a grant directly, as if ``subject`` had logged in.

        Args:
            subject: The user (``sub``).
            scope: Space-separated scope; ``openid`` adds an (opaque) id token.
            client_id: The client the grant belongs to; default :attr:`client_id`.
            refresh_token: Whether to issue a refresh token.

        Returns:
            The token response payload, as the token endpoint would send it.
        """
        return self._tables.login(
            client_id or self.client_id, subject, scope, refresh_token=refresh_token
        )

    def revoke_access_token(self, token: str) -> bool:
        """Revoke one access token server-side; returns whether it was known."""
        return self._tables.revoke_access_token(token)

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token and its whole grant; returns whether it was known."""
        return self._tables.revoke_refresh_token(token)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        self._tables.expire_access_tokens()

    def expire_refresh_tokens(self) -> None:
        """Make every refresh token issued so far expired."""
        self._tables.expire_refresh_tokens()

    # Faults

    def inject(self, endpoint: str, fault: Fault, times: int | None = 1) -> None:
        """Queue a fault for the next ``times`` requests to an endpoint.

        Args:
            endpoint: ``"token"``, ``"revocation"``, ``"introspection"``,
                ``"discovery"`` or ``"api"``. Faults on ``"introspection"``
                also meet the demo API's own checks of tokens it has not
                cached (it then answers 503).
            fault: What to do instead of (or around) the normal answer.
            times: How many requests it affects; None: until cleared.
        """
        if endpoint == "api":
            self.api.inject(fault, times)
        else:
            self._faults.add(endpoint, fault, times)

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Forget queued faults of one endpoint, or of all."""
        if endpoint != "api":
            self._faults.clear(endpoint)  # raises for an unknown name
        if endpoint in (None, "api"):
            self.api.clear_faults()

    def pending_faults(self, endpoint: str) -> int | None:
        """Requests still to be faulted; None if a fault repeats until cleared."""
        if endpoint == "api":
            return self.api.pending_faults()
        return self._faults.pending(endpoint)

    def refuse_connections(self, refuse: bool = True) -> None:
        """Close the authorization server's listening socket, or reopen it.

        While refusing, clients get "connection refused" from the token,
        revocation, introspection and discovery endpoints; open keep-alive
        connections are closed too. Reopening binds the same port.
        """
        self._listener.refuse_connections(refuse)

    # Records

    def stats(self) -> Stats:
        """A snapshot of the counters of both servers."""
        counts = dataclasses.asdict(self.api.stats())  # only api_* are non-zero
        counts.update(self._counters.snapshot())
        return Stats(**counts)

    def reset_stats(self) -> None:
        """Zero every counter and forget the demo API's recorded requests."""
        self._counters.reset()
        self.api.reset_stats()

    def refresh_ages(self) -> list[float]:
        """For each successful refresh so far, in order: how many seconds old
        the grant's newest access token was when the refresh came.

        A client that refreshes once per expiry shows ages near the token's
        lifetime less its leeway; a duplicate refresh shows an age near zero.
        """
        return self._tables.refresh_age_list()

    def api_seen(self) -> list[SeenRequest]:
        """The requests the demo API received so far (a copy)."""
        return self.api.seen

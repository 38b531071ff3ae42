"""The development server: an authorization server and a demo API."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._api import DemoAPI, SeenRequest
from ._authserver import AUTH_FAULT_ENDPOINTS, AuthorizationServerApp
from ._faults import Fault, FaultQueue
from ._http import Listener
from ._stats import Counters, Stats
from ._tokens import TokenTables

#: Endpoint names accepted by :meth:`DevServer.inject`.
ENDPOINTS = (*AUTH_FAULT_ENDPOINTS, "api")


class DevServer:
    """An OAuth 2.0 authorization server and a protected demo API on loopback.

    Both listen on 127.0.0.1 (two ports, so two origins) and keep everything
    in memory. Logins are issued directly with :meth:`login`; the token,
    revocation and introspection endpoints speak real HTTP. Counters and
    injectable faults make it fit for concurrency tests.

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
        self._listener = Listener(self._app, host, "auth")
        self.api = DemoAPI(self._tables.access_token_claims, host=host)
        """The demo API, validating tokens against this server's tables."""
        self.client_id = "usersession-dev"
        """The default confidential client."""
        self._client_secret = secrets.token_urlsafe(24)
        self.public_client_id = "usersession-dev-public"
        """The default public client (token_endpoint_auth_method none)."""
        self._tables.add_client(self.client_id, self._client_secret)
        self._tables.add_client(self.public_client_id, None)

    def __repr__(self) -> str:
        # No secret here: reprs end up in logs and assertion messages.
        try:
            return f"DevServer(issuer={self.issuer!r}, api_url={self.api_url!r})"
        except RuntimeError:
            return "DevServer(not started)"

    # Lifecycle

    def start(self) -> DevServer:
        """Bind free ports on loopback and start serving.

        Raises:
            RuntimeError: Already started, or stopped (a server runs once).
        """
        self._listener.start()
        try:
            self.api.start()
        except BaseException:
            self._listener.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers, close every socket and join the threads."""
        self.api.stop()
        self._listener.stop()

    def __enter__(self) -> DevServer:
        return self.start()

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

    def add_client(self, client_id: str, client_secret: str | None = None) -> None:
        """Register a client; ``client_secret`` None makes it public."""
        self._tables.add_client(client_id, client_secret)

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
                ``"discovery"`` or ``"api"``.
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

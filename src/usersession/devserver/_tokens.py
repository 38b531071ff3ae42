"""The authorization server's state: clients, grants and tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def token_hash(token: str) -> str:
    """A short SHA-256 hash that identifies a token in logs and records."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _new_token(prefix: str) -> str:
    # 256 bits of randomness; the prefix only makes debugging easier. Every
    # character is allowed in an RFC 6750 2.1 b64token.
    return prefix + secrets.token_urlsafe(32)


def parse_scope(scope: str) -> tuple[str, ...]:
    """Split a scope string into its tokens, in order, without repeats.

    Raises:
        ValueError: A scope token has a character RFC 6749 3.3 forbids.
    """
    tokens: list[str] = []
    for item in scope.split(" "):
        if not item:
            continue
        if not _SCOPE_TOKEN.fullmatch(item):
            raise ValueError("invalid scope")
        if item not in tokens:
            tokens.append(item)
    return tuple(tokens)


class OAuthError(Exception):
    """An OAuth error answer (RFC 6749 5.2) decided by the server's logic."""

    def __init__(
        self,
        error: str,
        description: str | None = None,
        status: int = 400,
        *,
        reuse_detected: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status
        self.reuse_detected = reuse_detected


@dataclass(frozen=True)
class Client:
    """A registered client; ``secret`` None means a public client."""

    client_id: str
    secret: str | None = field(repr=False)

    @property
    def is_public(self) -> bool:
        """True for a client without a secret (token_endpoint_auth_method none)."""
        return self.secret is None

    def secret_matches(self, candidate: str) -> bool:
        """Constant-time comparison, so timing does not reveal the secret."""
        if self.secret is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.secret.encode())


@dataclass(eq=False)
class _Grant:
    """Everything descended from one login or one client credentials grant."""

    grant_id: str
    client_id: str
    subject: str
    scope: tuple[str, ...]
    revoked: bool = False
    last_issued_at: float = 0.0  # when its newest access token was issued


@dataclass(eq=False)
class _Token:
    grant: _Grant
    scope: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    revoked: bool = False
    forced_expired: bool = False
    rotated: bool = False  # refresh tokens only: already exchanged once

    def live(self, now: float) -> bool:
        if self.revoked or self.grant.revoked or self.forced_expired:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class RefreshResult:
    """The outcome of a refresh_token grant."""

    payload: dict[str, Any]
    old_hash: str
    new_hash: str | None


class TokenTables:
    """Clients, grants and tokens behind one lock.

    Every method that reads or changes a token takes the lock for its whole
    check-and-change, so two refreshes racing with one refresh token are
    ordered: the first rotates it, the second is reuse.
    """

    def __init__(
        self,
        *,
        access_token_lifetime: float | None,
        refresh_token_lifetime: float | None,
        rotate_refresh_tokens: bool,
        include_expires_in: bool,
        clock: Callable[[], float],
    ) -> None:
        for name, value in (
            ("access_token_lifetime", access_token_lifetime),
            ("refresh_token_lifetime", refresh_token_lifetime),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None")
        self.access_token_lifetime = (
            None if access_token_lifetime is None else float(access_token_lifetime)
        )
        self.refresh_token_lifetime = (
            None if refresh_token_lifetime is None else float(refresh_token_lifetime)
        )
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.include_expires_in = include_expires_in
        # For each successful refresh: how old the grant's newest access
        # token was. A refresh of a token far from its expiry is one too many.
        self.refresh_ages: list[float] = []
        self.clock = clock
        #: Called, lock held, whenever tokens stop being live before their
        #: time (revoked, or expired by hand), so that a cache of what this
        #: server said about them (the demo API's) forgets it at once.
        self.on_invalidate: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}

    # Clients

    def add_client(self, client_id: str, secret: str | None) -> Client:
        """Register a client, replacing one with the same id."""
        if not client_id or any(c in client_id for c in "\r\n\0"):
            raise ValueError("client_id must be a non-empty single-line string")
        if secret is not None and not secret:
            raise ValueError("client_secret must be non-empty, or None for public")
        client = Client(client_id, secret)
        with self._lock:
            self._clients[client_id] = client
        return client

    def client(self, client_id: str) -> Client | None:
        """The registered client with this id, if any."""
        with self._lock:
            return self._clients.get(client_id)

    # Issuing

    def refresh_age_list(self) -> list[float]:
        """A copy of `refresh_ages`."""
        with self._lock:
            return list(self.refresh_ages)

    def _issue(
        self,
        grant: _Grant,
        scope: tuple[str, ...],
        *,
        refresh: bool,
        id_token: bool,
    ) -> tuple[dict[str, Any], str | None]:
        """Issue an access token (and maybe a refresh token); lock held."""
        now = self.clock()
        grant.last_issued_at = now
        access = _new_token("at_")
        at_expiry = (
            None
            if self.access_token_lifetime is None
            else now + self.access_token_lifetime
        )
        self._access[access] = _Token(grant, scope, now, at_expiry)
        payload: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if self.include_expires_in and self.access_token_lifetime is not None:
            # RFC 6749 5.1: lifetime in seconds; whole numbers stay integers.
            lifetime = self.access_token_lifetime
            payload["expires_in"] = int(lifetime) if lifetime.is_integer() else lifetime
        refresh_token = None
        if refresh:
            refresh_token = _new_token("rt_")
            rt_expiry = (
                None
                if self.refresh_token_lifetime is None
                else now + self.refresh_token_lifetime
            )
            self._refresh[refresh_token] = _Token(grant, grant.scope, now, rt_expiry)
            payload["refresh_token"] = refresh_token
        if scope:
            payload["scope"] = " ".join(scope)
        if id_token:
            # Opaque on purpose: it only has to be told apart from the others,
            # and must never work as a bearer token.
            payload["id_token"] = _new_token("id_")
        return payload, refresh_token

    def login(
        self,
        client_id: str,
        subject: str,
        scope: str,
        *,
        refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Issue a grant to ``subject`` directly, as if they had logged in."""
        scopes = parse_scope(scope)
        with self._lock:
            if client_id not in self._clients:
                raise ValueError("unknown client_id")
            grant = _Grant(secrets.token_hex(4), client_id, subject, scopes)
            payload, _ = self._issue(
                grant, scopes, refresh=refresh_token, id_token="openid" in scopes
            )
        return payload

    def client_credentials(self, client: Client, scope: str | None) -> dict[str, Any]:
        """RFC 6749 4.4: an access token for the client itself, no refresh token."""
        scopes = self._requested_scope(scope) or ()
        with self._lock:
            grant = _Grant(
                secrets.token_hex(4), client.client_id, client.client_id, scopes
            )
            payload, _ = self._issue(grant, scopes, refresh=False, id_token=False)
        return payload

    @staticmethod
    def _requested_scope(scope: str | None) -> tuple[str, ...] | None:
        if scope is None:
            return None
        try:
            scopes = parse_scope(scope)
        except ValueError:
            raise OAuthError("invalid_scope", "malformed scope") from None
        return scopes or None

    def refresh(
        self, client: Client, refresh_token: str, scope: str | None
    ) -> RefreshResult:
        """RFC 6749 6: exchange a refresh token.

        Raises:
            OAuthError: The grant is refused; ``reuse_detected`` is set when a
                rotated refresh token came back and the grant was revoked.
        """
        requested = self._requested_scope(scope)
        with self._lock:
            record = self._refresh.get(refresh_token)
            if record is None:
                raise OAuthError("invalid_grant", "unknown refresh token")
            grant = record.grant
            # RFC 6749 6: the refresh token must have been issued to this client.
            if grant.client_id != client.client_id:
                raise OAuthError("invalid_grant", "issued to another client")
            if record.revoked or grant.revoked:
                raise OAuthError("invalid_grant", "refresh token revoked")
            if record.rotated:
                # RFC 9700 4.14.2: a rotated refresh token presented again means
                # it leaked, or a client raced itself; either way the whole
                # grant is revoked so that every copy stops working.
                self._revoke_grant(grant)
                raise OAuthError(
                    "invalid_grant", "refresh token reused", reuse_detected=True
                )
            if not record.live(self.clock()):
                raise OAuthError("invalid_grant", "refresh token expired")
            if requested is not None and not set(requested) <= set(grant.scope):
                # RFC 6749 6: the scope must not exceed the original grant.
                raise OAuthError("invalid_scope", "scope exceeds the grant")
            if self.rotate_refresh_tokens:
                record.rotated = True
            self.refresh_ages.append(self.clock() - grant.last_issued_at)
            payload, new_rt = self._issue(
                grant,
                requested if requested is not None else grant.scope,
                refresh=self.rotate_refresh_tokens,
                id_token=False,
            )
        return RefreshResult(
            payload,
            token_hash(refresh_token),
            token_hash(new_rt) if new_rt is not None else None,
        )

    # Revoking and checking

    def _invalidated(self) -> None:
        for listener in self.on_invalidate:
            listener()

    def _revoke_grant(self, grant: _Grant) -> None:
        grant.revoked = True
        for table in (self._access, self._refresh):
            for record in table.values():
                if record.grant is grant:
                    record.revoked = True
        self._invalidated()

    def revoke(self, client: Client, token: str) -> bool:
        """RFC 7009 2.1: revoke a token; a refresh token takes its grant along.

        Args:
            client: The authenticated client, which must own the token.
            token: An access or refresh token.

        Returns:
            Whether the token was known.

        Raises:
            OAuthError: The token was issued to another client.
        """
        with self._lock:
            for table in (self._refresh, self._access):
                record = table.get(token)
                if record is None:
                    continue
                if record.grant.client_id != client.client_id:
                    raise OAuthError(
                        "unauthorized_client", "token was issued to another client"
                    )
                self._revoke_record(table, record)
                return True
        return False

    def revoke_access_token(self, token: str) -> bool:
        """Revoke one access token, whoever owns it; returns whether it was known."""
        with self._lock:
            record = self._access.get(token)
            if record is not None:
                self._revoke_record(self._access, record)
            return record is not None

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token's grant; returns whether the token was known."""
        with self._lock:
            record = self._refresh.get(token)
            if record is not None:
                self._revoke_record(self._refresh, record)
            return record is not None

    def _revoke_record(self, table: dict[str, _Token], record: _Token) -> None:
        if table is self._refresh:
            # RFC 7009 2.1: revoking a refresh token should also invalidate the
            # access tokens of the same grant; this server revokes the grant.
            self._revoke_grant(record.grant)
        else:
            record.revoked = True
            self._invalidated()

    def expire_access_tokens(self) -> None:
        """Mark every access token issued so far as expired."""
        with self._lock:
            for record in self._access.values():
                record.forced_expired = True
            self._invalidated()

    def expire_refresh_tokens(self) -> None:
        """Mark every refresh token issued so far as expired."""
        with self._lock:
            for record in self._refresh.values():
                record.forced_expired = True

    def _claims(self, record: _Token) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "scope": " ".join(record.scope),
            "client_id": record.grant.client_id,
            "sub": record.grant.subject,
            "iat": int(record.issued_at),
        }
        if record.expires_at is not None:
            # RFC 7662 2.2 speaks of an integer timestamp, but this server's
            # lifetimes may be fractional: the exact instant keeps a resource
            # server that caches the answer from disagreeing with the server's
            # own check by up to a second. Whole instants stay integers.
            expires_at = record.expires_at
            claims["exp"] = int(expires_at) if expires_at.is_integer() else expires_at
        return claims

    def access_token_claims(self, token: str) -> dict[str, Any] | None:
        """Claims of a live access token, or None (unknown, expired, revoked)."""
        with self._lock:
            record = self._access.get(token)
            if record is None or not record.live(self.clock()):
                return None
            return self._claims(record)

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 2.2: the introspection answer for any token."""
        with self._lock:
            now = self.clock()
            record = self._access.get(token)
            if record is not None and record.live(now):
                return {"active": True, **self._claims(record), "token_type": "Bearer"}
            record = self._refresh.get(token)
            if record is not None and record.live(now) and not record.rotated:
                return {"active": True, **self._claims(record)}
        # RFC 7662 2.2: nothing else may be said about an inactive token.
        return {"active": False}

"""`Tokens`: one immutable set of OAuth 2.0 tokens for a user."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

from ._secrets import fingerprint

__all__ = ["Tokens", "parse_expires_in"]

_DIGITS = re.compile(r"[0-9]+")


def parse_expires_in(value: object) -> float | None:
    """Read an ``expires_in`` value (RFC 6749 section 5.1) leniently but safely.

    A non-negative number, or a string of decimal digits, is a lifetime in
    seconds. Anything else (negative, boolean, other strings, null) means the
    expiry is unknown: guessing a lifetime could only make a token look
    fresher or staler than it is.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value != value or value < 0 or value == float("inf"):
            return None
        return float(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return float(int(value))
    return None


def _optional_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Tokens:
    """The tokens of one login: immutable, and never shown in a repr.

    Attributes:
        access_token: The bearer token sent to APIs.
        refresh_token: The token that buys new access tokens, if any.
        expires_at: When the access token expires, in seconds since the epoch,
            or ``None`` when unknown.
        scope: The granted scope, space-separated, if the server said.
        id_token: The OpenID Connect ID token; never sent as a bearer token.
        token_type: Always sent as ``Bearer``; kept for the record.
        lifetime: The access token's lifetime in seconds as issued
            (``expires_in``), used to keep the refresh leeway below half of it.
    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None
    id_token: str | None = None
    token_type: str = "Bearer"
    lifetime: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not self.access_token:
            raise ValueError("Tokens need a non-empty access_token string")

    def __repr__(self) -> str:
        return (
            f"Tokens(access_token={fingerprint(self.access_token)}, "
            f"refresh_token={fingerprint(self.refresh_token)}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_response(
        cls, payload: Mapping[str, Any], *, issued_at: float | None = None
    ) -> Tokens:
        """Build `Tokens` from a token endpoint's JSON answer (RFC 6749 5.1).

        Args:
            payload: The decoded JSON object.
            issued_at: When the token request was sent (seconds since the
                epoch). The expiry is counted from then, not from when the
                answer arrived, so a slow answer cannot stretch a lifetime.
                Defaults to now.

        Raises:
            ValueError: The payload has no non-empty ``access_token`` string.
        """
        access_token = payload.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("the token response has no access_token")
        lifetime = parse_expires_in(payload.get("expires_in"))
        start = time.time() if issued_at is None else issued_at
        token_type = _optional_str(payload, "token_type") or "Bearer"
        return cls(
            access_token=access_token,
            refresh_token=_optional_str(payload, "refresh_token"),
            expires_at=None if lifetime is None else start + lifetime,
            scope=_optional_str(payload, "scope"),
            id_token=_optional_str(payload, "id_token"),
            token_type=token_type,
            lifetime=lifetime,
        )

    def succeeded_by(self, newer: Tokens) -> Tokens:
        """Return `newer`, keeping this set's refresh token, scope and id token
        where the refresh answer left them out (RFC 6749 section 6)."""
        return dataclasses.replace(
            newer,
            refresh_token=newer.refresh_token or self.refresh_token,
            scope=newer.scope if newer.scope is not None else self.scope,
            id_token=newer.id_token or self.id_token,
        )

    def is_expired(self, now: float | None = None) -> bool:
        """True when the access token's expiry is known and has passed."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at

    def is_due(self, leeway: float, now: float | None = None) -> bool:
        """True when the access token should be refreshed before use.

        The leeway is capped at half the token's lifetime when the lifetime is
        known, so a token is never due at the moment it is issued.
        """
        if self.expires_at is None:
            return False
        if self.lifetime is not None:
            leeway = min(leeway, self.lifetime / 2)
        return (time.time() if now is None else now) >= self.expires_at - leeway

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for token stores. It holds the secrets."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "id_token": self.id_token,
            "token_type": self.token_type,
            "lifetime": self.lifetime,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        """The inverse of `to_dict`.

        Raises:
            ValueError: `data` is not a saved set of tokens.
        """
        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("saved tokens have no access_token")
        expires_at = data.get("expires_at")
        lifetime = data.get("lifetime")
        for name, number in (("expires_at", expires_at), ("lifetime", lifetime)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int | float)
            ):
                raise ValueError(f"saved tokens have a bad {name}")
        return cls(
            access_token=access_token,
            refresh_token=_optional_str(data, "refresh_token"),
            expires_at=None if expires_at is None else float(expires_at),
            scope=_optional_str(data, "scope"),
            id_token=_optional_str(data, "id_token"),
            token_type=_optional_str(data, "token_type") or "Bearer",
            lifetime=None if lifetime is None else float(lifetime),
        )

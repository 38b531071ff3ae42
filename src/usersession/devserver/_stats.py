"""Counters of what the development servers saw."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """A snapshot of the servers' counters.

    Attributes:
        token_requests: Every POST to the token endpoint, faulted ones included,
            counted when the request arrives.
        refresh_grants: Successful refresh_token grants (their effect happened,
            even if an injected fault then kept the answer from the client).
        client_credentials_grants: Successful client_credentials grants.
        authorization_code_grants: Successful authorization_code grants.
        device_authorizations: Every POST to the device authorization endpoint.
        device_polls: Every device_code grant request (RFC 8628 polls).
        device_code_grants: Device polls answered with tokens.
        invalid_grant_answers: Token endpoint answers sent with
            ``error=invalid_grant``, injected ones included.
        reuse_detections: Rotated refresh tokens presented again (each one
            revoked its grant).
        revocation_requests: Every POST to the revocation endpoint.
        introspection_requests: Every POST to the introspection endpoint,
            the demo API's own (one per token it has not cached) included.
        discovery_requests: Every GET of a discovery document.
        api_requests: Every request the demo API received.
        api_ok: Demo API answers sent with a 2xx status, injected ones included.
        api_unauthorized: Demo API answers sent with 401, injected ones included.
    """

    token_requests: int = 0
    refresh_grants: int = 0
    client_credentials_grants: int = 0
    authorization_code_grants: int = 0
    device_authorizations: int = 0
    device_polls: int = 0
    device_code_grants: int = 0
    invalid_grant_answers: int = 0
    reuse_detections: int = 0
    revocation_requests: int = 0
    introspection_requests: int = 0
    discovery_requests: int = 0
    api_requests: int = 0
    api_ok: int = 0
    api_unauthorized: int = 0


_FIELDS = frozenset(f.name for f in dataclasses.fields(Stats))


class Counters:
    """Thread-safe counters named after the fields of :class:`Stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        """Increase one counter."""
        if name not in _FIELDS:
            raise KeyError(name)
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """The current non-zero counts."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()

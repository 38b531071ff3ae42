"""Proof Key for Code Exchange (RFC 7636), the S256 method only."""

from __future__ import annotations

import base64
import hashlib
import secrets
import string

__all__ = ["UNRESERVED", "new_state", "new_verifier", "s256_challenge"]

#: RFC 7636 section 4.1: code-verifier = 43*128unreserved, where
#: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
UNRESERVED = string.ascii_letters + string.digits + "-._~"

_MIN_LENGTH = 43
_MAX_LENGTH = 128


def new_verifier(length: int = 64) -> str:
    """A fresh code verifier: `length` characters drawn from the unreserved
    set with the `secrets` module (RFC 7636 sections 4.1 and 7.1).

    64 characters of a 66-letter alphabet carry about 386 bits, well above
    the 256 bits RFC 7636 section 7.1 recommends.

    Raises:
        ValueError: `length` is outside 43 to 128.
    """
    if not _MIN_LENGTH <= length <= _MAX_LENGTH:
        raise ValueError("a PKCE code verifier has 43 to 128 characters")
    return "".join(secrets.choice(UNRESERVED) for _ in range(length))


def s256_challenge(verifier: str) -> str:
    """The S256 code challenge of `verifier` (RFC 7636 section 4.2):
    BASE64URL(SHA256(ASCII(verifier))), without ``=`` padding (appendix A)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable ``state`` value binding a redirect to this login
    (RFC 6749 section 10.12)."""
    return secrets.token_urlsafe(24)

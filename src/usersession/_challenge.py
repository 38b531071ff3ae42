"""Reading ``WWW-Authenticate`` (RFC 9110 section 11.6.1, RFC 6750 section 3).

The one question usersession asks of a 401 is whether it means "this access
token was rejected". A refresh is worth trying only then.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

__all__ = ["Challenge", "is_token_rejection", "parse_challenges"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PARAM = re.compile(
    r"""([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*"""
    r"""("(?:[^"\\]|\\.)*"|[!#$%&'*+\-.^_`|~0-9A-Za-z]+)"""
)
_SPACE = re.compile(r"[ \t]*")
_SEPARATORS = re.compile(r"[ \t,]*")
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: an auth scheme and its parameters (names lower-cased)."""

    scheme: str
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    token68: str | None = None


def _at_separator_or_end(text: str, pos: int) -> bool:
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    return pos == len(text) or text[pos] == ","


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _parse_one(text: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    pos = 0
    while True:
        pos = _SEPARATORS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= len(text):
            return challenges
        scheme = _TOKEN.match(text, pos)
        if scheme is None:
            # Not a header we can read from here on; keep what we have.
            return challenges
        pos = _SPACE.match(text, scheme.end()).end()  # type: ignore[union-attr]
        params: dict[str, str] = {}
        token68: str | None = None
        param = _PARAM.match(text, pos)
        if param is not None and _at_separator_or_end(text, param.end()):
            # auth-params: name=value pairs, until a token that is not
            # followed by "=" starts the next challenge.
            while param is not None and _at_separator_or_end(text, param.end()):
                params.setdefault(param.group(1).lower(), _unquote(param.group(2)))
                pos = _SEPARATORS.match(text, param.end()).end()  # type: ignore[union-attr]
                param = _PARAM.match(text, pos)
        else:
            blob = _TOKEN68.match(text, pos)
            if blob is not None and _at_separator_or_end(text, blob.end()):
                token68 = blob.group(0)
                pos = blob.end()
        challenges.append(Challenge(scheme.group(0), params, token68))


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse every challenge in one or more ``WWW-Authenticate`` header values."""
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_one(value))
    return challenges


def is_token_rejection(values: Iterable[str]) -> bool:
    """Decide whether a 401 with these challenges rejected the bearer token.

    - No challenge at all: a rejection (many APIs send a bare 401).
    - Only other schemes (Basic, Digest, ...): not ours to answer.
    - A Bearer challenge with ``error="insufficient_scope"`` (RFC 6750
      section 3.1): a new token of the same scope would not help.
    - Any other Bearer challenge: a rejection.
    """
    challenges = parse_challenges(values)
    if not challenges:
        return True
    bearer = [c for c in challenges if c.scheme.lower() == "bearer"]
    if not bearer:
        return False
    return all(c.params.get("error") != "insufficient_scope" for c in bearer)

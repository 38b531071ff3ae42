"""``usersession token``, ``status`` and ``logout``: the profile's session.

``token`` is the one place the tool prints a token, on purpose and to
standard output only, so that ``$(usersession token)`` works. ``status``
describes the session without showing any token; ``logout`` revokes the
tokens and forgets them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TextIO

from ._cli_common import CliError, Exit, printable
from ._cli_profiles import (
    Profile,
    load_profile,
    not_logged_in,
    profile_name,
    profile_path,
    remove_profile,
    require_profile,
)
from ._tokens import Tokens
from ._user import User

__all__ = ["describe_expiry", "jwt_subject", "run_logout", "run_status", "run_token"]

_LABEL_WIDTH = 14


def run_token(name: str, *, out: TextIO) -> int:
    """Print a fresh access token (refreshed first when due) and a newline.

    Raises:
        CliError: No profile or no login.
        ClientError: The refresh failed.
    """
    user = require_profile(name).logged_in_user()
    # The same decision a request makes: refresh when due, join a refresh
    # under way, fall back to a still valid token when the server is down.
    grant = user._acquire()
    out.write(grant.tokens.access_token + "\n")
    out.flush()
    return Exit.OK


def run_status(name: str, *, out: TextIO) -> int:
    """Describe the profile's session; never a token.

    Returns:
        0 when logged in.

    Raises:
        CliError: No profile, or no login (after the description).
    """
    profile = require_profile(name)
    tokens = profile.token_store().load()
    rows = [
        ("Profile", f"{profile.name} ({profile_path(profile.name)})"),
        ("Issuer", profile.issuer),
        ("Client", _client(profile)),
        ("Login flow", profile.flow or "device or browser, chosen at login"),
        ("Tokens in", profile.where()),
        ("Logged in", "no" if tokens is None else "yes"),
    ]
    if tokens is not None:
        rows += [
            ("Subject", _subject(tokens)),
            ("Scope", tokens.scope or "(not given by the server)"),
            ("Access token", describe_expiry(tokens, time.time())),
            ("Refresh token", _refresh_token(tokens)),
        ]
    for label, value in rows:
        out.write(f"{label + ':':<{_LABEL_WIDTH}} {value}\n")
    out.flush()
    if tokens is None:
        raise not_logged_in(profile.name)
    return Exit.OK


def _client(profile: Profile) -> str:
    if profile.client_secret_env is None:
        return f"{profile.client_id} (public client, no secret)"
    return f"{profile.client_id} (secret from ${profile.client_secret_env})"


def _subject(tokens: Tokens) -> str:
    if tokens.id_token is None:
        return "unknown (no id token)"
    subject = jwt_subject(tokens.id_token)
    if subject is None:
        return "unknown (the id token is not a JWT with a subject)"
    return f"{subject} (from the id token, decoded without verifying it)"


def jwt_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT's payload, read WITHOUT checking its
    signature: for display only, never for a decision."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str) or not subject:
        return None
    # Shown on a terminal: no control characters from someone else's token.
    return printable(subject)


def describe_expiry(tokens: Tokens, now: float) -> str:
    """When the access token expires, in local time and seconds from `now`."""
    if tokens.expires_at is None:
        return "no expiry given by the server"
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(tokens.expires_at))
    left = round(tokens.expires_at - now)
    if left > 0:
        return f"expires {when} (in {left} s)"
    return f"expired {when} ({-left} s ago; the next use refreshes it)"


def _refresh_token(tokens: Tokens) -> str:
    if tokens.refresh_token is None:
        return "none (log in again once the access token expires)"
    return "held"


def run_logout(name: str, *, forget: bool, out: TextIO) -> int:
    """Revoke the profile's tokens and forget them; with `forget`, remove the
    profile too.

    Returns:
        0 when the tokens are gone here and the server took the revocation
        (or has no revocation endpoint).

    Raises:
        CliError: The tokens were forgotten here, but the server did not
            confirm their revocation; or they could not be removed.
    """
    name = profile_name(name)
    try:
        profile = load_profile(name)
    except CliError:
        if not forget:
            raise
        # A damaged profile can still be removed.
        remove_profile(name)
        out.write(f"Removed the profile {name!r} ({profile_path(name)}).\n")
        return Exit.OK

    problems: list[str] = []
    if profile is None:
        out.write(f"Not logged in: there is no profile {name!r}.\n")
    else:
        problems = _logout(profile, out)
    if forget and remove_profile(name):
        out.write(f"Removed the profile {name!r} ({profile_path(name)}).\n")
    out.flush()
    if problems:
        raise CliError(
            "the tokens were removed here, but the server did not confirm their "
            f"revocation ({'; '.join(problems)}); they stay valid there until "
            "they expire"
        )
    return Exit.OK


def _logout(profile: Profile, out: TextIO) -> list[str]:
    store = profile.token_store()
    if store.load() is None:
        out.write(f"Not logged in (profile {profile.name!r}); nothing to revoke.\n")
        return []
    try:
        provider = profile.provider()
    except CliError as exc:
        # Without the secret the server cannot be asked; the tokens still go.
        store.clear()
        return [exc.message]
    user = User(provider, store=store)
    with _warnings() as problems:
        user.logout()
    if store.load() is not None:
        raise CliError(f"could not remove the tokens from {profile.where()}")
    if provider.revocation_endpoint is None:
        out.write(
            f"Logged out (profile {profile.name!r}): the tokens were removed; "
            "the issuer has no revocation endpoint, so they stay valid there "
            "until they expire.\n"
        )
    elif not problems:
        out.write(
            f"Logged out (profile {profile.name!r}): the tokens were revoked "
            f"at {profile.issuer} and removed from {profile.where()}.\n"
        )
    return problems


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    """Collect the library's warnings (they never hold a token) meanwhile."""
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("usersession")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)

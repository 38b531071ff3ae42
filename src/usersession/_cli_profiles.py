"""Profiles of the ``usersession`` tool: which server and client a login uses.

A profile is a small JSON file, ``usersession/profiles/<name>.json`` in the
user's config directory (``$XDG_CONFIG_HOME``, or ``~/.config``). It names
the issuer, the client id, the *name* of the environment variable holding
the client secret (never the secret itself), the scope, the login flow and
the kind of token store. It also keeps the endpoints that discovery found
at the last login, so that a request needs no discovery round trip and works
while the authorization server is down, as long as no refresh is due.

The tokens live in the profile's store: ``FileStore(name=<profile>)`` in the
user's data directory, or ``KeyringStore(name=<profile>)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ._cli_common import CliError, Exit
from ._filestore import FileStore, _make_directory, _sync_directory, check_profile_name
from ._provider import Provider
from ._store import TokenStore
from ._user import User

__all__ = [
    "ENDPOINT_NAMES",
    "Flow",
    "Profile",
    "StoreKind",
    "config_dir",
    "load_profile",
    "profile_name",
    "profile_path",
    "remove_profile",
    "require_profile",
    "save_profile",
]

Flow = Literal["device", "browser"]
StoreKind = Literal["file", "keyring"]

#: The version of the profile document; a newer one is refused, not guessed.
FORMAT = 1

#: The endpoints a profile caches from discovery (the `Provider` arguments).
ENDPOINT_NAMES = (
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "device_authorization_endpoint",
    "authorization_endpoint",
)

_BASIC: Literal["client_secret_basic"] = "client_secret_basic"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_BYTES = 64 * 1024


def config_dir() -> Path:
    """The directory of the tool's configuration.

    ``$XDG_CONFIG_HOME/usersession``, or ``~/.config/usersession`` when that
    variable is unset, empty or relative (XDG Base Directory Specification);
    ``%APPDATA%\\usersession`` on Windows.
    """
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "usersession"


def profile_name(name: str) -> str:
    """Return `name` if it can name a profile.

    Raises:
        CliError: It cannot (a usage error).
    """
    try:
        return check_profile_name(name)
    except ValueError as exc:
        raise CliError(str(exc), status=Exit.USAGE) from None


def profile_path(name: str) -> Path:
    """The file of the profile `name`."""
    return config_dir() / "profiles" / f"{profile_name(name)}.json"


def check_env_name(name: str) -> str:
    """Return `name` if it can name an environment variable.

    Raises:
        CliError: It cannot (a usage error).
    """
    if not _ENV_NAME.fullmatch(name):
        raise CliError(
            "--client-secret-env takes the name of an environment variable "
            "(letters, digits and '_'), not the secret itself",
            status=Exit.USAGE,
        )
    return name


@dataclasses.dataclass(frozen=True)
class Profile:
    """One profile: an issuer, a client registered there, and login settings.

    Attributes:
        name: The profile's name (also its store's name).
        issuer: The authorization server's issuer identifier.
        client_id: The client identifier registered at the issuer.
        client_secret_env: The environment variable holding the client
            secret; ``None`` for a public client.
        scope: The scope to ask for at login; ``None``: the server's default.
        flow: ``"device"`` or ``"browser"``; ``None``: chosen at each login.
        store: ``"file"`` or ``"keyring"``.
        endpoints: The endpoints discovery found at the last login.
    """

    name: str
    issuer: str
    client_id: str
    client_secret_env: str | None = None
    scope: str | None = None
    flow: Flow | None = None
    store: StoreKind = "file"
    endpoints: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> bytes:
        """The profile's file content."""
        document = {
            "format": FORMAT,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret_env": self.client_secret_env,
            "scope": self.scope,
            "flow": self.flow,
            "store": self.store,
            "endpoints": dict(self.endpoints),
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, name: str, raw: bytes) -> Profile:
        """Read a profile file.

        Raises:
            ValueError: It is not a profile this version can read; the
                text says why.
        """
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValueError("it is not JSON") from None
        if not isinstance(document, dict):
            raise ValueError("it is not a JSON object")
        if document.get("format") != FORMAT:
            raise ValueError(f"its format is not {FORMAT}")
        issuer, client_id = document.get("issuer"), document.get("client_id")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("it has no issuer")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("it has no client_id")
        secret_env = _optional_text(document, "client_secret_env")
        if secret_env is not None and not _ENV_NAME.fullmatch(secret_env):
            raise ValueError("its client_secret_env is not a variable name")
        flow = document.get("flow")
        if flow not in (None, "device", "browser"):
            raise ValueError("its flow is neither device nor browser")
        store = document.get("store", "file")
        if store not in ("file", "keyring"):
            raise ValueError("its store is neither file nor keyring")
        endpoints = document.get("endpoints") or {}
        if not isinstance(endpoints, dict) or not all(
            key in ENDPOINT_NAMES and isinstance(value, str)
            for key, value in endpoints.items()
        ):
            raise ValueError("its endpoints are not a map of endpoint URLs")
        return cls(
            name=name,
            issuer=issuer,
            client_id=client_id,
            client_secret_env=secret_env,
            scope=_optional_text(document, "scope"),
            flow=flow,
            store=store,
            endpoints=endpoints,
        )

    # -- What the commands build from a profile ----------------------------

    def client_secret(self) -> str | None:
        """The client secret, from the environment variable the profile names.

        Raises:
            CliError: The variable is unset or empty.
        """
        if self.client_secret_env is None:
            return None
        secret = os.environ.get(self.client_secret_env)
        if not secret:
            raise CliError(
                f"the client secret of profile {self.name!r} is read from the "
                f"environment variable {self.client_secret_env}, which is not set",
                status=Exit.USAGE,
            )
        return secret

    def discover(self) -> Provider:
        """The authorization server, from its discovery document.

        Raises:
            CliError: The client secret's variable is not set.
            DiscoveryError: The document could not be fetched or trusted.
            InsecureTransport: An endpoint is plain HTTP to another host.
        """
        secret = self.client_secret()
        return Provider.discover(
            self.issuer,
            self.client_id,
            secret,
            token_endpoint_auth_method="none" if secret is None else _BASIC,
        )

    def provider(self) -> Provider:
        """The authorization server, from the endpoints found at login (or
        by discovery when the profile has none).

        Raises:
            CliError: The client secret's variable is not set.
            DiscoveryError: Discovery was needed and failed.
            InsecureTransport: An endpoint is plain HTTP to another host.
        """
        endpoints = self.endpoints
        token_endpoint = endpoints.get("token_endpoint")
        if token_endpoint is None:
            return self.discover()
        secret = self.client_secret()
        method: Literal["client_secret_basic", "none"] = (
            "none" if secret is None else _BASIC
        )
        return Provider(
            token_endpoint,
            self.client_id,
            secret,
            token_endpoint_auth_method=method,
            issuer=self.issuer,
            revocation_endpoint=endpoints.get("revocation_endpoint"),
            introspection_endpoint=endpoints.get("introspection_endpoint"),
            device_authorization_endpoint=endpoints.get(
                "device_authorization_endpoint"
            ),
            authorization_endpoint=endpoints.get("authorization_endpoint"),
        )

    def token_store(self) -> TokenStore:
        """Where this profile's tokens live.

        Raises:
            CliError: The store is the keyring and ``keyring`` is missing.
        """
        if self.store == "file":
            return FileStore(name=self.name)
        from ._keyringstore import KeyringStore

        try:
            return KeyringStore(name=self.name)
        except ImportError:
            raise CliError(
                f"profile {self.name!r} keeps its tokens in the system keyring, "
                "which needs the keyring package: pip install 'usersession[keyring]'"
            ) from None

    def where(self) -> str:
        """Where the tokens are, in words."""
        if self.store == "keyring":
            return f"the system keyring (service 'usersession', name {self.name!r})"
        return str(FileStore(name=self.name).path)

    def logged_in_user(self) -> User:
        """The profile's user, with the tokens of its store.

        Raises:
            CliError: There are no tokens (not logged in), or the secret's
                variable is not set.
            StoreError: The store could not be read.
        """
        store = self.token_store()
        if store.load() is None:
            raise not_logged_in(self.name)
        user = User(self.provider(), store=store)
        if user.tokens is None:
            raise not_logged_in(self.name)
        return user


def _optional_text(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"its {key} is not a string")
    return value or None


def not_logged_in(name: str) -> CliError:
    """The error of a profile that has no tokens."""
    return CliError(
        f"not logged in (profile {name!r}); run: {login_command(name)}",
        status=Exit.NOT_LOGGED_IN,
    )


def login_command(name: str, *, first: bool = False) -> str:
    """The command that logs the profile in."""
    command = "usersession login"
    if name != "default":
        command += f" --profile {name}"
    if first:
        command += " --issuer URL --client-id ID"
    return command


def load_profile(name: str) -> Profile | None:
    """The saved profile `name`, or ``None`` when there is none.

    Raises:
        CliError: The name is invalid (usage), or the file cannot be read or
            is not a profile.
    """
    path = profile_path(name)
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(
            f"could not read the profile file {path}: {exc.strerror or exc}"
        ) from None
    try:
        if len(raw) > _MAX_BYTES:
            raise ValueError("it is far too large")
        return Profile.from_json(name, raw)
    except ValueError as problem:
        raise CliError(
            f"the profile file {path} cannot be used ({problem}); fix it, or "
            f"remove it with: usersession logout --profile {name} --forget"
        ) from None


def require_profile(name: str) -> Profile:
    """The saved profile `name`.

    Raises:
        CliError: There is none (not logged in), or it cannot be read.
    """
    profile = load_profile(name)
    if profile is None:
        raise CliError(
            f"no profile {name!r}: log in first with: "
            f"{login_command(name, first=True)}",
            status=Exit.NOT_LOGGED_IN,
        )
    return profile


def save_profile(profile: Profile) -> Path:
    """Write the profile's file: owner-only, replaced atomically.

    Returns:
        The file's path.

    Raises:
        CliError: It could not be written.
    """
    path = profile_path(profile.name)
    try:
        _replace_private(path, profile.to_json())
    except OSError as exc:
        raise CliError(
            f"could not save the profile to {path}: {exc.strerror or exc}"
        ) from None
    return path


def remove_profile(name: str) -> bool:
    """Delete the profile's file; returns whether there was one.

    Raises:
        CliError: It could not be removed.
    """
    path = profile_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CliError(
            f"could not remove the profile file {path}: {exc.strerror or exc}"
        ) from None
    return True


def _replace_private(path: Path, data: bytes) -> None:
    # 1. A fresh owner-only file beside the target (O_EXCL: never one that
    #    someone planted), 2. flushed to disk, 3. renamed over the target,
    #    which rename(2) does atomically, 4. the rename made durable.
    _make_directory(path.parent)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _sync_directory(path.parent)

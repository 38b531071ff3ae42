"""`KeyringStore`: a user's tokens in the system keyring.

The tokens are saved as one keyring password holding the same versioned JSON
document a `FileStore` writes. Keyrings have no lock of their own, so a
refresh holds the `FileLock` of a lock file in the user's data directory:
processes of one machine sharing a keyring entry refresh one at a time.

The ``keyring`` package is an optional dependency:
``pip install 'usersession[keyring]'``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ._errors import StoreError
from ._filestore import (
    FileLock,
    NewerFormat,
    NotTokens,
    ThreadedStore,
    check_profile_name,
    data_dir,
    decode_document,
    encode_document,
    unreadable_suffix,
)
from ._tokens import Tokens

__all__ = ["KeyringStore"]


def _require_keyring() -> None:
    try:
        import keyring  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "KeyringStore needs the keyring package; install it with "
            "pip install 'usersession[keyring]'",
            name="keyring",
        ) from exc


def _failed(action: str, exc: Exception) -> StoreError:
    # Only the exception's type: a backend's message is not ours to vouch
    # for, and this one must never carry a token.
    return StoreError(f"could not {action} the system keyring ({type(exc).__name__})")


class KeyringStore(ThreadedStore):
    """Tokens kept in the system keyring (Secret Service, macOS Keychain,
    Windows Credential Locker, or any backend of the ``keyring`` package).

    The entry's service is `service` and its user name is `name`. A value
    there that is not saved tokens is moved aside to the entry
    ``<name>.unreadable-<timestamp>`` and reported as a `StoreError`, never
    taken as "logged out". Keyring failures (no backend, a locked keyring)
    are `StoreError` too, so refreshes fail for now, never for good.

    The refresh lock is a ``flock(2)`` on a file (POSIX only; on Windows
    `lock` raises `NotImplementedError`), which binds processes of one
    machine.

    Args:
        service: The keyring service name.
        name: The profile name, used as the keyring user name: letters,
            digits, ``-``, ``_`` and ``.`` only.
        lock_path: The lock file; by default one named after the service and
            profile in the user's data directory.
        lock_timeout: Seconds a refresh waits for another's lock before it
            fails for now (`StoreError`, so `RefreshUnavailable`).

    Raises:
        ImportError: The ``keyring`` package is not installed.
    """

    def __init__(
        self,
        service: str = "usersession",
        name: str = "default",
        *,
        lock_path: str | os.PathLike[str] | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        _require_keyring()
        if not isinstance(service, str) or not service:
            raise ValueError("the keyring service must be a non-empty string")
        self.service = service
        self.name = check_profile_name(name)
        if lock_path is None:
            # The service may be any string; a digest keeps it out of the
            # file name while two stores of one entry still share a lock.
            digest = hashlib.sha256(service.encode("utf-8")).hexdigest()[:16]
            path = data_dir() / f"keyring-{digest}-{name}.lock"
        else:
            path = Path(os.fspath(lock_path)).absolute()
        self._lock = FileLock(path, lock_timeout)

    def __repr__(self) -> str:
        return f"KeyringStore(service={self.service!r}, name={self.name!r})"

    @property
    def lock_path(self) -> Path:
        """The file locked during a refresh."""
        return self._lock.path

    def load(self) -> Tokens | None:
        """Return the saved tokens, or ``None`` when there are none.

        Raises:
            StoreError: The keyring failed, or its entry holds something that
                is not saved tokens (it is then moved aside), or was written
                by a newer usersession.
        """
        raw = self._get(self.name)
        if raw is None:
            return None
        try:
            return decode_document(raw)
        except NewerFormat as newer:
            raise StoreError(
                f"the keyring entry {self._where()} was written by a newer "
                f"version of usersession ({newer}); upgrade usersession"
            ) from None
        except NotTokens as problem:
            raise self._set_aside(raw, str(problem)) from None

    def save(self, tokens: Tokens) -> None:
        """Replace the saved tokens.

        Raises:
            StoreError: The keyring failed.
        """
        import keyring

        document = encode_document(tokens).decode("utf-8")
        try:
            keyring.set_password(self.service, self.name, document)
        except Exception as exc:
            raise _failed("save the tokens to", exc) from exc

    def clear(self) -> None:
        """Forget the saved tokens by deleting the keyring entry.

        Raises:
            StoreError: The keyring failed.
        """
        import keyring
        import keyring.errors

        try:
            keyring.delete_password(self.service, self.name)
        except keyring.errors.PasswordDeleteError as exc:
            # Backends say so when there was nothing to delete, which is fine;
            # an entry still there is a real failure.
            if self._get(self.name) is not None:
                raise _failed("remove the tokens from", exc) from exc
        except Exception as exc:
            raise _failed("remove the tokens from", exc) from exc

    def _get(self, name: str) -> str | None:
        import keyring

        try:
            return keyring.get_password(self.service, name)
        except Exception as exc:
            raise _failed("read the tokens from", exc) from exc

    def _where(self) -> str:
        return f"(service {self.service!r}, name {self.name!r})"

    def _set_aside(self, raw: str, reason: str) -> StoreError:
        import keyring

        aside = self.name + unreadable_suffix()
        try:
            keyring.set_password(self.service, aside, raw)
            # Remove the entry only if nobody saved new tokens meanwhile.
            if self._get(self.name) == raw:
                keyring.delete_password(self.service, self.name)
        except Exception as exc:
            return StoreError(
                f"the keyring entry {self._where()} cannot be read ({reason}) "
                f"and could not be moved aside ({type(exc).__name__})"
            )
        return StoreError(
            f"the keyring entry {self._where()} could not be read ({reason}); "
            f"it was moved to the entry named {aside!r}; log in again"
        )

"""`FileStore`: a user's tokens in a JSON file, shared safely by processes.

The file is only ever replaced whole: a new version is written to a temporary
file in the same directory, flushed to disk, and renamed over the old one.
POSIX `rename(2)` replaces the name atomically, so a reader (or a process
started after a crash) sees the complete old file or the complete new one,
never a mix. A refresh holds an exclusive `flock(2)` on a sibling lock file,
which the kernel releases when the holder exits, however it exits.

The pieces durable stores share live here too: the JSON document, the file
lock, the user's data directory, and async forms run in a worker thread.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime
import errno
import json
import logging
import math
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from ._errors import StoreError
from ._tokens import Tokens

if sys.platform != "win32":
    import fcntl

__all__ = [
    "FileLock",
    "FileStore",
    "NewerFormat",
    "NotTokens",
    "ThreadedStore",
    "check_profile_name",
    "data_dir",
    "decode_document",
    "encode_document",
    "unreadable_suffix",
]

logger = logging.getLogger("usersession")

#: The version of the saved document; a newer one is left alone, unread.
FORMAT = 1

# A saved document is a few kilobytes at most; anything far larger is not one.
_MAX_BYTES = 1 << 20
_PROFILE = re.compile(r"[A-Za-z0-9._-]{1,100}")
_TEXT_FIELDS = ("refresh_token", "scope", "id_token", "token_type")
_NUMBER_FIELDS = ("expires_at", "lifetime")

# Polling the lock: start quick, since most waits are one short refresh, then
# back off so that a long wait costs little.
_FIRST_POLL = 0.005
_LAST_POLL = 0.05

# A load that finds a damaged file which another process replaces meanwhile
# reads again; a file that keeps changing under us is an error.
_READ_ATTEMPTS = 3


# -- The saved document ------------------------------------------------------


class NotTokens(ValueError):
    """The saved value is not a saved set of tokens; the text says why."""


class NewerFormat(ValueError):
    """The saved value was written by a newer usersession."""


def encode_document(tokens: Tokens | None) -> bytes:
    """The saved form of `tokens` (``None``: no tokens): versioned JSON.

    Raises:
        StoreError: A number in `tokens` is not finite, which JSON cannot hold.
    """
    document = {
        "format": FORMAT,
        "tokens": None if tokens is None else tokens.to_dict(),
    }
    try:
        text = json.dumps(document, allow_nan=False, indent=2)
    except ValueError:
        raise StoreError(
            "these tokens cannot be saved: their expiry or lifetime is not a "
            "finite number"
        ) from None
    return (text + "\n").encode("utf-8")


def decode_document(raw: bytes | str) -> Tokens | None:
    """Read a document made by `encode_document`; ``None`` when it holds none.

    Every field is checked: a value of the wrong type is an error, never
    quietly dropped, since dropping a refresh token would end the session.

    Raises:
        NotTokens: `raw` is not a saved set of tokens.
        NewerFormat: `raw` was written by a newer version of usersession.
    """
    # The exceptions below are raised `from None`: a JSON or Unicode error
    # keeps the whole input (`.doc`, `.object`), which may hold tokens.
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise NotTokens("it is not JSON") from None
    if not isinstance(document, dict):
        raise NotTokens("it is not a JSON object")
    version = document.get("format")
    if _is_number(version) and version > FORMAT:
        raise NewerFormat(f"format {version}")
    if version != FORMAT or not _is_number(version):
        raise NotTokens("it has no known format version")
    if "tokens" not in document:
        raise NotTokens("it has no tokens field")
    saved = document["tokens"]
    if saved is None:
        return None
    if not isinstance(saved, dict):
        raise NotTokens("its tokens field is not an object")
    _check_fields(saved)
    try:
        return Tokens.from_dict(saved)
    except ValueError:
        raise NotTokens("its tokens are incomplete") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_fields(saved: Mapping[str, Any]) -> None:
    access_token = saved.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise NotTokens("it has no access token")
    for name in _TEXT_FIELDS:
        if saved.get(name) is not None and not isinstance(saved[name], str):
            raise NotTokens(f"its {name} is not a string")
    for name in _NUMBER_FIELDS:
        value = saved.get(name)
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise NotTokens(f"its {name} is not a number")


def unreadable_suffix() -> str:
    """The suffix of a name that an unreadable value is moved aside to."""
    now = datetime.datetime.now(datetime.UTC)
    return f".unreadable-{now:%Y%m%dT%H%M%S}{now.microsecond:06d}Z"


# -- Where files go ----------------------------------------------------------


def check_profile_name(name: str) -> str:
    """Return `name` if it is a valid profile name, else raise `ValueError`.

    A profile name becomes part of a file name, so it is limited to letters,
    digits, ``-``, ``_`` and ``.``: no path separator can get in, and names
    made of dots alone (``.``, ``..``) are refused.
    """
    if not isinstance(name, str) or not _PROFILE.fullmatch(name) or not name.strip("."):
        raise ValueError(
            f"invalid profile name {name!r}: use 1 to 100 letters, digits, "
            "'-', '_' or '.'"
        )
    return name


def data_dir() -> Path:
    """The directory where usersession keeps this user's files.

    ``$XDG_DATA_HOME/usersession`` (or ``~/.local/share/usersession``) on
    Linux and other Unix systems, ``~/Library/Application Support/usersession``
    on macOS, ``%LOCALAPPDATA%\\usersession`` on Windows.
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        # XDG Base Directory Specification: an unset or empty XDG_DATA_HOME
        # means ~/.local/share, and a relative one is invalid and ignored.
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "usersession"


def _make_directory(directory: Path) -> None:
    # Only the owner may list or enter a directory we create; one that exists
    # already is left as its owner set it up.
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _sync_directory(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable.

    fsync(2) on a file does not make its directory entry durable; that
    takes an fsync of the directory itself. Windows has no directory handle
    to sync, and some file systems refuse the call (EINVAL); neither can do
    better, so both are accepted.
    """
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    fd = os.open(directory, os.O_RDONLY | flag)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# -- The lock ----------------------------------------------------------------


class FileLock:
    """An exclusive lock on a file, held across processes and threads.

    It is a `flock(2)` lock on a file descriptor of its own for each hold.
    Such locks belong to the open file, not to the process, so two holds in
    one process exclude each other just as two processes do; and the kernel
    drops the lock when its holder exits, even when killed, so no crash
    leaves it held.

    Both forms poll with a non-blocking attempt and short sleeps. A thread
    blocked in `flock` could not be stopped, so a cancelled async waiter
    would get the lock later and leak it; a poll stops cleanly anywhere.

    Args:
        path: The lock file; created owner-only when missing, never removed
            (removing it would let two processes lock two different files).
        timeout: Seconds to wait before giving up with `StoreError`; 0 tries
            once.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError("lock_timeout must be a finite number >= 0")
        self.path = path
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"FileLock({str(self.path)!r})"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of a ``with`` block."""
        fd = _drive(self._attempts(), time.sleep)
        try:
            yield
        finally:
            _release(fd)

    @contextlib.asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        """Hold the lock for the duration of an ``async with`` block."""
        fd = await _adrive(self._attempts())
        # Nothing suspends between taking the lock and the try, so a
        # cancellation arrives inside the block, and the finally releases it.
        try:
            yield
        finally:
            _release(fd)

    def _attempts(self) -> Generator[float, None, int]:
        """Try to take the lock; yield each delay to sleep before trying again.

        Returns the locked descriptor. Closing the generator early (a waiter
        gave up) closes the descriptor it opened.
        """
        if sys.platform == "win32":
            raise NotImplementedError(
                "the refresh lock of file and keyring stores needs flock(2), "
                "which Windows lacks; use a MemoryStore or a networked store"
            )
        fd = self._open()
        try:
            deadline = time.monotonic() + self.timeout
            delay = _FIRST_POLL
            while not _try_lock(fd, self.path):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreError(
                        f"timed out after {self.timeout:g} s waiting for the lock "
                        f"{self.path}: another process or thread is refreshing"
                    )
                yield min(delay, remaining)
                delay = min(delay * 2, _LAST_POLL)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self) -> int:
        try:
            _make_directory(self.path.parent)
            # Python opens descriptors close-on-exec (PEP 446), so a program
            # the holder starts does not inherit the lock.
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"could not open the lock file {self.path}: {_reason(exc)}"
            ) from exc


# The two edges that drive `FileLock._attempts`: they differ only in how they
# sleep. A waiter that stops early (an interrupt, a cancelled task) closes the
# attempts, which closes the descriptor: nothing stays held.


def _drive(
    attempts: Generator[float, None, int], sleep: Callable[[float], None]
) -> int:
    while True:
        try:
            delay = next(attempts)
        except StopIteration as done:
            fd: int = done.value
            return fd
        try:
            sleep(delay)
        except BaseException:
            attempts.close()
            raise


async def _adrive(attempts: Generator[float, None, int]) -> int:
    while True:
        try:
            delay = next(attempts)
        except StopIteration as done:
            fd: int = done.value
            return fd
        try:
            await asyncio.sleep(delay)
        except BaseException:
            attempts.close()
            raise


def _try_lock(fd: int, path: Path) -> bool:
    if sys.platform == "win32":  # pragma: no cover - _attempts refuses first
        raise NotImplementedError
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StoreError(f"could not lock {path}: {_reason(exc)}") from exc
    return True


def _release(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - never locked there
        os.close(fd)
        return
    # Unlock explicitly: a forked child may share this open file, and closing
    # our descriptor alone would leave the lock held through its copy.
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- Stores whose I/O blocks -------------------------------------------------


class ThreadedStore(abc.ABC):
    """A store with blocking I/O and a `FileLock` held during refreshes.

    Subclasses implement `load`, `save` and `clear`; the async forms run them
    in a worker thread, so the event loop stays responsive while a disk
    syncs or a keyring daemon answers. A cancelled `asave` still completes
    in its thread: tokens the server already issued are never half-lost.
    """

    _lock: FileLock

    @abc.abstractmethod
    def load(self) -> Tokens | None:
        """Return the saved tokens, or ``None`` when there are none."""

    @abc.abstractmethod
    def save(self, tokens: Tokens) -> None:
        """Replace the saved tokens."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget the saved tokens."""

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock held while refreshing: exclusive across processes.

        Raises:
            StoreError: Another holder kept it past the lock timeout, or the
                lock file cannot be opened.
            NotImplementedError: On Windows, which lacks ``flock``.
        """
        return self._lock.hold()

    def alock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The async form of `lock`; waiting never blocks the event loop."""
        return self._lock.ahold()

    async def aload(self) -> Tokens | None:
        """The async form of `load`."""
        return await asyncio.to_thread(self.load)

    async def asave(self, tokens: Tokens) -> None:
        """The async form of `save`."""
        await asyncio.to_thread(self.save, tokens)

    async def aclear(self) -> None:
        """The async form of `clear`."""
        await asyncio.to_thread(self.clear)


# -- The file store ----------------------------------------------------------


class _Unreadable(Exception):
    """The file is there but is not saved tokens; it goes aside."""

    def __init__(self, reason: str, identity: tuple[int, int] | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.identity = identity


def _identity(status: os.stat_result) -> tuple[int, int]:
    return (status.st_dev, status.st_ino)


class FileStore(ThreadedStore):
    """Tokens in a JSON file that only their owner can read.

    Any number of processes may share one file: a refresh holds an exclusive
    lock on ``<file>.lock``, re-reads the file, and adopts tokens that
    another process saved meanwhile instead of calling the token endpoint.
    Saves replace the file atomically, so a crash at any moment leaves the
    complete old tokens or the complete new ones. A file that cannot be read
    is moved aside to ``<file>.unreadable-<timestamp>`` and reported as a
    `StoreError`, never taken as "logged out". A process killed in the middle
    of a save may leave a hidden ``.<file>.<random>.tmp`` beside the store:
    owner-only, never read, and safe to delete.

    The lock is ``flock(2)``: it needs a POSIX system (on Windows, `lock`
    raises `NotImplementedError`), and it does not reach other machines, so
    share a file between processes of one machine only.

    Args:
        path: The file. Defaults to ``<name>.json`` in the user's data
            directory (``$XDG_DATA_HOME/usersession`` or
            ``~/.local/share/usersession`` on Linux,
            ``~/Library/Application Support/usersession`` on macOS,
            ``%LOCALAPPDATA%\\usersession`` on Windows).
        name: The profile name for the default path: letters, digits, ``-``,
            ``_`` and ``.`` only.
        lock_timeout: Seconds a refresh waits for another's lock before it
            fails for now (`StoreError`, so `RefreshUnavailable`).

    Example:
        >>> store = FileStore(name="work")  # doctest: +SKIP
        >>> user = User(provider, store=store)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str = "default",
        lock_timeout: float = 30.0,
    ) -> None:
        check_profile_name(name)
        if path is None:
            self._path = data_dir() / f"{name}.json"
        else:
            # Absolute now, so that a later chdir cannot move the store.
            self._path = Path(os.fspath(path)).absolute()
        self._lock = FileLock(Path(f"{self._path}.lock"), lock_timeout)

    def __repr__(self) -> str:
        return f"FileStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The file holding the tokens."""
        return self._path

    @property
    def lock_path(self) -> Path:
        """The file locked during a refresh."""
        return self._lock.path

    def load(self) -> Tokens | None:
        """Return the saved tokens, or ``None`` when there are none.

        Raises:
            StoreError: The file cannot be read, or holds something that is
                not saved tokens (it is then moved aside, and the error says
                where to), or was written by a newer usersession.
        """
        for _ in range(_READ_ATTEMPTS):
            try:
                return self._load_once()
            except _Unreadable as problem:
                error = self._set_aside(problem)
                if error is not None:
                    raise error from None
        raise StoreError(
            f"the token file {self._path} kept changing while it was read; try again"
        )

    def save(self, tokens: Tokens) -> None:
        """Replace the saved tokens, atomically and durably.

        Raises:
            StoreError: The file could not be written.
        """
        self._replace(encode_document(tokens))

    def clear(self) -> None:
        """Forget the saved tokens by removing the file.

        Raises:
            StoreError: The file could not be removed.
        """
        try:
            self._path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"could not remove the token file {self._path}: {_reason(exc)}"
            ) from exc
        try:
            _sync_directory(self._path.parent)
        except OSError as exc:
            raise StoreError(
                f"could not sync the directory of {self._path}: {_reason(exc)}"
            ) from exc

    # -- Reading --------------------------------------------------------------

    def _load_once(self) -> Tokens | None:
        raw, identity = self._read()
        if raw is None:
            return None
        try:
            return decode_document(raw)
        except NewerFormat as newer:
            raise StoreError(
                f"the token file {self._path} was written by a newer version of "
                f"usersession ({newer}); upgrade usersession to read it"
            ) from None
        except NotTokens as problem:
            raise _Unreadable(str(problem), identity) from None

    def _read(self) -> tuple[bytes | None, tuple[int, int] | None]:
        """The file's bytes and identity; ``(None, None)`` when it is missing."""
        path = self._path
        try:
            # O_NONBLOCK: a FIFO put in the file's place must not hang us.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None, None
        except (PermissionError, IsADirectoryError) as exc:
            raise _Unreadable(_reason(exc).lower(), self._stat_identity()) from None
        except OSError as exc:
            raise StoreError(
                f"could not open the token file {path}: {_reason(exc)}"
            ) from exc
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise _Unreadable("it is not a regular file", _identity(status))
            with open(fd, "rb", closefd=False) as file:
                raw = file.read(_MAX_BYTES + 1)
        except OSError as exc:
            raise StoreError(
                f"could not read the token file {path}: {_reason(exc)}"
            ) from exc
        finally:
            os.close(fd)
        if len(raw) > _MAX_BYTES:
            raise _Unreadable("it is far too large", _identity(status))
        return raw, _identity(status)

    def _stat_identity(self) -> tuple[int, int] | None:
        try:
            return _identity(os.stat(self._path))
        except OSError:
            return None

    def _set_aside(self, problem: _Unreadable) -> StoreError | None:
        """Move the unreadable file aside and return the error to raise.

        Returns ``None`` when the file was replaced or removed since it was
        read (another process saved tokens meanwhile): it should be read
        again, and the new file must not be moved aside by mistake.
        """
        path = self._path
        if self._stat_identity() != problem.identity:
            return None
        aside = path.with_name(path.name + unreadable_suffix())
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return StoreError(
                f"the token file {path} cannot be read ({problem.reason}) and "
                f"could not be moved aside ({_reason(exc)}); move or remove it"
            )
        with contextlib.suppress(OSError):
            _sync_directory(path.parent)
        logger.warning(
            "the token file %s could not be read (%s); moved it to %s",
            path,
            problem.reason,
            aside,
        )
        return StoreError(
            f"the token file {path} could not be read ({problem.reason}); "
            f"it was moved to {aside}; log in again"
        )

    # -- Writing --------------------------------------------------------------
    # A save is three steps, kept apart so that tests can stop a process
    # between them: make the directory, write a temporary file, commit it.

    def _replace(self, data: bytes) -> None:
        try:
            _make_directory(self._path.parent)
            temp = self._write_temp(data)
            try:
                self._commit(temp)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        except OSError as exc:
            raise StoreError(
                f"could not save the tokens to {self._path}: {_reason(exc)}"
            ) from exc

    def _write_temp(self, data: bytes) -> Path:
        """Write `data` to a new owner-only file beside the store, synced."""
        temp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(8)}.tmp")
        # O_EXCL: a fresh file of our own, never one someone planted (a
        # symlink included), created 0600 from the start rather than
        # chmod-ed later, so no other user can open it in between.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(temp, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # The data must be on disk before the rename makes it the store,
            # or a power loss could leave the new name on empty blocks.
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        os.close(fd)
        return temp

    def _commit(self, temp: Path) -> None:
        """Put `temp` in the store's place (rename(2) is atomic), durably."""
        os.replace(temp, self._path)
        _sync_directory(self._path.parent)

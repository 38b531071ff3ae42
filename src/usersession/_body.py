"""Can a request's body be sent a second time, byte for byte?

A request that met a 401 is resent with the new token only if its body can
be replayed exactly. A one-shot stream or iterator is never buffered and never
resent: sending it again would send an empty or partial body in its place.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

__all__ = ["FIXED", "ONE_SHOT", "Replay", "replay_for", "seekable_file"]


class Replay:
    """How to put a body back to its start, or the fact that one cannot.

    `replayable` is read only after the first send met a 401; a library that
    learns whether it can send a body again only by sending it once (aiohttp)
    passes a `check` that answers then.
    """

    __slots__ = ("_check", "_file", "_position")

    def __init__(
        self,
        replayable: bool | Callable[[], bool],
        file: Any = None,
        position: int | None = None,
    ) -> None:
        self._check = replayable
        self._file = file
        self._position = position

    @property
    def replayable(self) -> bool:
        check = self._check
        return check() if callable(check) else check

    def rewind(self) -> None:
        """Put a seekable file back where the first send started reading it."""
        if self._file is not None and self._position is not None:
            self._file.seek(self._position)


FIXED = Replay(True)
ONE_SHOT = Replay(False)


def _seekable(file: Any) -> bool:
    seekable = getattr(file, "seekable", None)
    try:
        return bool(seekable()) if callable(seekable) else False
    except (OSError, ValueError):
        return False


def seekable_file(file: Any) -> Replay:
    """A file-like body: replayable from where it stands if it can seek back."""
    if not _seekable(file):
        return ONE_SHOT
    try:
        return Replay(True, file, file.tell())
    except (OSError, ValueError, io.UnsupportedOperation):
        return ONE_SHOT


def replay_for(request: Any, byte_stream: type) -> Replay:
    """Inspect an httpx (or httpx2) request before it is sent; never reads
    from its body. `byte_stream` is that library's in-memory stream class."""
    stream: Any = request.stream
    # Bytes, text, forms and JSON: httpx holds the whole body in memory.
    if isinstance(stream, byte_stream):
        return FIXED
    # Multipart forms: httpx rewinds each file to its start when it renders
    # the body, so a form is replayable when every file part can seek.
    fields = getattr(stream, "fields", None)
    if isinstance(fields, list) and hasattr(stream, "boundary"):
        for field in fields:
            file = getattr(field, "file", None)
            in_memory = file is None or isinstance(file, str | bytes)
            if not in_memory and not _seekable(file):
                return ONE_SHOT
        return FIXED
    # content=<file object>: httpx reads it where it stands, so remember
    # where that is and go back there before a resend.
    inner = getattr(stream, "_stream", None)
    return ONE_SHOT if inner is None else seekable_file(inner)

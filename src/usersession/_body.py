"""Can a request's body be sent a second time, byte for byte?

A request that met a 401 is resent with the new token only if its body can
be replayed exactly. A one-shot stream or iterator is never buffered and never
resent: sending it again would send an empty or partial body in its place.
"""

from __future__ import annotations

import io
from typing import Any

import httpx

__all__ = ["Replay", "replay_for"]


class Replay:
    """How to put a body back to its start, or the fact that one cannot."""

    __slots__ = ("_file", "_position", "replayable")

    def __init__(
        self, replayable: bool, file: Any = None, position: int | None = None
    ) -> None:
        self.replayable = replayable
        self._file = file
        self._position = position

    def rewind(self) -> None:
        """Put a seekable file back where the first send started reading it."""
        if self._file is not None and self._position is not None:
            self._file.seek(self._position)


_FIXED = Replay(True)
_ONE_SHOT = Replay(False)


def _seekable(file: Any) -> bool:
    seekable = getattr(file, "seekable", None)
    try:
        return bool(seekable()) if callable(seekable) else False
    except (OSError, ValueError):
        return False


def replay_for(request: httpx.Request) -> Replay:
    """Inspect `request` before it is sent; never reads from its body."""
    stream: Any = request.stream
    # Bytes, text, forms and JSON: httpx holds the whole body in memory.
    if isinstance(stream, httpx.ByteStream):
        return _FIXED
    # Multipart forms: httpx rewinds each file to its start when it renders
    # the body, so a form is replayable when every file part can seek.
    fields = getattr(stream, "fields", None)
    if isinstance(fields, list) and hasattr(stream, "boundary"):
        for field in fields:
            file = getattr(field, "file", None)
            in_memory = file is None or isinstance(file, str | bytes)
            if not in_memory and not _seekable(file):
                return _ONE_SHOT
        return _FIXED
    # content=<file object>: httpx reads it where it stands, so remember
    # where that is and go back there before a resend.
    inner = getattr(stream, "_stream", None)
    if inner is not None and _seekable(inner):
        try:
            return Replay(True, inner, inner.tell())
        except (OSError, ValueError, io.UnsupportedOperation):
            return _ONE_SHOT
    return _ONE_SHOT

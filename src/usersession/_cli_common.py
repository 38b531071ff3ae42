"""What every command of the ``usersession`` tool shares: exit codes and errors.

The exit codes are `Exit`; `EXIT_CODES_HELP` explains them to users.

Every expected failure is one line on stderr, ``usersession: error: <what>``,
followed by `` (<OAuth error code>)`` when there is one; never a traceback.
"""

from __future__ import annotations

import enum
from typing import TextIO

__all__ = ["EXIT_CODES_HELP", "CliError", "Exit", "error_line", "printable", "warn"]


class Exit(enum.IntEnum):
    """The tool's exit codes."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_LOGGED_IN = 3
    LOGIN_FAILED = 4
    HTTP_ERROR = 22
    INTERRUPTED = 130


#: The exit codes as ``usersession --help`` shows them.
EXIT_CODES_HELP = """\
exit codes:
  0    success (request: any HTTP answer, unless --fail)
  1    failure: a server could not be reached or answered something unusable,
       or a token store or profile file could not be read or written
  2    usage: a bad option, argument, header, URL or profile setting
  3    not logged in: run usersession login
  4    the login did not complete (denied, expired or timed out)
  22   request --fail: the HTTP status was 400 or more
  130  interrupted (Ctrl-C)
"""


class CliError(Exception):
    """An expected failure: one line on stderr and an exit code.

    Args:
        message: What went wrong, and what to do about it. Never a secret.
        status: The exit code.
        code: The OAuth error code behind it, if any (``invalid_grant``...).
    """

    def __init__(
        self, message: str, *, status: Exit = Exit.FAILURE, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def error_line(message: str, code: str | None = None) -> str:
    """The one line an expected failure prints: ``usersession: error: ...``."""
    # One line, whatever the message holds (a server's description may have
    # line breaks).
    text = " ".join(message.split())
    if code:
        # The code goes last, once, even where the message named it already.
        text = text.replace(f" ({code})", "") + f" ({code})"
    return f"usersession: error: {text}\n"


def warn(stream: TextIO, message: str) -> None:
    """Write ``usersession: warning: <message>`` as one line."""
    stream.write(f"usersession: warning: {' '.join(message.split())}\n")
    stream.flush()


def printable(text: str) -> str:
    """`text` without control characters, for a terminal.

    What a server or a token says could otherwise move the cursor or rewrite
    what the terminal already shows.
    """
    return "".join(char if char.isprintable() else "?" for char in text)

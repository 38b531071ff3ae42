"""``usersession request``: one HTTP request as the profile's user, like curl.

The request carries the user's access token and refreshes it as needed; the
profile's store is shared with every other invocation, so processes running
at once refresh once. The answer is printed the way curl prints it: the
status line and headers first with ``-i``, then the body, JSON pretty-printed
when the answer is JSON and anything else byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Sequence
from typing import BinaryIO, TextIO

import httpx

from . import __version__
from ._cli_common import CliError, Exit
from ._cli_profiles import require_profile
from ._client import Client
from ._errors import InsecureTransport

__all__ = ["RequestOptions", "run_request"]

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_FORM = "application/x-www-form-urlencoded"


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    """What ``usersession request`` was asked to do (see its ``--help``)."""

    method: str
    url: str
    headers: Sequence[str] = ()
    json_body: str | None = None
    form: Sequence[str] = ()
    data_raw: str | None = None
    include: bool = False
    fail: bool = False
    location: bool = False
    timeout: float = 30.0
    profile: str = "default"


@dataclasses.dataclass(frozen=True)
class _Prepared:
    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes | None


def run_request(
    options: RequestOptions, *, out: BinaryIO, err: TextIO, stdin: BinaryIO
) -> int:
    """Send the request and print the answer.

    Returns:
        The exit code: 0 for any HTTP answer, 22 for a status of 400 or more
        when `options.fail` is set.

    Raises:
        CliError: Bad input, no profile or login, or no answer.
        ClientError: The tokens could not be refreshed or sent.
    """
    prepared = _prepare(options, stdin)
    profile = require_profile(options.profile)
    user = profile.logged_in_user()
    headers = {"User-Agent": f"usersession/{__version__}"}
    with Client(
        user, headers=headers, timeout=options.timeout, follow_redirects=False
    ) as client:
        try:
            response = client.request(
                prepared.method,
                prepared.url,
                headers=prepared.headers,
                content=prepared.content,
                follow_redirects=options.location,
            )
        except InsecureTransport as exc:
            raise CliError(str(exc), status=Exit.USAGE) from None
        except httpx.TooManyRedirects:
            raise CliError(
                f"too many redirects from {prepared.method} {prepared.url}"
            ) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"no answer from {prepared.method} {_without_query(prepared.url)}: "
                f"{_transport_reason(exc)}"
            ) from None
        except httpx.HTTPError as exc:
            # An answer that could not be read (a body that fails to decode,
            # a redirect to a URL that is not one).
            raise CliError(
                f"could not read the answer to {prepared.method} "
                f"{_without_query(prepared.url)} ({type(exc).__name__})"
            ) from None

    if options.fail and response.status_code >= 400:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise CliError(
            f"HTTP {response.status_code}{reason} from {prepared.method} "
            f"{_without_query(prepared.url)}",
            status=Exit.HTTP_ERROR,
        )
    if options.include:
        out.write(_head(response))
    _write_body(response, out, err)
    out.flush()
    return Exit.OK


def _prepare(options: RequestOptions, stdin: BinaryIO) -> _Prepared:
    method = options.method.upper()
    if not method or not set(method.lower()) <= _TOKEN_CHARS:
        raise CliError(f"not an HTTP method: {options.method!r}", status=Exit.USAGE)
    url = options.url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise CliError(f"not a URL: {url!r}", status=Exit.USAGE) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(
            f"the URL must start with https:// or http://, not {url!r}",
            status=Exit.USAGE,
        )

    headers = [_header(line) for line in options.headers]
    given = {name.lower() for name, _ in headers}
    content: bytes | None = None
    if options.json_body is not None:
        content = _json_body(options.json_body, stdin)
        # As curl's --json: both headers, unless the caller set them.
        defaults = [("Content-Type", "application/json")]
        defaults.append(("Accept", "application/json"))
        headers += [pair for pair in defaults if pair[0].lower() not in given]
    elif options.form or options.data_raw is not None:
        if options.form:
            content = urllib.parse.urlencode([_field(f) for f in options.form]).encode()
        else:
            content = (options.data_raw or "").encode("utf-8")
        if "content-type" not in given:
            headers.append(("Content-Type", _FORM))
    return _Prepared(method, url, headers, content)


def _header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    name = name.strip()
    if not colon or not name or not set(name.lower()) <= _TOKEN_CHARS:
        raise CliError(f"a header is 'Name: value', not {line!r}", status=Exit.USAGE)
    value = value.strip()
    if any(char in value for char in "\r\n\0"):
        raise CliError(
            f"the value of header {name} has a line break", status=Exit.USAGE
        )
    return name, value


def _field(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise CliError(f"-d takes key=value, not {text!r}", status=Exit.USAGE)
    return key, value


def _json_body(text: str, stdin: BinaryIO) -> bytes:
    # As curl: @file reads a file, @- reads standard input; sent as is.
    if not text.startswith("@"):
        return text.encode("utf-8")
    source = text[1:]
    if source == "-":
        return stdin.read()
    try:
        with open(source, "rb") as file:
            return file.read()
    except OSError as exc:
        raise CliError(
            f"could not read --json {text}: {exc.strerror or exc}", status=Exit.USAGE
        ) from None


def _without_query(url: str) -> str:
    # A query string may hold something private; errors leave it out.
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc).strip()
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


def _head(response: httpx.Response) -> bytes:
    status = f"{response.status_code} {response.reason_phrase}".rstrip()
    lines = [f"{response.http_version} {status}"]
    lines += [
        f"{name.decode('latin-1')}: {value.decode('latin-1')}"
        for name, value in response.headers.raw
    ]
    return ("\n".join(lines) + "\n\n").encode("latin-1", errors="replace")


def _is_json(response: httpx.Response) -> bool:
    header: str = response.headers.get("Content-Type", "")
    media = header.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _write_body(response: httpx.Response, out: BinaryIO, err: TextIO) -> None:
    body = response.content
    if not body:
        return
    if _is_json(response):
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            text = json.dumps(parsed, indent=2, ensure_ascii=False) + "\n"
            out.write(text.encode("utf-8"))
            return
    if _is_terminal(out) and _looks_binary(body, response.charset_encoding):
        # As curl: binary output could garble the terminal; a pipe or a file
        # gets it unchanged.
        err.write(
            f"usersession: warning: the answer is binary ({len(body)} bytes) "
            "and was not printed to the terminal; redirect it to a file or "
            "a pipe\n"
        )
        return
    out.write(body)


def _is_terminal(stream: BinaryIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _looks_binary(body: bytes, charset: str | None) -> bool:
    if b"\0" in body:
        return True
    try:
        body.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return True
    return False

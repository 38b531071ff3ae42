"""Where a token may go: origins (RFC 6454) and the transport rule."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from typing import NamedTuple, Protocol

import httpx

from ._errors import InsecureTransport

__all__ = [
    "Origin",
    "URLParts",
    "check_transport",
    "is_loopback",
    "loggable",
    "origin_of",
    "url_parts",
]

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class URLParts(Protocol):
    """A parsed URL of any HTTP library (httpx, httpx2, yarl): what an origin needs."""

    @property
    def scheme(self) -> str: ...

    @property
    def host(self) -> str | None: ...

    @property
    def port(self) -> int | None: ...


class _Split(NamedTuple):
    scheme: str
    host: str | None
    port: int | None


def url_parts(url: URLParts | str) -> URLParts:
    """Scheme, host and port of `url`, parsed once for the checks below."""
    if not isinstance(url, str):
        return url
    # urlsplit is several times faster than a full URL parse, and scheme,
    # host and port are all an origin needs.
    split = urllib.parse.urlsplit(url)
    try:
        port = split.port
    except ValueError:
        return httpx.URL(url)  # let the full parser say what is wrong
    return _Split(split.scheme, split.hostname, port)


def origin_of(url: URLParts | str) -> Origin:
    """The origin of `url`: scheme, host and port, with the default port filled in."""
    parts = url_parts(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.host or "").lower(), port


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: URLParts | str, what: str = "the access token") -> None:
    """Refuse to let a credential travel in clear text to another machine.

    Raises:
        InsecureTransport: `url` is not HTTPS and its host is not loopback.
    """
    parts = url_parts(url)
    scheme, host = parts.scheme.lower(), parts.host or ""
    if scheme == "https":
        return
    if scheme == "http" and is_loopback(host):
        return
    raise InsecureTransport(
        f"refusing to send {what} over plain {scheme} to {host}: tokens "
        "travel only over https, or over http to a loopback host"
    )


def loggable(url: str) -> str:
    """`url` fit for a log line: without user info (it may hold a password),
    query or fragment."""
    split = urllib.parse.urlsplit(url)
    host = split.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{split.port}" if split.port is not None else ""
    except ValueError:
        port = ""
    return urllib.parse.urlunsplit((split.scheme, host + port, split.path, "", ""))

"""Where a token may go: origins (RFC 6454) and the transport rule."""

from __future__ import annotations

import ipaddress

import httpx

from ._errors import InsecureTransport

__all__ = ["Origin", "check_transport", "is_loopback", "origin_of"]

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL | str) -> Origin:
    """The origin of `url`: scheme, host and port, with the default port filled in."""
    url = httpx.URL(url)
    scheme = url.scheme.lower()
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, url.host.lower(), port


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: httpx.URL | str, what: str = "the access token") -> None:
    """Refuse to let a credential travel in clear text to another machine.

    Raises:
        InsecureTransport: `url` is not HTTPS and its host is not loopback.
    """
    url = httpx.URL(url)
    if url.scheme == "https":
        return
    if url.scheme == "http" and is_loopback(url.host):
        return
    raise InsecureTransport(
        f"refusing to send {what} over plain {url.scheme} to {url.host}: tokens "
        "travel only over https, or over http to a loopback host"
    )

"""Keep every process of the comparison on loopback.

`install()` sets environment variables that stop the libraries under test
from looking for cloud metadata servers, default credentials, proxies or
client certificates, then adds an audit hook (PEP 578) that refuses, in this
process, any socket connect, bind, send or name lookup (``getaddrinfo``,
``gethostbyname``, ``gethostbyaddr``, ``getnameinfo``) that is not aimed at
127.0.0.0/8, ::1 or ``localhost``, and any attempt to open a web browser.
A refused operation raises ``PermissionError``; nothing is ever sent.

Every process of the comparison calls it first: the driver, the servers and
the fleet workers. Each keeps what it refused in `REFUSED`; the servers and
the fleet workers hand theirs to the driver when they stop (`report()`), so
that the results page counts the refusals of every process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import tempfile
from typing import Any

#: Set in each process before any library under test is imported.
ENVIRONMENT = {
    # google-auth: never probe a metadata server; aim any probe at a closed
    # loopback port anyway; no mTLS, no regional access boundary lookups.
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:1",
    "GCE_METADATA_IP": "127.0.0.1:1",
    "GCE_METADATA_ROOT": "127.0.0.1:1",
    "GOOGLE_API_USE_CLIENT_CERTIFICATE": "false",
    "GOOGLE_API_USE_MTLS_ENDPOINT": "never",
    "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED": "false",
    "GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED": "false",
    # The servers are plain HTTP on loopback: Authlib and oauthlib refuse
    # http:// token endpoints unless told this.
    "AUTHLIB_INSECURE_TRANSPORT": "1",
    "OAUTHLIB_INSECURE_TRANSPORT": "1",
    # No proxy, whatever the machine says.
    "NO_PROXY": "*",
    "no_proxy": "*",
}

#: Removed from each process's environment.
UNSET = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
_installed = False

#: What this process tried and was refused, in order.
REFUSED: list[str] = []


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _refuse(what: str) -> None:
    REFUSED.append(what)
    raise PermissionError(f"compare_guard: {what} refused")


def _check_address(event: str, address: Any) -> None:
    # AF_UNIX addresses (str or bytes paths) never leave the machine.
    if isinstance(address, str | bytes):
        return
    if isinstance(address, tuple) and address and _loopback(address[0]):
        return
    _refuse(f"{event} to {address!r}")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        if len(args) >= 2 and args[1] is not None:
            _check_address(event, args[1])
    elif event == "socket.bind":
        _check_address(event, args[1])
    elif event == "socket.getaddrinfo":
        host = args[0]
        if host is not None and not _loopback(host):
            _refuse(f"lookup of {host!r}")
    elif event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        if not _loopback(args[0]):
            _refuse(f"lookup of {args[0]!r}")
    elif event == "socket.getnameinfo":
        # args[0] is the socket address whose name is asked for.
        address = args[0]
        if not (isinstance(address, tuple) and address and _loopback(address[0])):
            _refuse(f"name lookup of {address!r}")
    elif event == "webbrowser.open":
        _refuse("opening a web browser")


def report() -> str:
    """This process's refusals, as one JSON line for the driver."""
    import json

    return json.dumps({"refused": REFUSED})


def install() -> None:
    """Set the environment and add the loopback-only audit hook (once)."""
    global _installed
    if _installed:
        return
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)
    # google-auth and gcloud read their configuration from here: an empty
    # folder of our own, so no credentials of this machine are found.
    os.environ.setdefault("CLOUDSDK_CONFIG", tempfile.mkdtemp(prefix="compare-gcloud-"))
    sys.addaudithook(_hook)
    _installed = True
    # Prove the hook works: a lookup of a name off loopback must be refused
    # before anything is asked of a resolver.
    try:
        socket.getaddrinfo("guard-self-test.invalid", 80)
    except PermissionError:
        REFUSED.clear()
    else:  # pragma: no cover - the hook did not fire
        raise RuntimeError("compare_guard: the audit hook is not active")

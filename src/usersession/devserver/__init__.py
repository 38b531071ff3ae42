"""A development OAuth 2.0 authorization server and demo API, on loopback only.

For demos, for usersession's own tests and for tests of programs built on it::

    from usersession.devserver import DevServer, Fault

    with DevServer(access_token_lifetime=60.0) as dev:
        payload = dev.login("alice")
        dev.inject("token", Fault.delay(0.2))
        ...
        assert dev.stats().refresh_grants == 1

The servers use the standard library only; the demo API validates tokens
with usersession's own `Introspector` (over httpx) at the server's
introspection endpoint. Nothing here is meant for production.
"""

from ._api import DemoAPI, SeenRequest
from ._devserver import ENDPOINTS, DevServer
from ._faults import Fault
from ._logins import LoginSettings
from ._stats import Stats
from ._tokens import token_hash

__all__ = [
    "ENDPOINTS",
    "DemoAPI",
    "DevServer",
    "Fault",
    "LoginSettings",
    "SeenRequest",
    "Stats",
    "token_hash",
]

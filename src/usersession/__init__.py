"""usersession: HTTP sessions bound to a user who logged in with OAuth 2.0.

Every request carries the user's access token; the session refreshes it
once when it expires or an API rejects it, holds the user's other requests
meanwhile, and logs the user out only when the authorization server says
the grant is dead.

APIs that receive those tokens validate them with `Introspector` (token
introspection, RFC 7662); `usersession.asgi` and `usersession.wsgi` plug it
into web apps.
"""

import logging as _logging

from ._auth import UserAuth
from ._client import AsyncClient, Client
from ._errors import (
    AccessDenied,
    ClientError,
    DeviceCodeExpired,
    InsecureTransport,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidToken,
    InvalidUser,
    LoginError,
    LoginTimedOut,
    RefreshUnavailable,
    StoreError,
    TokenCheckError,
    UserRefreshFailed,
)
from ._filestore import FileStore
from ._introspection import Claims, IntrospectionCache, Introspector
from ._keyringstore import KeyringStore
from ._login import (
    DeviceCode,
    abrowser_login,
    aclient_credentials,
    adevice_login,
    browser_login,
    client_credentials,
    device_login,
)
from ._provider import DiscoveryError, Provider
from ._rediscache import RedisIntrospectionCache
from ._redisstore import RedisStore
from ._store import MemoryStore, TokenStore
from ._tokens import Tokens
from ._user import User

# A library speaks through logging and leaves the handlers to the program
# (Python's logging HOWTO); without this, warnings would reach stderr bare.
_logging.getLogger("usersession").addHandler(_logging.NullHandler())

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "Claims",
    "Client",
    "ClientError",
    "DeviceCode",
    "DeviceCodeExpired",
    "DiscoveryError",
    "FileStore",
    "InsecureTransport",
    "InsufficientScope",
    "IntrospectionCache",
    "IntrospectionUnavailable",
    "Introspector",
    "InvalidToken",
    "InvalidUser",
    "KeyringStore",
    "LoginError",
    "LoginTimedOut",
    "MemoryStore",
    "Provider",
    "RedisIntrospectionCache",
    "RedisStore",
    "RefreshUnavailable",
    "StoreError",
    "TokenCheckError",
    "TokenStore",
    "Tokens",
    "User",
    "UserAuth",
    "UserRefreshFailed",
    "abrowser_login",
    "aclient_credentials",
    "adevice_login",
    "browser_login",
    "client_credentials",
    "device_login",
]

__version__ = "0.1.0"

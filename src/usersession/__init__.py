"""usersession: HTTP sessions bound to a user who logged in with OAuth 2.0.

Every request carries the user's access token; the session refreshes it
once when it expires or an API rejects it, holds the user's other requests
meanwhile, and logs the user out only when the authorization server says
the grant is dead.
"""

from ._auth import UserAuth
from ._client import AsyncClient, Client
from ._errors import (
    ClientError,
    InsecureTransport,
    InvalidUser,
    RefreshUnavailable,
    StoreError,
    UserRefreshFailed,
)
from ._filestore import FileStore
from ._keyringstore import KeyringStore
from ._provider import DiscoveryError, Provider
from ._redisstore import RedisStore
from ._store import MemoryStore, TokenStore
from ._tokens import Tokens
from ._user import User

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "DiscoveryError",
    "FileStore",
    "InsecureTransport",
    "InvalidUser",
    "KeyringStore",
    "MemoryStore",
    "Provider",
    "RedisStore",
    "RefreshUnavailable",
    "StoreError",
    "TokenStore",
    "Tokens",
    "User",
    "UserAuth",
    "UserRefreshFailed",
]

__version__ = "0.1.0"

"""The public names are exactly the documented ones."""

from __future__ import annotations

import usersession


def test_exported_names_are_the_documented_ones() -> None:
    assert sorted(usersession.__all__) == sorted(
        [
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
    )
    for name in usersession.__all__:
        assert getattr(usersession, name).__module__.startswith("usersession")


def test_error_tree() -> None:
    assert issubclass(usersession.InvalidUser, usersession.ClientError)
    assert issubclass(usersession.UserRefreshFailed, usersession.InvalidUser)
    assert issubclass(usersession.RefreshUnavailable, usersession.ClientError)
    assert issubclass(usersession.InsecureTransport, usersession.ClientError)
    assert issubclass(usersession.StoreError, usersession.ClientError)
    assert not issubclass(usersession.RefreshUnavailable, usersession.InvalidUser)


def test_clients_are_httpx_clients() -> None:
    import httpx

    assert issubclass(usersession.Client, httpx.Client)
    assert issubclass(usersession.AsyncClient, httpx.AsyncClient)
    assert issubclass(usersession.UserAuth, httpx.Auth)

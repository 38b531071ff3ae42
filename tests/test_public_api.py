"""The public names are exactly the documented ones."""

from __future__ import annotations

import usersession


def test_exported_names_are_the_documented_ones() -> None:
    assert sorted(usersession.__all__) == sorted(
        [
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
    assert issubclass(usersession.LoginError, usersession.ClientError)
    for error in (
        usersession.AccessDenied,
        usersession.DeviceCodeExpired,
        usersession.LoginTimedOut,
    ):
        assert issubclass(error, usersession.LoginError)
    assert issubclass(usersession.TokenCheckError, usersession.ClientError)
    for check_error in (
        usersession.InvalidToken,
        usersession.InsufficientScope,
        usersession.IntrospectionUnavailable,
    ):
        assert issubclass(check_error, usersession.TokenCheckError)


def test_clients_are_httpx_clients() -> None:
    import httpx

    assert issubclass(usersession.Client, httpx.Client)
    assert issubclass(usersession.AsyncClient, httpx.AsyncClient)
    assert issubclass(usersession.UserAuth, httpx.Auth)

"""Section 2 of the contract: what goes out with a request (S1-S6)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, token_hash

from conftest import Mode, login, provider_for, send


def test_s1_logged_out_user_raises_before_any_byte_is_sent(
    dev: DevServer, mode: Mode
) -> None:
    """S1: a logged-out user gets InvalidUser and the API sees nothing."""
    user = usersession.User(provider_for(dev))
    assert not user.is_logged_in
    with pytest.raises(usersession.InvalidUser):
        send(user, mode, "GET", f"{dev.api_url}/me")
    assert dev.api_seen() == []
    assert dev.stats().token_requests == 0


def test_s2_expiring_token_is_refreshed_before_the_request(
    dev: DevServer, mode: Mode
) -> None:
    """S2: inside the leeway, the token is refreshed first; the API never
    sees the old token."""
    now = [1_000_000.0]
    user = login(dev, clock=lambda: now[0])
    tokens = user.tokens
    assert tokens is not None and tokens.expires_at is not None
    old = tokens.access_token
    now[0] = tokens.expires_at - 10  # within the 30 s leeway, not expired
    # The fake client clock only decides when to refresh; the server keeps
    # its own time, so the real expiry is still an hour away.
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert response.history == []
    assert dev.stats().refresh_grants == 1
    assert [seen.token_hash for seen in dev.api_seen()] != [token_hash(old)]
    assert user.tokens is not None and user.tokens.access_token != old


def test_s2_tokens_set_just_after_a_proactive_refresh_are_judged_afresh(
    dev: DevServer, mode: Mode
) -> None:
    """S2: proactive refreshes of one user are at least a second apart, but
    tokens set by a new login are judged on their own: an expired one set
    right after a proactive refresh is refreshed before sending."""
    now = [1_000_000.0]
    user = login(dev, clock=lambda: now[0])
    tokens = user.tokens
    assert tokens is not None and tokens.expires_at is not None
    now[0] = tokens.expires_at - 10  # inside the leeway: refreshed first
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().refresh_grants == 1

    fresh = usersession.Tokens.from_response(dev.login())
    assert fresh.expires_at is not None
    now[0] = fresh.expires_at + 5  # already expired by the client's clock
    user.set_tokens(fresh)
    response = send(user, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert response.history == []
    assert dev.stats().refresh_grants == 2
    assert token_hash(fresh.access_token) not in [s.token_hash for s in dev.api_seen()]


def test_s2_a_token_is_never_due_when_issued(mode: Mode) -> None:
    """S2: a 10 s token with a 30 s leeway is used, not refreshed at once."""
    with DevServer(access_token_lifetime=10.0) as dev:
        user = login(dev, leeway=30.0)
        for _ in range(3):
            assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200
        assert dev.stats().token_requests == 0


def test_s3_exactly_one_bearer_header_replaces_the_callers(
    dev: DevServer, mode: Mode
) -> None:
    """S3: the caller's Authorization header is replaced, never doubled."""
    user = login(dev)
    assert user.tokens is not None
    response = send(
        user,
        mode,
        "GET",
        f"{dev.api_url}/echo",
        headers=[("Authorization", "Bearer caller"), ("Authorization", "Basic x")],
    )
    assert response.json()["authorization"] == f"Bearer {user.tokens.access_token}"
    [seen] = dev.api_seen()
    assert seen.authorization_headers == 1


def test_s3_auth_none_sends_one_request_without_the_token(
    dev: DevServer, mode: Mode
) -> None:
    """S3: ``auth=None`` on a request sends it without any token."""
    user = login(dev)
    response = send(user, mode, "GET", f"{dev.api_url}/echo", auth=None)
    assert "authorization" not in response.json()
    assert send(user, mode, "GET", f"{dev.api_url}/me").status_code == 200


def test_s4_plain_http_to_another_host_is_refused_before_sending() -> None:
    """S4: InsecureTransport, and the transport never sees the request."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    provider = usersession.Provider("https://as.example/token", "c", "s")
    user = usersession.User(provider, usersession.Tokens("at-secret", "rt"))
    with usersession.Client(user, transport=httpx.MockTransport(record)) as client:
        with pytest.raises(usersession.InsecureTransport) as caught:
            client.get("http://api.example/data")
        assert "at-secret" not in str(caught.value)
        for url in (
            "https://api.example/",
            "http://127.0.0.1:1/",
            "http://127.8.9.10/",
            "http://localhost/",
            "http://[::1]:8/",
        ):
            client.get(url)
    assert len(sent) == 5


@pytest.mark.parametrize(
    "option", ["token_endpoint", "revocation_endpoint", "introspection_endpoint"]
)
def test_s4_provider_endpoints_are_checked_at_creation(option: str) -> None:
    """S4: a provider with a plain-HTTP remote endpoint cannot be created."""
    urls = {
        "token_endpoint": "https://as.example/token",
        "revocation_endpoint": None,
        "introspection_endpoint": None,
    }
    urls[option] = "http://as.example/x"
    with pytest.raises(usersession.InsecureTransport):
        usersession.Provider(
            urls["token_endpoint"] or "",
            "c",
            "s",
            revocation_endpoint=urls["revocation_endpoint"],
            introspection_endpoint=urls["introspection_endpoint"],
        )


def test_s4_allow_list_keeps_the_token_from_other_origins(
    dev: DevServer, mode: Mode
) -> None:
    """S4: with allowed_origins, other origins get the request without the token."""
    user = login(dev)

    def echo(client_origin: str) -> dict[str, str]:
        if mode == "sync":
            with usersession.Client(user, allowed_origins=[client_origin]) as client:
                result: dict[str, str] = client.get(f"{dev.api_url}/echo").json()
                return result

        async def go() -> dict[str, str]:
            async with usersession.AsyncClient(
                user, allowed_origins=[client_origin]
            ) as client:
                result: dict[str, str] = (
                    await client.get(f"{dev.api_url}/echo")
                ).json()
                return result

        return asyncio.run(go())

    assert "authorization" in echo(dev.api_url)
    assert "authorization" not in echo("https://elsewhere.example")


def test_s5_token_dropped_on_redirect_from_http_to_https_same_host() -> None:
    """S5: a change of scheme is a change of origin, even on the same host."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.scheme == "http":
            return httpx.Response(302, headers={"Location": "https://localhost/b"})
        return httpx.Response(200)

    provider = usersession.Provider("https://as.example/token", "c", "s")
    user = usersession.User(provider, usersession.Tokens("at", "rt"))
    with usersession.Client(
        user, transport=httpx.MockTransport(handler), follow_redirects=True
    ) as client:
        assert client.get("http://localhost/a").status_code == 200
    assert seen == [("http://localhost/a", "Bearer at"), ("https://localhost/b", None)]


def test_s6_the_id_token_is_never_sent(dev: DevServer, mode: Mode) -> None:
    """S6: the access token goes out; the id token never does."""
    user = login(dev)
    assert user.tokens is not None and user.tokens.id_token
    response = send(user, mode, "GET", f"{dev.api_url}/echo")
    assert user.tokens.id_token not in str(response.json())
    assert response.json()["authorization"] == f"Bearer {user.tokens.access_token}"


@pytest.mark.parametrize(
    "origin", ["api.example.com", "https://api.example.com/path", "ftp://x"]
)
def test_s4_allowed_origins_must_be_origins(origin: str) -> None:
    provider = usersession.Provider("https://as.example/token", "c", "s")
    user = usersession.User(provider, usersession.Tokens("a", "r"))
    with pytest.raises(ValueError, match="allowed_origins"):
        usersession.UserAuth(user, allowed_origins=[origin])

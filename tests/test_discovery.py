"""Provider.discover and adiscover (RFC 8414, OpenID Connect Discovery)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault

from conftest import Mode


def discover(mode: Mode, issuer: str, **options: Any) -> usersession.Provider:
    if mode == "sync":
        return usersession.Provider.discover(issuer, "cid", "secret", **options)
    return asyncio.run(
        usersession.Provider.adiscover(issuer, "cid", "secret", **options)
    )


def test_discovery_reads_the_endpoints(dev: DevServer, mode: Mode) -> None:
    provider = discover(mode, dev.issuer)
    assert provider.issuer == dev.issuer
    assert provider.token_endpoint == dev.token_endpoint
    assert provider.revocation_endpoint == dev.revocation_endpoint
    assert provider.introspection_endpoint == dev.introspection_endpoint


def test_discovery_options_override_the_document(dev: DevServer, mode: Mode) -> None:
    provider = discover(mode, dev.issuer, revocation_endpoint=None, timeout=3.0)
    assert provider.revocation_endpoint is None
    assert provider.timeout == 3.0


def test_discovery_rejects_a_document_for_another_issuer(mode: Mode) -> None:
    """The document's issuer must be the one asked for (RFC 8414 3.3)."""

    def metadata(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"issuer": "https://evil.example", "token_endpoint": "https://x/t"},
        )

    with pytest.raises(usersession.DiscoveryError, match="evil"):
        discover(
            mode,
            "https://as.example",
            transport=httpx.MockTransport(metadata),
            async_transport=httpx.MockTransport(metadata),
        )


def test_discovery_falls_back_to_rfc8414_and_reports_failures(
    dev: DevServer, mode: Mode
) -> None:
    dev.inject("discovery", Fault.status(404, "no"))
    assert discover(mode, dev.issuer).token_endpoint == dev.token_endpoint
    dev.inject("discovery", Fault.status(404, "no"), times=2)
    with pytest.raises(usersession.DiscoveryError, match="no discovery metadata"):
        discover(mode, dev.issuer, cache=False)
    dev.refuse_connections()
    with pytest.raises(usersession.DiscoveryError, match="ConnectError"):
        discover(mode, dev.issuer, cache=False)


def test_discovery_refuses_a_plain_http_remote_issuer(mode: Mode) -> None:
    with pytest.raises(usersession.InsecureTransport):
        discover(mode, "http://as.example")


def test_g1_discovery_is_cached_per_process(dev: DevServer, mode: Mode) -> None:
    """One fetch per issuer and HTTP settings, shared by sync and async
    callers and by every client id; cache=False fetches anew."""
    first = discover(mode, dev.issuer)
    other_mode: Mode = "async" if mode == "sync" else "sync"
    second = discover(other_mode, dev.issuer)
    other_client = usersession.Provider.discover(
        dev.issuer, "someone-else", token_endpoint_auth_method="none"
    )
    assert dev.stats().discovery_requests == 1
    assert first.token_endpoint == second.token_endpoint == dev.token_endpoint
    assert other_client.client_id == "someone-else"
    assert other_client.client_secret is None

    discover(mode, dev.issuer, cache=False)
    assert dev.stats().discovery_requests == 2
    discover(mode, dev.issuer, timeout=3.0)  # the timeout does not matter
    assert dev.stats().discovery_requests == 2


def test_g1_discovery_cache_keys_on_the_transport(mode: Mode) -> None:
    fetched: list[str] = []

    def metadata(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        return httpx.Response(
            200,
            json={"issuer": "https://as.example", "token_endpoint": "https://as/t"},
        )

    one, two = httpx.MockTransport(metadata), httpx.MockTransport(metadata)
    for transport in (one, one, two):
        provider = discover(
            mode, "https://as.example", transport=transport, async_transport=transport
        )
        assert provider.token_endpoint == "https://as/t"
    assert len(fetched) == 2


def test_g1_failed_or_untrusted_discovery_is_not_cached(
    dev: DevServer, mode: Mode
) -> None:
    dev.inject("discovery", Fault.status(503), times=2)
    with pytest.raises(usersession.DiscoveryError):
        discover(mode, dev.issuer)
    assert discover(mode, dev.issuer).issuer == dev.issuer

    answers = iter(["https://evil.example", "https://as.example"])

    def metadata(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"issuer": next(answers), "token_endpoint": "https://as/t"}
        )

    transport = httpx.MockTransport(metadata)
    options: dict[str, Any] = {"transport": transport, "async_transport": transport}
    with pytest.raises(usersession.DiscoveryError, match="evil"):
        discover(mode, "https://as.example", **options)
    assert (
        discover(mode, "https://as.example", **options).issuer == "https://as.example"
    )


def test_a_client_without_a_secret_is_public(dev: DevServer, mode: Mode) -> None:
    """With no secret and no method named, the client authenticates as a
    public client (RFC 6749 2.1), as the device and browser logins need."""
    if mode == "sync":
        provider = usersession.Provider.discover(dev.issuer, dev.public_client_id)
    else:
        provider = asyncio.run(
            usersession.Provider.adiscover(dev.issuer, dev.public_client_id)
        )
    assert provider.token_endpoint_auth_method == "none"
    explicit = usersession.Provider(dev.token_endpoint, "c", "secret")
    assert explicit.token_endpoint_auth_method == "client_secret_basic"

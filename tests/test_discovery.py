"""Provider.discover and adiscover (RFC 8414, OpenID Connect Discovery)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import usersession
from usersession.devserver import DevServer, Fault

from conftest import Mode


def discover(mode: Mode, issuer: str, **options: object) -> usersession.Provider:
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
        discover(mode, dev.issuer)
    dev.refuse_connections()
    with pytest.raises(usersession.DiscoveryError, match="ConnectError"):
        discover(mode, dev.issuer)


def test_discovery_refuses_a_plain_http_remote_issuer(mode: Mode) -> None:
    with pytest.raises(usersession.InsecureTransport):
        discover(mode, "http://as.example")

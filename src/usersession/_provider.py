"""`Provider`: an authorization server and this program's client registration."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Generator, Mapping
from typing import Any, Literal

import httpx

from ._errors import ClientError
from ._secrets import REDACTED
from ._urls import check_transport

__all__ = ["DiscoveryError", "Provider"]

logger = logging.getLogger("usersession")

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

_ENDPOINTS = (
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "device_authorization_endpoint",
    "authorization_endpoint",
)


class DiscoveryError(ClientError):
    """The authorization server's metadata could not be fetched or trusted."""


def _form_encode(value: str) -> str:
    # RFC 6749 section 2.3.1: the client id and secret are form-urlencoded
    # before they are joined for HTTP Basic, so ":" or "%" in them survive.
    return urllib.parse.quote_plus(value)


class Provider:
    """An OAuth 2.0 authorization server, as seen by one registered client.

    Args:
        token_endpoint: URL of the token endpoint (RFC 6749 section 3.2).
        client_id: This program's client identifier.
        client_secret: Its secret; ``None`` for a public client.
        token_endpoint_auth_method: How the client authenticates at the token,
            revocation and introspection endpoints: ``"client_secret_basic"``
            (HTTP Basic; the default with a secret), ``"client_secret_post"``
            (in the form) or ``"none"`` (a public client: only ``client_id``
            is sent; the default without a secret).
        revocation_endpoint: RFC 7009 endpoint, used at logout.
        introspection_endpoint: RFC 7662 endpoint, used by resource servers.
        device_authorization_endpoint: RFC 8628 endpoint.
        authorization_endpoint: RFC 6749 section 3.1 endpoint.
        issuer: The issuer identifier (RFC 8414), when known.
        timeout: Seconds allowed for each request to the authorization server.
        verify: TLS verification for those requests, as httpx takes it.
        transport: An httpx transport for the sync requests to the server
            (tests, proxies). It is never closed by usersession.
        async_transport: The same for async requests.
        require_iss: Refuse a login redirect that carries no ``iss``
            (RFC 9207). Discovery sets it when the server advertises
            ``authorization_response_iss_parameter_supported``.

    Raises:
        InsecureTransport: An endpoint is plain HTTP to a non-loopback host.
        ValueError: The auth method is unknown, or needs a secret that is absent.
    """

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        token_endpoint_auth_method: AuthMethod | None = None,
        revocation_endpoint: str | None = None,
        introspection_endpoint: str | None = None,
        device_authorization_endpoint: str | None = None,
        authorization_endpoint: str | None = None,
        issuer: str | None = None,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool | str = True,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        require_iss: bool = False,
    ) -> None:
        if token_endpoint_auth_method is None:
            # A client without a secret is a public client (RFC 6749 2.1).
            token_endpoint_auth_method = (
                "client_secret_basic" if client_secret else "none"
            )
        if token_endpoint_auth_method not in _AUTH_METHODS:
            raise ValueError(
                f"token_endpoint_auth_method must be one of {', '.join(_AUTH_METHODS)}"
            )
        if token_endpoint_auth_method != "none" and not client_secret:
            raise ValueError(
                f"{token_endpoint_auth_method} needs a client_secret; "
                'use token_endpoint_auth_method="none" for a public client'
            )
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_endpoint_auth_method: AuthMethod = token_endpoint_auth_method
        self.revocation_endpoint = revocation_endpoint
        self.introspection_endpoint = introspection_endpoint
        self.device_authorization_endpoint = device_authorization_endpoint
        self.authorization_endpoint = authorization_endpoint
        self.issuer = issuer
        self.require_iss = require_iss
        self.timeout = timeout
        self._verify = verify
        self._transport = transport
        self._async_transport = async_transport
        self._ssl_context: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()
        for name in _ENDPOINTS:
            url = getattr(self, name)
            if url is not None:
                check_transport(url, what=f"{name.replace('_', ' ')} requests")

    def __repr__(self) -> str:
        secret = None if self._client_secret is None else REDACTED
        return (
            f"Provider(token_endpoint={self.token_endpoint!r}, "
            f"client_id={self.client_id!r}, client_secret={secret}, "
            f"token_endpoint_auth_method={self.token_endpoint_auth_method!r})"
        )

    @property
    def client_secret(self) -> str | None:
        """The client secret (kept out of `repr`)."""
        return self._client_secret

    # -- Discovery (RFC 8414, OpenID Connect Discovery 1.0) --------------------

    @staticmethod
    def _metadata_urls(issuer: str) -> list[str]:
        url = httpx.URL(issuer)
        path = url.path.rstrip("/")
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        return [
            # OpenID Connect Discovery section 4: appended to the issuer.
            f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            # RFC 8414 section 3.1: inserted between the host and the path.
            f"{origin}/.well-known/oauth-authorization-server{path}",
        ]

    @classmethod
    def _from_metadata(
        cls,
        issuer: str,
        metadata: Mapping[str, Any],
        client_id: str,
        client_secret: str | None,
        options: Mapping[str, Any],
    ) -> Provider:
        endpoints: dict[str, str | None] = {}
        for name in _ENDPOINTS:
            value = metadata.get(name)
            endpoints[name] = value if isinstance(value, str) else None
        token_endpoint = endpoints.pop("token_endpoint")
        if token_endpoint is None:
            raise DiscoveryError("the discovery document has no token_endpoint")
        merged: dict[str, Any] = {**endpoints, **options}
        # RFC 9207 section 2.4: a server that says it always sends iss must
        # not be believed when a redirect comes without one.
        merged.setdefault(
            "require_iss",
            metadata.get("authorization_response_iss_parameter_supported") is True,
        )
        return cls(
            token_endpoint,
            client_id,
            client_secret,
            issuer=issuer,
            **merged,
        )

    @classmethod
    def discover(
        cls,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        cache: bool = True,
        **options: Any,
    ) -> Provider:
        """Build a provider from the issuer's published metadata.

        Tries OpenID Connect discovery, then RFC 8414. Keyword options are
        those of `Provider` and override what the document says.

        A document that was fetched and checked is kept for the rest of the
        process, per issuer and per TLS and transport settings, so programs
        that discover on every start-up or login ask the server once.
        ``cache=False`` fetches the document anew (and keeps the new one).

        Raises:
            DiscoveryError: No document could be fetched, or it names another
                issuer.
            InsecureTransport: The issuer or an endpoint is plain HTTP to a
                non-loopback host.
        """
        probe, steps = cls._probe(options), cls._discovery(issuer, options, cache)
        answer: httpx.Response | httpx.TransportError | None = None
        while True:
            try:
                request = steps.send(answer)
            except StopIteration as stop:
                return cls._from_metadata(
                    issuer, stop.value, client_id, client_secret, options
                )
            try:
                answer = probe.send(request)
            except httpx.TransportError as exc:
                answer = exc

    @classmethod
    async def adiscover(
        cls,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        cache: bool = True,
        **options: Any,
    ) -> Provider:
        """The async form of `discover`."""
        probe, steps = cls._probe(options), cls._discovery(issuer, options, cache)
        answer: httpx.Response | httpx.TransportError | None = None
        while True:
            try:
                request = steps.send(answer)
            except StopIteration as stop:
                return cls._from_metadata(
                    issuer, stop.value, client_id, client_secret, options
                )
            try:
                answer = await probe.asend(request)
            except httpx.TransportError as exc:
                answer = exc

    @classmethod
    def _discovery(
        cls, issuer: str, options: Mapping[str, Any], cache: bool
    ) -> Generator[
        httpx.Request, httpx.Response | httpx.TransportError | None, dict[str, Any]
    ]:
        """The discovery requests, one answer at a time; returns the checked
        document (at once when it is cached)."""
        check_transport(issuer, what="discovery requests")
        key = _cache_key(issuer, options)
        cached = _discovery_cache.get(key) if cache else None
        if cached is not None:
            return cached
        for url in cls._metadata_urls(issuer):
            answer = yield httpx.Request(
                "GET", url, headers={"Accept": "application/json"}
            )
            if isinstance(answer, httpx.TransportError):
                raise DiscoveryError(
                    f"could not fetch discovery metadata from {url}: "
                    f"{type(answer).__name__}"
                ) from answer
            if answer is not None and answer.status_code == 200:
                document = _checked_document(issuer, _json(answer))
                _discovery_cache.put(key, document)
                return document
        raise DiscoveryError(f"no discovery metadata found for issuer {issuer!r}")

    @classmethod
    def _probe(cls, options: Mapping[str, Any]) -> Provider:
        # A throwaway public provider that carries only the HTTP settings.
        keys = ("timeout", "verify", "transport", "async_transport")
        return cls(
            "https://discovery.invalid/",
            "discovery",
            token_endpoint_auth_method="none",
            **{key: options[key] for key in keys if key in options},
        )

    # -- Requests to the authorization server ----------------------------------

    def authenticated_request(self, url: str, form: Mapping[str, str]) -> httpx.Request:
        """A form POST to one of the server's endpoints, with client
        authentication (RFC 6749 section 2.3.1)."""
        fields = dict(form)
        headers = {
            "Accept": "application/json",
            # Named even for an empty form (a device authorization request
            # with HTTP Basic and no scope), which httpx would send untyped.
            "Content-Type": "application/x-www-form-urlencoded",
        }
        method = self.token_endpoint_auth_method
        if method == "client_secret_basic":
            pair = (
                f"{_form_encode(self.client_id)}:"
                f"{_form_encode(self._client_secret or '')}"
            )
            headers["Authorization"] = "Basic " + base64.b64encode(
                pair.encode("utf-8")
            ).decode("ascii")
        else:
            fields["client_id"] = self.client_id
            if method == "client_secret_post":
                fields["client_secret"] = self._client_secret or ""
        return httpx.Request("POST", url, data=fields, headers=headers)

    def token_request(self, form: Mapping[str, str]) -> httpx.Request:
        """A request to the token endpoint with these grant fields."""
        return self.authenticated_request(self.token_endpoint, form)

    def _ssl(self) -> ssl.SSLContext | bool | str:
        # Building a default context loads the CA bundle, which is slow; do it
        # once per provider rather than once per request.
        if self._verify is not True:
            return self._verify
        with self._ssl_lock:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            return self._ssl_context

    def _client(self) -> httpx.Client:
        if self._transport is not None:
            return httpx.Client(
                transport=_Borrowed(self._transport), timeout=self.timeout
            )
        return httpx.Client(verify=self._ssl(), timeout=self.timeout)

    def _async_client(self) -> httpx.AsyncClient:
        if self._async_transport is not None:
            return httpx.AsyncClient(
                transport=_AsyncBorrowed(self._async_transport), timeout=self.timeout
            )
        return httpx.AsyncClient(verify=self._ssl(), timeout=self.timeout)

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send a request to the authorization server and read the answer.

        A provider given only an `async_transport` sends through it, on an
        event loop of this call's own.

        Raises:
            httpx.TransportError: No answer came.
        """
        if self._transport is None and self._async_transport is not None:
            return asyncio.run(self.asend(request))
        with self._client() as client:
            return client.send(request)

    async def asend(self, request: httpx.Request) -> httpx.Response:
        """The async form of `send`."""
        async with self._async_client() as client:
            return await client.send(request)


class _Borrowed(httpx.BaseTransport):
    """A caller's transport, used without taking ownership (never closed)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)


class _AsyncBorrowed(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)


def _checked_document(issuer: str, metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise DiscoveryError("the discovery document is not a JSON object")
    # RFC 8414 section 3.3: the document's issuer must be the one we asked
    # for, or an attacker's metadata could point us at its own endpoints.
    if metadata.get("issuer") != issuer:
        raise DiscoveryError(
            f"the discovery document names issuer {metadata.get('issuer')!r}, "
            f"not {issuer!r}"
        )
    return metadata


def _cache_key(issuer: str, options: Mapping[str, Any]) -> tuple[Any, ...]:
    # What decides which document comes back: the issuer, and how the request
    # travels (TLS verification, a caller's transport, compared by identity).
    return (
        issuer,
        _hashable(options.get("verify", True)),
        _hashable(options.get("transport")),
        _hashable(options.get("async_transport")),
    )


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


class _DiscoveryCache:
    """Checked discovery documents, for the life of the process (RFC 8414
    section 3 leaves caching to the client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[tuple[Any, ...], dict[str, Any]] = {}

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            document = self._documents.get(key)
        return None if document is None else dict(document)

    def put(self, key: tuple[Any, ...], document: dict[str, Any]) -> None:
        with self._lock:
            self._documents[key] = dict(document)

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()


_discovery_cache = _DiscoveryCache()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise DiscoveryError("the discovery document is not JSON") from exc

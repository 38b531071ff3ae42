"""The authorization server's endpoints: discovery, token, revocation,
introspection, and the login endpoints of `_logins`."""

from __future__ import annotations

import base64
import binascii
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from ._faults import FaultQueue, serve_with_fault
from ._http import Exchange, Request, Response
from ._logins import DEVICE_CODE_GRANT, LoginEndpoints
from ._stats import Counters
from ._tokens import Client, OAuthError, TokenTables, token_hash

logger = logging.getLogger("usersession.devserver")

#: The fault queue (endpoint name) of each path of the authorization server.
ENDPOINT_BY_PATH: dict[str, str] = {
    "/token": "token",
    "/revoke": "revocation",
    "/introspect": "introspection",
    "/.well-known/openid-configuration": "discovery",
    "/.well-known/oauth-authorization-server": "discovery",
    "/authorize": "authorization",
    "/device_authorization": "device_authorization",
    "/device": "device_verification",
}

#: Endpoint names that faults can be injected into.
AUTH_FAULT_ENDPOINTS = (
    "token",
    "revocation",
    "introspection",
    "discovery",
    "authorization",
    "device_authorization",
    "device_verification",
)

_ARRIVAL_COUNTERS = {
    "token": "token_requests",
    "revocation": "revocation_requests",
    "introspection": "introspection_requests",
    "device_authorization": "device_authorizations",
}

# RFC 6749 5.1 and 5.2: token answers, errors included, must not be cached.
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="usersession-dev"')
_FORM = "application/x-www-form-urlencoded"

Form = dict[str, str]
GrantHandler = Callable[[Client, Form], dict[str, Any]]


def error_response(error: OAuthError) -> Response:
    """The RFC 6749 5.2 JSON answer for an error."""
    payload = {"error": error.error}
    if error.description is not None:
        payload["error_description"] = error.description
    headers = list(_NO_STORE)
    if error.status == 401:
        # RFC 6749 5.2: a 401 must carry a challenge for the scheme the client
        # used; Basic is the one this server offers.
        headers.append(_BASIC_CHALLENGE)
    return Response.json(error.status, payload, headers, oauth_error=error.error)


def _method_not_allowed(allowed: str) -> Response:
    return Response.json(
        405, {"error": "invalid_request"}, [("Allow", allowed)], oauth_error=None
    )


def parse_form(request: Request) -> Form:
    """Decode an application/x-www-form-urlencoded body (RFC 6749 3.2, B).

    Raises:
        OAuthError: ``invalid_request`` for another content type, bad encoding
            or a repeated parameter.
    """
    content_type = (request.header("Content-Type") or "").split(";")[0]
    if content_type.strip().lower() != _FORM:
        raise OAuthError("invalid_request", f"the body must be {_FORM}")
    try:
        pairs = urllib.parse.parse_qsl(
            request.body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=64,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form cannot be decoded") from None
    form: Form = {}
    for name, value in pairs:
        # RFC 6749 3.2: parameters must not be included more than once.
        if name in form:
            raise OAuthError("invalid_request", f"repeated parameter {name}")
        # RFC 6749 3.1: a parameter sent without a value counts as omitted.
        if value:
            form[name] = value
    return form


class AuthorizationServerApp:
    """Answers the authorization server's requests from a :class:`TokenTables`."""

    def __init__(
        self,
        tables: TokenTables,
        counters: Counters,
        faults: FaultQueue,
        issuer: Callable[[], str],
    ) -> None:
        self._tables = tables
        self._counters = counters
        self._faults = faults
        self._issuer = issuer
        self.logins = LoginEndpoints(tables, counters, issuer)
        """The authorization endpoint and the device flow."""
        # One handler per grant type; each shows up in the metadata.
        self.grant_handlers: dict[str, GrantHandler] = {
            "refresh_token": self._grant_refresh_token,
            "client_credentials": self._grant_client_credentials,
            "authorization_code": self.logins.grant_authorization_code,
            DEVICE_CODE_GRANT: self.logins.grant_device_code,
        }
        self._handlers: dict[str, Callable[[Request], Response]] = {
            "token": self._token,
            "revocation": self._revocation,
            "introspection": self._introspection,
            "discovery": self._discovery,
            "authorization": self.logins.authorization,
            "device_authorization": self._device_authorization,
            "device_verification": self.logins.verification_page,
        }

    def serve(self, request: Request, exchange: Exchange) -> None:
        """Route a request, count it and apply any queued fault."""
        endpoint = ENDPOINT_BY_PATH.get(request.path)
        if endpoint is None:
            exchange.send(Response.json(404, {"error": "not_found"}))
            return
        counter = _ARRIVAL_COUNTERS.get(endpoint)
        if counter is not None and request.method == "POST":
            self._counters.add(counter)
        elif endpoint == "discovery" and request.method in ("GET", "HEAD"):
            self._counters.add("discovery_requests")

        def record(sent: Response | None) -> None:
            if (
                endpoint == "token"
                and sent is not None
                and sent.oauth_error == "invalid_grant"
            ):
                self._counters.add("invalid_grant_answers")

        serve_with_fault(
            self._faults.take(endpoint),
            request,
            exchange,
            self._handlers[endpoint],
            record,
        )

    # Discovery

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 / OpenID Connect Discovery 1.0 document."""
        issuer = self._issuer()
        client_auth = ["client_secret_basic", "client_secret_post"]
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "device_authorization_endpoint": f"{issuer}/device_authorization",
            "token_endpoint": f"{issuer}/token",
            "revocation_endpoint": f"{issuer}/revoke",
            "introspection_endpoint": f"{issuer}/introspect",
            "token_endpoint_auth_methods_supported": [*client_auth, "none"],
            "revocation_endpoint_auth_methods_supported": [*client_auth, "none"],
            # RFC 7662 2.1: introspection needs an authenticated caller.
            "introspection_endpoint_auth_methods_supported": client_auth,
            "grant_types_supported": list(self.grant_handlers),
            "response_types_supported": ["code"],
            # RFC 7636 4.2: PKCE is required, with S256 only.
            "code_challenge_methods_supported": ["S256"],
            # RFC 9207 3: authorization responses carry iss.
            "authorization_response_iss_parameter_supported": True,
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["public"],
        }

    def _discovery(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET, HEAD")
        return Response.json(200, self.metadata())

    # Client authentication

    def authenticate(self, request: Request, form: Form, *, public: bool) -> Client:
        """Authenticate the client (RFC 6749 2.3).

        Args:
            request: The request, for its Authorization header.
            form: The decoded form, for client_secret_post or a public client.
            public: Whether a public client (no secret) is acceptable.

        Raises:
            OAuthError: 401 ``invalid_client``, or 400 ``invalid_request`` when
                two methods are used at once.
        """
        headers = request.header_values("Authorization")
        if len(headers) > 1:
            raise OAuthError("invalid_request", "repeated Authorization header")
        if headers:
            basic_id, secret = self._basic_credentials(headers[0])
            # RFC 6749 2.3: a client must not use more than one method at once.
            if "client_secret" in form:
                raise OAuthError("invalid_request", "two client auth methods")
            if form.get("client_id", basic_id) != basic_id:
                raise OAuthError("invalid_request", "client_id does not match")
            client = self._tables.client(basic_id)
            if client is None or not client.secret_matches(secret):
                raise _invalid_client()
            return client
        client_id = form.get("client_id")
        client = None if client_id is None else self._tables.client(client_id)
        if client is None:
            raise _invalid_client()
        if client.is_public:
            if not public or "client_secret" in form:
                raise _invalid_client()
            return client
        posted = form.get("client_secret")
        if posted is None or not client.secret_matches(posted):
            raise _invalid_client()
        return client

    @staticmethod
    def _basic_credentials(header: str) -> tuple[str, str]:
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise _invalid_client()
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid_client() from None
        raw_id, colon, raw_secret = decoded.partition(":")
        if not colon:
            raise _invalid_client()
        # RFC 6749 2.3.1: id and secret are form-urlencoded before base64, so a
        # ':' inside either arrives as %3A and the first ':' is the separator.
        return urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)

    # Token endpoint

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            # RFC 6749 3.2: the token endpoint takes POST only.
            return _method_not_allowed("POST")
        try:
            form = parse_form(request)
            client = self.authenticate(request, form, public=True)
            grant_type = form.get("grant_type")
            if grant_type is None:
                raise OAuthError("invalid_request", "grant_type is missing")
            handler = self.grant_handlers.get(grant_type)
            if handler is None:
                raise OAuthError("unsupported_grant_type")
            payload = handler(client, form)
        except OAuthError as exc:
            return error_response(exc)
        return Response.json(200, payload, _NO_STORE)

    def _grant_refresh_token(self, client: Client, form: Form) -> dict[str, Any]:
        refresh_token = form.get("refresh_token")
        if refresh_token is None:
            raise OAuthError("invalid_request", "refresh_token is missing")
        try:
            result = self._tables.refresh(client, refresh_token, form.get("scope"))
        except OAuthError as exc:
            if exc.reuse_detected:
                self._counters.add("reuse_detections")
                logger.debug(
                    "devserver refresh token %s reused; grant revoked",
                    token_hash(refresh_token),
                )
            raise
        self._counters.add("refresh_grants")
        logger.debug(
            "devserver refresh grant: %s -> %s", result.old_hash, result.new_hash
        )
        return result.payload

    def _grant_client_credentials(self, client: Client, form: Form) -> dict[str, Any]:
        # RFC 6749 4.4: only confidential clients may use this grant.
        if client.is_public:
            raise OAuthError("unauthorized_client", "public clients cannot use this")
        payload = self._tables.client_credentials(client, form.get("scope"))
        self._counters.add("client_credentials_grants")
        return payload

    # Device authorization (RFC 8628 3.1)

    def _device_authorization(self, request: Request) -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        try:
            form = parse_form(request)
            # RFC 8628 3.1: client authentication as at the token endpoint;
            # a public client sends its client_id.
            client = self.authenticate(request, form, public=True)
            payload = self.logins.start_device(client, form)
        except OAuthError as exc:
            return error_response(exc)
        return Response.json(200, payload, _NO_STORE)

    # Revocation (RFC 7009) and introspection (RFC 7662)

    def _revocation(self, request: Request) -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        try:
            form = parse_form(request)
            # RFC 7009 2.1: public clients may revoke their own tokens.
            client = self.authenticate(request, form, public=True)
            if "token" not in form:
                raise OAuthError("invalid_request", "token is missing")
            token = form["token"]
            # token_type_hint only speeds up a lookup (RFC 7009 2.1); every
            # table is searched anyway, so an unknown hint is harmless.
            known = self._tables.revoke(client, token)
        except OAuthError as exc:
            return error_response(exc)
        logger.debug(
            "devserver revocation of %s (%s)",
            token_hash(token),
            "known" if known else "unknown",
        )
        # RFC 7009 2.2: 200 for an unknown or already invalid token too.
        return Response.empty(200, _NO_STORE)

    def _introspection(self, request: Request) -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        try:
            form = parse_form(request)
            self.authenticate(request, form, public=False)
            if "token" not in form:
                raise OAuthError("invalid_request", "token is missing")
        except OAuthError as exc:
            return error_response(exc)
        answer = self._tables.introspect(form["token"])
        if answer["active"]:
            answer["iss"] = self._issuer()
        return Response.json(200, answer, _NO_STORE)


def _invalid_client() -> OAuthError:
    return OAuthError("invalid_client", "client authentication failed", status=401)

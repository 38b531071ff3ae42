"""Logging in at the development server: the authorization endpoint with PKCE
(RFC 6749 section 4.1, RFC 7636) and the device authorization grant
(RFC 8628).

Nobody types a password here: an authorization request from a registered
loopback redirect URI is approved at once for a fixed subject, and a device
code is approved or denied by a test (`LoginEndpoints.decide_device`) or by a
person on the ``/device`` page. `LoginSettings` bends the behaviour for tests:
deny, send a wrong ``state`` or ``iss``, leave the device ``interval`` out,
force ``slow_down``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import html
import logging
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._http import Request, Response
from ._stats import Counters
from ._tokens import Client, OAuthError, TokenTables, parse_scope, token_hash

logger = logging.getLogger("usersession.devserver")

#: RFC 8628 section 3.4: the device flow's grant type.
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

#: Redirect URIs every client has unless registered otherwise: the loopback
#: callback on any port (RFC 8252 section 7.3).
DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1/callback",
    "http://[::1]/callback",
    "http://localhost/callback",
)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

# RFC 7636 section 4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 section 4.2: an S256 challenge is 32 bytes in unpadded base64url.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")

# RFC 8628 section 6.1: a user code of consonants only, typed easily and
# never spelling a word; 20^8 codes.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_USER_CODE_LENGTH = 8

_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_HTML = "text/html; charset=utf-8"
_RECORDED_REDIRECTS = 100

#: Seconds an expired code or device code is remembered.
_KEEP_EXPIRED = 600.0


def s256_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 section 4.6: does `verifier` hash to the S256 `challenge`?

    A verifier outside RFC 7636 section 4.1's form never matches.
    """
    if not _VERIFIER.fullmatch(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=")
    return hmac.compare_digest(computed, challenge.encode("ascii", "replace"))


def redirect_uri_registered(uri: str, registered: Iterable[str]) -> bool:
    """Whether `uri` is one of `registered`, where a loopback ``http`` URI
    registered without a port matches any port (RFC 8252 section 7.3)."""
    try:
        wanted = urllib.parse.urlsplit(uri)
        wanted_port = wanted.port
    except ValueError:
        return False
    if wanted.fragment or wanted.username or wanted.password:
        return False  # RFC 6749 3.1.2: no fragment; no credentials either
    for candidate in registered:
        if uri == candidate:
            return True
        entry = urllib.parse.urlsplit(candidate)
        if (
            entry.scheme == wanted.scheme == "http"
            and entry.hostname in _LOOPBACK_HOSTS
            and entry.hostname == wanted.hostname
            and entry.port is None
            and wanted_port is not None
            and (entry.path, entry.query) == (wanted.path, wanted.query)
        ):
            return True
    return False


def normalize_user_code(user_code: str) -> str:
    """A user code as typed, without dashes or spaces, in capitals."""
    return "".join(c for c in user_code.upper() if c not in "- \t")


@dataclass
class LoginSettings:
    """How the login endpoints behave; change the attributes at any time.

    Attributes:
        subject: The ``sub`` every approved login gets.
        approve: Whether the authorization endpoint approves requests; False
            redirects back with ``access_denied``.
        default_scope: The scope granted when a request names none
            (RFC 6749 section 3.3).
        state_override: Send this ``state`` back instead of the client's (for
            tests of the client's check).
        iss_override: Send this ``iss`` instead of the issuer (RFC 9207);
            ``""`` leaves ``iss`` out.
        code_lifetime: Seconds an authorization code can be redeemed.
        device_interval: The ``interval`` of device authorization answers;
            None leaves it out (clients then use 5 s, and so does the server).
        device_expires_in: Seconds a device code lives.
        forced_slow_downs: Answer ``slow_down`` to this many next device polls,
            however paced (each counts down by one).
    """

    subject: str = "alice"
    approve: bool = True
    default_scope: str = "openid profile offline_access"
    state_override: str | None = None
    iss_override: str | None = None
    code_lifetime: float = 60.0
    device_interval: float | None = 5.0
    device_expires_in: float = 600.0
    forced_slow_downs: int = 0


@dataclass(eq=False)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    subject: str
    expires_at: float
    issued: tuple[str, ...] = ()  # tokens issued for it, revoked on reuse
    used: bool = False


@dataclass(eq=False)
class _Device:
    client_id: str
    user_code: str
    scope: str
    expires_at: float
    interval: float
    last_poll: float | None = None
    decision: str = "pending"  # approved, denied, redeemed
    subject: str = field(default="")


class LoginEndpoints:
    """The authorization endpoint, the device flow and their grants.

    Args:
        tables: Where tokens are issued.
        counters: The server's counters.
        issuer: The issuer identifier, read when needed.
    """

    def __init__(
        self, tables: TokenTables, counters: Counters, issuer: Callable[[], str]
    ) -> None:
        self.settings = LoginSettings()
        self._tables = tables
        self._counters = counters
        self._issuer = issuer
        self._lock = threading.Lock()
        self._redirect_uris: dict[str, tuple[str, ...]] = {}
        self._codes: dict[str, _Code] = {}
        self._devices: dict[str, _Device] = {}
        self._device_by_user_code: dict[str, str] = {}
        self._seen: collections.deque[tuple[str, str]] = collections.deque(
            maxlen=_RECORDED_REDIRECTS
        )

    # Registration and records

    def register_redirect_uris(self, client_id: str, uris: Iterable[str]) -> None:
        """Set a client's redirect URIs (loopback ones match any port)."""
        self._redirect_uris[client_id] = tuple(uris)

    def redirect_uris_seen(self) -> list[tuple[str, str]]:
        """``(endpoint, redirect_uri)`` of the latest authorization and token
        requests that carried one, oldest first (the last 100)."""
        with self._lock:
            return list(self._seen)

    def _record(self, endpoint: str, redirect_uri: str | None) -> None:
        if redirect_uri is not None:
            with self._lock:
                self._seen.append((endpoint, redirect_uri))

    # The authorization endpoint (RFC 6749 section 4.1.1)

    def authorization(self, request: Request) -> Response:
        """Answer ``GET /authorize``: redirect back with a code, or an error."""
        if request.method not in ("GET", "HEAD"):
            return _page(405, "Method not allowed", "Use GET.", [("Allow", "GET")])
        params = _single_values(request.query)
        if params is None:
            return _page(400, "Bad request", "A parameter is repeated.")
        redirect_uri = params.get("redirect_uri")
        self._record("authorization", redirect_uri)

        # RFC 6749 4.1.2.1: with an unknown client or redirect URI the server
        # must not redirect, or it would be an open redirector.
        client_id = params.get("client_id")
        if client_id is None or self._tables.client(client_id) is None:
            return _page(400, "Unknown client", "The client_id is not registered.")
        registered = self._redirect_uris.get(client_id, DEFAULT_REDIRECT_URIS)
        if redirect_uri is None or not redirect_uri_registered(
            redirect_uri, registered
        ):
            return _page(
                400, "Bad redirect_uri", "The redirect_uri is missing or unknown."
            )

        try:
            code = self._issue_code(client_id, redirect_uri, params)
        except OAuthError as exc:
            answer = {"error": exc.error}
            if exc.description:
                answer["error_description"] = exc.description
        else:
            answer = {"code": code}
        return self._redirect(redirect_uri, answer, params.get("state"))

    def _issue_code(
        self, client_id: str, redirect_uri: str, params: Mapping[str, str]
    ) -> str:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only code is supported")
        # RFC 7636 4.4.1: this server requires PKCE, with S256 only.
        challenge = params.get("code_challenge")
        if challenge is None:
            raise OAuthError("invalid_request", "code_challenge required")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "transform algorithm not supported")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise OAuthError("invalid_request", "malformed code_challenge")
        scope = _granted_scope(params.get("scope"), self.settings.default_scope)
        if not self.settings.approve:
            raise OAuthError("access_denied", "the user declined")
        code = secrets.token_urlsafe(32)
        now = self._tables.clock()
        record = _Code(
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=challenge,
            scope=scope,
            subject=self.settings.subject,
            expires_at=now + self.settings.code_lifetime,
        )
        with self._lock:
            self._forget_expired(now)
            self._codes[code] = record
        logger.debug("devserver authorization code %s issued", token_hash(code))
        return code

    def _redirect(
        self, redirect_uri: str, answer: dict[str, str], state: str | None
    ) -> Response:
        settings = self.settings
        if settings.state_override is not None:
            answer["state"] = settings.state_override
        elif state is not None:
            answer["state"] = state  # RFC 6749 4.1.2: returned as received
        # RFC 9207 section 2: the issuer, against mix-up attacks.
        iss = self._issuer() if settings.iss_override is None else settings.iss_override
        if iss:
            answer["iss"] = iss
        separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
        location = redirect_uri + separator + urllib.parse.urlencode(answer)
        return Response(302, b"", None, (("Location", location), *_NO_STORE))

    def grant_authorization_code(
        self, client: Client, form: Mapping[str, str]
    ) -> dict[str, Any]:
        """The ``authorization_code`` grant (RFC 6749 4.1.3, RFC 7636 4.5)."""
        self._record("token", form.get("redirect_uri"))
        code = form.get("code")
        if code is None:
            raise OAuthError("invalid_request", "code is missing")
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.client_id != client.client_id:
                raise OAuthError("invalid_grant", "unknown code")
            if record.used:
                # RFC 6749 4.1.2: a code used twice revokes what it gave.
                issued, record.issued = record.issued, ()
                reused = True
            else:
                reused = False
                _check_code(record, form, self._tables.clock())
                record.used = True
        if reused:
            for token in issued:
                self._tables.revoke_access_token(token)
                self._tables.revoke_refresh_token(token)
            logger.debug("devserver authorization code %s reused", token_hash(code))
            raise OAuthError("invalid_grant", "code already used")
        payload = self._tables.login(client.client_id, record.subject, record.scope)
        record.issued = tuple(
            payload[key] for key in ("access_token", "refresh_token") if key in payload
        )
        self._counters.add("authorization_code_grants")
        return payload

    # The device authorization grant (RFC 8628)

    def start_device(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        """The device authorization answer (RFC 8628 3.1, 3.2)."""
        settings = self.settings
        scope = _granted_scope(form.get("scope"), settings.default_scope)
        device_code = secrets.token_urlsafe(32)
        # RFC 8628 3.2: clients use 5 s when the answer gives no interval.
        interval = settings.device_interval
        now = self._tables.clock()
        with self._lock:
            self._forget_expired(now)
            user_code = self._new_user_code()
            self._devices[device_code] = _Device(
                client_id=client.client_id,
                user_code=user_code,
                scope=scope,
                expires_at=now + settings.device_expires_in,
                interval=5.0 if interval is None else interval,
            )
            self._device_by_user_code[user_code] = device_code
        shown = f"{user_code[:4]}-{user_code[4:]}"
        verification_uri = f"{self._issuer()}/device"
        payload: dict[str, Any] = {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": verification_uri,
            "verification_uri_complete": verification_uri
            + "?"
            + urllib.parse.urlencode({"user_code": shown}),
            "expires_in": _number(settings.device_expires_in),
        }
        if settings.device_interval is not None:
            payload["interval"] = _number(settings.device_interval)
        logger.debug("devserver device code %s issued", token_hash(device_code))
        return payload

    def _forget_expired(self, now: float) -> None:
        # Lock held. Records are kept a while after they expire, so a late
        # poll or exchange still gets expired_token or "code expired".
        horizon = now - _KEEP_EXPIRED
        for code in [c for c, r in self._codes.items() if r.expires_at < horizon]:
            del self._codes[code]
        for device_code, device in list(self._devices.items()):
            if device.expires_at < horizon:
                del self._devices[device_code]
                self._device_by_user_code.pop(device.user_code, None)

    def _new_user_code(self) -> str:
        while True:
            code = "".join(
                secrets.choice(_USER_CODE_ALPHABET) for _ in range(_USER_CODE_LENGTH)
            )
            if code not in self._device_by_user_code:
                return code

    def grant_device_code(
        self, client: Client, form: Mapping[str, str]
    ) -> dict[str, Any]:
        """The device code grant: one poll (RFC 8628 3.4, 3.5)."""
        self._counters.add("device_polls")
        device_code = form.get("device_code")
        if device_code is None:
            raise OAuthError("invalid_request", "device_code is missing")
        now = self._tables.clock()
        with self._lock:
            device = self._devices.get(device_code)
            if device is None or device.client_id != client.client_id:
                raise OAuthError("invalid_grant", "unknown device code")
            decision = _poll(device, now, self.settings)
            if decision == "approved":
                device.decision = "redeemed"
        if decision != "approved":
            raise OAuthError(decision)
        self._counters.add("device_code_grants")
        return self._tables.login(client.client_id, device.subject, device.scope)

    def decide_device(
        self, user_code: str, *, approve: bool, subject: str | None = None
    ) -> bool:
        """Approve or deny the pending device login with this user code.

        Returns:
            False when no live, undecided device code has that user code.
        """
        wanted = normalize_user_code(user_code)
        now = self._tables.clock()
        with self._lock:
            device_code = self._device_by_user_code.get(wanted)
            device = None if device_code is None else self._devices.get(device_code)
            if device is None or device.decision != "pending":
                return False
            if now >= device.expires_at:
                return False
            device.decision = "approved" if approve else "denied"
            device.subject = subject or self.settings.subject
        return True

    def verification_page(self, request: Request) -> Response:
        """``GET /device``: a form for the user code; ``POST /device``: the
        person's decision (RFC 8628 3.3)."""
        if request.method in ("GET", "HEAD"):
            params = _single_values(request.query) or {}
            return _device_form(params.get("user_code", ""))
        if request.method != "POST":
            return _page(405, "Method not allowed", "Use GET or POST.")
        form = _single_values(request.body.decode("utf-8", "replace")) or {}
        approve = form.get("action") == "approve"
        if self.decide_device(form.get("user_code", ""), approve=approve):
            what = "approved" if approve else "denied"
            return _page(200, f"Login {what}", "You can return to your device.")
        return _page(
            400, "Unknown code", "That code is unknown, expired or already used."
        )


def _check_code(record: _Code, form: Mapping[str, str], now: float) -> None:
    if now >= record.expires_at:
        raise OAuthError("invalid_grant", "code expired")
    # RFC 6749 4.1.3: the same redirect_uri as in the authorization request.
    if form.get("redirect_uri") != record.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match")
    verifier = form.get("code_verifier")
    if verifier is None:
        raise OAuthError("invalid_grant", "code_verifier is missing")
    if not s256_matches(verifier, record.challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match")


def _poll(device: _Device, now: float, settings: LoginSettings) -> str:
    """The answer to one poll: an RFC 8628 3.5 error code, or "approved"."""
    last, device.last_poll = device.last_poll, now
    if now >= device.expires_at:
        return "expired_token"
    if device.decision == "denied":
        return "access_denied"
    if device.decision == "redeemed":
        return "invalid_grant"
    too_soon = last is not None and now - last < device.interval
    if too_soon or settings.forced_slow_downs > 0:
        if not too_soon:
            settings.forced_slow_downs -= 1
        # RFC 8628 3.5: the interval grows by 5 s for this and every later
        # request.
        device.interval += 5.0
        return "slow_down"
    if device.decision == "approved":
        return "approved"
    return "authorization_pending"


def _granted_scope(requested: str | None, default: str) -> str:
    if requested is None:
        return default
    try:
        return " ".join(parse_scope(requested))
    except ValueError:
        raise OAuthError("invalid_scope", "malformed scope") from None


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _single_values(text: str) -> dict[str, str] | None:
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        return None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            return None  # RFC 6749 3.1: no parameter may be repeated
        values[name] = value
    return values


def _page(
    status: int,
    title: str,
    text: str,
    headers: Iterable[tuple[str, str]] = (),
    body: str = "",
) -> Response:
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{body}"
        "</body></html>\n"
    )
    return Response(status, page.encode(), _HTML, (*headers, *_NO_STORE))


def _device_form(user_code: str) -> Response:
    form = (
        "<form method='post' action='/device'>"
        "<label>Code <input name='user_code' autocomplete='off' "
        f"value='{html.escape(user_code, quote=True)}'></label> "
        "<button name='action' value='approve'>Approve</button> "
        "<button name='action' value='deny'>Deny</button></form>"
    )
    return _page(
        200,
        "Device login",
        "Enter the code your device shows, then approve or deny the login.",
        body=form,
    )

"""Run the test authorization server (``tests/oidc/server.mjs``) from Python.

The server is the ``oidc-provider`` npm package with a test configuration; it
needs Node.js (``node``, and ``npm`` for the first install). Typical use::

    with run_oidc_provider(access_token_ttl=4) as provider:
        tokens = login_with_pkce(provider)
        ...
        assert provider.stats()["grants"]["refresh_token"] == 1

Nothing here prints or logs a token or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "OIDC_DIR",
    "OTHER_CLIENT_ID",
    "OTHER_CLIENT_SECRET",
    "OidcProvider",
    "OidcServerError",
    "confirm_device",
    "ensure_installed",
    "login_with_pkce",
    "pkce_pair",
    "run_oidc_provider",
]

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
DEFAULT_CLIENT_ID = "usersession-test"
DEFAULT_CLIENT_SECRET = "usersession-test-secret-not-for-production"
DEFAULT_ACCOUNT_ID = "test-user"
# A second confidential client (client_credentials only), fixed in server.mjs:
# a source of tokens issued to a client other than the one asking.
OTHER_CLIENT_ID = "usersession-other"
OTHER_CLIENT_SECRET = "usersession-other-secret-not-for-production"
# Registered without a port: any loopback port is accepted (RFC 8252, 7.3).
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"

_READY_RE = re.compile(rb"^READY (http://127\.0\.0\.1:\d+)\r?$")
_HTTP_TIMEOUT = httpx.Timeout(10.0)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class OidcServerError(RuntimeError):
    """The test authorization server could not be installed, started or used."""


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OidcServerError(
            f"`{name}` was not found on PATH: the oidc tests need Node.js 20 or "
            "later with npm (Debian: `apt-get install nodejs npm`)"
        )
    return path


def _pinned_version() -> str | None:
    manifest = json.loads((OIDC_DIR / "package.json").read_text(encoding="utf-8"))
    version = manifest.get("dependencies", {}).get("oidc-provider")
    return version if isinstance(version, str) else None


def _installed_version() -> str | None:
    manifest = OIDC_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version")
    return version if isinstance(version, str) else None


def ensure_installed() -> Path:
    """Install the server's npm dependencies if needed; return ``tests/oidc``.

    Runs ``npm ci`` (``npm install`` when there is no lock file) when
    ``node_modules`` is missing or holds another oidc-provider version than
    the one pinned in ``package.json``. Raises :class:`OidcServerError` when
    ``node`` or ``npm`` is missing or the install fails.
    """
    _require_tool("node")
    installed = _installed_version()
    if installed is not None and installed == _pinned_version():
        return OIDC_DIR

    npm = _require_tool("npm")
    verb = "ci" if (OIDC_DIR / "package-lock.json").is_file() else "install"
    command = [npm, verb, "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        result = subprocess.run(
            command,
            cwd=OIDC_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OidcServerError(f"`npm {verb}` in {OIDC_DIR} timed out") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise OidcServerError(
            f"`npm {verb}` in {OIDC_DIR} failed with exit code "
            f"{result.returncode}:\n{output}"
        )
    if _installed_version() is None:
        raise OidcServerError(f"`npm {verb}` did not install oidc-provider")
    return OIDC_DIR


def _form_encode(value: str) -> str:
    # RFC 6749, 2.3.1: id and secret are form-encoded before Basic encoding.
    return quote(value, safe="")


class OidcProvider:
    """A running test authorization server and its confidential client."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        access_token_ttl: int,
        discovery: Mapping[str, Any],
        startup_seconds: float,
        log: IO[bytes],
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_ttl = access_token_ttl
        self.redirect_uri = DEFAULT_REDIRECT_URI
        self.account_id = DEFAULT_ACCOUNT_ID
        self.discovery: dict[str, Any] = dict(discovery)
        self.startup_seconds = startup_seconds
        self.authorization_endpoint = self._endpoint("authorization_endpoint")
        self.token_endpoint = self._endpoint("token_endpoint")
        self.introspection_endpoint = self._endpoint("introspection_endpoint")
        self.revocation_endpoint = self._endpoint("revocation_endpoint")
        self.userinfo_endpoint = self._endpoint("userinfo_endpoint")
        self.jwks_uri = self._endpoint("jwks_uri")
        self.device_authorization_endpoint = self._endpoint(
            "device_authorization_endpoint"
        )
        self.device_verification_uri = f"{issuer}/device"
        self._log = log
        self._http = httpx.Client(timeout=_HTTP_TIMEOUT, follow_redirects=False)

    def _endpoint(self, name: str) -> str:
        value = self.discovery.get(name)
        if not isinstance(value, str) or not value.startswith(self.issuer + "/"):
            raise OidcServerError(f"discovery has no usable {name}")
        return value

    def __repr__(self) -> str:
        return f"OidcProvider(issuer={self.issuer!r}, client_id={self.client_id!r})"

    @property
    def client_auth(self) -> httpx.BasicAuth:
        """client_secret_basic credentials for this provider's client."""
        return httpx.BasicAuth(
            _form_encode(self.client_id), _form_encode(self.client_secret)
        )

    def close(self) -> None:
        self._http.close()

    # -- test-only routes -------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The server's counters (``GET /test/stats``).

        Keys: ``grants`` (successful token responses by grant type),
        ``grant_errors`` (failed token requests by grant type, then error
        code), ``invalid_grant``, ``refresh_token_invalid_grant``,
        ``token_requests`` (by grant type), ``max_concurrent_token_requests``,
        ``introspections``, ``revocations``, ``access_tokens_dropped``,
        ``authorizations``,
        ``interactions_completed``, ``server_errors``.
        """
        response = self._http.get(f"{self.issuer}/test/stats")
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise OidcServerError("/test/stats did not answer a JSON object")
        return data

    def reset_stats(self) -> None:
        """Zero every counter (``POST /test/stats/reset``)."""
        self._http.post(f"{self.issuer}/test/stats/reset").raise_for_status()

    def set_token_delay(self, seconds: float) -> None:
        """Hold every token request ``seconds`` before processing it (0: off)."""
        ms = round(seconds * 1000)
        response = self._http.post(
            f"{self.issuer}/test/token-delay", data={"ms": str(ms)}
        )
        response.raise_for_status()

    def set_device_interval(self, seconds: int | None) -> None:
        """Make device authorization answers carry ``interval: seconds``;
        None restores oidc-provider's answer, which has none (clients then
        poll every 5 s, RFC 8628 3.2). The server does not enforce it."""
        value = "" if seconds is None else str(seconds)
        response = self._http.post(
            f"{self.issuer}/test/device-interval", data={"seconds": value}
        )
        response.raise_for_status()

    def drop_access_token(self, access_token: str) -> None:
        """Make one access token unknown to the server, keeping its grant.

        Unlike :meth:`revoke`, which in oidc-provider also ends the refresh
        token of the same grant, this leaves the refresh token usable: the
        way to get a 401 from the resource while a refresh can still succeed.
        """
        response = self._http.post(
            f"{self.issuer}/test/drop-access-token", data={"token": access_token}
        )
        if response.status_code == 404:
            raise OidcServerError("the server does not know that access token")
        response.raise_for_status()

    def server_log(self) -> str:
        """What the server wrote to stderr so far (notices, server errors)."""
        self._log.flush()
        self._log.seek(0)
        data = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return data.decode("utf-8", "replace")

    # -- OAuth requests with the client's credentials ---------------------

    def token_request(self, data: Mapping[str, str]) -> httpx.Response:
        """POST ``data`` to the token endpoint with client_secret_basic."""
        return self._http.post(
            self.token_endpoint, data=dict(data), auth=self.client_auth
        )

    def refresh(self, refresh_token: str) -> httpx.Response:
        """A refresh_token grant; the response is returned whatever its status."""
        return self.token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    def client_credentials(self, scope: str | None = None) -> dict[str, Any]:
        """A client_credentials grant; returns the token response."""
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        return _token_json(self.token_request(data))

    def introspect(
        self, token: str, *, token_type_hint: str | None = None
    ) -> dict[str, Any]:
        """The introspection response (RFC 7662) for ``token``."""
        data = {"token": token}
        if token_type_hint is not None:
            data["token_type_hint"] = token_type_hint
        response = self._http.post(
            self.introspection_endpoint, data=data, auth=self.client_auth
        )
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise OidcServerError("introspection did not answer a JSON object")
        return body

    def revoke(self, token: str, *, token_type_hint: str | None = None) -> None:
        """Revoke ``token`` (RFC 7009).

        oidc-provider then also revokes every other token of the same grant:
        revoking an access token ends its refresh token too.
        """
        data = {"token": token}
        if token_type_hint is not None:
            data["token_type_hint"] = token_type_hint
        response = self._http.post(
            self.revocation_endpoint, data=data, auth=self.client_auth
        )
        response.raise_for_status()


def _token_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise OidcServerError(
            f"token endpoint answered HTTP {response.status_code}"
            + (f" ({error})" if error else "")
        )
    return body


def _read_ready_line(
    process: subprocess.Popen[bytes], log: IO[bytes], timeout: float
) -> str:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout

    def failure(reason: str) -> OidcServerError:
        log.flush()
        log.seek(0)
        tail = log.read()[-4000:].decode("utf-8", "replace").strip()
        return OidcServerError(
            f"oidc test server {reason}" + (f"; its stderr:\n{tail}" if tail else "")
        )

    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise failure(f"did not print READY within {timeout:g} s")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                process.wait(timeout=5)
                raise failure(f"exited with code {process.returncode} before READY")
            buffer += chunk
    first_line = buffer.split(b"\n", 1)[0]
    match = _READY_RE.match(first_line)
    if match is None:
        raise failure("printed something other than the READY line first")
    return match.group(1).decode("ascii")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def run_oidc_provider(
    *,
    access_token_ttl: int = 4,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    refresh_token_ttl: int = 24 * 60 * 60,
    ready_timeout: float = 30.0,
) -> Iterator[OidcProvider]:
    """Start the test server on a free 127.0.0.1 port; stop it on exit.

    Installs the npm dependencies first if needed (see :func:`ensure_installed`).
    The server process is terminated (then killed after 5 s) when the block
    ends, and exits on its own if this process dies (its stdin closes).
    """
    if access_token_ttl < 1 or refresh_token_ttl < 1:
        raise ValueError("token lifetimes must be at least 1 second")
    if not client_id or not client_secret:
        raise ValueError("client_id and client_secret must not be empty")
    directory = ensure_installed()
    node = _require_tool("node")
    env = dict(os.environ)
    env.update(
        {
            "OIDC_CLIENT_ID": client_id,
            "OIDC_CLIENT_SECRET": client_secret,
            "OIDC_ACCESS_TOKEN_TTL": str(access_token_ttl),
            "OIDC_REFRESH_TOKEN_TTL": str(refresh_token_ttl),
            "OIDC_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "OIDC_EXIT_ON_STDIN_EOF": "1",
            "NODE_ENV": "test",
        }
    )
    env.pop("OIDC_PORT", None)

    started = time.monotonic()
    with (
        tempfile.TemporaryFile(prefix="oidc-server-", suffix=".log") as log,
        subprocess.Popen(
            [node, "server.mjs", "0"],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            bufsize=0,
        ) as process,
    ):
        try:
            issuer = _read_ready_line(process, log, ready_timeout)
            startup_seconds = time.monotonic() - started
            with httpx.Client(timeout=_HTTP_TIMEOUT) as http:
                response = http.get(f"{issuer}/.well-known/openid-configuration")
                response.raise_for_status()
                discovery = response.json()
            if not isinstance(discovery, dict) or discovery.get("issuer") != issuer:
                raise OidcServerError("discovery document does not match the issuer")
            provider = OidcProvider(
                issuer=issuer,
                client_id=client_id,
                client_secret=client_secret,
                access_token_ttl=access_token_ttl,
                discovery=discovery,
                startup_seconds=startup_seconds,
                log=log,
            )
            try:
                yield provider
            finally:
                provider.close()
        finally:
            _stop(process)


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, S256 code_challenge)`` (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters from the unreserved set
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def _is_redirect_target(url: httpx.URL, redirect_uri: httpx.URL) -> bool:
    return (
        url.scheme == redirect_uri.scheme
        and url.host == redirect_uri.host
        and url.port == redirect_uri.port
        and url.path == redirect_uri.path
    )


def login_with_pkce(
    provider: OidcProvider,
    *,
    scope: str = "openid",
    redirect_uri: str | None = None,
    max_redirects: int = 10,
) -> dict[str, Any]:
    """Log the test user in with the authorization code flow and PKCE S256.

    Follows the provider's redirects and its test-only interaction route with
    a cookie-keeping httpx client, stops at the redirect to ``redirect_uri``
    without connecting to it, checks ``state`` (and ``iss`` when present),
    and redeems the code with the verifier using client_secret_basic.
    Returns the token response (``access_token``, ``refresh_token``,
    ``expires_in``, ``token_type``, ``scope``, and ``id_token`` for openid).
    """
    target_text = redirect_uri or provider.redirect_uri
    target = httpx.URL(target_text)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": target_text,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if "openid" in scope.split():
        params["nonce"] = secrets.token_urlsafe(16)

    url = httpx.URL(provider.authorization_endpoint, params=params)
    callback: httpx.URL | None = None
    with httpx.Client(timeout=_HTTP_TIMEOUT, follow_redirects=False) as browser:
        for _ in range(max_redirects):
            response = browser.get(url)
            if response.status_code not in _REDIRECT_STATUSES:
                raise OidcServerError(
                    f"authorization flow stopped at {url.path} with HTTP "
                    f"{response.status_code}: {response.text[:500]}"
                )
            location = response.headers.get("location")
            if not location:
                raise OidcServerError(f"redirect from {url.path} has no Location")
            url = url.join(location)
            if _is_redirect_target(url, target):
                callback = url
                break
            if url.host not in {"127.0.0.1", "::1"}:
                raise OidcServerError("authorization flow left the loopback host")
        else:
            raise OidcServerError(f"no redirect to the client after {max_redirects}")

    query = callback.params
    if "error" in query:
        raise OidcServerError(
            f"authorization failed: {query['error']}: "
            f"{query.get('error_description', '')}"
        )
    if query.get("state") != state:
        raise OidcServerError("authorization response state does not match")
    if "iss" in query and query["iss"] != provider.issuer:
        raise OidcServerError("authorization response iss does not match")
    code = query.get("code")
    if not code:
        raise OidcServerError("authorization response has no code")

    tokens = _token_json(
        provider.token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": target_text,
                "code_verifier": verifier,
            }
        )
    )
    for key in ("access_token", "refresh_token", "expires_in"):
        if key not in tokens:
            raise OidcServerError(f"token response has no {key}")
    return tokens


_XSRF_RE = re.compile(r'name="xsrf" value="([^"]+)"')


def _xsrf(page: httpx.Response) -> str:
    match = _XSRF_RE.search(page.text)
    if page.status_code != 200 or match is None:
        raise OidcServerError(
            f"device verification page answered HTTP {page.status_code} "
            "without its form"
        )
    return match.group(1)


def confirm_device(
    provider: OidcProvider,
    user_code: str,
    *,
    approve: bool = True,
    max_redirects: int = 10,
) -> None:
    """Play the person at the device verification pages (RFC 8628 3.3).

    Enters ``user_code`` on ``/device``, then confirms it (or, with
    ``approve=False``, aborts, which makes the device's polls answer
    ``access_denied``). A confirmation continues like an authorization
    request: through the test-only interaction route, which logs the fixed
    account in, and back to the verification pages' success page.
    """
    page_url = provider.device_verification_uri
    with httpx.Client(timeout=_HTTP_TIMEOUT, follow_redirects=False) as browser:
        entered = browser.post(
            page_url,
            data={"xsrf": _xsrf(browser.get(page_url)), "user_code": user_code},
        )
        decision = {"xsrf": _xsrf(entered), "user_code": user_code}
        decision["confirm" if approve else "abort"] = "yes"
        response = browser.post(page_url, data=decision)
        for _ in range(max_redirects):
            if response.status_code not in _REDIRECT_STATUSES:
                break
            location = httpx.URL(page_url).join(response.headers["location"])
            if location.host != "127.0.0.1":
                raise OidcServerError("device verification left the loopback host")
            response = browser.get(location)
    expected = "Signed in" if approve else "AbortedError"
    if expected not in response.text:
        raise OidcServerError(
            f"device verification ended with HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )

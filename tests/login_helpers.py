"""What the login tests share: a fake browser, a fake clock, a transport that
remembers every secret it carried, and a check that logs hold none of them.

The fake browser runs in a thread named `BROWSER_THREAD`, as a real browser
is another process: its own HTTP client logs the redirect (code included),
which is the browser's business, not usersession's, so the log checks leave
records of that thread out.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

import httpx

import usersession
from usersession._secrets import SECRET_FIELDS
from usersession.devserver import DevServer

BROWSER_THREAD = "fake-browser"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FakeBrowser:
    """Plays the person's browser: pass it as ``open_browser``.

    It GETs the authorization URL with httpx, following redirects by hand
    (keeping cookies) while they stay on the authorization server, then
    follows the redirect to the loopback callback for real, on the socket
    usersession listens on.

    Attributes:
        urls: The URLs it was asked to open.
        callback: The loopback callback URL it was sent to, if any.
        callback_status: The loopback server's answer status.
        callback_page: The loopback server's answer page.
    """

    def __init__(self, *, max_redirects: int = 10) -> None:
        self.max_redirects = max_redirects
        self.urls: list[str] = []
        self.callback: httpx.URL | None = None
        self.callback_status: int | None = None
        self.callback_page = ""
        self._error: BaseException | None = None

    def __call__(self, url: str) -> None:
        self.urls.append(url)
        thread = threading.Thread(target=self._browse, args=(url,), name=BROWSER_THREAD)
        thread.start()
        thread.join(30)
        if self._error is not None:
            raise self._error

    def _browse(self, url: str) -> None:
        try:
            self._follow(httpx.URL(url))
        except BaseException as exc:
            self._error = exc

    def _follow(self, url: httpx.URL) -> None:
        server = (url.scheme, url.host, url.port)
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            for _ in range(self.max_redirects):
                response = client.get(url)
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or location is None:
                    raise AssertionError(
                        f"the authorization server answered {response.status_code} "
                        f"at {url.path}, not a redirect"
                    )
                url = url.join(location)
                assert url.host in ("127.0.0.1", "::1", "localhost")
                if (url.scheme, url.host, url.port) != server:
                    break
            else:
                raise AssertionError("too many redirects")
            self.callback = url
            answer = client.get(url)
            self.callback_status = answer.status_code
            self.callback_page = answer.text


class FakeClock:
    """A monotonic clock that only `sleep` moves; sync and async sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.start = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    @property
    def elapsed(self) -> float:
        return self.now - self.start


class SecretRecorder:
    """Transports that pass requests on and remember every credential that
    went to or came from the authorization server."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.forms: list[dict[str, str]] = []
        # No kept-alive connections: an async one would outlive the event
        # loop of the asyncio.run() that opened it.
        fresh = httpx.Limits(max_keepalive_connections=0)
        self.transport = _Recording(self, httpx.HTTPTransport(limits=fresh))
        self.async_transport = _AsyncRecording(
            self, httpx.AsyncHTTPTransport(limits=fresh)
        )

    def note_request(self, request: httpx.Request) -> None:
        form = dict(urllib.parse.parse_qsl(request.content.decode("utf-8")))
        self.forms.append(form)
        self.secrets.update(
            value for key, value in form.items() if key in SECRET_FIELDS and value
        )
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            self.secrets.add(urllib.parse.unquote_plus(decoded.partition(":")[2]))

    def note_response(self, response: httpx.Response) -> None:
        try:
            payload: Any = json.loads(response.content)
        except ValueError:
            return
        if isinstance(payload, dict):
            self.secrets.update(
                value
                for key, value in payload.items()
                if key in SECRET_FIELDS and isinstance(value, str) and value
            )

    def provider(self, dev: DevServer, **options: Any) -> usersession.Provider:
        """A provider of `dev` (by its metadata) whose requests are recorded."""
        client_id = options.pop("client_id", dev.client_id)
        secret = options.pop("client_secret", dev.client_secret)
        return usersession.Provider(
            dev.token_endpoint,
            client_id,
            secret,
            authorization_endpoint=dev.authorization_endpoint,
            device_authorization_endpoint=dev.device_authorization_endpoint,
            revocation_endpoint=dev.revocation_endpoint,
            issuer=dev.issuer,
            transport=self.transport,
            async_transport=self.async_transport,
            **options,
        )


class _Recording(httpx.BaseTransport):
    def __init__(self, recorder: SecretRecorder, inner: httpx.BaseTransport) -> None:
        self._recorder = recorder
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._recorder.note_request(request)
        response = self._inner.handle_request(request)
        response.read()
        self._recorder.note_response(response)
        return response


class _AsyncRecording(httpx.AsyncBaseTransport):
    def __init__(
        self, recorder: SecretRecorder, inner: httpx.AsyncBaseTransport
    ) -> None:
        self._recorder = recorder
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._recorder.note_request(request)
        response = await self._inner.handle_async_request(request)
        await response.aread()
        self._recorder.note_response(response)
        return response


def leaks(
    records: Iterable[logging.LogRecord],
    secrets: Iterable[str],
    *texts: str,
) -> list[str]:
    """Each place a secret shows: a log record (the fake browser's left out)
    or one of `texts` (reprs, error messages)."""
    secrets = [secret for secret in secrets if len(secret) >= 8]
    places = [
        (f"log {record.name}", _record_text(record))
        for record in records
        if record.threadName != BROWSER_THREAD
    ]
    places += [("text", text) for text in texts]
    return [
        f"{where}: {text[:120]}"
        for where, text in places
        for secret in secrets
        if secret in text
    ]


def _record_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {record.exc_info[1]!r} {record.exc_info[1]}"
    return text

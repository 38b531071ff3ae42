"""Faults that the development servers can be told to produce."""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

from ._http import Exchange, Request, Response

FaultKind = Literal[
    "delay", "late_answer", "status", "oauth_error", "drop", "hang", "malformed"
]

# RFC 6749 5.2: error codes are %x20-21 / %x23-5B / %x5D-7E (no '"' or '\').
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_NO_BODY = frozenset({204, 304})
_MALFORMED_BODY = b'{"access_token": "unterminated'


def _check_seconds(seconds: float) -> float:
    value = float(seconds)
    if not math.isfinite(value) or value < 0:
        raise ValueError("seconds must be a finite number >= 0")
    return value


def _check_status(code: int) -> int:
    if isinstance(code, bool) or not 200 <= int(code) <= 599:
        raise ValueError("status must be a final HTTP status, 200 to 599")
    return int(code)


def _check_header_value(value: str) -> str:
    # A CR or LF would let a test fault split the answer into two.
    if any(c in value for c in "\r\n\0"):
        raise ValueError("header values must be single-line")
    return value


def _check_headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    items = tuple((headers or {}).items())
    for name, value in items:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        _check_header_value(value)
    return items


def _check_error_code(code: str) -> str:
    if not _ERROR_CODE.fullmatch(code):
        raise ValueError(f"invalid OAuth error code {code!r}")
    return code


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of an endpoint, built with the class methods.

    Faults are queued per endpoint with ``inject()`` and each request to the
    endpoint consumes one. A fault either replaces the real answer or wraps it;
    ``after_effect`` says whether the request's real effect (a refresh token
    rotation, a revocation) still happens.

    Attributes:
        kind: Which misbehaviour.
        seconds: The wait of ``delay``, ``late_answer`` and ``hang``.
        http_status: The status of ``status``, ``oauth_error`` and ``malformed``.
        body: The body of ``status`` and ``malformed``.
        content_type: Their Content-Type.
        headers: Extra response headers of ``status``.
        error: The OAuth error code of ``oauth_error``.
        error_description: Its ``error_description``, if any.
        after_effect: Whether the request's real effect still happens (always
            for ``delay`` and ``late_answer``; optional for ``drop`` and
            ``hang``, where it happens before the connection goes silent).
    """

    kind: FaultKind
    seconds: float = 0.0
    http_status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    error_description: str | None = None
    after_effect: bool = False

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep, then process the request and answer normally.

        The request's effect happens after the sleep, so a refresh delayed this
        way rotates the refresh token only when it answers.

        Args:
            seconds: How long to wait before processing the request.
        """
        return cls("delay", seconds=_check_seconds(seconds), after_effect=True)

    @classmethod
    def late_answer(cls, seconds: float) -> Fault:
        """Process the request at once, then sleep before sending the answer.

        The effect (a rotation, say) is committed while the client still
        waits, which is how a rotated refresh token can get lost in transit.

        Args:
            seconds: How long to hold the answer back.
        """
        return cls("late_answer", seconds=_check_seconds(seconds), after_effect=True)

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str | None = None,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with this status, body and headers instead of the real answer.

        Args:
            code: HTTP status, 200 to 599.
            body: The body; None sends the status's reason phrase.
            content_type: The Content-Type header.
            headers: Extra headers, e.g. ``{"Retry-After": "1"}``.
        """
        status = _check_status(code)
        if status in _NO_BODY:
            # RFC 9110 15.3.5, 15.4.5: these answers never have content.
            if body:
                raise ValueError(f"a {status} answer cannot have a body")
            body = b""
        elif body is None:
            try:
                body = HTTPStatus(status).phrase
            except ValueError:  # a code without a registered reason phrase
                body = f"Error {status}"
        data = body.encode() if isinstance(body, str) else bytes(body)
        return cls(
            "status",
            http_status=status,
            body=data,
            content_type=_check_header_value(content_type),
            headers=_check_headers(headers),
        )

    @classmethod
    def oauth_error(
        cls, code: str, status: int = 400, description: str | None = None
    ) -> Fault:
        """Answer with an OAuth error JSON object (RFC 6749 5.2).

        On the demo API the error also goes in a ``WWW-Authenticate: Bearer``
        challenge (RFC 6750 3); a 401 from the authorization server carries
        ``WWW-Authenticate: Basic``.

        Args:
            code: The ``error`` code, e.g. ``"invalid_grant"``.
            status: The HTTP status.
            description: An ``error_description``, if wanted.
        """
        if description is not None and any(c in description for c in '"\\\r\n'):
            raise ValueError("the description must not contain quotes or newlines")
        return cls(
            "oauth_error",
            http_status=_check_status(status),
            error=_check_error_code(code),
            error_description=description,
        )

    @classmethod
    def drop(cls, *, after_effect: bool = False) -> Fault:
        """Read the request, then close the connection without any answer.

        Args:
            after_effect: Process the request first, so its effect happens
                though the client never learns of it.
        """
        return cls("drop", after_effect=after_effect)

    @classmethod
    def hang(cls, seconds: float, *, after_effect: bool = False) -> Fault:
        """Read the request, say nothing for ``seconds``, then close.

        Args:
            seconds: How long to stay silent.
            after_effect: Process the request first.
        """
        return cls("hang", seconds=_check_seconds(seconds), after_effect=after_effect)

    @classmethod
    def malformed(
        cls,
        body: bytes = _MALFORMED_BODY,
        content_type: str = "application/json",
        status: int = 200,
    ) -> Fault:
        """Answer 200 with a body that is not JSON (by default, cut-off JSON).

        Args:
            body: The broken body.
            content_type: The Content-Type; the default claims JSON, as a
                misconfigured proxy in front of a server might.
            status: The HTTP status.
        """
        return cls(
            "malformed",
            http_status=_check_status(status),
            body=bytes(body),
            content_type=_check_header_value(content_type),
        )


@dataclass
class _Entry:
    fault: Fault
    remaining: int | None


class FaultQueue:
    """Faults waiting per endpoint, consumed one per request."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._queues: dict[str, deque[_Entry]] = {name: deque() for name in endpoints}
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoint names this queue knows."""
        return tuple(self._queues)

    def _queue(self, endpoint: str) -> deque[_Entry]:
        try:
            return self._queues[endpoint]
        except KeyError:
            names = ", ".join(sorted(self._queues))
            raise ValueError(
                f"unknown endpoint {endpoint!r}; expected one of {names}"
            ) from None

    def add(self, endpoint: str, fault: Fault, times: int | None = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests (None: until cleared)."""
        queue = self._queue(endpoint)
        if not isinstance(fault, Fault):
            raise TypeError("fault must be a Fault")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError("times must be a positive int or None")
        with self._lock:
            queue.append(_Entry(fault, times))

    def take(self, endpoint: str) -> Fault | None:
        """The fault for this request, if any; a fault with times=None stays."""
        queue = self._queue(endpoint)
        with self._lock:
            if not queue:
                return None
            entry = queue[0]
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining == 0:
                    queue.popleft()
            return entry.fault

    def clear(self, endpoint: str | None = None) -> None:
        """Forget queued faults of one endpoint, or of all."""
        queues = self._queues.values() if endpoint is None else [self._queue(endpoint)]
        with self._lock:
            for queue in queues:
                queue.clear()

    def pending(self, endpoint: str) -> int | None:
        """Requests still to be faulted; None when a fault repeats until cleared."""
        queue = self._queue(endpoint)
        with self._lock:
            total = 0
            for entry in queue:
                if entry.remaining is None:
                    return None
                total += entry.remaining
            return total


def _canned(fault: Fault, bearer_realm: str | None) -> Response:
    if fault.kind == "oauth_error":
        assert fault.error is not None
        payload = {"error": fault.error}
        if fault.error_description is not None:
            payload["error_description"] = fault.error_description
        headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
        if bearer_realm is not None:
            # RFC 6750 3: a resource server puts the error in the challenge.
            challenge = f'Bearer realm="{bearer_realm}", error="{fault.error}"'
            if fault.error_description is not None:
                challenge += f', error_description="{fault.error_description}"'
            headers.append(("WWW-Authenticate", challenge))
        elif fault.http_status == 401:
            # RFC 6749 5.2: a 401 from the token endpoint names the scheme.
            headers.append(("WWW-Authenticate", 'Basic realm="usersession-dev"'))
        return Response.json(
            fault.http_status, payload, headers, oauth_error=fault.error
        )
    return Response(fault.http_status, fault.body, fault.content_type, fault.headers)


def serve_with_fault(
    fault: Fault | None,
    request: Request,
    exchange: Exchange,
    handle: Callable[[Request], Response],
    record: Callable[[Response | None], None],
    *,
    bearer_realm: str | None = None,
) -> None:
    """Answer ``request`` through ``handle``, misbehaving as ``fault`` says.

    Args:
        fault: The fault taken for this request, or None.
        request: The request.
        exchange: Its connection.
        handle: Computes the real answer (and applies the request's effect).
        record: Called with the answer (None: no answer) just before the
            client can see it, so that counters read by a test that has its
            answer already include it.
        bearer_realm: The realm of a resource server's Bearer challenges, or
            None on the authorization server.
    """

    def answer(response: Response) -> None:
        record(response)
        exchange.send(response)

    def hang_up() -> None:
        record(None)
        exchange.drop()

    if fault is None:
        answer(handle(request))
    elif fault.kind in ("status", "oauth_error", "malformed"):
        answer(_canned(fault, bearer_realm))
    elif fault.kind == "delay":
        if exchange.sleep(fault.seconds):
            hang_up()  # the server is stopping
        else:
            answer(handle(request))
    elif fault.kind == "late_answer":
        response = handle(request)
        if exchange.sleep(fault.seconds):
            hang_up()
        else:
            answer(response)
    else:  # drop and hang
        if fault.after_effect:
            handle(request)
        if fault.kind == "hang":
            exchange.sleep(fault.seconds)
        hang_up()

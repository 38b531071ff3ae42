"""The device authorization grant (RFC 8628), without any I/O.

`read_device_authorization` reads the device authorization answer into a
`DeviceCode`, and `PollSchedule` decides when to poll the token endpoint
while the person approves on another device. Both work on numbers and
answers only, with the clock passed in, so the pacing can be tested without
waiting; `_login` drives them with real requests and sleeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ._errors import LoginError
from ._grant import login_error
from ._oauth import _json_object, _oauth_error
from ._secrets import REDACTED, excerpt
from ._tokens import parse_expires_in

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_INTERVAL",
    "DEVICE_CODE_GRANT",
    "SLOW_DOWN_STEP",
    "DeviceCode",
    "PollSchedule",
    "read_device_authorization",
]

#: RFC 8628 section 3.4: the grant type of the polling requests.
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

#: RFC 8628 section 3.2: "If no value is provided, clients MUST use 5 as the
#: default" polling interval, in seconds.
DEFAULT_INTERVAL = 5.0

#: RFC 8628 section 3.5: each ``slow_down`` adds 5 seconds to the interval,
#: for that request and every one after it.
SLOW_DOWN_STEP = 5.0

#: Seconds a device code is assumed to live when the server's answer leaves
#: out the (required) ``expires_in``: the lifetime RFC 8628's examples use.
DEFAULT_EXPIRES_IN = 1800.0

#: The shortest interval honoured: an interval of 0 would poll in a loop.
_MIN_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class DeviceCode:
    """What a program shows the person during a device login (RFC 8628 3.2).

    The device code itself stays private: it is what the program redeems,
    so it never appears in a repr, a log record or an error message.

    Attributes:
        verification_uri: Where the person goes, on any device.
        verification_uri_complete: The same with the user code in it (for a
            QR code or a link), when the server offers one.
        user_code: The short code the person types there.
        expires_in: Seconds the codes live, from the server's answer.
        interval: Seconds between polls as the server asked (5 when it did
            not say).
    """

    verification_uri: str
    verification_uri_complete: str | None
    user_code: str
    expires_in: float
    interval: float
    _device_code: str = dataclasses.field(kw_only=True)

    def __repr__(self) -> str:
        return (
            f"DeviceCode(verification_uri={self.verification_uri!r}, "
            f"user_code={self.user_code!r}, expires_in={self.expires_in:g}, "
            f"interval={self.interval:g}, device_code={REDACTED})"
        )

    __str__ = __repr__


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def read_device_authorization(
    answer: httpx.Response | httpx.TransportError,
    *,
    secrets: Iterable[str | None] = (),
) -> DeviceCode:
    """Read the device authorization endpoint's answer (RFC 8628 3.2, 3.3).

    ``interval`` defaults to 5 seconds when absent (and is at least 1);
    ``verification_url``, an older spelling some servers still send, is
    read when ``verification_uri`` is absent.

    Raises:
        LoginError: No answer, an error answer (RFC 6749 section 5.2), or an
            answer without a device code, user code or verification URI.
    """
    if isinstance(answer, httpx.TransportError):
        error = LoginError(
            "the device authorization endpoint could not be reached "
            f"({type(answer).__name__})"
        )
        error.__cause__ = answer
        raise error
    payload = _json_object(answer.content)
    code, description = _oauth_error(payload)
    if code is not None:
        raise login_error(
            code,
            description,
            status_code=answer.status_code,
            secrets=secrets,
            where="the device authorization endpoint",
        )
    device_code = None if payload is None else _text(payload, "device_code")
    if payload is None or device_code is None or not 200 <= answer.status_code < 300:
        raise LoginError(
            f"the device authorization endpoint answered HTTP {answer.status_code} "
            f"without a device code: {excerpt(answer.content, secrets)}",
            status_code=answer.status_code,
        )
    user_code = _text(payload, "user_code")
    uri = _text(payload, "verification_uri") or _text(payload, "verification_url")
    if user_code is None or uri is None:
        raise LoginError(
            "the device authorization answer has no user_code or verification_uri",
            status_code=answer.status_code,
        )
    expires_in = parse_expires_in(payload.get("expires_in"))
    interval = parse_expires_in(payload.get("interval"))
    return DeviceCode(
        verification_uri=uri,
        verification_uri_complete=_text(payload, "verification_uri_complete"),
        user_code=user_code,
        expires_in=DEFAULT_EXPIRES_IN if expires_in is None else expires_in,
        interval=DEFAULT_INTERVAL if interval is None else max(interval, _MIN_INTERVAL),
        _device_code=device_code,
    )


#: How long before the device code expires the last poll goes out.
_FINAL_POLL_MARGIN = 0.5


class PollSchedule:
    """When to poll the token endpoint during a device login (RFC 8628 3.5).

    Every time is a reading of the caller's monotonic clock; nothing here
    sleeps or sends. The next poll is due `interval` seconds after the last
    answer arrived (the first one `interval` seconds after the codes were
    issued), so the server, which measures between requests, never sees two
    polls closer than the interval.

    Args:
        interval: Seconds between polls, as the server asked.
        expires_in: Seconds the device code lives.
        now: When the device authorization answer arrived.
    """

    def __init__(self, *, interval: float, expires_in: float, now: float) -> None:
        self.interval = interval
        self.deadline = now + expires_in
        self._next = now + interval
        self._final_poll_done = False

    def wait(self, now: float) -> float | None:
        """Seconds to wait before the next poll (0: poll now), or ``None``
        when the device code will have expired by then.

        When the next regular poll would come too late, one last poll goes
        out just before the code expires, so an approval given in the final
        stretch of a long interval still counts.
        """
        if self._next < self.deadline:
            return max(0.0, self._next - now)
        last = self.deadline - _FINAL_POLL_MARGIN
        if self._final_poll_done or now >= last:
            return None
        self._final_poll_done = True
        self._next = last
        return max(0.0, last - now)

    def pending(self, now: float) -> None:
        """``authorization_pending`` arrived at `now`: poll again after the
        same interval."""
        self._next = now + self.interval

    def slow_down(self, now: float) -> None:
        """``slow_down`` arrived at `now`: the interval grows by 5 s for good
        (RFC 8628 section 3.5)."""
        self.interval += SLOW_DOWN_STEP
        self._next = now + self.interval

    def back_off(self, now: float) -> None:
        """No usable answer (no connection, a timeout, a 5xx): RFC 8628 3.5
        asks clients to reduce their polling frequency, doubling the interval
        on each such failure."""
        self.interval *= 2
        self._next = now + self.interval

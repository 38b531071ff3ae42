"""``usersession login``: log a profile in, by the device or the browser flow.

The first login of a profile names the issuer and the client; the profile
remembers them (and the other settings given) for the next logins. The
device flow (RFC 8628) is the default when this session has no display to
open a browser on; the browser flow is the authorization code flow with PKCE
and a loopback redirect (RFC 8252). Everything the person needs to see goes
to stderr while the flow runs; the closing line goes to stdout.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import TextIO

from ._cli_common import CliError, Exit, printable
from ._cli_profiles import (
    ENDPOINT_NAMES,
    Flow,
    Profile,
    StoreKind,
    check_env_name,
    load_profile,
    login_command,
    profile_name,
    save_profile,
)
from ._cli_session import jwt_subject
from ._login import DeviceCode, browser_login, device_login
from ._provider import Provider
from ._store import TokenStore
from ._user import User

__all__ = ["LoginOptions", "choose_flow", "has_display", "run_login"]

_SPINNER = "|/-\\"


@dataclasses.dataclass(frozen=True)
class LoginOptions:
    """What ``usersession login`` was asked to do (see its ``--help``).

    ``None`` means "as the profile says" (or the default at a first login).
    """

    profile: str = "default"
    issuer: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    scope: str | None = None
    flow: Flow | None = None
    keyring: bool | None = None
    open_browser: bool = True
    timeout: float = 300.0


def run_login(options: LoginOptions, *, out: TextIO, err: TextIO) -> int:
    """Log the profile in and save the profile.

    Raises:
        CliError: Missing settings (usage), or the issuer offers no flow that
            fits.
        LoginError: The login did not complete.
        DiscoveryError: The issuer's metadata could not be fetched.
    """
    name = profile_name(options.profile)
    saved = load_profile(name)
    profile = _merge(name, saved, options)
    provider = profile.discover()
    flow = choose_flow(provider, profile.flow, browser_available=has_display())
    store = profile.token_store()

    err.write(
        f"Logging in to {profile.issuer} as client {profile.client_id} "
        f"(profile {name}, {flow} flow).\n"
    )
    err.flush()
    if flow == "device":
        user = _device_flow(provider, profile, store, err)
    else:
        opens = options.open_browser and has_display()
        user = _browser_flow(provider, profile, store, err, opens, options.timeout)

    endpoints = {
        key: value
        for key in ENDPOINT_NAMES
        if isinstance(value := getattr(provider, key), str)
    }
    save_profile(dataclasses.replace(profile, endpoints=endpoints))
    if saved is not None and saved.store != profile.store:
        # The tokens moved; none may stay behind in the other store.
        saved.token_store().clear()

    tokens = user.tokens
    subject = None
    if tokens is not None and tokens.id_token is not None:
        subject = jwt_subject(tokens.id_token)
    who = f" as {subject}" if subject else ""
    out.write(f"Logged in{who} (profile {name}); tokens in {profile.where()}.\n")
    out.flush()
    return Exit.OK


def _merge(name: str, saved: Profile | None, options: LoginOptions) -> Profile:
    """The profile this login uses: the saved one, updated by the options."""
    issuer = options.issuer or (saved.issuer if saved else None)
    client_id = options.client_id or (saved.client_id if saved else None)
    if issuer is None or client_id is None:
        raise CliError(
            f"the first login of profile {name!r} needs --issuer and --client-id: "
            f"{login_command(name, first=True)}",
            status=Exit.USAGE,
        )
    secret_env = saved.client_secret_env if saved else None
    if options.client_secret_env is not None:
        # An empty name turns the profile back into a public client.
        given = options.client_secret_env
        secret_env = check_env_name(given) if given else None
    store: StoreKind = saved.store if saved else "file"
    if options.keyring is not None:
        store = "keyring" if options.keyring else "file"
    return Profile(
        name=name,
        issuer=issuer,
        client_id=client_id,
        client_secret_env=secret_env,
        scope=options.scope or (saved.scope if saved else None),
        flow=options.flow or (saved.flow if saved else None),
        store=store,
        endpoints={} if saved is None else saved.endpoints,
    )


def has_display() -> bool:
    """Whether a browser opened here would appear in front of the person.

    Not over SSH, and on Linux and other Unix systems only with an X11 or
    Wayland display: without one, Python would start a text-mode browser
    inside this terminal.
    """
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def choose_flow(
    provider: Provider, wanted: Flow | None, *, browser_available: bool
) -> Flow:
    """The flow to log in with: the one asked for, or the one that fits.

    Raises:
        CliError: The issuer does not offer the flow asked for, or neither.
    """
    device = provider.device_authorization_endpoint is not None
    browser = provider.authorization_endpoint is not None
    if wanted == "device" and not device:
        raise CliError(
            "the issuer offers no device flow (no device_authorization_endpoint "
            "in its metadata); use --browser",
            status=Exit.USAGE,
        )
    if wanted == "browser" and not browser:
        raise CliError(
            "the issuer offers no browser flow (no authorization_endpoint in its "
            "metadata); use --device",
            status=Exit.USAGE,
        )
    if wanted is not None:
        return wanted
    if browser and (browser_available or not device):
        return "browser"
    if device:
        return "device"
    raise CliError(
        "the issuer offers neither the device flow nor the browser flow; "
        "usersession login cannot log in there"
    )


def _device_flow(
    provider: Provider, profile: Profile, store: TokenStore, err: TextIO
) -> User:
    waiting = _Waiting(err, "Waiting for approval")

    def show(code: DeviceCode) -> None:
        err.write(
            "\nTo log in, open this page on any device:\n\n"
            f"    {printable(code.verification_uri)}\n\n"
            f"and enter the code:  {printable(code.user_code)}\n\n"
        )
        if code.verification_uri_complete:
            err.write(
                "(or open this link, with the code in it: "
                f"{printable(code.verification_uri_complete)})\n\n"
            )
        err.flush()
        waiting.start(code.expires_in, "the code expires")

    try:
        user = device_login(provider, scope=profile.scope, store=store, on_code=show)
    finally:
        waiting.stop()
    err.write("Approved.\n")
    err.flush()
    return user


def _browser_flow(
    provider: Provider,
    profile: Profile,
    store: TokenStore,
    err: TextIO,
    opens: bool,
    timeout: float,
) -> User:
    waiting = _Waiting(err, "Waiting for the browser")

    def open_url(url: str) -> None:
        if opens and _open_in_browser(url):
            err.write(
                f"\nOpened your browser. If nothing appeared, open this URL:\n\n"
                f"    {url}\n\n"
            )
        else:
            err.write(
                "\nOpen this URL in a browser on this machine (the answer comes "
                f"back to a port on this machine):\n\n    {url}\n\n"
            )
        err.flush()
        waiting.start(timeout, "giving up")

    try:
        user = browser_login(
            provider,
            scope=profile.scope,
            store=store,
            open_browser=open_url,
            timeout=timeout,
        )
    finally:
        waiting.stop()
    err.write("Approved.\n")
    err.flush()
    return user


def _open_in_browser(url: str) -> bool:
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


class _Waiting:
    """A visible "waiting" line with the time spent and left.

    On a terminal, one line rewritten in place a few times a second; on
    anything else (a log, a pipe), a line now and then.
    """

    def __init__(self, stream: TextIO, what: str) -> None:
        self._stream = stream
        self._what = what
        self._tty = _is_terminal(stream)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, lasts: float, ends: str) -> None:
        if self._thread is not None:
            return
        started = time.monotonic()
        deadline = started + lasts

        def line(tick: int) -> str:
            now = time.monotonic()
            left = max(0, round(deadline - now))
            spinner = _SPINNER[tick % len(_SPINNER)] + " " if self._tty else ""
            return (
                f"{spinner}{self._what}... {round(now - started)} s "
                f"({ends} in {left // 60}:{left % 60:02d})"
            )

        self._thread = threading.Thread(
            target=self._run, args=(line,), name="usersession-waiting", daemon=True
        )
        self._thread.start()

    def _run(self, line: Callable[[int], str]) -> None:
        period, every = (0.25, 1) if self._tty else (1.0, 15)
        tick = 0
        while True:
            if tick % every == 0:
                with self._lock:
                    if self._done.is_set():
                        return
                    self._write(line(tick))
            tick += 1
            if self._done.wait(period):
                return

    def _write(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def stop(self) -> None:
        with self._lock:
            self._done.set()
            if self._thread is not None and self._tty:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
        thread = self._thread
        # A Ctrl-C can land while the thread is being started.
        if thread is not None and thread.ident is not None:
            thread.join(1.0)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""The ``usersession`` command, end to end: each command as a subprocess.

Every run has its own HOME, XDG_CONFIG_HOME and XDG_DATA_HOME in the test's
temporary directory, and no display, so no browser can open. The servers are
a development server in this process (for its counters) or the
``usersession dev-server`` command itself.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from usersession import FileStore, Tokens
from usersession._cli_session import describe_expiry, jwt_subject
from usersession.devserver import DevServer

from cli_env import USER_CODE, Running, approve_on_device_page, cli_env, run_cli

#: Access-token lifetime for the tests that wait for an expiry.
SHORT = 2.0

COMMANDS = ["login", "request", "token", "status", "logout", "dev-server", "demo"]

ERROR_LINE = re.compile(r"usersession: error: [^\n]+\n")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


@pytest.fixture
def dev() -> Iterator[DevServer]:
    """A development server whose device logins poll every second."""
    with DevServer(access_token_lifetime=3600.0) as server:
        server.login_settings.device_interval = 1.0
        yield server


@pytest.fixture
def short_dev() -> Iterator[DevServer]:
    """A development server whose access tokens live `SHORT` seconds."""
    with DevServer(access_token_lifetime=SHORT) as server:
        server.login_settings.device_interval = 1.0
        yield server


def login(
    env: dict[str, str], dev: DevServer, *options: str, over_http: bool = False
) -> tuple[str, str]:
    """``usersession login --device`` against `dev`, approved once the code
    shows; returns stdout and stderr."""
    running = Running(
        env,
        "login",
        "--device",
        "--issuer",
        dev.issuer,
        "--client-id",
        dev.public_client_id,
        *options,
    )
    code = running.wait_for(USER_CODE).group(1)
    if over_http:
        approve_on_device_page(f"{dev.issuer}/device", code)
    else:
        dev.approve_device(code)
    status, out, err = running.finish()
    assert status == 0, err
    return out, err


def saved_tokens(env: dict[str, str], profile: str = "default") -> Tokens:
    path = Path(env["XDG_DATA_HOME"]) / "usersession" / f"{profile}.json"
    tokens = FileStore(path).load()
    assert tokens is not None
    return tokens


def secrets_of(tokens: Tokens) -> list[str]:
    return [
        value
        for value in (tokens.access_token, tokens.refresh_token, tokens.id_token)
        if value
    ]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert ERROR_LINE.fullmatch(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def wait_past_expiry(tokens: Tokens) -> None:
    assert tokens.expires_at is not None
    time.sleep(max(0.0, tokens.expires_at - time.time()) + 0.2)


# -- Help and usage ------------------------------------------------------------


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(env: dict[str, str], name: str) -> None:
    result = run_cli(env, name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: usersession {name}")
    assert result.stderr == ""


def test_top_level_help_lists_commands_and_exit_codes(env: dict[str, str]) -> None:
    result = run_cli(env, "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert "exit codes:" in result.stdout
    assert re.search(r"^\s+3\s+not logged in", result.stdout, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        ([], 2, "required: COMMAND"),
        (["request"], 2, "required: METHOD, URL"),
        (["request", "GET", "ftp://127.0.0.1/"], 2, "must start with https://"),
        (["request", "GET", "http://127.0.0.1:9/", "-H", "no colon"], 2, "header"),
        (["request", "GET", "http://127.0.0.1:9/", "-d", "novalue"], 2, "key=value"),
        (["request", "G T", "http://127.0.0.1:9/"], 2, "not an HTTP method"),
        (
            ["request", "POST", "http://127.0.0.1:9/", "--json", "{}", "-d", "a=b"],
            2,
            "not allowed with",
        ),
        (["login"], 2, "needs --issuer and --client-id"),
        (["login", "--device", "--browser"], 2, "not allowed with"),
        (["login", "--profile", "../etc", "--issuer", "x"], 2, "invalid profile"),
        (
            [
                *("login", "--issuer", "http://127.0.0.1:9", "--client-id", "c"),
                *("--client-secret-env", "not a name"),
            ],
            2,
            "name of an environment variable",
        ),
        (["dev-server", "--host", "192.0.2.1"], 2, "loopback"),
        (["dev-server", "--auth-port", "70000"], 2, "0 to 65535"),
        (["dev-server", "--access-token-lifetime", "0.5"], 2, "at least 1 s"),
        (["status"], 3, "no profile 'default'"),
        (["token", "--profile", "work"], 3, "no profile 'work'"),
        (["request", "GET", "http://127.0.0.1:9/me"], 3, "usersession login"),
    ],
)
def test_bad_input_is_one_line_and_a_documented_exit_code(
    env: dict[str, str], args: list[str], status: int, says: str
) -> None:
    result = run_cli(env, *args)
    assert result.returncode == status, result.stderr
    assert says in one_error_line(result)
    assert result.stdout == ""


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "usersession"
    if not script.exists():
        pytest.skip("the usersession script is not installed in this environment")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "0.1.0"


# -- login, request, token, status, logout ----------------------------------------


def test_login_saves_a_profile_without_secrets_and_tokens_owner_only(
    env: dict[str, str], dev: DevServer
) -> None:
    out, err = login(env, dev, over_http=True)
    assert "To log in, open this page on any device" in err
    assert f"{dev.issuer}/device" in err
    assert "Waiting for approval" in err
    assert out.startswith("Logged in (profile default)")

    profile = Path(env["XDG_CONFIG_HOME"]) / "usersession" / "profiles" / "default.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    saved = json.loads(profile.read_text())
    assert saved["issuer"] == dev.issuer
    assert saved["client_id"] == dev.public_client_id
    assert saved["flow"] == "device"
    assert saved["endpoints"]["token_endpoint"] == dev.token_endpoint

    tokens = saved_tokens(env)
    store = Path(env["XDG_DATA_HOME"]) / "usersession" / "default.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    for secret in secrets_of(tokens):
        assert secret not in profile.read_text()
        assert secret not in out + err
    assert dev.stats().device_code_grants == 1


def test_a_later_login_reuses_the_profile(env: dict[str, str], dev: DevServer) -> None:
    login(env, dev, "--scope", "openid offline_access")
    first = saved_tokens(env)
    running = Running(env, "login")
    code = running.wait_for(USER_CODE).group(1)
    dev.approve_device(code)
    status, _, err = running.finish()
    assert status == 0, err
    second = saved_tokens(env)
    assert second.access_token != first.access_token
    assert second.scope == "openid offline_access"


def test_request_across_a_token_expiry_calls_the_token_endpoint_once(
    env: dict[str, str], short_dev: DevServer
) -> None:
    dev = short_dev
    login(env, dev)
    me = f"{dev.api_url}/me"
    first = run_cli(env, "request", "GET", me)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["sub"] == "alice"
    assert first.stdout.startswith('{\n  "sub": "alice"')  # pretty-printed

    expired = saved_tokens(env)
    wait_past_expiry(expired)
    dev.reset_stats()
    second = run_cli(env, "request", "-v", "GET", me)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["sub"] == "alice"
    assert dev.stats().token_requests == 1
    # -v tells of the refresh, naming tokens by a short hash only (X1).
    assert "usersession: tokens refreshed: access token sha256:" in second.stderr
    for secret in secrets_of(expired) + secrets_of(saved_tokens(env)):
        assert secret not in second.stderr + second.stdout


def test_processes_sharing_a_profile_refresh_once_per_expiry(
    env: dict[str, str],
) -> None:
    """Three ``request`` processes at once after an expiry: one
    token-endpoint call. Tokens live 5 s, so the new one stays fresh (for
    2.5 s, half its life) while the three processes start on a busy
    machine; the others adopt it from the store."""
    with DevServer(access_token_lifetime=5.0) as dev:
        dev.login_settings.device_interval = 1.0
        login(env, dev)
        wait_past_expiry(saved_tokens(env))
        dev.reset_stats()
        me = f"{dev.api_url}/me"
        together = [
            Running(env, "request", "GET", me, watch="stdout") for _ in range(3)
        ]
        finished = [running.finish(60) for running in together]
        stats = dev.stats()
    for status, err, out in finished:
        assert status == 0, err
        assert json.loads(out)["sub"] == "alice"
    assert stats.token_requests == 1
    assert stats.invalid_grant_answers == 0
    assert stats.api_unauthorized == 0


def test_token_prints_one_line_and_refreshes_when_due(
    env: dict[str, str], short_dev: DevServer
) -> None:
    dev = short_dev
    login(env, dev)
    result = run_cli(env, "token")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1
    token = result.stdout.rstrip("\n")
    assert token == saved_tokens(env).access_token
    wait_past_expiry(saved_tokens(env))

    dev.reset_stats()
    result = run_cli(env, "token")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    fresh = result.stdout.rstrip("\n")
    assert fresh != token
    assert dev.stats().refresh_grants == 1
    answer = httpx.get(
        f"{dev.api_url}/me", headers={"Authorization": f"Bearer {fresh}"}
    )
    assert answer.status_code == 200


def test_status_tells_who_and_until_when_and_never_a_token(
    env: dict[str, str], dev: DevServer
) -> None:
    login(env, dev)
    result = run_cli(env, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Issuer:        {dev.issuer}" in out
    assert f"{dev.public_client_id} (public client, no secret)" in out
    assert "Logged in:     yes" in out
    assert "Scope:         openid profile offline_access" in out
    assert re.search(r"Access token:  expires .+ \(in \d+ s\)", out)
    assert "Refresh token: held" in out
    # The dev server's id tokens are opaque, so the subject is not known.
    assert "Subject:       unknown" in out
    tokens = saved_tokens(env)
    for secret in secrets_of(tokens):
        assert secret not in out + result.stderr

    # A JWT id token names the subject, read without verifying it.
    claims = base64.urlsafe_b64encode(b'{"sub":"bob","iss":"x"}').rstrip(b"=")
    jwt = f"eyJhbGciOiJub25lIn0.{claims.decode()}.sig"
    path = Path(env["XDG_DATA_HOME"]) / "usersession" / "default.json"
    FileStore(path).save(dataclasses.replace(tokens, id_token=jwt))
    result = run_cli(env, "status")
    assert "Subject:       bob (from the id token, decoded without verifying it)" in (
        result.stdout
    )
    assert jwt not in result.stdout


def test_logout_revokes_then_request_says_to_log_in(
    env: dict[str, str], dev: DevServer
) -> None:
    login(env, dev)
    tokens = saved_tokens(env)
    dev.reset_stats()
    result = run_cli(env, "logout")
    assert result.returncode == 0, result.stderr
    assert "revoked" in result.stdout
    assert dev.stats().revocation_requests == 2
    rejected = httpx.get(
        f"{dev.api_url}/me", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    assert rejected.status_code == 401

    later = run_cli(env, "request", "GET", f"{dev.api_url}/me")
    assert later.returncode == 3
    assert "not logged in (profile 'default'); run: usersession login" in (
        one_error_line(later)
    )
    status = run_cli(env, "status")
    assert status.returncode == 3
    assert "Logged in:     no" in status.stdout

    # The profile stays until --forget; a second logout is harmless.
    again = run_cli(env, "logout", "--forget")
    assert again.returncode == 0, again.stderr
    assert "Removed the profile 'default'" in again.stdout
    assert run_cli(env, "status").returncode == 3
    assert not (
        Path(env["XDG_CONFIG_HOME"]) / "usersession/profiles/default.json"
    ).exists()


def test_logout_without_the_server_forgets_the_tokens_and_says_so(
    env: dict[str, str], dev: DevServer
) -> None:
    login(env, dev)
    dev.refuse_connections()
    result = run_cli(env, "logout")
    assert result.returncode == 1
    assert "did not confirm their revocation" in one_error_line(result)
    assert run_cli(env, "token").returncode == 3


def test_a_refused_refresh_says_to_log_in_with_the_oauth_code(
    env: dict[str, str], short_dev: DevServer
) -> None:
    dev = short_dev
    login(env, dev)
    tokens = saved_tokens(env)
    assert tokens.refresh_token is not None
    dev.revoke_refresh_token(tokens.refresh_token)
    wait_past_expiry(tokens)
    result = run_cli(env, "request", "GET", f"{dev.api_url}/me")
    assert result.returncode == 3
    line = one_error_line(result)
    assert line.rstrip().endswith("(invalid_grant)")
    assert "usersession login" in line


def test_profiles_are_separate(env: dict[str, str], dev: DevServer) -> None:
    login(env, dev, "--profile", "work")
    assert run_cli(env, "status", "--profile", "work").returncode == 0
    assert run_cli(env, "status").returncode == 3
    assert (Path(env["XDG_DATA_HOME"]) / "usersession" / "work.json").exists()


def test_a_confidential_client_reads_its_secret_from_the_environment(
    tmp_path: Path, dev: DevServer
) -> None:
    env = cli_env(tmp_path, DEV_SECRET=dev.client_secret)
    running = Running(
        env,
        "login",
        "--device",
        "--issuer",
        dev.issuer,
        "--client-id",
        dev.client_id,
        "--client-secret-env",
        "DEV_SECRET",
    )
    dev.approve_device(running.wait_for(USER_CODE).group(1))
    status, _, err = running.finish()
    assert status == 0, err
    profile = Path(env["XDG_CONFIG_HOME"]) / "usersession/profiles/default.json"
    assert dev.client_secret not in profile.read_text()
    assert json.loads(profile.read_text())["client_secret_env"] == "DEV_SECRET"
    assert run_cli(env, "request", "GET", f"{dev.api_url}/me").returncode == 0

    del env["DEV_SECRET"]
    result = run_cli(env, "token")
    assert result.returncode == 2
    assert "DEV_SECRET, which is not set" in one_error_line(result)


def test_keyring_profile_keeps_tokens_out_of_files(
    tmp_path: Path, dev: DevServer
) -> None:
    pytest.importorskip("keyrings.alt.file")
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring")
    out, _ = login(env, dev, "--keyring")
    assert "system keyring" in out
    assert not (Path(env["XDG_DATA_HOME"]) / "usersession" / "default.json").exists()
    status = run_cli(env, "status")
    assert "Tokens in:     the system keyring" in status.stdout
    assert run_cli(env, "request", "GET", f"{dev.api_url}/me").returncode == 0
    assert run_cli(env, "logout").returncode == 0
    assert run_cli(env, "token").returncode == 3


AUTHORIZE_URL = re.compile(r"(http://127\.0\.0\.1:\d+/authorize\?\S+)")


def test_browser_login_prints_the_url_and_takes_the_redirect(
    env: dict[str, str], dev: DevServer
) -> None:
    """--no-open: no browser is started; the test plays the browser."""
    running = Running(
        env,
        "login",
        "--browser",
        "--no-open",
        "--issuer",
        dev.issuer,
        "--client-id",
        dev.public_client_id,
    )
    url = running.wait_for(AUTHORIZE_URL).group(1)
    assert "Open this URL in a browser on this machine" in running.seen
    landing = httpx.get(url, follow_redirects=True, timeout=10)
    assert landing.status_code == 200
    status, out, err = running.finish()
    assert status == 0, err
    assert out.startswith("Logged in (profile default)")
    assert dev.stats().authorization_code_grants == 1
    result = run_cli(env, "status")
    assert "Login flow:    browser" in result.stdout


def test_a_browser_that_never_comes_back_times_out_with_exit_4(
    env: dict[str, str], dev: DevServer
) -> None:
    result = run_cli(
        env,
        "login",
        "--browser",
        "--no-open",
        "--timeout",
        "1",
        "--issuer",
        dev.issuer,
        "--client-id",
        dev.public_client_id,
    )
    assert result.returncode == 4
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("usersession: error: the browser did not come back")
    assert "Traceback" not in result.stderr
    assert run_cli(env, "status").returncode == 3


# -- Failures ---------------------------------------------------------------------


def test_an_unreachable_issuer_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    result = run_cli(
        env, "login", "--issuer", f"http://127.0.0.1:{free_port()}", "--client-id", "c"
    )
    assert result.returncode == 1
    assert "could not fetch discovery metadata" in one_error_line(result)


def test_a_denied_login_exits_4(env: dict[str, str], dev: DevServer) -> None:
    running = Running(
        env, "login", "--issuer", dev.issuer, "--client-id", dev.public_client_id
    )
    code = running.wait_for(USER_CODE).group(1)
    dev.deny_device(code)
    status, out, err = running.finish()
    assert status == 4
    assert err.rstrip().splitlines()[-1].startswith("usersession: error: ")
    assert "access_denied" in err
    assert "Traceback" not in err
    assert out == ""


def test_ctrl_c_during_login_exits_130_in_one_line(
    env: dict[str, str], dev: DevServer
) -> None:
    running = Running(
        env, "login", "--issuer", dev.issuer, "--client-id", dev.public_client_id
    )
    running.wait_for(USER_CODE)
    running.process.send_signal(signal.SIGINT)
    status, _, err = running.finish()
    assert status == 130
    assert err.rstrip().splitlines()[-1] == "usersession: interrupted"
    assert "Traceback" not in err


def test_an_api_that_does_not_answer_is_one_line_and_exit_1(
    env: dict[str, str], dev: DevServer
) -> None:
    login(env, dev)
    result = run_cli(env, "request", "GET", f"http://127.0.0.1:{free_port()}/me")
    assert result.returncode == 1
    assert "no answer from GET" in one_error_line(result)


def test_plain_http_to_another_host_is_refused_before_sending(
    env: dict[str, str], dev: DevServer
) -> None:
    login(env, dev)
    # Were it sent after all, it would go to a dead loopback proxy, never out.
    env["HTTP_PROXY"] = env["http_proxy"] = f"http://127.0.0.1:{free_port()}"
    result = run_cli(env, "request", "GET", "http://api.example.com/me")
    assert result.returncode == 2
    assert "refusing to send the access token over plain http" in one_error_line(result)


# -- What request sends and prints ------------------------------------------------


class _Bodies(http.server.BaseHTTPRequestHandler):
    """Answers of each kind, for the output tests."""

    BINARY = bytes(range(256)) * 4

    def do_GET(self) -> None:
        bodies = {
            "/binary": ("application/octet-stream", self.BINARY),
            "/text": ("text/plain; charset=utf-8", "caf\u00e9\nno newline".encode()),
            "/json": ("application/problem+json", b'{"b":[1,2],"a":"\\u00e9"}'),
            "/broken-json": ("application/json", b"{not json"),
        }
        content_type, body = bodies.get(self.path, ("text/plain", b"missing"))
        self.send_response(200 if self.path in bodies else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Authorization", str("Authorization" in self.headers))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def bodies() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bodies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def raw_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "usersession", *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_request_prints_bodies_as_a_familiar_http_tool_would(
    env: dict[str, str], dev: DevServer, bodies: str
) -> None:
    login(env, dev)
    binary = raw_cli(env, "request", "GET", f"{bodies}/binary")
    assert binary.returncode == 0
    assert binary.stdout == _Bodies.BINARY  # to a pipe: unchanged

    text = raw_cli(env, "request", "GET", f"{bodies}/text")
    assert text.stdout == "caf\u00e9\nno newline".encode()

    problem = raw_cli(env, "request", "GET", f"{bodies}/json")
    assert (
        problem.stdout.decode()
        == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "\u00e9"\n}\n'
    )

    broken = raw_cli(env, "request", "GET", f"{bodies}/broken-json")
    assert broken.stdout == b"{not json"

    head = raw_cli(env, "request", "-i", "GET", f"{bodies}/text")
    status_line, _, rest = head.stdout.partition(b"\n")
    assert status_line == b"HTTP/1.0 200 OK"
    headers, _, body = rest.partition(b"\n\n")
    assert b"Content-Type: text/plain; charset=utf-8" in headers.split(b"\n")
    assert b"X-Seen-Authorization: True" in headers.split(b"\n")
    assert body == "caf\u00e9\nno newline".encode()

    missing = raw_cli(env, "request", "GET", f"{bodies}/nowhere")
    assert missing.returncode == 0
    assert missing.stdout == b"missing"
    failed = raw_cli(env, "request", "--fail", "GET", f"{bodies}/nowhere")
    assert failed.returncode == 22
    assert failed.stdout == b""
    assert failed.stderr.decode().startswith("usersession: error: HTTP 404")


def test_request_sends_headers_json_forms_and_raw_bodies(
    env: dict[str, str], dev: DevServer, tmp_path: Path
) -> None:
    login(env, dev)
    echo = f"{dev.api_url}/echo"

    result = run_cli(env, "request", "POST", echo, "--json", '{"x": 1}', "-H", "X-A: b")
    seen = json.loads(result.stdout)
    assert seen["content-type"] == "application/json"
    assert seen["accept"] == "application/json"
    assert seen["x-a"] == "b"
    assert seen["content-length"] == "8"
    assert seen["user-agent"].startswith("usersession/")

    upload = f"{dev.api_url}/upload"
    form = run_cli(env, "request", "POST", upload, "-d", "a=1", "-d", "b=x y&z")
    expected = b"a=1&b=x+y%26z"
    assert json.loads(form.stdout)["received"] == len(expected)

    raw = run_cli(env, "request", "PUT", upload, "--data-raw", "as it is")
    assert json.loads(raw.stdout)["received"] == len("as it is")

    body = tmp_path / "body.json"
    body.write_text('{"from": "file"}')
    from_file = run_cli(env, "request", "POST", upload, "--json", f"@{body}")
    assert json.loads(from_file.stdout)["received"] == len('{"from": "file"}')
    from_stdin = run_cli(
        env, "request", "POST", upload, "--json", "@-", stdin=b'{"in": 1}'
    )
    assert json.loads(from_stdin.stdout)["received"] == len('{"in": 1}')


# -- dev-server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_dev_server_command_serves_logins_and_stops_cleanly_on_ctrl_c(
    env: dict[str, str],
) -> None:
    auth_port, api_port = free_port(), free_port()
    server = Running(
        env,
        "dev-server",
        "--auth-port",
        str(auth_port),
        "--api-port",
        str(api_port),
        watch="stdout",
    )
    try:
        server.wait_for(re.compile("Press Ctrl-C to stop."))
        issuer = f"http://127.0.0.1:{auth_port}"
        api = f"http://127.0.0.1:{api_port}"
        shown = server.seen
        assert f"issuer           {issuer}" in shown
        assert f"demo API         {api}" in shown
        assert "public client    usersession-dev-public" in shown
        command = (
            f"usersession login --issuer {issuer} --client-id usersession-dev-public"
        )
        assert command in shown

        # Exactly the login command it printed, approved on its /device page.
        running = Running(env, *command.split()[1:])
        code = running.wait_for(USER_CODE).group(1)
        approve_on_device_page(f"{issuer}/device", code)
        status, out, err = running.finish(60)
        assert status == 0, err
        me = run_cli(env, "request", "GET", f"{api}/me")
        assert json.loads(me.stdout)["sub"] == "alice"
    finally:
        server.process.send_signal(signal.SIGINT)
        status, err, out = server.finish()
    assert status == 0
    assert "stopped" in out
    assert err == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/me")


def test_dev_server_refuses_a_taken_port_in_one_line(env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli(env, "dev-server", "--auth-port", port, "--api-port", "0")
    assert result.returncode == 1
    assert "could not listen" in one_error_line(result)


def test_dev_server_stops_cleanly_on_sigterm(env: dict[str, str]) -> None:
    server = Running(
        env, "dev-server", "--auth-port", "0", "--api-port", "0", watch="stdout"
    )
    server.wait_for(re.compile("Press Ctrl-C to stop."))
    server.process.terminate()
    status, err, out = server.finish()
    assert status == 0
    assert out.rstrip().endswith("stopped")
    assert err == ""


# -- Pieces ---------------------------------------------------------------------------


def test_jwt_subject_reads_the_payload_without_verifying() -> None:
    def jwt(payload: bytes) -> str:
        return "e30." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + ".x"

    assert jwt_subject(jwt(b'{"sub":"alice"}')) == "alice"
    assert jwt_subject(jwt(b'{"sub":"a\\u001b[2Jb"}')) == "a?[2Jb"
    assert jwt_subject(jwt(b'{"iss":"x"}')) is None
    assert jwt_subject(jwt(b"[1]")) is None
    assert jwt_subject("opaque-token") is None
    assert jwt_subject("a.!!!.c") is None


def test_describe_expiry() -> None:
    now = 1_000_000.0
    assert describe_expiry(Tokens("t", expires_at=now + 90), now).endswith("(in 90 s)")
    assert "12 s ago" in describe_expiry(Tokens("t", expires_at=now - 12), now)
    assert describe_expiry(Tokens("t"), now) == "no expiry given by the server"


def test_the_environment_of_the_tests_cannot_open_a_browser(
    env: dict[str, str],
) -> None:
    assert "DISPLAY" not in env and "BROWSER" not in env
    assert os.environ.get("HOME") != env["HOME"]

"""``usersession demo``: the main job runs clean and judges itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from usersession._cli import main
from usersession._demo import verdict
from usersession._workload import Tally


def test_demo_runs_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """A short demo: zero failed requests and no extra token-endpoint call."""
    status = main(
        ["demo", "--duration", "4", "--lifetime", "2", "--threads", "2", "--tasks", "4"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    table = dict(re.findall(r"^  ([a-z0-9 -]+?)  +(\d+)", out, flags=re.MULTILINE))
    assert int(table["requests failed"]) == 0
    assert int(table["requests sent"]) == int(table["answered 200"]) > 0
    assert int(table["token-endpoint calls"]) <= int(table["renewals needed"])
    # 4 s of 2 s tokens refreshed at half-life, and one revocation.
    assert int(table["token-endpoint calls"]) >= 3
    assert out.rstrip().endswith("OK")


def test_demo_verdict_fails_on_a_failed_request_or_extra_token_calls() -> None:
    clean = Tally(sent=10, ok=10, renewals_needed=2)
    assert verdict(clean, 2) == []
    assert verdict(clean, 3) == ["3 token-endpoint calls for 2 renewals needed"]
    assert verdict(Tally(sent=10, ok=9, failed=1, renewals_needed=2), 2) == [
        "1 requests failed"
    ]
    assert verdict(Tally(), 0) == ["no request was sent"]


def test_cli_help_and_bad_flags() -> None:
    """Every command has --help; a bad flag is one clear line and exit 2."""
    run = [sys.executable, "-m", "usersession"]
    helped = subprocess.run([*run, "demo", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert "--duration" in helped.stdout
    bad = subprocess.run(
        [*run, "demo", "--duration", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "must be a positive number" in bad.stderr


@pytest.mark.parametrize("store", ["file", "redis"])
def test_demo_across_processes_sharing_a_store(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's fleet mode: processes sharing a file or Redis store make one
    token-endpoint call per expiry or revocation."""
    options = ["demo", "--duration", "4", "--lifetime", "2", "--threads", "1"]
    options += ["--tasks", "2", "--processes", "3", "--store", store]
    if store == "redis":
        from redis_server import RedisServer, require_redis_server

        require_redis_server()
        with RedisServer() as server:
            status = main([*options, "--redis-url", server.url])
    else:
        status = main(options)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "calls per expiry or revocation  1.00" in out


def test_demo_refuses_processes_sharing_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--processes", "2", "--store", "memory"]) == 2
    assert "cannot share a memory store" in capsys.readouterr().err

"""`KeyringStore`: tokens in the system keyring (P1, P2, P4, X1).

The keyring is a real backend that works without a desktop session:
keyrings.alt's `PlaintextKeyring`, writing to a file in the test's temporary
directory.
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

import usersession
from usersession import KeyringStore, Tokens, User
from usersession.devserver import DevServer

from conftest import Mode, login, provider_for, send
from processes import lock_held_elsewhere

keyring = pytest.importorskip("keyring")
keyring_backends_fail = pytest.importorskip("keyring.backends.fail")
keyrings_alt_file = pytest.importorskip("keyrings.alt.file")

SERVICE = "usersession-test"


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A plaintext file keyring in tmp_path, as the process's keyring.

    HOME and XDG_DATA_HOME point into tmp_path too, so that default lock
    files never land in the real home directory.
    """
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    chosen = keyrings_alt_file.PlaintextKeyring()
    chosen.file_path = str(tmp_path / "keyring.cfg")
    # Set back to whatever it was (usually "not chosen yet") afterwards.
    monkeypatch.setattr(keyring.core, "_keyring_backend", chosen)
    return chosen


def store(tmp_path: Path, name: str = "default", **options: Any) -> KeyringStore:
    return KeyringStore(SERVICE, name, lock_path=tmp_path / "kr.lock", **options)


def saved_document(name: str = "default") -> Any:
    raw = keyring.get_password(SERVICE, name)
    return None if raw is None else json.loads(raw)


def sample() -> Tokens:
    return Tokens("at-1", "rt-1", None, "openid", "idt-1")


def test_p1_a_user_saves_to_and_takes_from_the_keyring(
    backend: Any, dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P1: a user created with tokens saves them as one keyring password;
    one created without takes them."""
    first = login(dev, store=store(tmp_path))
    assert first.tokens is not None
    document = saved_document()
    assert document == {"format": 1, "tokens": first.tokens.to_dict()}

    second = User(provider_for(dev), store=store(tmp_path))
    assert second.tokens == first.tokens
    assert send(second, mode, "GET", f"{dev.api_url}/me").status_code == 200
    assert dev.stats().token_requests == 0


def test_p2_a_refresher_adopts_tokens_another_user_saved(
    backend: Any, dev: DevServer, mode: Mode, tmp_path: Path
) -> None:
    """P2: under the lock the refresher re-reads the keyring and adopts the
    newer tokens found there, without a token request."""
    first = login(dev, store=store(tmp_path))
    second = User(provider_for(dev), store=store(tmp_path))
    old = first.tokens
    assert old is not None
    new = first.refresh() if mode == "sync" else asyncio.run(first.arefresh())
    assert saved_document()["tokens"] == new.to_dict()

    dev.revoke_access_token(old.access_token)
    response = send(second, mode, "GET", f"{dev.api_url}/me")
    assert response.status_code == 200
    assert second.tokens == new
    stats = dev.stats()
    assert (stats.token_requests, stats.invalid_grant_answers) == (1, 0)


def test_p2_an_unreadable_entry_is_moved_aside(backend: Any, tmp_path: Path) -> None:
    """P2: a keyring value that is not saved tokens is moved to another
    entry and reported, never read as "logged out"."""
    keyring.set_password(SERVICE, "default", '{"format": 1, "tokens": {"acc')
    with pytest.raises(usersession.StoreError, match="moved to the entry") as caught:
        store(tmp_path).load()
    aside = str(caught.value).split("'")[-2]
    assert aside.startswith("default.unreadable-")
    assert keyring.get_password(SERVICE, aside) == '{"format": 1, "tokens": {"acc'
    assert keyring.get_password(SERVICE, "default") is None
    assert store(tmp_path).load() is None


def test_p2_a_newer_format_is_left_alone(backend: Any, tmp_path: Path) -> None:
    keyring.set_password(SERVICE, "default", '{"format": 7, "tokens": null}')
    with pytest.raises(usersession.StoreError, match="newer version"):
        store(tmp_path).load()
    assert keyring.get_password(SERVICE, "default") is not None


def test_p2_save_load_clear_sync_and_async(backend: Any, tmp_path: Path) -> None:
    """P2: the operations, in both forms; clearing nothing is fine."""
    kept = store(tmp_path)
    assert kept.load() is None
    kept.clear()
    kept.save(sample())
    assert kept.load() == sample()
    kept.clear()
    assert kept.load() is None
    assert keyring.get_password(SERVICE, "default") is None

    async def main() -> None:
        async with kept.alock():
            await kept.asave(sample())
        assert await kept.aload() == sample()
        await kept.aclear()
        assert await kept.aload() is None

    asyncio.run(main())


def test_p2_profiles_are_separate_entries(backend: Any, tmp_path: Path) -> None:
    store(tmp_path, "work").save(sample())
    assert store(tmp_path, "home").load() is None
    assert saved_document("work") is not None


def test_p4_a_failing_keyring_makes_the_refresh_fail_for_now(
    backend: Any,
    dev: DevServer,
    mode: Mode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """P4: no usable keyring backend: StoreError from every operation, and a
    refresh fails for now; the user stays logged in."""
    kept = store(tmp_path)
    user = login(dev, store=kept)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    monkeypatch.setattr(
        keyring.core, "_keyring_backend", keyring_backends_fail.Keyring()
    )
    for operation in (kept.load, lambda: kept.save(sample()), kept.clear):
        with pytest.raises(usersession.StoreError, match="NoKeyringError") as caught:
            operation()
        assert "at-1" not in str(caught.value)
    url = f"{dev.api_url}/me"
    with pytest.raises(usersession.RefreshUnavailable):
        send(user, mode, "GET", url)
    assert user.is_logged_in
    assert dev.stats().token_requests == 0

    monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
    assert send(user, mode, "GET", url).status_code == 200
    assert store(tmp_path).load() == user.tokens


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_p4_the_refresh_lock_excludes_other_processes(
    backend: Any, dev: DevServer, tmp_path: Path
) -> None:
    """P4: the lock is the file store's flock: while another process holds
    it past lock_timeout, the refresh fails for now."""
    kept = store(tmp_path, lock_timeout=0.2)
    user = login(dev, store=kept)
    assert user.tokens is not None
    dev.revoke_access_token(user.tokens.access_token)
    with lock_held_elsewhere(kept.lock_path):
        with pytest.raises(usersession.StoreError, match="timed out"):
            kept.lock().__enter__()
        with pytest.raises(usersession.RefreshUnavailable):
            send(user, "sync", "GET", f"{dev.api_url}/me")
    assert user.is_logged_in
    assert send(user, "sync", "GET", f"{dev.api_url}/me").status_code == 200


def test_the_default_lock_is_in_the_data_directory(
    backend: Any, tmp_path: Path
) -> None:
    """Two stores of one entry share a default lock file, owner-only, in the
    user's data directory; another service or profile has another."""
    one = KeyringStore(SERVICE)
    assert one.lock_path.parent == tmp_path / "data" / "usersession"
    assert KeyringStore(SERVICE).lock_path == one.lock_path
    assert KeyringStore("other/service").lock_path != one.lock_path
    assert KeyringStore(SERVICE, "work").lock_path != one.lock_path
    if sys.platform != "win32":
        with one.lock():
            pass
        assert stat.S_IMODE(one.lock_path.stat().st_mode) == 0o600


def test_x1_repr_names_the_entry_never_a_token(backend: Any, tmp_path: Path) -> None:
    kept = store(tmp_path)
    kept.save(sample())
    assert repr(kept) == f"KeyringStore(service={SERVICE!r}, name='default')"
    assert isinstance(kept, usersession.TokenStore)


def test_bad_names_are_refused(backend: Any) -> None:
    with pytest.raises(ValueError, match="invalid profile name"):
        KeyringStore(SERVICE, "../x")
    with pytest.raises(ValueError, match="service"):
        KeyringStore("")


def test_without_the_keyring_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    with pytest.raises(ImportError, match=r"pip install 'usersession\[keyring\]'"):
        KeyringStore()

"""Tokens: F2's reading of token answers, S2's due rule, X1 in reprs."""

from __future__ import annotations

import pytest

from usersession import Tokens
from usersession._tokens import parse_expires_in


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3600, 3600.0),
        (0, 0.0),
        (1.5, 1.5),
        ("3600", 3600.0),
        ("007", 7.0),
        (-1, None),
        (True, None),
        (False, None),
        ("3600.0", None),
        ("-5", None),
        (" 60", None),
        ("soon", None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        ([60], None),
    ],
)
def test_f2_expires_in_is_read_strictly(value: object, expected: float | None) -> None:
    assert parse_expires_in(value) == expected


def test_f2_expiry_counts_from_when_the_request_was_sent() -> None:
    tokens = Tokens.from_response(
        {"access_token": "a", "expires_in": 60}, issued_at=1000.0
    )
    assert tokens.expires_at == 1060.0
    assert tokens.lifetime == 60.0


def test_f2_unknown_expiry_is_none() -> None:
    tokens = Tokens.from_response({"access_token": "a", "expires_in": "soon"})
    assert tokens.expires_at is None
    assert not tokens.is_due(30.0)
    assert not tokens.is_expired()


@pytest.mark.parametrize("payload", [{}, {"access_token": ""}, {"access_token": 5}])
def test_f2_access_token_must_be_a_non_empty_string(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="access_token"):
        Tokens.from_response(payload)


def test_f2_refresh_keeps_what_the_answer_omits() -> None:
    old = Tokens("a1", "r1", scope="read", id_token="id1")
    new = old.succeeded_by(Tokens("a2"))
    assert (new.access_token, new.refresh_token, new.scope, new.id_token) == (
        "a2",
        "r1",
        "read",
        "id1",
    )
    rotated = old.succeeded_by(Tokens("a3", "r3", scope="write"))
    assert (rotated.refresh_token, rotated.scope) == ("r3", "write")


def test_s2_due_within_the_leeway() -> None:
    tokens = Tokens("a", expires_at=1000.0)
    assert not tokens.is_due(30.0, now=969.0)
    assert tokens.is_due(30.0, now=970.0)
    assert tokens.is_expired(now=1000.0)
    assert not tokens.is_expired(now=999.9)


def test_s2_leeway_is_at_most_half_a_known_lifetime() -> None:
    # A 10 s token with a 30 s leeway would be due the moment it is issued.
    tokens = Tokens.from_response(
        {"access_token": "a", "expires_in": 10}, issued_at=1000.0
    )
    assert not tokens.is_due(30.0, now=1000.0)
    assert not tokens.is_due(30.0, now=1004.9)
    assert tokens.is_due(30.0, now=1005.0)


def test_x1_repr_and_str_hide_every_token() -> None:
    tokens = Tokens("access-secret", "refresh-secret", id_token="id-secret")
    for text in (repr(tokens), str(tokens), f"{tokens}", repr([tokens])):
        assert "secret" not in text
        assert "sha256:" in text


def test_round_trip_through_a_dict_keeps_an_unknown_expiry() -> None:
    tokens = Tokens("a", "r", expires_at=None, scope="s", id_token="i")
    assert Tokens.from_dict(tokens.to_dict()) == tokens
    timed = Tokens.from_response({"access_token": "a", "expires_in": 5})
    assert Tokens.from_dict(timed.to_dict()) == timed


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"access_token": "a", "expires_at": "later"},
        {"access_token": "a", "lifetime": True},
    ],
)
def test_from_dict_rejects_what_is_not_saved_tokens(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="saved tokens"):
        Tokens.from_dict(data)


def test_tokens_are_immutable() -> None:
    tokens = Tokens("a")
    with pytest.raises(AttributeError):
        tokens.access_token = "b"  # type: ignore[misc]

"""F2-F4: what each token endpoint answer means, decided without I/O."""

from __future__ import annotations

import json

import pytest

from usersession import RefreshUnavailable, Tokens, UserRefreshFailed
from usersession._oauth import (
    Refreshed,
    Refused,
    Unavailable,
    classify_token_answer,
    parse_retry_after,
)

OLD = Tokens("old-access-AAAA", "old-refresh-RRRR", scope="read", id_token="old-id")


def classify(
    status: int, body: object, retry_after: str | None = None
) -> Refreshed | Refused | Unavailable:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_token_answer(
        status,
        raw,
        previous=OLD,
        issued_at=1000.0,
        now=1000.0,
        retry_after=retry_after,
        secrets=["client-secret-SSSS"],
    )


def test_f2_success_keeps_the_old_refresh_token_scope_and_id_token() -> None:
    outcome = classify(200, {"access_token": "new-access", "expires_in": "30"})
    assert isinstance(outcome, Refreshed)
    tokens = outcome.tokens
    assert tokens.access_token == "new-access"
    assert tokens.refresh_token == OLD.refresh_token
    assert tokens.scope == "read"
    assert tokens.id_token == "old-id"
    assert tokens.expires_at == 1030.0


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"error": "invalid_grant"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (400, {"error": "unauthorized_client"}, "unauthorized_client"),
        (400, {"error": "invalid_scope"}, "invalid_scope"),
        (200, {"error": "invalid_grant"}, "invalid_grant"),
        (200, {"error": "invalid_grant", "access_token": "x"}, "invalid_grant"),
        (401, b"", "invalid_client"),
        (401, b"<html>no</html>", "invalid_client"),
    ],
)
def test_f3_failure_for_good(status: int, body: object, code: str) -> None:
    outcome = classify(status, body)
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, UserRefreshFailed)
    assert outcome.error.error == code
    assert outcome.error.status_code == status


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": "server_error"}),
        (503, b"down"),
        (502, b"<html><body>Bad gateway</body></html>"),
        (429, b"slow down"),
        (400, {"error": "temporarily_unavailable"}),
        (400, b"<html>not json</html>"),
        (200, b"not json at all"),
        (200, {"token": "x"}),
        (200, {"access_token": ""}),
        (200, {"access_token": 7}),
        (200, ["access_token"]),
        (403, {"error": "invalid_grant"}),
    ],
)
def test_f4_failure_for_now(status: int, body: object) -> None:
    outcome = classify(status, body)
    assert isinstance(outcome, Unavailable)
    assert isinstance(outcome.error, RefreshUnavailable)
    assert outcome.error.status_code == status
    assert outcome.error.body_excerpt is not None


def test_f4_excerpt_is_short_and_never_quotes_a_secret() -> None:
    body = (
        "<html>" + "x" * 500 + " old-refresh-RRRR client-secret-SSSS old-access-AAAA"
    ).encode()
    outcome = classify(502, body)
    assert isinstance(outcome, Unavailable)
    excerpt = outcome.error.body_excerpt or ""
    assert len(excerpt) <= 200
    for secret in ("old-refresh-RRRR", "client-secret-SSSS", "old-access-AAAA"):
        assert secret not in excerpt
        assert secret not in str(outcome.error)
    short = classify(503, b"oops old-refresh-RRRR")
    assert isinstance(short, Unavailable)
    assert short.error.body_excerpt == "oops [secret]"


def test_f4_json_excerpt_masks_token_fields() -> None:
    outcome = classify(200, {"access_token": "", "refresh_token": "leaky-RT-value"})
    assert isinstance(outcome, Unavailable)
    assert "leaky-RT-value" not in (outcome.error.body_excerpt or "")


def test_f3_description_is_scrubbed() -> None:
    outcome = classify(
        400,
        {"error": "invalid_grant", "error_description": "old-refresh-RRRR is spent"},
    )
    assert isinstance(outcome, Refused)
    assert outcome.error.description == "[secret] is spent"


def test_f4_retry_after_in_seconds_and_as_a_date() -> None:
    outcome = classify(503, b"", retry_after="7")
    assert isinstance(outcome, Unavailable)
    assert outcome.error.retry_after == 7.0
    # 1000 s after the epoch is Thu, 01 Jan 1970 00:16:40 GMT.
    assert parse_retry_after("Thu, 01 Jan 1970 00:17:00 GMT", now=1000.0) == 20.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now=1000.0) == 0.0
    assert parse_retry_after("tomorrow", now=1000.0) is None
    assert parse_retry_after(None, now=1000.0) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token":"NEW-AT-1234","refresh_token":"NEW-RT-4567","exp',
        b"access_token=NEW-AT-1234&refresh_token=NEW-RT-4567",
        b"<pre>Authorization: Basic TkVXLUFULTEyMzQ6TkVXLVJULTQ1Njc=</pre>",
        b"<pre>authorization: bearer NEW-AT-1234</pre>",
        b"{'id_token': 'NEW-AT-1234', 'code': 'NEW-RT-4567'}",
    ],
    ids=["cut-json", "form", "basic", "bearer", "python-repr"],
)
def test_x1_excerpts_mask_credentials_in_any_encoding(body: bytes) -> None:
    """X1: tokens the client never knew (new ones, another user's) and
    credentials in header form are masked too."""
    outcome = classify(200, body)
    assert isinstance(outcome, Unavailable)
    text = outcome.error.body_excerpt or ""
    for secret in ("NEW-AT-1234", "NEW-RT-4567", "TkVXLUFULTEyMzQ6TkVXLVJULTQ1Njc"):
        assert secret not in text
    assert "[secret]" in text

"""R1: which 401 answers mean "this access token was rejected"."""

from __future__ import annotations

import pytest

from usersession._challenge import Challenge, is_token_rejection, parse_challenges


@pytest.mark.parametrize(
    ("headers", "rejected"),
    [
        pytest.param([], True, id="no-challenge-is-a-rejection"),
        pytest.param(["Bearer"], True, id="bare-bearer"),
        pytest.param(['Bearer error="invalid_token"'], True, id="invalid-token"),
        pytest.param(
            ['Bearer realm="api", error="insufficient_scope", scope="write"'],
            False,
            id="insufficient-scope-is-not",
        ),
        pytest.param(
            ["bearer error=insufficient_scope"], False, id="unquoted-any-case"
        ),
        pytest.param(['Basic realm="files"'], False, id="only-basic"),
        pytest.param(
            ['Digest realm="x", nonce="abc", qop="auth"', 'Basic realm="y"'],
            False,
            id="only-other-schemes",
        ),
        pytest.param(
            ['Basic realm="y", Bearer error="invalid_token"'],
            True,
            id="bearer-among-others",
        ),
        pytest.param(["Negotiate YIIB3gYGKwYBBQUCoIIB0jCCAc6g=="], False, id="token68"),
        pytest.param(["   ,  "], True, id="empty-list-counts-as-no-challenge"),
    ],
)
def test_r1_rejection_decision(headers: list[str], rejected: bool) -> None:
    assert is_token_rejection(headers) is rejected


def test_parses_several_challenges_in_one_header() -> None:
    value = (
        'Basic realm="a, b", Bearer realm="api", error="invalid_token", '
        'error_description="The token \\"expired\\"", Negotiate abc=='
    )
    assert parse_challenges([value]) == [
        Challenge("Basic", {"realm": "a, b"}),
        Challenge(
            "Bearer",
            {
                "realm": "api",
                "error": "invalid_token",
                "error_description": 'The token "expired"',
            },
        ),
        Challenge("Negotiate", {}, token68="abc=="),
    ]


def test_parameter_names_are_case_insensitive() -> None:
    [challenge] = parse_challenges(['Bearer ERROR="insufficient_scope"'])
    assert challenge.params == {"error": "insufficient_scope"}

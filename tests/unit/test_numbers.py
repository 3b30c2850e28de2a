"""The one parser for numbers a client sends: strict, bounded, never another error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.errors import BadRequest
from satchel.numbers import INT64_MAX, parse_int, saturating


@given(st.integers(min_value=0, max_value=INT64_MAX), st.sampled_from(["", " ", "\t", "00"]))
def test_ascii_numbers_in_range_parse(number: int, pad: str) -> None:
    text = f"{pad}{number}" if pad == "00" else f"{pad}{number}{pad}"
    assert parse_int("X", text) == number


@given(st.text(max_size=30))
def test_any_text_parses_or_is_a_400_naming_the_field(text: str) -> None:
    try:
        number = parse_int("Max-Days", text, low=1, high=1000)
    except BadRequest as exc:
        assert "Max-Days" in exc.message and exc.status == 400
    else:
        assert 1 <= number <= 1000
        assert text.strip(" \t").isascii()


@pytest.mark.parametrize(
    "text",
    ["²", "١", "1_000", "+5", "-1", "0x10", "1e3", "", " ", "5\n", "\u00a05", "9" * 5000,
     str(INT64_MAX + 1), "1.0"],
)  # fmt: skip
def test_what_int_would_take_or_choke_on_is_refused(text: str) -> None:
    with pytest.raises(BadRequest, match="Upload-Length"):
        parse_int("Upload-Length", text)


def test_the_message_does_not_echo_a_huge_value() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_int("kbps", "9" * 5000)
    assert len(caught.value.message) < 200


@given(st.integers(min_value=0, max_value=10**30))
def test_saturating_numbers_clamp_without_converting_huge_text(number: int) -> None:
    assert saturating(str(number)) == min(number, 10**18)
    assert saturating("0" * 4000 + str(number)) == min(number, 10**18)
    assert saturating("9" * 10_000) == 10**18

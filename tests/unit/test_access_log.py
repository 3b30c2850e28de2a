"""The access log's quoting: whatever a client sends stays inside its quoted field."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from satchel.http.accesslog import _quoted

FIELD = re.compile(r'(?:[^"\\]|\\.)*')  # what a log reader takes as one quoted field


@given(st.text())
def test_any_value_is_one_field_on_one_line(value: str) -> None:
    quoted = _quoted(value)
    assert FIELD.fullmatch(quoted) and quoted.isprintable()  # no line breaks of any kind
    assert quoted == value or any(c in value for c in '"\\') or not value.isprintable()


@given(st.text(alphabet=st.characters(blacklist_categories=["Cc"]), min_size=1))
def test_printable_values_without_quotes_are_written_as_they_are(value: str) -> None:
    plain = value.replace('"', "").replace("\\", "")
    if plain.isprintable():
        assert _quoted(plain) == plain

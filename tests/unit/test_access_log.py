"""The access log's quoting: whatever a client sends stays inside its quoted field."""

from __future__ import annotations

import json
import logging
import os
import re
from urllib.parse import quote

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from satchel.http.accesslog import _json, _quoted, access_log_class

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


@given(st.text() | st.none())
def test_a_json_field_reads_back_as_the_value_on_one_line(value: str | None) -> None:
    encoded = _json(value)
    assert json.loads(encoded) == value and "\n" not in encoded


@given(path=st.text(), agent=st.text(), referer=st.text())
def test_a_json_access_line_is_one_json_object_with_every_field(
    path: str, agent: str, referer: str
) -> None:
    read, write = os.pipe()
    try:
        cls = access_log_class((), "x-forwarded-for", json_lines=True)
        cls._fd = write  # type: ignore[attr-defined]
        logger = cls(logging.getLogger("satchel.access"), "")
        headers = {"User-Agent": _header(agent), "Referer": _header(referer)}
        request = make_mocked_request("GET", "/files/" + quote(path), headers=headers)
        logger.log(request, web.Response(status=200, body=b"x"), 0.25)
        line = os.read(read, 1 << 20).decode()
    finally:
        os.close(read)
        os.close(write)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["path"] == "/files/" + quote(path) and record["status"] == 200
    assert record["user_agent"] == headers["User-Agent"]
    assert record["message"] == f"GET {record['path']} 200" and record["duration"] == 0.25


def _header(value: str) -> str:
    """What can travel in a header: no line breaks, no NUL."""
    return "".join(c for c in value if c not in "\r\n\0") or "-"

"""The pure rules of archives of a selection: any JSON is a request or a 400 that says
what is wrong; accepted names extract side by side; the kept form reads back."""

from __future__ import annotations

import io
import unicodedata
import zipfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.archive.selection import (
    Entry,
    clashing_names,
    default_name,
    entries_from_json,
    entries_json,
    parse_request,
)
from satchel.errors import BadRequest

DAY = 86400
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(["path", "file", "name", "ttl", "entries", "x"])
_values = st.one_of(
    _json,
    st.sampled_from(["f/a.jpg", "f/../a", "f/sub/b.jpg", "A" * 22, "a/b", "CON", "f/", 3600]),
)
_entry = st.dictionaries(_keys, _values, max_size=3)
_body = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"entries": st.lists(_entry, max_size=4)},
        optional={"name": _values, "ttl": _values},
    ),
)


@given(_body)
def test_any_json_is_a_request_or_a_bad_request(body: Any) -> None:
    try:
        request = parse_request(body, default_ttl=DAY, max_ttl=30 * DAY)
    except BadRequest as exc:
        assert exc.message
        return
    assert 1 <= request.ttl <= 30 * DAY and request.entries
    for entry in request.entries:
        assert (entry.folder is None) == ("/" not in entry.source)


def test_a_request_keeps_order_names_and_the_default_ttl() -> None:
    body = {
        "name": "  wed/ding  ",
        "entries": [
            {"path": "3bea29cc/sub/IMG_2.jpg", "name": "best/2.jpg"},
            {"file": "A" * 22},
            {"path": "3bea29cc/IMG_1.jpg"},
        ],
    }
    request = parse_request(body, default_ttl=DAY, max_ttl=30 * DAY)
    assert request.ttl == DAY and request.name == "ding"
    assert request.entries == (
        Entry("3bea29cc", "sub/IMG_2.jpg", "best/2.jpg"),
        Entry(None, "A" * 22, None),
        Entry("3bea29cc", "IMG_1.jpg", None),
    )
    assert [default_name(e, "speech.txt") for e in request.entries] == [
        "best/2.jpg",
        "speech.txt",
        "IMG_1.jpg",
    ]
    with pytest.raises(BadRequest, match="give the entry a 'name'"):
        default_name(Entry(None, "A" * 22, None), "NUL.txt")


_segment = st.sampled_from(["a", "A", "b", "b.jpg", "B.JPG", "ä", "a\u0308"])
_names = st.lists(st.lists(_segment, min_size=1, max_size=3).map("/".join), max_size=6)


@given(_names)
def test_names_that_do_not_clash_extract_side_by_side(names: list[str]) -> None:
    """What an unzipper on a disk that ignores case and normalisation does: every
    accepted set of names becomes that many files, each its own bytes."""
    if clashing_names(names) is not None:
        return
    disk: dict[str, str] = {}  # folded path -> "dir" or the file's name
    for name in names:
        parts = unicodedata.normalize("NFD", name).casefold().split("/")
        for depth in range(1, len(parts)):
            assert disk.setdefault("/".join(parts[:depth]), "dir") == "dir", names
        assert "/".join(parts) not in disk, names
        disk["/".join(parts)] = name
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:
        for name in names:
            zf.writestr(name, name.encode())
    with zipfile.ZipFile(blob) as zf:
        assert [zf.read(n).decode() for n in names] == names


def test_clashes_are_named() -> None:
    assert "same file" in (clashing_names(["a.jpg", "A.JPG"]) or "")
    assert "needs a folder" in (clashing_names(["best", "best/2.jpg"]) or "")
    assert "needs a folder" in (clashing_names(["x/y/z", "X/Y"]) or "")
    assert "same file" in (clashing_names(["\u00e4.jpg", "a\u0308.jpg"]) or "")  # NFC, NFD
    assert clashing_names(["best/1.jpg", "best/2.jpg", "bester"]) is None


@given(st.lists(st.tuples(st.booleans(), st.text(min_size=1, max_size=8)), max_size=5))
def test_the_kept_form_reads_back(items: list[tuple[bool, str]]) -> None:
    entries = tuple(
        Entry(None, f"{n}" * 22, name) if stored else Entry("f", f"p{n}/{name}", name)
        for n, (stored, name) in enumerate(items)
    )
    assert entries_from_json(entries_json(entries)) == entries

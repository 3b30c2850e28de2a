"""Range and conditional-request evaluation (RFC 9110)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.ranges import (
    Decision,
    Multipart,
    Outcome,
    Validators,
    evaluate,
    http_date,
    parse_range,
)

V = Validators(etag='"v1"', last_modified=1_700_000_000, size=1000)


@st.composite
def range_headers(draw: st.DrawFn) -> tuple[int, str]:
    size = draw(st.integers(0, 5000))
    specs = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["closed", "open", "suffix"]))
        a = draw(st.integers(0, size + 50))
        if kind == "closed":
            specs.append(f"{a}-{a + draw(st.integers(0, 300))}")
        elif kind == "open":
            specs.append(f"{a}-")
        else:
            specs.append(f"-{draw(st.integers(0, size + 50))}")
    return size, "bytes=" + ", ".join(specs)


@settings(max_examples=500)
@given(range_headers())
def test_parsed_ranges_are_sorted_disjoint_and_inside(case: tuple[int, str]) -> None:
    size, header = case
    ranges = parse_range(header, size)
    assert ranges is not None
    previous_stop = -1
    for start, stop in ranges:
        assert 0 <= start < stop <= size
        assert start > previous_stop  # merged: no overlap, no touching
        previous_stop = stop


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=3000), st.data())
def test_multipart_parts_reassemble_the_requested_bytes(body: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), min_size=2, max_size=8)))
    ranges = tuple((a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b)
    if not ranges:
        return
    mp = Multipart("B0UND", "application/zip", len(body), ranges)
    rendered = b"".join(p if isinstance(p, bytes) else body[p[0] : p[1]] for p in mp.parts())
    assert len(rendered) == mp.length
    assert b"".join(body[a:b] for a, b in ranges) == b"".join(
        body[a:b] for p in mp.parts() if not isinstance(p, bytes) for a, b in [p]
    )
    assert rendered.endswith(b"\r\n--B0UND--\r\n")


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 1)]),
        ("bytes=-3", 10, [(7, 10)]),
        ("bytes=-30", 10, [(0, 10)]),
        ("bytes=5-", 10, [(5, 10)]),
        ("bytes=5-100", 10, [(5, 10)]),
        ("bytes=0-2,1-4,8-9", 10, [(0, 5), (8, 10)]),
        ("bytes=10-", 10, []),
        ("bytes=-0", 10, []),
        ("bytes=3-1", 10, None),
        ("items=0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=", 10, None),
    ],
)
def test_parse_range_examples(header: str, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("method", "headers", "outcome"),
    [
        ("GET", {}, Outcome.FULL),
        ("GET", {"If-None-Match": '"v1"'}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": 'W/"v1"'}, Outcome.NOT_MODIFIED),  # weak comparison
        ("GET", {"If-None-Match": '"other", "v1"'}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": "*"}, Outcome.NOT_MODIFIED),
        ("GET", {"If-None-Match": '"other"'}, Outcome.FULL),
        ("GET", {"If-Match": '"other"'}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Match": 'W/"v1"'}, Outcome.PRECONDITION_FAILED),  # strong comparison
        ("GET", {"If-Match": '"v1"', "Range": "bytes=0-9"}, Outcome.PARTIAL),
        ("GET", {"If-Unmodified-Since": http_date(1_600_000_000)}, Outcome.PRECONDITION_FAILED),
        ("GET", {"If-Modified-Since": http_date(1_700_000_000)}, Outcome.NOT_MODIFIED),
        ("GET", {"If-Modified-Since": http_date(1_600_000_000)}, Outcome.FULL),
        # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
        ("GET", {"If-None-Match": '"x"', "If-Modified-Since": http_date(2**31)}, Outcome.FULL),
        ("GET", {"Range": "bytes=0-9"}, Outcome.PARTIAL),
        ("HEAD", {"Range": "bytes=0-9"}, Outcome.FULL),
        ("GET", {"Range": "bytes=5000-"}, Outcome.UNSATISFIABLE),
        ("GET", {"Range": "bytes=0-9", "If-Range": '"v1"'}, Outcome.PARTIAL),
        ("GET", {"Range": "bytes=0-9", "If-Range": '"v0"'}, Outcome.FULL),
        ("GET", {"Range": "bytes=0-9", "If-Range": 'W/"v1"'}, Outcome.FULL),
        ("GET", {"Range": "bytes=0-9", "If-Range": http_date(1_700_000_000)}, Outcome.PARTIAL),
        ("GET", {"Range": "bytes=0-9", "If-Range": http_date(1_700_000_001)}, Outcome.FULL),
        ("GET", {"Range": "bytes=5000-", "If-Range": '"old"'}, Outcome.FULL),
        ("GET", {"Range": "bytes=zz"}, Outcome.FULL),
    ],
)
def test_evaluate(method: str, headers: dict[str, str], outcome: Outcome) -> None:
    assert evaluate(method, headers, V).outcome is outcome


def test_too_many_ranges_are_ignored() -> None:
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(40))
    assert evaluate("GET", {"Range": header}, V) == Decision(Outcome.FULL)

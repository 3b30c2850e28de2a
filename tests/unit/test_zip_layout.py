"""The pure ZIP engine, checked against the stdlib zipfile as oracle."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.zipstream import Layout, Limits, Member, Part, render, small_first
from satchel.zipstream.layout import dos_datetime

segment = st.text(
    alphabet=st.sampled_from(list("abcXYZ019_-. ") + list("яЖё") + ["😀", "日", "é"]),
    min_size=1,
    max_size=80,  # up to 320 bytes of UTF-8 per component
).filter(lambda s: s.strip(" .") == s and s not in (".", ".."))
names = st.lists(segment, min_size=1, max_size=4).map("/".join)
limits = st.one_of(
    st.just(Limits()),
    st.builds(Limits, zip64_at=st.integers(1, 3000), max_entries=st.integers(1, 6)),
)


@st.composite
def archives(draw: st.DrawFn) -> tuple[list[Member], list[bytes], Limits]:
    unique = draw(st.lists(names, min_size=0, max_size=8, unique=True))
    payloads = [draw(st.binary(max_size=600)) for _ in unique]
    mtimes = [draw(st.integers(-(2**31), 2**33)) for _ in unique]
    members = [Member(n, len(p), t) for n, p, t in zip(unique, payloads, mtimes, strict=True)]
    return members, payloads, draw(limits)


def build(members: list[Member], payloads: list[bytes], lim: Limits) -> tuple[Layout, bytes]:
    by_name = dict(zip((m.name for m in members), payloads, strict=True))
    ordered = small_first(sorted(members, key=lambda m: m.name), lim)
    layout = Layout.of(ordered, lim)
    data = [by_name[m.name] for m in ordered]
    return layout, render(layout, [zlib.crc32(d) for d in data], data)


@settings(max_examples=300, deadline=None)
@given(archives())
def test_every_layout_opens_in_zipfile_with_exact_size(case: tuple[Any, ...]) -> None:
    members, payloads, lim = case
    layout, blob = build(members, payloads, lim)
    assert len(blob) == layout.size
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == sorted(m.name for m in members)
        for member, payload in zip(members, payloads, strict=True):
            info = zf.getinfo(member.name)
            assert zf.read(info) == payload
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.flag_bits & 0x08 == 0  # no data descriptor
            expected = dos_datetime(member.mtime)
            assert (info.date_time[3] << 11 | info.date_time[4] << 5 | info.date_time[5] // 2) == (
                expected[0]
            )


@settings(max_examples=300, deadline=None)
@given(archives(), st.data())
def test_pieces_of_any_range_concatenate_to_that_slice(
    case: tuple[Any, ...], data: st.DataObject
) -> None:
    members, payloads, lim = case
    layout, blob = build(members, payloads, lim)
    start = data.draw(st.integers(0, layout.size))
    stop = data.draw(st.integers(start, layout.size))
    ordered = small_first(sorted(members, key=lambda m: m.name), lim)
    by_name = dict(zip((m.name for m in members), payloads, strict=True))
    crcs = [zlib.crc32(by_name[m.name]) for m in ordered]
    out = bytearray()
    for piece in layout.pieces(start, stop):
        if piece.part is Part.LOCAL:
            out += layout.local_header(piece.index, crcs[piece.index])[piece.start : piece.stop]
        elif piece.part is Part.DATA:
            out += by_name[ordered[piece.index].name][piece.start : piece.stop]
        elif piece.part is Part.CENTRAL:
            out += layout.central(piece.start, piece.stop, crcs)
        else:
            out += layout.end_records()[piece.start : piece.stop]
    assert bytes(out) == blob[start:stop]


def test_layout_ignores_crc_values() -> None:
    members = [Member("a", 3, 0), Member("b", 5, 0)]
    layout = Layout.of(members)
    assert len(layout.local_header(0, 0)) == len(layout.local_header(0, 0xFFFFFFFF))
    assert layout.size == Layout.of(members).size


def test_empty_archive_is_the_22_byte_end_record() -> None:
    layout = Layout.of([])
    blob = render(layout, [], [])
    assert blob == b"PK\x05\x06" + b"\x00" * 18
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.namelist() == []


def test_utf8_names_set_bit_11_and_carry_unicode_path_field() -> None:
    layout = Layout.of([Member("фото/😀.jpg", 1, 0)])
    header = layout.local_header(0, zlib.crc32(b"x"))
    flags = struct.unpack_from("<H", header, 6)[0]
    assert flags & 0x0800
    name = "фото/😀.jpg".encode()
    tag_at = header.index(b"\x75\x70")  # 0x7075 little-endian
    assert header[tag_at + 9 : tag_at + 9 + len(name)] == name
    assert struct.unpack_from("<I", header, tag_at + 5)[0] == zlib.crc32(name)


def test_ascii_names_need_no_utf8_flag() -> None:
    header = Layout.of([Member("a.jpg", 0, 0)]).local_header(0, 0)
    assert struct.unpack_from("<H", header, 6)[0] == 0


def test_zip64_only_when_needed() -> None:
    small = Layout.of([Member("a", 10, 0)], Limits(zip64_at=100))
    assert not small.zip64_end
    assert struct.unpack_from("<H", small.local_header(0, 0), 4)[0] == 20
    big = Layout.of([Member("a", 10, 0), Member("b", 200, 0)], Limits(zip64_at=100))
    assert struct.unpack_from("<H", big.local_header(1, 0), 4)[0] == 45
    assert big.zip64_end  # the central directory starts past the limit


def test_many_entries_use_zip64_end_records() -> None:
    members = [Member(f"{i:03}", 0, 0) for i in range(5)]
    layout = Layout.of(members, Limits(max_entries=5))
    blob = render(layout, [0] * 5, [b""] * 5)
    assert layout.zip64_end
    assert struct.unpack_from("<H", blob, len(blob) - 12)[0] == 0xFFFF
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert len(zf.namelist()) == 5


def test_small_first_keeps_a_zip64_entry_off_the_front_when_it_can() -> None:
    lim = Limits(zip64_at=100)
    ordered = small_first([Member("a-huge", 500, 0), Member("b", 1, 0), Member("c", 2, 0)], lim)
    assert [m.name for m in ordered] == ["b", "a-huge", "c"]
    only_big = small_first([Member("x", 500, 0), Member("y", 600, 0)], lim)
    assert [m.name for m in only_big] == ["x", "y"]


@pytest.mark.parametrize(
    ("mtime", "expected"),
    [
        (0, (0, (0 << 9) | (1 << 5) | 1)),  # before 1980: clamped to 1980-01-01
        (1700000000, ((22 << 11) | (13 << 5) | 10, (43 << 9) | (11 << 5) | 14)),
        (2**40, ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31)),  # clamped to 2107
    ],
)
def test_dos_datetime(mtime: int, expected: tuple[int, int]) -> None:
    assert dos_datetime(mtime) == expected


def test_pieces_reject_ranges_outside_the_archive() -> None:
    layout = Layout.of([Member("a", 1, 0)])
    with pytest.raises(ValueError):
        list(layout.pieces(0, layout.size + 1))


def test_plans_are_kept_by_key_and_scan_and_bounded_by_members() -> None:
    from satchel.archive.manifest import Manifest, Plans, build_manifest
    from satchel.storage.base import FileVersion, Listing, SourceFile

    def folder(count: int, mtime: int = 0) -> Listing:
        return Listing.of(
            [SourceFile(FileVersion(f"{i}", 1, mtime, i), f"/p/{i}") for i in range(count)], "/p/"
        )

    plans, limits = Plans(max_members=10), Limits()

    def plan(key: str, files: Listing, lim: Limits = limits) -> Manifest:
        """As an archive plans: the kept plan if its scan found the same, else afresh."""
        return plans.get(key, files, lim) or build_manifest(key, files, 0, lim, plans)

    a = plan("a", folder(4))
    assert plan("a", folder(4)) is a  # reused
    other_order = plan("a", Listing.of(folder(4)[::-1], "/p/"))  # scanned in another order
    assert other_order is not a and other_order.etag == a.etag  # planned again, alike
    assert plan("a", folder(4), Limits(zip64_at=2)) is not a
    touched = plan("a", folder(4, mtime=5))
    assert touched is not a and touched.etag != a.etag
    assert plans.get("a", folder(4), limits) is None  # only a folder's latest plan is kept
    b = plan("b", folder(4))
    assert plans.get("a", folder(4, mtime=5), limits) is touched
    assert plans.get("b", folder(4), limits) is b
    c = plan("c", folder(4))  # 12 members: the oldest, a, goes
    assert plans.get("a", folder(4, mtime=5), limits) is None
    plan("huge", folder(11))  # more than it may hold
    assert plans.get("b", folder(4), limits) is b and plans.get("c", folder(4), limits) is c
    assert not plans.holds("huge")


def test_an_empty_member_has_no_data_piece() -> None:
    layout = Layout.of([Member("a", 3, 0), Member("empty", 0, 0), Member("b", 2, 0)])
    parts = [(p.part, p.index) for p in layout.pieces(0, layout.size)]
    assert (Part.DATA, 1) not in parts and (Part.LOCAL, 1) in parts
    assert all(p.length > 0 for p in layout.pieces(0, layout.size))


def test_a_folder_whose_first_file_needs_zip64_opens_with_a_small_one() -> None:
    from satchel.archive.manifest import build_manifest
    from satchel.storage.base import FileVersion, Listing, SourceFile

    sizes = {"a-huge": 500, "b-huge": 700, "c": 3, "d": 4}
    files = Listing.of(
        SourceFile(FileVersion(n, s, 10**9 * s, s), f"/p/{n}") for n, s in sizes.items()
    )
    plan = build_manifest("f", files, 0, Limits(zip64_at=100))
    names = [f.version.name for f in plan.files]
    assert names == ["c", "a-huge", "b-huge", "d"]
    blob = render(plan.layout, [0] * 4, [bytes(sizes[n]) for n in names])
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert [(i.filename, i.file_size) for i in zf.infolist()] == [(n, sizes[n]) for n in names]
    assert plan.last_modified == 700  # the newest file's


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 64))
def test_a_local_header_put_in_place_is_the_one_rendered(crc: int, at: int) -> None:
    layout = Layout.of([Member("a.jpg", 3, 0), Member("é/b.jpg", 5, 10**9)])
    header = layout.local_header(1, crc)
    buffer = bytearray(b"x" * (at + len(header) + 9))
    layout.put_local_header(buffer, at, 1, crc)
    assert buffer == b"x" * at + header + b"x" * 9


@pytest.mark.parametrize("bad", ["", "x" * 70_000, "я" * 35_000])
def test_a_name_no_zip_header_can_hold_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="bad member name length") as refused:
        Layout.of([Member("fine", 1, 0), Member(bad, 1, 0)])
    assert repr(bad)[:20] in str(refused.value)

"""CRC snapshots: packed and read back, each CRC by the version of its file."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from satchel.archive.snapshot import Snapshot, by_version, crcs_of, pack
from satchel.storage.base import FileVersion, SourceFile

_versions = st.builds(
    FileVersion,
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), min_size=1),
    st.integers(0, 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
)


@given(st.lists(st.tuples(_versions, st.integers(0, 2**32 - 1)), max_size=20))
def test_every_crc_reads_back_in_order_and_by_version(items: list[tuple[FileVersion, int]]) -> None:
    files = [SourceFile(version, f"/p/{n}") for n, (version, _) in enumerate(items)]
    crcs = [crc for _, crc in items]
    snapshot = pack('"etag"', files, crcs)
    assert list(crcs_of(snapshot)) == crcs
    assert by_version(snapshot) == {version: crc for version, crc in items}


def test_names_deflated_a_few_thousand_at_a_time_read_back_whole() -> None:
    files = [
        SourceFile(FileVersion(f"d{n // 1000}/IMG_{n:05}.jpg", n, n * 7, -n), f"/p/{n}")
        for n in range(10_001)  # past two of the chunks the names are deflated in
    ]
    snapshot = pack('"etag"', files, list(range(10_001)))
    assert by_version(snapshot) == {f.version: n for n, f in enumerate(files)}
    assert len(snapshot.versions) < 24 * len(files) / 2  # deflated: under half the stats


@given(st.lists(st.tuples(_versions, st.integers(0, 2**32 - 1)), max_size=20))
def test_a_snapshot_kept_before_versions_were_deflated_still_reads(
    items: list[tuple[FileVersion, int]],
) -> None:
    """Rows kept by an earlier release hold the versions as they are: sizes (big-endian,
    first), then the names. A real size's highest byte is 0, never the "Z" of a
    deflated one."""
    items = [(v._replace(size=v.size >> 8), crc) for v, crc in items]  # < 2**55
    plain = b"".join(struct.pack(">qqq", v.size, v.mtime_ns, v.inode) for v, _ in items)
    plain += "\0".join(v.name for v, _ in items).encode("utf-8")
    crcs = b"".join(crc.to_bytes(4, "big") for _, crc in items)
    assert by_version(Snapshot('"etag"', crcs, plain)) == {v: crc for v, crc in items}

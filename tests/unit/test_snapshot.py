"""CRC snapshots: packed and read back, each CRC by the version of its file."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from satchel.archive.snapshot import by_version, crcs_of, pack
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

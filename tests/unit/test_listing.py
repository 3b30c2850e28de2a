"""A scan's files in columns behave as the sequence of files they stand for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.storage.base import FileVersion, Listing, SourceFile

BASE = "/photos/f/"

names = st.text(st.characters(codec="utf-8", exclude_characters="\0/"), min_size=1, max_size=8)
files = st.lists(
    st.builds(
        lambda name, size, mtime, inode, elsewhere: SourceFile(
            FileVersion(name, size, mtime, inode),
            f"/elsewhere/{name}" if elsewhere else BASE + name,
        ),
        names,
        st.integers(0, 2**62),
        st.integers(-(2**62), 2**62),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
    ),
    max_size=20,
)


@given(files, st.data())
def test_a_listing_is_the_files_it_was_made_of(
    sources: list[SourceFile], data: st.DataObject
) -> None:
    listing = Listing.of(sources, BASE)
    assert len(listing) == len(sources)
    assert list(listing) == sources
    assert [listing[i] for i in range(-len(sources), len(sources))] == sources + sources
    assert listing[1:-1:2] == sources[1:-1:2]
    order = data.draw(st.permutations(range(len(sources))))
    taken = listing.taken(order)
    assert list(taken) == [sources[i] for i in order]
    assert (taken == listing) == (list(taken) == sources)
    assert listing == Listing.of(sources, BASE)


def test_where_a_file_is_found_is_part_of_what_it_is() -> None:
    version = FileVersion("a.jpg", 1, 2, 3)
    here = Listing.of([SourceFile(version, BASE + "a.jpg")], BASE)
    there = Listing.of([SourceFile(version, "/other/a.jpg")], BASE)
    assert here != there and there[0].location == "/other/a.jpg"
    assert here != [SourceFile(version, BASE + "a.jpg")]  # only a listing equals a listing
    with pytest.raises(IndexError):
        here[1]
    with pytest.raises(TypeError):
        hash(here)

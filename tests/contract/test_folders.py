"""The Folders seam's contract: what archives and folder writes rely on, run against
every implementation: the local filesystem, and an S3 bucket (the tests' SeaweedFS)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import ArchiveChanged, ArchiveNotFound, Conflict
from satchel.storage.base import Folders, SourceFile
from satchel.storage.folders import LocalFolders
from satchel.storage.s3 import MIN_PART, S3Location
from satchel.storage.s3_folders import S3Folders
from tests.helpers import aligned_blocks


@pytest.fixture(params=["local", "s3"])
def folders(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "s3":
        url = request.getfixturevalue("s3_url")
        return S3Folders(request.getfixturevalue("s3_client"), S3Location.parse(url), MIN_PART)
    (tmp_path / "photos").mkdir()
    return LocalFolders(tmp_path / "photos")


def put(folders: Folders, path: str, data: bytes) -> tuple[Any, bool]:
    incoming = folders.create()
    for block in aligned_blocks(data, 1 << 20):
        incoming.digest(block)
        incoming.store(block)
    incoming.finish()
    return folders.place(tuple(path.split("/")), incoming)


def listing(folders: Folders, folder: str) -> dict[str, SourceFile]:
    files, _mtime = folders.scan(folder)
    return {source.version.name: source for source in files}


def read(folders: Folders, source: SourceFile) -> bytes:
    member = folders.open(source)
    try:
        view = memoryview(bytearray(source.version.size + 1))
        n = member.read_into(0, view)
        assert member.read(0, source.version.size) == bytes(view[:n])
        member.verify()
        return bytes(view[:n])
    finally:
        member.close()


def test_placed_members_are_listed_by_their_path_in_the_folder(folders: Folders) -> None:
    first, existed = put(folders, "album/a.jpg", b"first")
    assert not existed
    put(folders, "album/deep/er/b.jpg", b"second")
    found = listing(folders, "album")
    assert set(found) == {"a.jpg", "deep/er/b.jpg"}
    assert found["a.jpg"].version == first and first.size == 5
    assert read(folders, found["deep/er/b.jpg"]) == b"second"


def test_a_missing_folder_is_not_found(folders: Folders) -> None:
    with pytest.raises(ArchiveNotFound):
        folders.scan("nothing-here")


def test_a_replaced_member_is_a_new_version_and_the_old_one_is_gone(folders: Folders) -> None:
    put(folders, "album/a.jpg", b"first")
    old = listing(folders, "album")["a.jpg"]
    opened = folders.open(old)
    try:
        version, existed = put(folders, "album/a.jpg", b"changed!")
        assert existed and version != old.version
        with pytest.raises(ArchiveChanged):  # a sender reading it learns the archive changed
            opened.read_into(1, memoryview(bytearray(4)))  # bytes it must fetch again
            opened.verify()
    finally:
        opened.close()
    with pytest.raises(ArchiveChanged):
        folders.open(old)
    assert read(folders, listing(folders, "album")["a.jpg"]) == b"changed!"


def test_remove_deletes_a_member_once(folders: Folders) -> None:
    put(folders, "album/a.jpg", b"x")
    put(folders, "album/b.jpg", b"y")
    old = listing(folders, "album")["a.jpg"]
    assert folders.remove(("album", "a.jpg"))
    assert not folders.remove(("album", "a.jpg"))
    assert not folders.remove(("album", "no", "such.jpg"))
    assert set(listing(folders, "album")) == {"b.jpg"}
    with pytest.raises(ArchiveChanged):
        folders.open(old)


def test_a_file_in_the_way_of_a_folder_is_a_conflict(folders: Folders) -> None:
    put(folders, "album/a.jpg", b"x")
    with pytest.raises(Conflict):
        put(folders, "album/a.jpg/b.jpg", b"y")
    put(folders, "album/deep/b.jpg", b"y")
    with pytest.raises(Conflict):
        put(folders, "album/deep", b"z")  # a folder is not a file to replace
    assert {name: read(folders, source) for name, source in listing(folders, "album").items()} == {
        "a.jpg": b"x",
        "deep/b.jpg": b"y",
    }


def test_free_bytes_is_a_count(folders: Folders) -> None:
    assert folders.free_bytes() > 0


def test_an_empty_member_is_stored(folders: Folders) -> None:
    version, _ = put(folders, "album/empty", b"")
    assert version.size == 0
    assert read(folders, listing(folders, "album")["empty"]) == b""


def test_a_large_member_reads_back_whole(folders: Folders) -> None:
    data = bytes(range(256)) * (MIN_PART // 256 + 5)  # more than a part
    version, _ = put(folders, "album/big.bin", data)
    assert version.size == len(data)
    assert read(folders, listing(folders, "album")["big.bin"]) == data


def test_a_member_is_read_whole_only_as_the_version_listed(tmp_path: Path) -> None:
    """LocalFolders' WholeReads: the bytes of the version scanned, else ArchiveChanged."""
    folders = LocalFolders(tmp_path)
    member = tmp_path / "f" / "a.jpg"
    member.parent.mkdir()
    member.write_bytes(b"x" * 1000)
    [source] = folders.scan("f")[0]

    def read_whole(source: SourceFile) -> bytes:
        into = bytearray(source.version.size)
        folders.read_whole(source, memoryview(into))
        return bytes(into)

    assert read_whole(source) == b"x" * 1000
    for n, change in enumerate((b"x" * 1001, b"x" * 999, b"y" * 1000)):  # grown, shrunk…
        member.write_bytes(change)
        os.utime(member, ns=(1, (n + 1) * 10**9))  # …rewritten: a new mtime, whatever the clock
        with pytest.raises(ArchiveChanged):
            read_whole(source)
    [source] = folders.scan("f")[0]
    member.unlink()
    with pytest.raises(ArchiveChanged):
        read_whole(source)


@pytest.mark.parametrize("override", [False, True])
def test_a_file_its_owner_may_not_read_is_skipped_unless_we_may_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, override: bool
) -> None:
    """The scan reads an owner's mode bits instead of calling ``access`` a file; a process
    that may override permissions (root) reads every file, so lists every one."""
    monkeypatch.setattr("satchel.storage.folders._may_override_permissions", lambda: override)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "open.jpg").write_bytes(b"x")
    (folder / "shut.jpg").write_bytes(b"y")
    (folder / "shut.jpg").chmod(0o200)
    names = {source.version.name for source in LocalFolders(tmp_path).scan("f")[0]}
    assert names == ({"open.jpg", "shut.jpg"} if override else {"open.jpg"})


def test_the_process_knows_whether_it_may_override_permissions(tmp_path: Path) -> None:
    from satchel.storage.folders import _may_override_permissions

    shut = tmp_path / "shut.jpg"
    shut.write_bytes(b"y")
    shut.chmod(0o200)
    assert _may_override_permissions() == os.access(shut, os.R_OK)  # what the kernel says

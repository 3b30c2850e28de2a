"""Local folders watched with inotify: a folder's last plan stands unscanned only while
nothing in it changed, and only where every change would be seen."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from satchel.archive.manifest import Plans
from satchel.archive.service import Archives
from satchel.storage.base import Listing
from satchel.storage.folders import LocalFolders
from satchel.storage.watch import open_watch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


class _NoCrcs:
    """Archives here only plan; no CRC is asked for."""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for folder in ("album", "other"):
        (root / folder / "sub").mkdir(parents=True)
        (root / folder / "a.jpg").write_bytes(b"a" * 10)
        (root / folder / "sub" / "b.jpg").write_bytes(b"b" * 20)
    return root


@pytest.fixture
def folders(root: Path) -> Iterator[LocalFolders]:
    folders = LocalFolders(root, watch=True)
    yield folders
    folders.close()


def scanned(folders: LocalFolders, folder: str = "album") -> int:
    _files, _mtime, stamp = folders.scan_watched(folder)
    assert stamp is not None
    return stamp


def test_a_folder_nobody_touched_is_unchanged(folders: LocalFolders, root: Path) -> None:
    stamp = scanned(folders)
    (root / "album" / "a.jpg").read_bytes()  # reading is no change
    os.listdir(root / "album" / "sub")
    assert folders.unchanged("album", stamp)
    assert folders.unchanged("album", stamp)  # asked again, still


def _rename_out(album: Path) -> None:
    (album / "sub" / "b.jpg").rename(album.parent / "b.jpg")


def _append(album: Path) -> None:
    with (album / "a.jpg").open("ab") as file:
        file.write(b"+")


CHANGES: dict[str, Callable[[Path], object]] = {
    "a file added deep down": lambda a: (a / "sub" / "new.jpg").write_bytes(b"n"),
    "a file rewritten": lambda a: (a / "sub" / "b.jpg").write_bytes(b"c" * 20),
    "a file appended to": _append,
    "a file touched": lambda a: os.utime(a / "sub" / "b.jpg", ns=(1, 1)),
    "a file made unreadable": lambda a: os.chmod(a / "a.jpg", 0),
    "a file removed": lambda a: (a / "sub" / "b.jpg").unlink(),
    "a file renamed": lambda a: (a / "a.jpg").rename(a / "c.jpg"),
    "a file moved out": _rename_out,
    "a folder made": lambda a: (a / "new").mkdir(),
    "a folder renamed": lambda a: (a / "sub").rename(a / "moved"),
    "the folder itself renamed": lambda a: a.rename(a.parent / "gone"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_is_seen(folders: LocalFolders, root: Path, change: str) -> None:
    stamp = scanned(folders)
    CHANGES[change](root / "album")
    assert not folders.unchanged("album", stamp)


def test_a_change_elsewhere_is_not_this_folders(folders: LocalFolders, root: Path) -> None:
    stamp = scanned(folders)
    other = scanned(folders, "other")
    (root / "other" / "sub" / "new.jpg").write_bytes(b"n")
    (root / "loose.jpg").write_bytes(b"l")  # in the photos root, in no folder
    assert folders.unchanged("album", stamp)
    assert not folders.unchanged("other", other)


def test_a_change_after_the_stamp_and_before_the_next_scan_is_seen(
    folders: LocalFolders, root: Path
) -> None:
    stamp = scanned(folders)
    (root / "album" / "sub" / "new.jpg").write_bytes(b"n")
    later = scanned(folders)  # this scan sees the new file: its stamp stands
    assert not folders.unchanged("album", stamp)
    assert folders.unchanged("album", later)


@pytest.mark.parametrize("kind", ["symlinked file", "symlinked folder", "hard-linked file"])
def test_what_a_watch_cannot_see_is_scanned_every_time(
    folders: LocalFolders, root: Path, kind: str
) -> None:
    album = root / "album"
    if kind == "symlinked file":
        (album / "link.jpg").symlink_to(root / "other" / "a.jpg")
    elif kind == "symlinked folder":
        (album / "link").symlink_to(root / "other" / "sub")
    else:  # written through its other name, it changes without an event in the album
        os.link(album / "a.jpg", root / "other" / "twin.jpg")
    files, _mtime, stamp = folders.scan_watched("album")
    assert stamp is not None and len(files) == (2 if kind == "hard-linked file" else 3)
    assert not folders.unchanged("album", stamp)


def test_lost_events_make_every_folder_changed(folders: LocalFolders, root: Path) -> None:
    stamp = scanned(folders)
    other = root / "other"
    scanned(folders, "other")
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for i in range(queue // 2 + 2):  # two events each, none merged with the one before
        os.utime(other / "a.jpg", ns=(i, i))
        os.utime(other / "sub", ns=(i, i))
    assert not folders.unchanged("album", stamp)
    assert folders.unchanged("album", scanned(folders))  # and it is watched again


def test_forgotten_folders_are_no_longer_watched(folders: LocalFolders) -> None:
    stamp = scanned(folders)
    assert folders._watch is not None and folders._watch.watched() == 2
    folders.forget("album")
    assert folders._watch.watched() == 0
    assert not folders.unchanged("album", stamp)


def test_a_folder_is_not_scanned_again_until_it_changes(folders: LocalFolders, root: Path) -> None:
    archives = Archives(folders, _NoCrcs())  # type: ignore[arg-type]
    scans = _count_scans(folders)
    plan = archives._plan("album")
    assert archives._plan("album") is plan and scans() == 1
    (root / "album" / "sub" / "new.jpg").write_bytes(b"n")
    changed = archives._plan("album")
    assert scans() == 2 and [f.version.name for f in changed.files] == [
        "a.jpg",
        "sub/b.jpg",
        "sub/new.jpg",
    ]
    assert archives._plan("album") is changed and scans() == 2


def test_folders_whose_plans_are_not_kept_are_not_watched(
    folders: LocalFolders, root: Path
) -> None:
    archives = Archives(folders, _NoCrcs(), plans=Plans(max_members=3))  # type: ignore[arg-type]
    watch = folders._watch
    assert watch is not None
    archives._plan("album")
    assert watch.watched() == 2
    archives._plan("other")  # 4 members kept: album's plan is let go, and its watches
    assert watch.watched() == 2 and not archives.plans.holds("album")
    (root / "big").mkdir()
    for i in range(4):
        (root / "big" / f"{i}.jpg").write_bytes(b"x")
    archives._plan("big")  # too large to keep
    assert watch.watched() == 2
    (root / "empty").mkdir()
    archives._plan("empty")
    assert watch.watched() == 2


def test_a_root_on_a_filesystem_others_may_change_is_not_watched(tmp_path: Path) -> None:
    assert open_watch("/proc") is None  # not a disk's filesystem: stands for NFS and the like
    assert LocalFolders(Path("/proc")).unchanged("self", 0) is False
    local = open_watch(str(tmp_path))
    assert local is not None  # a local disk's is
    local.close()


def test_unwatched_folders_say_nothing_is_unchanged(root: Path) -> None:
    folders = LocalFolders(root)  # watch=False
    files, _mtime, stamp = folders.scan_watched("album")
    assert len(files) == 2 and stamp is None
    assert not folders.unchanged("album", 1)


def _count_scans(folders: LocalFolders) -> Callable[[], int]:
    count = 0
    scan = folders.scan_watched

    def counting(folder: str) -> tuple[Listing, int, int | None]:
        nonlocal count
        count += 1
        return scan(folder)

    folders.scan_watched = counting  # type: ignore[method-assign]
    return lambda: count


def test_a_closed_watch_vouches_for_nothing(root: Path) -> None:
    folders = LocalFolders(root, watch=True)
    stamp = scanned(folders)
    assert folders.unchanged("album", stamp)
    folders.close()
    assert not folders.unchanged("album", stamp)
    assert not folders.unchanged("album", scanned(folders))  # a scan still works, untrusted

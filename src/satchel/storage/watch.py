"""Whether a photo folder changed since a scan of it began, from Linux's inotify: a
folder's archive plan is reused without a scan while nothing was reported in it.

A scan takes a stamp, then watches each directory before it lists it, so a change made
after the stamp is either seen by the scan or reported. What a watch cannot see for sure
spoils the folder (it is scanned again next time): a symlink, a file with other hard
links, a directory on another filesystem, a watch refused, events lost. The watch is
used only when the photos root is on a local filesystem: a network filesystem's other
clients change files without telling this kernel."""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import threading

log = logging.getLogger("satchel.archive")

# <sys/inotify.h>
_MODIFY, _ATTRIB, _CLOSE_WRITE = 0x2, 0x4, 0x8
_MOVED_FROM, _MOVED_TO, _CREATE, _DELETE = 0x40, 0x80, 0x100, 0x200
_DELETE_SELF, _MOVE_SELF = 0x400, 0x800
_OVERFLOW, _IGNORED, _ONLYDIR = 0x4000, 0x8000, 0x01000000
_MASK = (
    _MODIFY | _ATTRIB | _CLOSE_WRITE | _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
    | _DELETE_SELF | _MOVE_SELF | _ONLYDIR
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows

# statfs f_type of filesystems whose every change goes through this kernel
LOCAL_FILESYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x2FC12FC1: "zfs",
    0xF2F52010: "f2fs",
    0x794C7630: "overlayfs",
}


class FolderWatch:
    """inotify watches on the directories of scanned folders. Used from threads."""

    def __init__(self, fd: int, libc: ctypes.CDLL, device: int) -> None:
        self._fd = fd
        self._libc = libc
        self.device = device  # the photos root's: a directory on another is not watched
        self._lock = threading.Lock()
        self._tick = 0  # counts stamps and changes: a change after a stamp has a higher tick
        # folder -> tick of its last change; kept after the folder is forgotten (a stamp
        # taken before must stay void): an int for each folder ever watched
        self._changed: dict[str, int] = {}
        self._lost = 0  # tick when events were lost: every folder changed
        self._folder: dict[int, str] = {}  # watch descriptor -> folder
        self._watches: dict[str, set[int]] = {}  # folder -> its watch descriptors
        self._refused = False  # a watch was refused: said once in the log

    def stamp(self) -> int:
        """Taken before a scan begins."""
        with self._lock:
            self._read_events()
            self._tick += 1
            return self._tick

    def unchanged(self, folder: str, stamp: int) -> bool:
        """Nothing reported in ``folder`` since ``stamp``, and its scan was watchable."""
        with self._lock:
            self._read_events()
            return max(self._changed.get(folder, 0), self._lost) < stamp

    def add(self, folder: str, directory_fd: int) -> None:
        """Watch an open directory of ``folder``, before its entries are listed."""
        with self._lock:
            wd = int(
                self._libc.inotify_add_watch(
                    self._fd, f"/proc/self/fd/{directory_fd}".encode(), _MASK
                )
            )
            if wd < 0:
                if not self._refused:
                    self._refused = True
                    log.warning(
                        "Cannot watch a directory of %s (%s): folders not watched are "
                        "scanned for every archive; see fs.inotify.max_user_watches",
                        folder,
                        os.strerror(ctypes.get_errno()),
                    )
                self._change(folder)
                return
            owner = self._folder.get(wd)
            if owner is not None and owner != folder:  # one directory reached from two
                self._change(owner)
                self._watches[owner].discard(wd)
            self._folder[wd] = folder
            self._watches.setdefault(folder, set()).add(wd)

    def spoil(self, folder: str) -> None:
        """Something in ``folder`` can change unseen: its next archive scans it again."""
        with self._lock:
            self._change(folder)

    def forget(self, folder: str) -> None:
        """Stop watching ``folder`` (its plan is gone); a stamp taken before is void."""
        with self._lock:
            self._change(folder)
            for wd in self._watches.pop(folder, ()):
                self._folder.pop(wd, None)
                self._libc.inotify_rm_watch(self._fd, wd)

    def watched(self) -> int:
        """How many directories are watched."""
        with self._lock:
            return len(self._folder)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _change(self, folder: str) -> None:
        self._tick += 1
        self._changed[folder] = self._tick

    def _read_events(self) -> None:
        if self._fd < 0:  # closed: nothing can be vouched for
            self._tick += 1
            self._lost = self._tick
            return
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return
            at = 0
            while at < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
                at += _EVENT.size + length
                if mask & _OVERFLOW:
                    self._tick += 1
                    self._lost = self._tick
                    continue
                folder = self._folder.get(wd)
                if folder is None:  # a watch just removed
                    continue
                self._change(folder)
                if mask & _IGNORED:  # its directory is gone
                    del self._folder[wd]
                    self._watches[folder].discard(wd)


def open_watch(root: str) -> FolderWatch | None:
    """A watch for folders under ``root``, or None (with the reason logged) where inotify
    cannot be trusted or is not there."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add, remove = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
        statfs = libc.statfs
    except (OSError, AttributeError):
        log.info("Folder scans are not watched: no inotify here")
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    remove.argtypes, remove.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field
    if statfs(os.fsencode(root), buffer) != 0:
        log.info(
            "Folder scans are not watched: statfs %s: %s", root, os.strerror(ctypes.get_errno())
        )
        return None
    kind = ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF
    if kind not in LOCAL_FILESYSTEMS:
        log.info(
            "Folder scans are not watched: the photos root is on a filesystem (0x%x) that "
            "others may change unseen; every archive scans its folder",
            kind,
        )
        return None
    fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        log.warning(
            "Folder scans are not watched: inotify_init1: %s (see fs.inotify.max_user_instances)",
            os.strerror(ctypes.get_errno()),
        )
        return None
    log.info("Folder scans are watched with inotify (%s)", LOCAL_FILESYSTEMS[kind])
    return FolderWatch(fd, libc, os.stat(root).st_dev)

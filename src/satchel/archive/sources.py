"""Where a selection's files are opened: folder members from the photo folders, stored
files from the storage of uploads. Every method blocks."""

from __future__ import annotations

import os

from satchel.errors import ArchiveChanged
from satchel.storage.base import (
    Folders,
    Member,
    Reader,
    SourceFile,
    Storage,
    fetches_ahead,
    read_all,
    reads_whole,
    zero_copy,
)


class StoredMember:
    """A stored file as an archive member. Stored bytes never change under an id, so
    there is nothing to verify; one removed once open is still read whole (locally),
    and one removed before is ``ArchiveChanged``."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.size = reader.size

    def read(self, offset: int, count: int) -> bytes:
        return self.reader.read(offset, count)

    def read_into(self, offset: int, view: memoryview) -> int:
        data = self.reader.read(offset, len(view))
        view[: len(data)] = data
        return len(data)

    def verify(self) -> None:
        return None

    def close(self) -> None:
        self.reader.close()


class StoredFileMember(StoredMember):
    """A stored file on a local disk: sent by ``sendfile`` (``ZeroCopy``)."""

    def __init__(self, reader: Reader, fd: int) -> None:
        super().__init__(reader)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def read_into(self, offset: int, view: memoryview) -> int:
        return os.preadv(self._fd, [view], offset)


class MixedSources:
    """:class:`satchel.archive.sender.Sources` over photo folders and stored files;
    it opens ahead as the photo folders do (``FetchAhead``)."""

    def __init__(self, folders: Folders, storage: Storage) -> None:
        self.folders = folders
        self.storage = storage
        self.fetch_ahead = folders.fetch_ahead if fetches_ahead(folders) else 0

    def read_whole(self, source: SourceFile, into: memoryview) -> None:
        if not source.stored and reads_whole(self.folders):
            self.folders.read_whole(source, into)
        else:
            read_all(self.open(source), source, into)

    def open(self, source: SourceFile) -> Member:
        if not source.stored:
            return self.folders.open(source)
        try:
            reader = self.storage.open(source.location)
        except FileNotFoundError as exc:
            raise ArchiveChanged(f"the stored file {source.location} was removed") from exc
        if reader.size != source.version.size:
            reader.close()
            raise ArchiveChanged(f"the stored file {source.location} is not the size it was")
        fd = reader.fileno() if zero_copy(reader) else None
        return StoredMember(reader) if fd is None else StoredFileMember(reader, fd)

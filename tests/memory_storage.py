"""A second implementation of the storage seam, in memory: no file descriptors, so no
zero-copy, and locks that hold within one process. It shows that the services need
nothing of storage but ``satchel.storage.base``, and the contract suite runs on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from satchel.errors import Locked
from satchel.storage.base import Hashing


class MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def read(self, offset: int, count: int) -> bytes:
        return self._data[offset : offset + count]

    def close(self) -> None:
        pass


class MemoryIncoming(Hashing):
    def __init__(self, owner: MemoryStorage, file_id: str) -> None:
        super().__init__()
        self._owner = owner
        self.file_id = file_id
        self.data = bytearray()
        self.size = 0
        self.touched = time.time()

    def store(self, block: memoryview) -> None:
        self.data += block
        self.size += len(block)
        self.touched = time.time()

    def finish(self) -> None:
        pass

    def discard(self) -> None:
        self._owner.incoming.discard(self)


class MemoryAppending:
    def __init__(self, upload: bytearray, offset: int) -> None:
        self._upload = upload
        self._offset = offset
        del upload[offset:]
        self.written = 0

    def write(self, block: memoryview) -> None:
        self._upload += block
        self.written += len(block)

    def keep(self, end: int) -> None:
        del self._upload[end:]

    def close(self) -> None:
        pass


class MemoryStorage:
    """Stored files, uploads and locks in dicts; every method is safe from any thread."""

    def __init__(self, free: int = 1 << 40) -> None:
        self.files: dict[str, tuple[bytes, float]] = {}  # id -> (bytes, when written)
        self.uploads: dict[str, bytearray] = {}
        self.incoming: set[MemoryIncoming] = set()
        self.free = free
        self._locked: set[str] = set()
        self._mutex = threading.Lock()

    def create(self, file_id: str) -> MemoryIncoming:
        incoming = MemoryIncoming(self, file_id)
        self.incoming.add(incoming)
        return incoming

    def commit(self, incoming: object) -> None:
        assert isinstance(incoming, MemoryIncoming)
        self.incoming.discard(incoming)
        self.files[incoming.file_id] = (bytes(incoming.data), time.time())

    def open(self, file_id: str) -> MemoryReader:
        if file_id not in self.files:
            raise FileNotFoundError(file_id)
        return MemoryReader(self.files[file_id][0])

    def remove(self, file_id: str) -> None:
        self.files.pop(file_id, None)

    def ids_older_than(self, cutoff: float) -> list[str]:
        return [file_id for file_id, (_, at) in list(self.files.items()) if at < cutoff]

    def sweep_temp(self, cutoff: float) -> int:
        stale = [incoming for incoming in list(self.incoming) if incoming.touched < cutoff]
        self.incoming.difference_update(stale)
        return len(stale)

    def free_bytes(self) -> int:
        return self.free

    def check(self) -> None:
        pass  # memory is always writable

    def create_upload(self, key: str, file_id: str) -> None:
        self.uploads[key] = bytearray()

    def _upload(self, key: str) -> bytearray:
        if key not in self.uploads:
            raise FileNotFoundError(key)
        return self.uploads[key]

    def append(self, key: str, offset: int) -> MemoryAppending:
        return MemoryAppending(self._upload(key), offset)

    def join(self, key: str, parts: Sequence[str]) -> None:
        self._upload(key)[:] = b"".join(self._upload(part) for part in parts)

    def read_upload(self, key: str) -> MemoryReader:
        return MemoryReader(bytes(self._upload(key)))

    def finish_upload(self, key: str, file_id: str) -> None:
        if file_id not in self.files:
            self.files[file_id] = (bytes(self._upload(key)), time.time())

    def remove_upload(self, key: str) -> None:
        self.uploads.pop(key, None)

    def acquire(self, key: str) -> Callable[[], None]:
        with self._mutex:
            self._upload(key)
            if key in self._locked:
                raise Locked(retry_after=1)
            self._locked.add(key)

        def release() -> None:
            with self._mutex:
                self._locked.discard(key)

        return release

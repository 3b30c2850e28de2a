"""The storage seam's contract: what FileStore and TusStore rely on, run against every
implementation: the local filesystem, S3 (the SeaweedFS server of the tests, with the
smallest parts S3 allows, so that uploads here cross parts) and the in-memory one of
the tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import Locked
from satchel.storage.base import Reader, Storage, UploadLocks, ZeroCopy, hash_all
from satchel.storage.local import LocalStorage
from satchel.storage.locks import FileLocks
from satchel.storage.s3 import MIN_PART, S3Location, S3Storage
from tests.helpers import aligned_blocks
from tests.memory_storage import MemoryStorage

BLOCK = 1 << 20


@pytest.fixture(params=["local", "s3", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalStorage(tmp_path)
    if request.param == "s3":
        url = request.getfixturevalue("s3_url")
        return S3Storage(request.getfixturevalue("s3_client"), S3Location.parse(url), MIN_PART)
    return MemoryStorage()


def blocks(data: bytes) -> Iterator[memoryview]:
    return aligned_blocks(data, BLOCK)


def receive(storage: Storage, data: bytes, file_id: str) -> None:
    incoming = storage.create(file_id)
    for block in blocks(data):
        incoming.digest(block)
        incoming.store(block)
    incoming.finish()
    assert (incoming.size, incoming.sha256, incoming.crc32) == (
        len(data), hashlib.sha256(data).digest(), zlib.crc32(data),
    )  # fmt: skip
    storage.commit(incoming)


def read_all(reader: Reader) -> bytes:
    try:
        return reader.read(0, reader.size + 1)
    finally:
        reader.close()


def append(storage: Storage, key: str, offset: int, data: bytes, *, keep: bool = True) -> None:
    appending = storage.append(key, offset)
    try:
        for block in blocks(data):
            appending.write(block)
        assert appending.written == len(data)
        appending.keep(offset + len(data) if keep else offset)
    finally:
        appending.close()


@pytest.mark.parametrize("size", [0, 1, 4097, 3 * BLOCK + 5, MIN_PART * 2 + 3])
def test_a_committed_file_reads_back_whole_and_in_ranges(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    receive(storage, data, "f1")
    reader = storage.open("f1")
    try:
        assert reader.size == size
        assert reader.read(0, size + 10) == data
        assert reader.read(size // 3, 4096) == data[size // 3 : size // 3 + 4096]
        assert reader.read(size, 10) == b""
        assert hash_all(reader).sha256 == hashlib.sha256(data).digest()
    finally:
        reader.close()


def test_nothing_is_visible_before_commit_and_a_discard_leaves_nothing(storage: Storage) -> None:
    incoming = storage.create("f1")
    incoming.store(next(blocks(b"x" * 5000)))
    with pytest.raises(FileNotFoundError):
        storage.open("f1")
    incoming.discard()
    assert storage.sweep_temp(time.time() + 60) == 0
    assert storage.ids_older_than(time.time() + 60) == []


def test_remove_is_idempotent(storage: Storage) -> None:
    receive(storage, b"abc", "f1")
    storage.remove("f1")
    storage.remove("f1")
    with pytest.raises(FileNotFoundError):
        storage.open("f1")


def test_ids_older_than_lists_only_files_written_before_the_cutoff(storage: Storage) -> None:
    receive(storage, b"abc", "f1")
    assert storage.ids_older_than(time.time() + 60) == ["f1"]
    assert storage.ids_older_than(time.time() - 60) == []


def test_sweep_removes_abandoned_incoming_objects_only(storage: Storage) -> None:
    abandoned = storage.create("f1")
    for block in blocks(b"x" * (MIN_PART + BLOCK)):  # past a part: S3 has begun the object
        abandoned.store(block)
    assert storage.sweep_temp(time.time() - 60) == 0  # still fresh: someone is writing it
    assert storage.sweep_temp(time.time() + 60) == 1
    assert storage.sweep_temp(time.time() + 60) == 0


def test_free_bytes_is_a_count(storage: Storage) -> None:
    assert storage.free_bytes() > 0


def test_an_upload_appends_resumes_at_the_acknowledged_end_and_joins(storage: Storage) -> None:
    a, b, c = os.urandom(MIN_PART + 5000), os.urandom(MIN_PART), os.urandom(9000)
    storage.create_upload("u1", "f1")
    append(storage, "u1", 0, a)
    append(storage, "u1", len(a), b"x" * 3000, keep=False)  # a chunk with a bad checksum
    # kept, but a crash came before the record moved: the client resumes at len(a)
    append(storage, "u1", len(a), b"y" * (MIN_PART + 1))
    append(storage, "u1", len(a), b)  # what lay past the offset is gone
    append(storage, "u1", len(a) + len(b), c)
    storage.create_upload("u2", "f2")
    append(storage, "u2", 0, b"d" * 10)
    storage.create_upload("empty", "f3")
    storage.create_upload("joined", "f4")
    storage.join("joined", ["u1", "empty", "u2"])
    assert read_all(storage.read_upload("u1")) == a + b + c
    assert read_all(storage.read_upload("empty")) == b""
    assert read_all(storage.read_upload("joined")) == a + b + c + b"d" * 10


def test_a_finished_upload_becomes_a_stored_file_idempotently(storage: Storage) -> None:
    storage.create_upload("u1", "f1")
    data = os.urandom(MIN_PART + BLOCK + 123)
    append(storage, "u1", 0, data)
    storage.finish_upload("u1", "f1")
    storage.finish_upload("u1", "f1")  # a retry after a crash
    storage.remove_upload("u1")
    storage.remove_upload("u1")
    assert read_all(storage.open("f1")) == data
    with pytest.raises(FileNotFoundError):
        storage.read_upload("u1")
    with pytest.raises(FileNotFoundError):
        storage.append("u1", 0)


def test_an_upload_has_one_writer_at_a_time(storage: Any, tmp_path: Path) -> None:
    """With its own locks, or with the lock files an instance pairs it with (S3)."""
    storage.create_upload("u1", "f1")
    own = isinstance(storage, UploadLocks)
    locks = storage if own else FileLocks(tmp_path / "locks")
    release = locks.acquire("u1")
    with pytest.raises(Locked):
        locks.acquire("u1")
    release()
    locks.acquire("u1")()
    if own:
        with pytest.raises(FileNotFoundError):
            storage.acquire("missing")


def test_local_locks_hold_across_processes(tmp_path: Path) -> None:
    """Another worker process gets 423 while this one writes; a dead one holds nothing."""
    storage = LocalStorage(tmp_path)
    storage.create_upload("u1", "f1")
    child = [sys.executable, "-c", (
        "import sys; from pathlib import Path; from satchel.errors import Locked\n"
        "from satchel.storage.local import LocalStorage\n"
        "try: LocalStorage(Path(sys.argv[1])).acquire('u1')\n"
        "except Locked: sys.exit(23)\n"
    ), str(tmp_path)]  # fmt: skip
    release = storage.acquire("u1")
    assert subprocess.run(child, timeout=60).returncode == 23
    release()
    assert subprocess.run(child, timeout=60).returncode == 0
    storage.acquire("u1")()  # the child exited holding it: released with its process


def test_only_readers_with_a_descriptor_are_zero_copy(tmp_path: Path) -> None:
    local, memory = LocalStorage(tmp_path), MemoryStorage()
    for backend in (local, memory):
        receive(backend, b"abc", "f1")
    reader = local.open("f1")
    try:
        assert isinstance(reader, ZeroCopy)
        assert os.pread(reader.fileno(), 10, 0) == b"abc"
    finally:
        reader.close()
    assert not isinstance(memory.open("f1"), ZeroCopy)

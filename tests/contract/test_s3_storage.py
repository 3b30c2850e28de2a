"""What only the S3 backend has to get right, against the S3 server of the tests: which
multipart uploads the sweep may abort, and readers that stream by ranged GETs."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from satchel.storage import s3
from satchel.storage.s3 import MIN_PART, S3Location, S3Storage
from tests.conftest import S3_BUCKET, s3_keys


@pytest.fixture
def storage(s3_client: Any, s3_url: str) -> S3Storage:
    return S3Storage(s3_client, S3Location.parse(s3_url), MIN_PART)


def put(storage: S3Storage, file_id: str, data: bytes) -> None:
    incoming = storage.create(file_id)
    incoming.digest(memoryview(data))  # the CRC-32 the server checks the object against
    incoming.store(memoryview(data))
    incoming.finish()
    storage.commit(incoming)


def uploads(storage: S3Storage) -> list[str]:
    answer = storage.client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=storage.location.prefix)
    return sorted(upload["Key"] for upload in answer.get("Uploads", []))


def test_the_sweep_aborts_abandoned_files_but_not_resumable_uploads(storage: S3Storage) -> None:
    storage.create_upload("u1", "resumable")  # a multipart upload of files/resumable too
    abandoned = storage.create("abandoned")
    abandoned.store(memoryview(os.urandom(MIN_PART + 1)))  # a part went out
    prefix = storage.location.prefix
    assert uploads(storage) == [f"{prefix}files/abandoned", f"{prefix}files/resumable"]
    assert f"{prefix}tmp/abandoned" in s3_keys(storage.client, prefix)  # its sign of life
    assert storage.sweep_temp(time.time() - 60) == 0  # alive a moment ago
    assert storage.sweep_temp(time.time() + 60) == 1
    assert uploads(storage) == [f"{prefix}files/resumable"]
    assert f"{prefix}tmp/abandoned" not in s3_keys(storage.client, prefix)
    storage.remove_upload("u1")
    assert uploads(storage) == []
    assert s3_keys(storage.client, prefix) == []


def test_a_reader_streams_across_windows_and_jumps(
    storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "WINDOW", 1000)
    data = os.urandom(5000)
    put(storage, "f1", data)
    reader = storage.open("f1")
    try:
        assert reader.read(0, 2500) == data[:2500]  # three ranged GETs
        assert reader.read(2500, 10) == data[2500:2510]  # the open one continues
        assert reader.read(10, 20) == data[10:30]  # a jump
        assert reader.read(4990, 100) == data[4990:]
        assert reader.read(5000, 100) == b""
    finally:
        reader.close()


def test_a_reader_refuses_an_object_replaced_while_it_reads(storage: S3Storage) -> None:
    put(storage, "f1", b"a" * 3000)
    reader = storage.open("f1")
    put(storage, "f1", b"b" * 3000)
    with pytest.raises(Exception, match="PreconditionFailed|412"):
        reader.read(0, 10)
    reader.close()


def test_the_server_refuses_bytes_that_do_not_match_their_crc(storage: S3Storage) -> None:
    incoming = storage.create("f1")
    incoming.digest(memoryview(b"what was read"))
    incoming.store(memoryview(b"what was stored"))
    incoming.finish()
    with pytest.raises(Exception, match="BadDigest|[Cc]hecksum"):
        storage.commit(incoming)
    incoming.discard()
    with pytest.raises(FileNotFoundError):
        storage.open("f1")


def test_a_missing_file_or_upload_is_file_not_found(storage: S3Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open("nope")
    with pytest.raises(FileNotFoundError):
        storage.append("nope", 0)
    with pytest.raises(FileNotFoundError):
        storage.read_upload("nope")
    storage.remove_upload("nope")  # idempotent
    storage.remove("nope")

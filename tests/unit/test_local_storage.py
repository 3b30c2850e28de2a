"""TempFile: bytes, SHA-256 and CRC-32 right around every alignment edge, with
direct I/O and without; ChunkBody across chunk edges."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from satchel.files.intake import ChunkBody
from satchel.storage.local import TempFile
from tests.helpers import aligned_blocks

SIZES = [0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 4095, 3 * (1 << 20) + 5000]
BLOCK = 256 * 1024


@pytest.fixture(params=["direct", "buffered"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "buffered":  # as on a filesystem without O_DIRECT
        real = fcntl.fcntl  # the module storage.local calls

        def refuse_direct(fd: int, cmd: int, arg: Any = 0) -> Any:
            if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
                raise OSError(errno.EINVAL, "no direct I/O here")
            return real(fd, cmd, arg)

        monkeypatch.setattr(fcntl, "fcntl", refuse_direct)
    return str(request.param)


def blocks(data: bytes) -> Iterator[memoryview]:
    return aligned_blocks(data, BLOCK)


@pytest.mark.parametrize("size", SIZES)
def test_bytes_and_digests_survive_every_alignment(tmp_path: Path, mode: str, size: int) -> None:
    data = os.urandom(size)
    temp = TempFile(tmp_path)
    assert temp._direct == (mode == "direct")
    for block in blocks(data):
        temp.digest(block)
        temp.store(block)
    temp.finish()
    assert temp.path.read_bytes() == data
    assert (temp.size, temp.sha256, temp.crc32) == (
        size, hashlib.sha256(data).digest(), zlib.crc32(data),
    )  # fmt: skip


def test_only_the_last_block_may_be_short(tmp_path: Path, mode: str) -> None:
    temp = TempFile(tmp_path)
    short, whole = list(blocks(os.urandom(5000))), list(blocks(os.urandom(BLOCK)))
    temp.store(short[0])
    with pytest.raises(ValueError, match="last block"):
        temp.store(whole[0])
    temp.discard()


def test_discard_removes_the_file(tmp_path: Path, mode: str) -> None:
    temp = TempFile(tmp_path)
    temp.store(next(blocks(b"x" * 10_000)))
    temp.discard()
    assert list(tmp_path.iterdir()) == []


async def test_a_chunked_body_fills_blocks_across_chunk_edges() -> None:
    """ChunkBody copies network-sized chunks into whatever room the caller has."""
    data = os.urandom(300_000)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 70_001):
            yield data[at : at + 70_001]

    body, out, room = ChunkBody(chunks()), bytearray(), memoryview(bytearray(65_536))
    while n := await body.read_into(room):
        out += room[:n]
    assert out == data

"""TempFile: bytes, SHA-256 and CRC-32 right around every alignment edge, with
direct I/O and without."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from satchel.storage import local
from satchel.storage.local import TempFile

SIZES = [0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 4095, 3 * (1 << 20) + 5000]


@pytest.fixture(params=["direct", "buffered"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "buffered":  # as on a filesystem without O_DIRECT
        real = local.fcntl.fcntl

        def refuse_direct(fd: int, cmd: int, arg: Any = 0) -> Any:
            if cmd == local.fcntl.F_SETFL and arg & os.O_DIRECT:
                raise OSError(errno.EINVAL, "no direct I/O here")
            return real(fd, cmd, arg)

        monkeypatch.setattr(local.fcntl, "fcntl", refuse_direct)
    return str(request.param)


@pytest.mark.parametrize("size", SIZES)
def test_bytes_and_digests_survive_every_alignment(tmp_path: Path, mode: str, size: int) -> None:
    data = os.urandom(size)
    temp = TempFile(tmp_path)
    assert (temp._stage is not None) == (mode == "direct")
    for at in range(0, size, 70_001):  # odd chunk sizes, as the network delivers them
        temp.write(data[at : at + 70_001])
    temp.finish()
    assert temp.path.read_bytes() == data
    assert (temp.size, temp.sha256, temp.crc32) == (
        size, hashlib.sha256(data).digest(), zlib.crc32(data),
    )  # fmt: skip


def test_discard_removes_the_file(tmp_path: Path, mode: str) -> None:
    temp = TempFile(tmp_path)
    temp.write(b"x" * 10_000)
    temp.discard()
    assert list(tmp_path.iterdir()) == []

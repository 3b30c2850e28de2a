"""A demo photo folder for `make run`: small generated PNG images, no assets shipped."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

DEMO = {
    "7kna": ["1.png", "2.png", "фото 3.png"],
    "rur2": ["1.png", "2.png", "nested/3.png"],
}


def png(width: int, height: int, seed: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((x * 255) // width, (y * 255) // height, (seed * 70 + x ^ y) & 0xFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def ensure_demo(photos: Path) -> bool:
    """Create ``photos`` with demo folders if it is missing or empty. True if created."""
    photos.mkdir(parents=True, exist_ok=True)
    if any(photos.iterdir()):
        return False
    for seed, (folder, names) in enumerate(DEMO.items()):
        for n, name in enumerate(names):
            path = photos / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(320, 240, seed * 10 + n))
    return True

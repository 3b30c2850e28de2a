"""Small builders shared by tests."""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

NASTY_NAMES = [
    "1.jpg",
    "пустой.txt",
    "фото/отпуск 2024/море.jpg",
    "emoji 😀/smile 🎉.png",
    "deep/a/b/c/d/e/f.bin",
    "spaces and 'quotes'.txt",
    "日本語.txt",
    "long/" + "ж" * 120 + "/" + "очень длинное имя " * 6 + ".jpg",  # 240-byte component
]


def make_folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def random_files(names: list[str], seed: int = 1, max_size: int = 200_000) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        n: (rng.randbytes(rng.randint(0, max_size)) if "пустой" not in n else b"") for n in names
    }


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def raw_get(
    host: str, port: int | None, path: str, *headers: str
) -> tuple[int, bytes, bytes]:
    """(status, head, body) of a GET sent byte for byte, so no client normalises the path
    or the ``headers`` ("Name: value")."""
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET {path} HTTP/1.1", "Host: t", "Connection: close", *headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def aligned_blocks(data: bytes, size: int) -> Iterator[memoryview]:
    """``data`` in page-aligned blocks of ``size`` bytes (the last may be shorter), as
    FileStore.receive hands them to the storage; each reuses the one block's memory."""
    block = memoryview(mmap.mmap(-1, size))
    for at in range(0, len(data), size):
        piece = data[at : at + size]
        block[: len(piece)] = piece
        yield block[: len(piece)]


def call(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request by urllib: (status, headers, body), error statuses included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def selection_url(server_url: str, entries: list[dict[str, str]]) -> str:
    """The link of a new archive of a selection (POST /archives/)."""
    body = json.dumps({"entries": entries}).encode()
    status, _headers, answer = call("POST", f"{server_url}/archives/", body)
    assert status == 201, answer
    url: str = json.loads(answer)["url"]
    return url


def share_url(server_url: str, files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    """A new share of these files, uploaded in order: its "download all" link, and the
    files by the name each has there (the last segment of its path)."""
    status, _headers, answer = call("POST", f"{server_url}/shares/", b"{}")
    assert status == 201, answer
    share = json.loads(answer)
    joining = {"Satchel-Share": share["id"], "Satchel-Share-Token": share["owner_token"]}
    named = {}
    for path, data in files.items():
        name = path.rsplit("/", 1)[-1]
        url = f"{server_url}/files/?name={urllib.parse.quote(name)}"
        status, _headers, answer = call("POST", url, data, joining)
        assert status == 201, answer
        named[name] = data
    return f"{share['url']}all.zip", named


async def eventually(
    check: Callable[[], Awaitable[object]], seconds: float = 10, what: str = "the condition"
) -> object:
    """``check()``'s first true answer, asked every 50 ms for up to ``seconds``: for what
    the server records once the last byte is out, perhaps just after the client has it."""
    deadline = time.monotonic() + seconds
    while not (answer := await check()):
        assert time.monotonic() < deadline, f"{what} did not hold within {seconds:g} s"
        await asyncio.sleep(0.05)
    return answer

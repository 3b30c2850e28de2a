"""tus 1.0 at /tus/, case by case: every status code, through a real socket."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import itertools
import os
import time
import zlib
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from satchel.files import service as filestore
from satchel.http.keys import FILESTORE, SETTINGS, TUSSTORE
from satchel.storage.base import Digests, Reader
from satchel.storage.base import hash_all as real_hash_all
from satchel.storage.local import Appender
from satchel.storage.ring import BLOCK_SIZE, BLOCKS
from satchel.tus.rules import upload_key

from .conftest import ClientFactory

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def create(client: TestClient[Any, Any], length: int | None, **headers: str) -> str:
    sized = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    resp = await client.post("/tus/", headers={**TUS, **sized, **headers})
    assert resp.status == 201, await resp.text()
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    location = resp.headers["Location"]
    assert location.startswith("http://") and "/tus/" in location
    return "/tus/" + location.rsplit("/", 1)[1]


async def patch(
    client: TestClient[Any, Any], url: str, offset: int, data: bytes, **headers: str
) -> Any:
    return await client.patch(
        url, data=BytesIO(data), headers={**CHUNK, "Upload-Offset": str(offset), **headers}
    )


def path_of(url: str) -> str:
    """'http://host:port/files/x/' → '/files/x/'."""
    return "/" + url.split("/", 3)[3]


def bytes_on_disk(client: TestClient[Any, Any], url: str) -> Path:
    """Where the local storage keeps an upload's bytes: named by its key, not its id."""
    data: Path = client.app[SETTINGS].data
    return data / "tus" / upload_key(url.rsplit("/", 1)[1])


async def offset_of(client: TestClient[Any, Any], url: str) -> int:
    resp = await client.head(url, headers=TUS)
    assert resp.status == 200
    return int(resp.headers["Upload-Offset"])


async def test_options_advertises_the_extensions(make_app_client: ClientFactory) -> None:
    client = await make_app_client(max_upload_size="1G")
    resp = await client.options("/tus/")
    assert resp.status == 204
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
        "termination", "concatenation",
    }  # fmt: skip
    assert resp.headers["Tus-Max-Size"] == str(1024**3)
    assert resp.headers["Tus-Checksum-Algorithm"] == "sha1,sha256,md5"


async def test_an_upload_in_chunks_becomes_a_stored_file(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    data = os.urandom(300_000)
    url = await create(
        client,
        len(data),
        **{
            "Upload-Metadata": f"filename {b64('отчёт.pdf')},filetype {b64('application/pdf')}",
            "Max-Downloads": "2",
        },
    )
    head = await client.head(url, headers=TUS)
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert "Upload-Expires" in head.headers
    assert f"filename {b64('отчёт.pdf')}" in head.headers["Upload-Metadata"]
    first = await patch(client, url, 0, data[:100_000])
    assert first.status == 204
    assert first.headers["Upload-Offset"] == "100000"
    assert "Satchel-Download" not in first.headers
    last = await patch(client, url, 100_000, data[100_000:])
    assert last.status == 204
    assert last.headers["Upload-Offset"] == str(len(data))
    download = last.headers["Satchel-Download"]
    got = await client.get(path_of(download))
    assert await got.read() == data
    assert (
        "filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf" in got.headers["Content-Disposition"]
    )
    assert got.headers["Content-Type"] == "application/pdf"
    check = await (await client.get(f"/check/{last.headers['Satchel-File-Id']}")).json()
    assert check["sha256"] == hashlib.sha256(data).hexdigest()
    assert check["downloads_left"] == 1  # the download above reached the end
    # HEAD after completion still tells the links, so a lost last answer is recoverable
    again = await client.head(url, headers=TUS)
    assert again.headers["Satchel-Delete"] == last.headers["Satchel-Delete"]


async def test_creation_with_upload_and_deferred_length(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    resp = await client.post("/tus/", data=b"hello ", headers={**CHUNK, "Upload-Defer-Length": "1"})
    assert resp.status == 201
    assert resp.headers["Upload-Offset"] == "6"
    url = path_of(resp.headers["Location"])
    head = await client.head(url, headers=TUS)
    assert head.headers["Upload-Defer-Length"] == "1"
    done = await patch(client, url, 6, b"world", **{"Upload-Length": "11"})
    assert done.status == 204
    got = await client.get(path_of(done.headers["Satchel-Download"]))
    assert await got.read() == b"hello world"


async def test_an_empty_upload_is_complete_at_once(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    resp = await client.post("/tus/", headers={**TUS, "Upload-Length": "0"})
    assert resp.status == 201
    got = await client.get(path_of(resp.headers["Satchel-Download"]))
    assert (got.status, await got.read()) == (200, b"")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_checksums_are_verified_and_a_bad_chunk_is_discarded(
    make_app_client: ClientFactory, data_dir: Path, algorithm: str
) -> None:
    client = await make_app_client()
    url = await create(client, 10)

    def digest(data: bytes) -> str:
        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"

    good = await patch(client, url, 0, b"12345", **{"Upload-Checksum": digest(b"12345")})
    assert good.status == 204
    bad = await patch(client, url, 5, b"67890", **{"Upload-Checksum": digest(b"xxxxx")})
    assert bad.status == 460
    assert bad.headers["Tus-Resumable"] == "1.0.0"
    assert (await bad.json())["error"] == "checksum_mismatch"
    assert await offset_of(client, url) == 5
    assert (data_dir / "tus" / upload_key(url.rsplit("/", 1)[1])).stat().st_size == 5
    final = await patch(client, url, 5, b"67890", **{"Upload-Checksum": digest(b"67890")})
    assert final.status == 204
    got = await client.get(path_of(final.headers["Satchel-Download"]))
    assert await got.read() == b"1234567890"


async def test_bad_requests_get_the_protocol_status_codes(make_app_client: ClientFactory) -> None:
    client = await make_app_client(max_upload_size="1M")
    url = await create(client, 10)

    async def status(method: str, path: str, **headers: str) -> int:
        body = b"abc" if method == "PATCH" else None
        resp = await client.request(method, path, data=body, headers=headers)
        assert resp.headers.get("Tus-Resumable") == "1.0.0", (method, headers)
        return resp.status

    # 412: no or another protocol version, with the versions we speak
    resp = await client.head(url)
    assert (resp.status, resp.headers["Tus-Version"]) == (412, "1.0.0")
    assert (
        await status("PATCH", url, **{**CHUNK, "Tus-Resumable": "0.2.2", "Upload-Offset": "0"})
        == 412
    )
    # 415: a PATCH must carry application/offset+octet-stream
    assert (
        await status("PATCH", url, **TUS, **{"Content-Type": "text/plain", "Upload-Offset": "0"})
        == 415
    )
    # 400: no offset, a malformed one, an unsupported checksum, bad metadata, no length
    assert await status("PATCH", url, **CHUNK) == 400
    assert await status("PATCH", url, **CHUNK, **{"Upload-Offset": "-1"}) == 400
    assert (
        await status(
            "PATCH", url, **CHUNK, **{"Upload-Offset": "0", "Upload-Checksum": "crc32 AAAAAA=="}
        )
        == 400
    )
    assert (
        await status(
            "POST", "/tus/", **TUS, **{"Upload-Length": "3", "Upload-Metadata": "name !!!"}
        )
        == 400
    )
    assert await status("POST", "/tus/", **TUS) == 400
    # 409: the wrong offset
    assert await status("PATCH", url, **CHUNK, **{"Upload-Offset": "4"}) == 409
    # 413: past the declared length, or larger than the server takes
    assert (await patch(client, url, 0, b"x" * 11)).status == 413
    assert await offset_of(client, url) == 0
    assert await status("POST", "/tus/", **TUS, **{"Upload-Length": str(2 * 1024**2)}) == 413
    # 404: unknown, malformed ids
    assert await status("HEAD", "/tus/AAAAAAAAAAAAAAAAAAAAAA", **TUS) == 404
    assert await status("PATCH", "/tus/nope", **CHUNK, **{"Upload-Offset": "0"}) == 404
    # termination: 204, then 404 everywhere
    assert await status("DELETE", url, **TUS) == 204
    assert await status("HEAD", url, **TUS) == 404
    assert await status("PATCH", url, **CHUNK, **{"Upload-Offset": "0"}) == 404


async def test_uploads_need_the_upload_token_when_the_server_has_one(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client(upload_token=("secret",))
    resp = await client.post("/tus/", headers={**TUS, "Upload-Length": "1"})
    assert resp.status == 401
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    url = await create(client, 1, Authorization="Bearer secret")
    assert (await patch(client, url, 0, b"x")).status == 401
    assert (await patch(client, url, 0, b"x", Authorization="Bearer secret")).status == 204


async def test_uploads_expire_unless_they_progress_and_are_swept(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client(tus_expiry_hours=1 / 3600)  # one second
    url = await create(client, 10)
    await asyncio.sleep(0.6)
    assert (await patch(client, url, 0, b"12345")).status == 204  # progress: one more second
    await asyncio.sleep(0.6)
    head = await client.head(url, headers=TUS)
    assert head.status == 200  # 1.2 s after creation, still there
    assert "Upload-Expires" in head.headers
    await asyncio.sleep(1.0)
    assert (await client.head(url, headers=TUS)).status == 404
    assert await client.app[TUSSTORE].purge() == 1
    assert list((data_dir / "tus").iterdir()) == []


async def test_a_dropped_patch_keeps_what_arrived(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    url = await create(client, 200_000)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"PATCH {url} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 200000\r\n\r\n"
    )
    writer.write(head.encode() + b"a" * 80_000)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()  # the network drops mid-chunk

    async def kept() -> int:
        for _ in range(50):
            if (at := await offset_of(client, url)) > 0:
                return at
            await asyncio.sleep(0.1)
        return 0

    assert await kept() == 80_000
    done = await patch(client, url, 80_000, b"b" * 120_000)
    assert done.status == 204
    got = await client.get(path_of(done.headers["Satchel-Download"]))
    assert await got.read() == b"a" * 80_000 + b"b" * 120_000


async def test_a_second_patch_meanwhile_gets_423_and_bytes_never_interleave(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client()
    url = await create(client, 100)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"PATCH {url} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 100\r\n\r\n".encode()
        + b"a" * 40
    )
    await writer.drain()
    await asyncio.sleep(0.3)  # the first PATCH now holds the upload
    second = await patch(client, url, 0, b"b" * 100)
    assert second.status == 423
    assert second.headers["Retry-After"] == "1"
    writer.write(b"a" * 60)
    await writer.drain()
    answer = await reader.readuntil(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 204")
    writer.close()
    resp = await client.head(url, headers=TUS)
    got = await client.get(path_of(resp.headers["Satchel-Download"]))
    assert await got.read() == b"a" * 100


async def test_a_crash_between_the_last_bytes_and_the_stored_file_heals(
    make_app_client: ClientFactory,
) -> None:
    """The bytes are acknowledged but the process died before the file was stored:
    the next HEAD (as a client does on resume) finishes the job, once."""
    client = await make_app_client()
    store = client.app[TUSSTORE]
    url = await create(client, 5)
    upload_id = url.rsplit("/", 1)[1]
    bytes_on_disk(client, url).write_bytes(b"12345")
    await store.repo.advance(upload_id, 5, None, datetime.now(UTC) + timedelta(hours=1))
    heads = await asyncio.gather(*(client.head(url, headers=TUS) for _ in range(3)))
    file_ids = {h.headers.get("Satchel-File-Id") for h in heads} - {None}
    assert len(file_ids) == 1
    got = await client.get(f"/files/{file_ids.pop()}/")
    assert await got.read() == b"12345"
    assert not bytes_on_disk(client, url).exists()


async def test_patches_keep_to_the_upload_rate(make_app_client: ClientFactory) -> None:
    client = await make_app_client(upload_rate="1M")
    url = await create(client, 2 * 1024**2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await patch(client, url, 0, os.urandom(2 * 1024**2))
    assert resp.status == 204
    assert 1.5 <= loop.time() - started <= 3.5


async def test_partial_uploads_concatenate_into_one_stored_file(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client()
    parts = [os.urandom(150_000), os.urandom(1), os.urandom(70_000)]
    urls = []
    for data in parts:
        resp = await client.post(
            "/tus/", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Concat": "partial"}
        )
        assert resp.status == 201
        url = path_of(resp.headers["Location"])
        done = await patch(client, url, 0, data)
        assert done.status == 204
        assert "Satchel-Download" not in done.headers  # a part is not a file
        head = await client.head(url, headers=TUS)
        assert head.headers["Upload-Concat"] == "partial"
        urls.append(resp.headers["Location"])
    # parts may be named by absolute URL or by path
    concat = "final;" + " ".join([urls[0], path_of(urls[1]), urls[2]])
    final = await client.post(
        "/tus/",
        headers={**TUS, "Upload-Concat": concat, "Upload-Metadata": f"filename {b64('all.bin')}"},
    )
    assert final.status == 201, await final.text()
    got = await client.get(path_of(final.headers["Satchel-Download"]))
    assert await got.read() == b"".join(parts)
    assert "filename*=UTF-8''all.bin" in got.headers["Content-Disposition"]
    head = await client.head(path_of(final.headers["Location"]), headers=TUS)
    assert head.headers["Upload-Concat"] == concat
    assert head.headers["Upload-Length"] == head.headers["Upload-Offset"] == str(220_001)
    refused = await patch(client, path_of(final.headers["Location"]), 220_001, b"x")
    assert refused.status == 403


async def test_a_final_upload_needs_finished_partial_parts(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    unfinished = await client.post(
        "/tus/", headers={**TUS, "Upload-Length": "10", "Upload-Concat": "partial"}
    )
    plain = await create(client, 0)  # complete, but not a partial upload
    for concat in (
        f"final;{unfinished.headers['Location']}",
        f"final;{plain}",
        "final;/tus/AAAAAAAAAAAAAAAAAAAAAA",
        "final;",
        "whole",
    ):
        resp = await client.post("/tus/", headers={**TUS, "Upload-Concat": concat})
        assert resp.status == 400, concat
    with_length = await client.post(
        "/tus/",
        headers={**TUS, "Upload-Concat": f"final;{plain}", "Upload-Length": "0"},
    )
    assert with_length.status == 400


async def test_a_stall_during_a_slow_write_waits_for_the_write(
    make_app_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read timeout strikes while a block is still being written (the ring is full,
    so reading waits for the disk): the cut-short path (here: drop everything, a checksum
    was promised) runs only after the writing thread is done."""
    events: list[str] = []
    real_write, real_keep = Appender.write, Appender.keep

    def slow_write(appender: Appender, block: memoryview) -> None:
        time.sleep(0.6)  # a disk that stalls for longer than the read timeout
        real_write(appender, block)
        events.append("written")

    def keep(appender: Appender, end: int) -> None:
        events.append(f"truncated to {end}")
        real_keep(appender, end)

    monkeypatch.setattr(Appender, "write", slow_write)
    monkeypatch.setattr(Appender, "keep", keep)
    client = await make_app_client(read_timeout=0.2)
    data = os.urandom((BLOCKS + 2) * BLOCK_SIZE)  # more than the ring holds
    url = await create(client, len(data))
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    resp = await patch(client, url, 0, data, **{"Upload-Checksum": f"sha256 {checksum}"})
    assert resp.status == 408
    assert events[0] == "written" and events[-1] == "truncated to 0"
    assert events.count("truncated to 0") == 1
    assert await offset_of(client, url) == 0
    assert bytes_on_disk(client, url).stat().st_size == 0


async def test_a_disk_that_fills_up_mid_patch_is_507_and_keeps_what_was_written(
    make_app_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Appender.write
    room = [BLOCK_SIZE]  # the disk has room for one more block

    def write(appender: Appender, block: memoryview) -> None:
        if len(block) > room[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        room[0] -= len(block)
        real_write(appender, block)

    monkeypatch.setattr(Appender, "write", write)
    client = await make_app_client()
    data = os.urandom(3 * BLOCK_SIZE)
    url = await create(client, len(data))
    resp = await patch(client, url, 0, data)
    assert resp.status == 507
    body = await resp.json()
    assert body["error"] == "insufficient_storage"
    assert resp.headers["Upload-Offset"] == str(BLOCK_SIZE)
    assert f"Upload-Offset {BLOCK_SIZE}" in body["message"]
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert await offset_of(client, url) == BLOCK_SIZE
    assert bytes_on_disk(client, url).read_bytes() == data[:BLOCK_SIZE]

    room[0] = len(data)  # space was freed: the client resumes where the upload stands
    done = await patch(client, url, BLOCK_SIZE, data[BLOCK_SIZE:])
    assert done.status == 204
    got = await client.get(path_of(done.headers["Satchel-Download"]))
    assert await got.read() == data


async def test_a_full_disk_drops_a_checksummed_chunk_whole(
    make_app_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Appender.write
    calls = [0]

    def write(appender: Appender, block: memoryview) -> None:
        calls[0] += 1
        if calls[0] > 1:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real_write(appender, block)

    monkeypatch.setattr(Appender, "write", write)
    client = await make_app_client()
    data = os.urandom(3 * BLOCK_SIZE)
    url = await create(client, len(data))
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    resp = await patch(client, url, 0, data, **{"Upload-Checksum": f"sha256 {checksum}"})
    assert resp.status == 507 and resp.headers["Upload-Offset"] == "0"
    assert await offset_of(client, url) == 0
    assert bytes_on_disk(client, url).stat().st_size == 0


@pytest.mark.parametrize("remembered", [True, False], ids=["hashed-on-the-way", "re-read"])
async def test_large_chunks_at_any_offset_store_the_exact_bytes_and_hashes(
    make_app_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, remembered: bool
) -> None:
    """A small chunk through aiohttp, then large ones off the socket, the second starting
    at an offset no 4 KiB boundary. The process that took every byte hands the hashes it
    took on the way to the stored file; one that did not (another worker, a restart)
    reads the finished bytes again. Either way the record is right."""
    reads: list[Reader] = []

    def hash_all(reader: Reader) -> Digests:
        reads.append(reader)
        return real_hash_all(reader)

    monkeypatch.setattr(filestore, "hash_all", hash_all)
    client = await make_app_client()
    data = os.urandom(2 * BLOCK_SIZE + 5_000_123)
    cuts = [0, 300_001, 300_001 + BLOCK_SIZE + 12_345, len(data)]
    url = await create(client, len(data))
    for start, end in itertools.pairwise(cuts):
        if not remembered:
            client.app[TUSSTORE]._digests.clear()  # as if another process took the rest
        resp = await patch(client, url, start, data[start:end])
        assert resp.status == 204, await resp.text()
        assert resp.headers["Upload-Offset"] == str(end)
    got = await client.get(path_of(resp.headers["Satchel-Download"]))
    assert await got.read() == data
    record = await client.app[FILESTORE].repo.get(resp.headers["Satchel-File-Id"])
    assert record is not None
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.crc32 == zlib.crc32(data)
    assert len(reads) == (0 if remembered else 1)


async def test_a_chunk_declared_too_long_or_misplaced_is_refused_before_100_continue(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client()
    url = await create(client, 10)

    async def answer(offset: int, length: int) -> bytes:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            f"PATCH {url} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        try:
            return await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()

    assert (await answer(0, 11)).startswith(b"HTTP/1.1 413")  # no 100 Continue came first
    assert (await answer(3, 5)).startswith(b"HTTP/1.1 409")  # the upload is at 0
    assert (await answer(0, 10)).startswith(b"HTTP/1.1 100 Continue")
    assert await offset_of(client, url) == 0

"""The command-line client: upload, download (resuming), check, delete, archive.

Exit codes: 0 done; 1 the server said no (4xx/5xx); 3 integrity failure (digest or
ZIP CRC mismatch); 4 network failure. Usage errors exit 2 (argparse).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.policy import default as email_policy
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlparse

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

OK, REFUSED, INTEGRITY, NETWORK = 0, 1, 3, 4

_err = Console(stderr=True)


class ClientError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Options:
    server: str
    token: str | None = None
    json: bool = False
    chunk_size: int = 1024 * 1024

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _progress(opts: Options) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_err,
        disable=opts.json or not _err.is_terminal,
    )


async def _refused(resp: aiohttp.ClientResponse) -> ClientError:
    text = await resp.text()
    try:
        message = json.loads(text)["message"]
    except (ValueError, KeyError, TypeError):
        message = text.strip()[:200] or resp.reason or ""
    return ClientError(f"{resp.status} {resp.reason}: {message}", REFUSED)


def _emit(opts: Options, payload: object, human: str) -> None:
    print(json.dumps(payload, ensure_ascii=False) if opts.json else human)


# -- upload ----------------------------------------------------------------------------


async def _read_chunks(
    path: Path, chunk_size: int, advance: Callable[[int], object], sha256: hashlib._Hash
) -> AsyncIterator[bytes]:
    """The file's bytes, hashed as they are read (in the reading thread)."""

    def read(f: BinaryIO) -> bytes:
        chunk = f.read(chunk_size)
        sha256.update(chunk)
        return chunk

    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(read, f):
            advance(len(chunk))
            yield chunk


async def upload(
    opts: Options, paths: list[Path], max_downloads: int | None, max_days: int | None
) -> int:
    results = []
    async with aiohttp.ClientSession() as session:
        with _progress(opts) as progress:
            for path in paths:
                size = path.stat().st_size
                task = progress.add_task(path.name, total=size)
                headers = {
                    **opts.auth(),
                    "Content-Length": str(size),
                    "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name)}",
                    "Content-Type": "application/octet-stream",
                }
                if max_downloads is not None:
                    headers["Max-Downloads"] = str(max_downloads)
                if max_days is not None:
                    headers["Max-Days"] = str(max_days)
                sent = hashlib.sha256()
                body = _read_chunks(
                    path, opts.chunk_size, functools.partial(progress.advance, task), sent
                )
                async with session.post(
                    f"{opts.server}/files/", data=body, headers=headers
                ) as resp:
                    if resp.status != 201:
                        raise await _refused(resp)
                    stored = await resp.json()
                await _verify_upload(session, opts, path, stored, sent.hexdigest())
                results.append(stored)
    for r in results:
        links = r["links"]
        human = (
            f"{r['name']}  {r['size']} bytes  sha256 {r['sha256']} (verified)\n"
            f"  download: {links['download']}\n  check:    {links['check']}\n"
            f"  delete:   {links['delete']}\n  expires:  {r['expires_at']}"
        )
        if not opts.json:
            print(human)
    if opts.json:
        print(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False))
    return OK


async def _verify_upload(
    session: aiohttp.ClientSession, opts: Options, path: Path, stored: Any, sent: str
) -> None:
    """The server's SHA-256 of what it stored must be the one of the bytes sent; if not,
    the stored copy is deleted and the upload fails with exit code 3."""
    if stored["sha256"] == sent:
        stored["verified"] = True
        return
    async with session.delete(stored["links"]["delete"], headers=opts.auth()) as resp:
        removed = "it was deleted" if resp.status == 204 else f"deleting it got {resp.status}"
    raise ClientError(
        f"{path.name}: the server stored bytes with SHA-256 {stored['sha256']}, but the file "
        f"sent has {sent}; {removed}.",
        INTEGRITY,
    )


# -- download (files and archives), resuming -------------------------------------------


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    parsed = email_policy.header_factory("content-disposition", disposition)
    name = parsed.params.get("filename")
    return Path(str(name)).name if name else None


async def fetch(opts: Options, url: str, output: Path | None, *, verify_zip: bool = False) -> int:
    """Download ``url`` to ``output``, resuming a partial file with Range + If-Range."""
    async with aiohttp.ClientSession() as session:
        async with session.head(url) as head:
            if head.status != 200:
                raise await _refused(head)
            total = int(head.headers["Content-Length"])
            etag = head.headers.get("ETag")
            target = output or Path(
                _filename(head.headers.get("Content-Disposition")) or "download"
            )
        have = target.stat().st_size if target.exists() else 0
        if have > total:
            have = 0  # not a prefix of this representation
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
        if have == total and etag:
            headers = {}  # complete already: fetch nothing, verify below
        with _progress(opts) as progress:
            task = progress.add_task(target.name, total=total, completed=have)
            if have < total or not etag:
                async with session.get(url, headers=headers) as resp:
                    if resp.status not in (200, 206):
                        raise await _refused(resp)
                    mode = "ab" if resp.status == 206 else "wb"
                    with target.open(mode) as out:
                        if resp.status == 200:
                            progress.update(task, completed=0)
                        async for chunk in resp.content.iter_chunked(opts.chunk_size):
                            await asyncio.to_thread(out.write, chunk)
                            progress.advance(task, len(chunk))
                    digest_header = resp.headers.get("Repr-Digest")
            else:
                digest_header = head.headers.get("Repr-Digest")
    if target.stat().st_size != total:
        raise ClientError(f"{target}: got {target.stat().st_size} of {total} bytes", NETWORK)
    await asyncio.to_thread(_verify, target, digest_header, verify_zip)
    _emit(
        opts,
        {"path": str(target), "size": total, "verified": bool(digest_header) or verify_zip},
        f"{target}  {total} bytes  " + ("verified" if digest_header or verify_zip else "saved"),
    )
    return OK


def _verify(target: Path, repr_digest: str | None, verify_zip: bool) -> None:
    if repr_digest:
        for member in repr_digest.split(","):
            algorithm, _, value = member.strip().partition("=")
            if algorithm == "sha-256":
                expected = base64.b64decode(value.strip(":"))
                digest = hashlib.sha256()
                with target.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                if digest.digest() != expected:
                    raise ClientError(f"{target}: sha-256 does not match Repr-Digest", INTEGRITY)
    if verify_zip:
        try:
            with zipfile.ZipFile(target) as zf:
                bad = zf.testzip()
        except zipfile.BadZipFile as exc:
            raise ClientError(f"{target}: not a valid ZIP: {exc}", INTEGRITY) from exc
        if bad is not None:
            raise ClientError(f"{target}: CRC mismatch in {bad}", INTEGRITY)


def file_url(opts: Options, url_or_id: str) -> str:
    if urlparse(url_or_id).scheme in ("http", "https"):
        return url_or_id
    return f"{opts.server}/files/{url_or_id}/"


# -- check, delete ---------------------------------------------------------------------


async def check(opts: Options, file_id: str) -> int:
    url = f"{opts.server}/check/{file_id}"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        if resp.status != 200:
            raise await _refused(resp)
        body = await resp.json()
    left = "unlimited" if body["downloads_left"] is None else body["downloads_left"]
    _emit(
        opts,
        body,
        f"{body['name']}  {body['size']} bytes  downloads left: {left}  "
        f"expires {body['expires_at']}\n  {body['links']['download']}",
    )
    return OK


async def delete(opts: Options, file_id: str, token: str) -> int:
    headers = {**opts.auth(), "X-Delete-Token": token}
    url = f"{opts.server}/files/{file_id}/"
    async with aiohttp.ClientSession() as session, session.delete(url, headers=headers) as resp:
        if resp.status != 204:
            raise await _refused(resp)
    _emit(opts, {"deleted": file_id}, f"deleted {file_id}")
    return OK


def run(coroutine: Any) -> int:
    try:
        return int(asyncio.run(coroutine))
    except ClientError as exc:
        _err.print(f"[bold red]satchel:[/] {exc}", highlight=False)
        return exc.code
    except (aiohttp.ClientError, OSError) as exc:
        _err.print(f"[bold red]satchel:[/] network: {exc}", highlight=False)
        return NETWORK


def server_default() -> str:
    return os.environ.get("SATCHEL_SERVER", "http://127.0.0.1:8080").rstrip("/")

"""The command-line client: upload, download (resuming), check, delete, archive.

Exit codes: 0 done; 1 the server said no (4xx/5xx); 3 integrity failure (digest or
ZIP CRC mismatch); 4 network failure; 5 a local failure (a file that exists, a full
disk, no permission); 130 interrupted. Usage errors exit 2 (argparse).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import os
import zipfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from email.policy import default as email_policy
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlparse

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

OK, REFUSED, INTEGRITY, NETWORK, LOCAL, INTERRUPTED = 0, 1, 3, 4, 5, 130

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


def _session() -> aiohttp.ClientSession:
    """No limit on a whole transfer (aiohttp's default stops any after 5 minutes); a
    peer that sends nothing for 5 minutes is given up on."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    )


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


# -- upload: tus, resumable -----------------------------------------------------------

_TUS = {"Tus-Resumable": "1.0.0"}
_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class _Retry(Exception):
    """The upload is not where the client thought (409, gone, not complete): ask where
    it stands."""


class _Locked(Exception):
    """An earlier PATCH still holds the upload on the server (423): until the server
    notices that its connection is gone, at the latest after its read timeout."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"locked; retry in {delay:g} s")
        self.delay = delay


_LOCK_PATIENCE = 180.0  # seconds; the server's read timeout is 60 s by default


class _Attempts:
    """How a transfer retries: ``retries`` network failures in a row without progress,
    waiting 0.5, 1, 2, 4, 8 s before the next attempt."""

    def __init__(self, retries: int) -> None:
        self._retries = retries
        self._failures = 0
        self._reached = 0

    def reached(self, position: int) -> None:
        """Where the transfer stands; further than ever before, the count starts again."""
        if position > self._reached:
            self._failures, self._reached = 0, position

    async def retry(self) -> bool:
        """Count a failure: False when no retry is left, else True after the wait."""
        self._failures += 1
        if self._failures > self._retries:
            return False
        await asyncio.sleep(min(2 ** (self._failures - 2), 8))
        return True


class _Journal:
    """Unfinished transfers, so a rerun of the same command resumes them, in
    $XDG_CACHE_HOME/satchel/: uploads by server, file, size and mtime to their tus URL
    (uploads.json); downloads by their .part file to the URL and ETag they came from
    (downloads.json)."""

    def __init__(self, name: str = "uploads.json") -> None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        self.path = Path(cache) / "satchel" / name

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, url: str | None) -> None:
        """Remember ``url`` for ``key``, or forget the key; a journal that cannot be
        written only costs the resuming."""
        entries = self._load()
        if url is None:
            entries.pop(key, None)
        else:
            entries[key] = url
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.json")
            temp.write_text(json.dumps(entries, indent=1))
            os.replace(temp, self.path)

    def _load(self) -> dict[str, str]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}


async def upload(
    opts: Options,
    paths: list[Path],
    max_downloads: int | None,
    max_days: int | None,
    retries: int = 5,
) -> int:
    kept = {"Max-Downloads": max_downloads, "Max-Days": max_days}
    retention = {name: str(value) for name, value in kept.items() if value is not None}
    journal = _Journal()
    results = []
    async with _session() as session:
        with _progress(opts) as progress:
            for path in paths:
                stored = await _upload_one(
                    session, opts, progress, journal, path, retention, retries
                )
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


async def _upload_one(
    session: aiohttp.ClientSession,
    opts: Options,
    progress: Progress,
    journal: _Journal,
    path: Path,
    retention: dict[str, str],
    retries: int,
) -> Any:
    """One file through tus: created, or found in the journal and resumed; sent from
    where the server stands, again after each network failure (see :class:`_Attempts`).
    The stored file is then checked against its SHA-256."""
    stat = path.stat()
    key = f"{opts.server} {path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    url = journal.get(key)
    task = progress.add_task(path.name, total=stat.st_size)
    attempts, locked = _Attempts(retries), 0.0
    while True:
        try:
            if url is None:
                url = await _create(session, opts, path, stat.st_size, retention)
                journal.put(key, url)
            state = await _state(session, opts, url)
            if state is None:  # expired or removed meanwhile: start again
                url = None
                raise _Retry("the server no longer has the upload")
            offset, finished = state
            if offset == stat.st_size and finished is None:
                # complete, but its stored file is gone (deleted, expired): a new upload
                url = None
                continue
            attempts.reached(offset)
            progress.update(task, completed=offset)
            sha256 = await asyncio.to_thread(_hash_prefix, path, offset)
            if finished is None:
                advance = functools.partial(progress.advance, task)
                finished = await _patch(session, opts, url, path, offset, sha256, advance)
            break
        except _Locked as exc:
            locked += exc.delay
            if locked > _LOCK_PATIENCE:
                raise ClientError(
                    f"{path.name}: an earlier attempt still holds the upload on the server; "
                    "run the command again later to resume it.",
                    REFUSED,
                ) from exc
            await asyncio.sleep(exc.delay)
        except (*_NETWORK_ERRORS, _Retry) as exc:
            if not await attempts.retry():
                if isinstance(exc, _Retry):
                    raise ClientError(f"{path.name}: {exc}", REFUSED) from exc
                raise
    stored = await _stored(session, finished)
    journal.put(key, None)
    await _verify_upload(session, opts, path, stored, sha256.hexdigest())
    return stored


async def _create(
    session: aiohttp.ClientSession, opts: Options, path: Path, size: int, retention: dict[str, str]
) -> str:
    name = base64.b64encode(path.name.encode()).decode()
    headers = {
        **_TUS,
        **opts.auth(),
        **retention,
        "Upload-Length": str(size),
        "Upload-Metadata": f"filename {name}",
    }
    async with session.post(f"{opts.server}/tus/", headers=headers) as resp:
        if resp.status != 201:
            raise await _refused(resp)
        return resp.headers["Location"]


async def _state(
    session: aiohttp.ClientSession, opts: Options, url: str
) -> tuple[int, Mapping[str, str] | None] | None:
    """Where the upload stands, and its answer's headers once it is a stored file; None
    when the server no longer has it."""
    async with session.head(url, headers={**_TUS, **opts.auth()}) as resp:
        if resp.status in (404, 410):
            return None
        if resp.status != 200:
            raise await _refused(resp)
        offset = int(resp.headers["Upload-Offset"])
        return offset, resp.headers if "Satchel-File-Id" in resp.headers else None


async def _patch(
    session: aiohttp.ClientSession,
    opts: Options,
    url: str,
    path: Path,
    offset: int,
    sha256: hashlib._Hash,
    advance: Callable[[int], object],
) -> Mapping[str, str]:
    """The rest of the file from ``offset`` in one PATCH; the headers of the answer."""
    size = path.stat().st_size
    headers = {
        **_TUS,
        **opts.auth(),
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset),
        "Content-Length": str(size - offset),
    }
    body = _read_chunks(path, offset, opts.chunk_size, advance, sha256)
    async with session.patch(url, data=body, headers=headers) as resp:
        if resp.status == 423:
            raise _Locked(float(resp.headers.get("Retry-After", "1")))
        if resp.status == 409:
            raise _Retry("the server has a different offset for the upload")
        if resp.status != 204:
            raise await _refused(resp)
        if "Satchel-File-Id" not in resp.headers:
            raise _Retry("the upload is not complete yet")
        return resp.headers


async def _stored(session: aiohttp.ClientSession, finished: Mapping[str, str]) -> Any:
    """The stored file as a plain upload describes it: /check's JSON, and the delete
    link and token that only the upload's answers carry."""
    async with session.get(finished["Satchel-Check"]) as resp:
        if resp.status != 200:
            raise await _refused(resp)
        stored = await resp.json()
    delete = finished["Satchel-Delete"]
    stored["links"]["delete"] = delete
    stored["delete_token"] = parse_qs(urlparse(delete).query)["token"][0]
    return stored


def _hash_prefix(path: Path, length: int) -> hashlib._Hash:
    """SHA-256 of the file's first ``length`` bytes: what an earlier attempt sent."""
    sha256 = hashlib.sha256()
    with path.open("rb") as f:
        while length and (chunk := f.read(min(length, 1 << 20))):
            sha256.update(chunk)
            length -= len(chunk)
    return sha256


async def _read_chunks(
    path: Path,
    start: int,
    chunk_size: int,
    advance: Callable[[int], object],
    sha256: hashlib._Hash,
) -> AsyncIterator[bytes]:
    """The file's bytes from ``start``, hashed as they are read (in the reading thread)."""

    def read(f: BinaryIO) -> bytes:
        chunk = f.read(chunk_size)
        sha256.update(chunk)
        return chunk

    with path.open("rb") as f:
        f.seek(start)
        while chunk := await asyncio.to_thread(read, f):
            advance(len(chunk))
            yield chunk


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


async def fetch(
    opts: Options,
    url: str,
    output: Path | None,
    *,
    verify_zip: bool = False,
    retries: int = 5,
    force: bool = False,
) -> int:
    """Download ``url`` into ``output``'s ``.part`` file, resuming with Range + If-Range
    after each network failure (see :class:`_Attempts`) and on a rerun, but only a
    ``.part`` this client began for the same URL and ETag; renamed into place once
    every byte is in and checked. An existing ``output`` is replaced only with
    ``force``."""
    attempts = _Attempts(retries)
    journal = _Journal("downloads.json")
    async with _session() as session:
        with _progress(opts) as progress:
            while True:
                try:
                    download = await _begin(session, url, output, journal, force)
                    await _fetch_rest(session, opts, download, progress)
                    break
                except _NETWORK_ERRORS:
                    attempts.reached(int(progress.tasks[0].completed) if progress.tasks else 0)
                    if not await attempts.retry():
                        raise
    part, target, total = download.part, download.target, download.total
    if part.stat().st_size != total:
        raise ClientError(f"{part}: got {part.stat().st_size} of {total} bytes", NETWORK)
    try:
        await asyncio.to_thread(_verify, part, download.digest, verify_zip)
    except ClientError:
        journal.put(download.key, None)
        part.unlink(missing_ok=True)  # wrong bytes: the next try starts afresh
        raise
    os.replace(part, target)
    journal.put(download.key, None)
    verified = bool(download.digest) or verify_zip
    _emit(
        opts,
        {"path": str(target), "size": total, "verified": verified},
        f"{target}  {total} bytes  " + ("verified" if verified else "saved"),
    )
    return OK


@dataclass
class _Download:
    url: str
    target: Path
    part: Path
    total: int
    etag: str | None
    digest: str | None  # Repr-Digest

    @property
    def key(self) -> str:
        return str(self.part.resolve())


async def _begin(
    session: aiohttp.ClientSession,
    url: str,
    output: Path | None,
    journal: _Journal,
    force: bool,
) -> _Download:
    """What the server has (HEAD) and what is here: the download to go on with."""
    async with session.head(url) as head:
        if head.status != 200:  # a HEAD answer has no body: ask for the message
            async with session.get(url) as failed:
                raise await _refused(failed)
        total = int(head.headers["Content-Length"])
        etag = head.headers.get("ETag")
        name = _filename(head.headers.get("Content-Disposition")) or "download"
        digest = head.headers.get("Repr-Digest")
    target = output or Path(name)
    if target.exists() and not force:
        raise ClientError(f"{target} exists; use --force to replace it", LOCAL)
    part = target.with_name(target.name + ".part")
    download = _Download(url, target, part, total, etag, digest)
    began = journal.get(download.key)
    if part.exists() and began != f"{etag} {url}":
        if not force and began is None:
            raise ClientError(f"{part} exists and this client did not begin it", LOCAL)
        part.unlink()  # begun for another URL or version: not a prefix of this one
    journal.put(download.key, f"{etag} {url}")
    return download


async def _fetch_rest(
    session: aiohttp.ClientSession,
    opts: Options,
    download: _Download,
    progress: Progress,
) -> None:
    """Whatever the .part file lacks."""
    part, total = download.part, download.total
    have = part.stat().st_size if part.exists() else 0
    if have > total:
        have = 0
    if progress.tasks:
        task = progress.tasks[0].id
        progress.update(task, completed=have)
    else:
        task = progress.add_task(download.target.name, total=total, completed=have)
    etag = download.etag
    if have == total and etag:  # every byte is in already
        return
    headers = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
    async with session.get(download.url, headers=headers) as resp:
        if resp.status not in (200, 206):
            raise await _refused(resp)
        download.digest = resp.headers.get("Repr-Digest", download.digest)
        with part.open("ab" if resp.status == 206 else "wb") as out:
            if resp.status == 200:
                progress.update(task, completed=0)
            async for chunk in resp.content.iter_chunked(opts.chunk_size):
                await asyncio.to_thread(out.write, chunk)
                progress.advance(task, len(chunk))


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
    async with _session() as session, session.get(url) as resp:
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
    async with _session() as session, session.delete(url, headers=headers) as resp:
        if resp.status != 204:
            raise await _refused(resp)
    _emit(opts, {"deleted": file_id}, f"deleted {file_id}")
    return OK


def run(coroutine: Any) -> int:
    try:
        return int(asyncio.run(coroutine))
    except ClientError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted; run the same command again to resume", INTERRUPTED)
    except (aiohttp.ClientError, TimeoutError) as exc:  # before OSError: some are one
        return _fail(f"network: {exc}", NETWORK)
    except OSError as exc:
        return _fail(f"local: {exc}", LOCAL)


def _fail(message: str, code: int) -> int:
    _err.print(f"[bold red]satchel:[/] {message}", highlight=False)
    return code


def server_default() -> str:
    return os.environ.get("SATCHEL_SERVER", "http://127.0.0.1:8080").rstrip("/")

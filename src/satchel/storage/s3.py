"""Storage on an S3-compatible object store (AWS S3, SeaweedFS, Ceph RGW, MinIO, R2).

Every method blocks (boto3, chosen by measurement: bench/RESULTS.md); the services call
them in threads, as for local files. Under the location's prefix:

- ``files/<id>``: stored files. A plain upload streams into a multipart upload of that
  key through one part buffer (memory is bounded by the part size, not the file); the
  object appears only at CompleteMultipartUpload, with its full-object CRC-32 checksum.
  Leftover multipart uploads (a crash, a dropped connection) are aborted by
  ``sweep_temp`` once their last sign of life (``tmp/<id>``, touched while bytes come)
  is older than the cutoff.
- ``tus/<key>/upload``: a resumable upload's multipart upload id and stored file id. Its
  multipart upload targets ``files/<file id>`` itself, so finishing it copies nothing;
  ``tus-files/<file id>`` marks that multipart upload as one the sweep leaves alone.
  Part *n* always holds the bytes ``[(n-1)·P, n·P)`` (P: the part size), written when
  full; the bytes after the last full part live in ``tus/<key>/tail/<end>``, written by
  ``keep(end)``. A tail is only ever added, and the others are dropped when an append
  opens at one of them: so whatever ``end`` the database acknowledged last (a crash may
  fall between the tail and the record), its tail is still there, and the parts before
  it were written by earlier, acknowledged appends. Parts past it are simply not used.
  The ETag of each part's last upload is kept in ``tus/<key>/part/<n>``: a server may
  list every upload of a part number (SeaweedFS does).
- An upload is *sealed* (its last part uploaded, CompleteMultipartUpload) when it is
  read, joined or finished; after that it takes no more bytes.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from zlib_ng.zlib_ng import crc32

from satchel.storage.base import UNLIMITED, Hashing, Incoming

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part but the last
PART = 8 * MiB
WINDOW = 64 * MiB  # bytes asked of one ranged GET while a reader streams
TOUCH_EVERY = 30.0  # seconds between signs of life of an upload in progress
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://BUCKET/PREFIX``: a bucket and a key prefix (empty, or ending in ``/``)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"not an S3 bucket name: {bucket!r}")
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"the prefix has an empty, '.' or '..' segment: {prefix!r}")
        return cls(bucket, f"{prefix}/" if prefix else "")

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def connect(endpoint: str | None) -> S3Client:
    """An S3 client: credentials, region and profile from the standard AWS chain
    (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``~/.aws``, instance roles…); the endpoint
    from ``endpoint``, else the chain (``AWS_ENDPOINT_URL_S3``), else AWS."""
    import boto3  # imported only when S3 is used: it costs a serving process ~25 MB
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        # Satchel sends the checksums it computes anyway; boto3 would hash every part again
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=256,  # a connection for each of hundreds of streams
        retries={"mode": "standard", "max_attempts": 4},
        tcp_keepalive=True,
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def open_s3(location: S3Location, endpoint: str | None, part_size: int = PART) -> S3Storage:
    """The storage at ``location``, through ``endpoint`` or the AWS chain's."""
    return S3Storage(connect(endpoint), location, part_size)


def missing(exc: BaseException) -> bool:
    """Whether an S3 error says the object or the multipart upload is not there."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return str(response.get("Error", {}).get("Code")) in _MISSING


@contextlib.contextmanager
def _not_found(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if missing(exc):
            raise FileNotFoundError(what) from exc
        raise


def _b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


class S3Reader:
    """An object open for ranged reads: reads in order continue one ranged GET of up to
    ``WINDOW`` bytes; a jump opens another. Every GET is held to the version first seen
    (``If-Match`` its ETag), so a replaced object fails rather than mixing versions."""

    def __init__(self, client: S3Client, bucket: str, key: str, size: int | None = None) -> None:
        """``size`` given: no HEAD, and each GET is checked by ``_check`` instead."""
        self._client, self._bucket, self.key = client, bucket, key
        self.etag: str | None = None
        if size is None:
            with _not_found(key):
                head = client.head_object(Bucket=bucket, Key=key)
            size, self.etag = head["ContentLength"], head["ETag"]
        self.size = size
        self._body: Any = None
        self._at = 0  # where the open body continues
        self._until = 0  # where it ends

    def read(self, offset: int, count: int) -> bytes:
        count = max(0, min(count, self.size - offset))
        # the usual case, a read that the open GET holds: no copy but the read's own
        if 0 < count <= self._until - offset and self._body is not None and self._at == offset:
            chunk: bytes = self._body.read(count)
            self._at += len(chunk)
            if len(chunk) == count:
                return chunk
            return chunk + self.read(offset + len(chunk), count - len(chunk))
        out = bytearray()
        while len(out) < count:
            at = offset + len(out)
            if self._body is None or self._at != at or self._at == self._until:
                self._open(at)
            chunk = self._body.read(min(count - len(out), self._until - self._at))
            if not chunk:
                raise OSError(f"{self.key} ended at {self._at} of {self.size} bytes")
            out += chunk
            self._at += len(chunk)
        return bytes(out)

    def _open(self, at: int) -> None:
        self._close_body()
        until = min(self.size, at + WINDOW)
        span = f"bytes={at}-{until - 1}"
        with _not_found(self.key):
            if self.etag is None:
                answer = self._client.get_object(Bucket=self._bucket, Key=self.key, Range=span)
            else:
                answer = self._client.get_object(
                    Bucket=self._bucket, Key=self.key, Range=span, IfMatch=self.etag
                )
        self._body, self._at, self._until = answer["Body"], at, until
        self._check(answer["ETag"])

    def _check(self, etag: str) -> None:
        """A hook: what every GET's answer must be."""

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()


class S3Incoming(Hashing):
    """A stored file being received: parts go out as the buffer fills; a file smaller
    than one part is a single PUT at ``commit``."""

    def __init__(self, storage: S3Storage, file_id: str) -> None:
        super().__init__()
        self._storage = storage
        self.file_id = file_id
        self.key = storage.location.key("files", file_id)
        self.size = 0
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        self._upload_id: str | None = None
        self._touched = 0.0

    def store(self, block: memoryview) -> None:
        self._buffer += block
        self.size += len(block)
        part = self._storage.part_size
        while len(self._buffer) >= part:
            self._send(part)
        if self._upload_id is not None and time.time() - self._touched > TOUCH_EVERY:
            self._touch()

    def _send(self, count: int) -> None:
        client, bucket = self._storage.client, self._storage.location.bucket
        if self._upload_id is None:
            self._touch()
            self._upload_id = client.create_multipart_upload(
                Bucket=bucket,
                Key=self.key,
                ChecksumAlgorithm="CRC32",
                ChecksumType="FULL_OBJECT",
            )["UploadId"]
        body = bytes(memoryview(self._buffer)[:count])
        del self._buffer[:count]
        number = len(self._parts) + 1
        checksum = _b64(crc32(body))
        answer = client.upload_part(
            Bucket=bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumCRC32=checksum,
        )
        self._parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": checksum}
        )

    def _touch(self) -> None:
        """A sign of life for ``sweep_temp``: this upload is still being written."""
        self._touched = time.time()
        self._storage.client.put_object(
            Bucket=self._storage.location.bucket,
            Key=self._storage.temp_key(self.file_id),
            Body=b"",
        )

    def finish(self) -> None:
        if self._upload_id is not None and self._buffer:
            self._send(len(self._buffer))

    def commit(self) -> None:
        client, bucket = self._storage.client, self._storage.location.bucket
        if self._upload_id is None:
            body = bytes(self._buffer)
            client.put_object(
                Bucket=bucket, Key=self.key, Body=body, ChecksumCRC32=_b64(self.crc32)
            )
        else:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                ChecksumCRC32=_b64(self.crc32),
                ChecksumType="FULL_OBJECT",
            )
            self._upload_id = None
        self._buffer = bytearray()
        self._storage.untouch(self.file_id)

    def discard(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            self._storage.abort(self.key, self._upload_id)
            self._upload_id = None
            self._storage.untouch(self.file_id)


@dataclass(frozen=True, slots=True)
class _Upload:
    """What ``tus/<key>/upload`` holds."""

    upload_id: str
    file_id: str

    def encode(self) -> bytes:
        return f"{self.upload_id}\n{self.file_id}\n".encode()

    @classmethod
    def decode(cls, data: bytes) -> _Upload:
        upload_id, file_id = data.decode().split()
        return cls(upload_id, file_id)


class S3Appending:
    """A resumable upload open for writing at ``offset``, which must be an end kept
    since the upload was last opened (what the database acknowledged)."""

    def __init__(self, storage: S3Storage, key: str, offset: int) -> None:
        self._storage = storage
        self._key = key
        self._upload = storage.upload_record(key)
        self._start = offset
        self.written = 0
        tails = storage.tails(key)
        if offset not in tails:
            raise ValueError(f"upload {key} never kept {offset} bytes (kept: {sorted(tails)})")
        part = storage.part_size
        self._base = offset - offset % part  # where the buffer starts in the upload
        self._buffer = bytearray(storage.get(storage.tail_key(key, offset)))
        if self._base + len(self._buffer) != offset:
            raise OSError(f"the tail of upload {key} at {offset} has {len(self._buffer)} bytes")
        storage.drop_tails(key, [end for end in tails if end != offset])  # cut off the rest

    def write(self, block: memoryview) -> None:
        self._buffer += block
        self.written += len(block)
        part = self._storage.part_size
        while len(self._buffer) >= part:
            body = bytes(memoryview(self._buffer)[:part])
            self._storage.upload_part(self._key, self._upload, self._base // part + 1, body)
            del self._buffer[:part]
            self._base += part

    def keep(self, end: int) -> None:
        if end == self._start:
            return  # nothing new is kept: the tail at the start is still there
        if end != self._start + self.written:
            raise ValueError("an append keeps all it wrote or nothing")
        storage = self._storage
        storage.client.put_object(
            Bucket=storage.location.bucket,
            Key=storage.tail_key(self._key, end),
            Body=bytes(self._buffer),
        )

    def close(self) -> None:
        self._buffer = bytearray()


class S3Storage:
    """:class:`satchel.storage.base.Storage` in an S3 bucket. It does not lock uploads:
    ``app.upload_locks`` pairs it with locks its instances share (PostgreSQL's)."""

    def __init__(self, client: S3Client, location: S3Location, part_size: int = PART) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"a part has at least {MIN_PART} bytes")
        self.client = client
        self.location = location
        self.part_size = part_size
        self._sealing = threading.Lock()

    def check(self) -> None:
        """Fail, with what is wrong, if the bucket cannot be reached."""
        self.client.head_bucket(Bucket=self.location.bucket)

    # -- keys and small objects --------------------------------------------------------

    def temp_key(self, file_id: str) -> str:
        return self.location.key("tmp", file_id)

    def upload_key(self, key: str, *rest: str) -> str:
        return self.location.key("tus", key, *rest)

    def tail_key(self, key: str, end: int) -> str:
        return self.upload_key(key, "tail", f"{end:020d}")

    def get(self, key: str) -> bytes:
        with _not_found(key):
            return self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            if missing(exc):
                return False
            raise
        return True

    def listing(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Every object under ``prefix``: its key and when it was written."""
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"]

    def delete(self, keys: Sequence[str]) -> None:
        for at in range(0, len(keys), 1000):
            batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[at : at + 1000]]
            if batch:
                self.client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
                )

    def abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError), _not_found(key):
            self.client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=key, UploadId=upload_id
            )

    def untouch(self, file_id: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self.temp_key(file_id))

    # -- stored files ----------------------------------------------------------------

    def create(self, file_id: str) -> S3Incoming:
        return S3Incoming(self, file_id)

    def commit(self, incoming: Incoming) -> None:
        assert isinstance(incoming, S3Incoming)
        incoming.commit()

    def open(self, file_id: str) -> S3Reader:
        return S3Reader(self.client, self.location.bucket, self.location.key("files", file_id))

    def presign(self, file_id: str, disposition: str, content_type: str, seconds: int) -> str:
        """A presigned GET (SigV4; Range works on it as on any GET)."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.location.bucket,
                "Key": self.location.key("files", file_id),
                "ResponseContentDisposition": disposition,
                "ResponseContentType": content_type,
            },
            ExpiresIn=seconds,
        )

    def remove(self, file_id: str) -> None:
        self.client.delete_object(
            Bucket=self.location.bucket, Key=self.location.key("files", file_id)
        )

    def ids_older_than(self, cutoff: float) -> list[str]:
        prefix = self.location.key("files", "")
        return [key[len(prefix) :] for key, at in self.listing(prefix) if at.timestamp() < cutoff]

    def sweep_temp(self, cutoff: float) -> int:
        """Abort the multipart uploads of stored files with no sign of life since
        ``cutoff`` (a resumable upload's are not touched: ``tus/`` says it is alive)."""
        prefix = self.location.key("files", "")
        alive = {key.rsplit("/", 1)[1]: at for key, at in self.listing(self.temp_key(""))}
        pages = self.client.get_paginator("list_multipart_uploads")
        count = 0
        for page in pages.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                file_id = upload["Key"][len(prefix) :]
                last = alive.get(file_id, upload["Initiated"])
                if last.timestamp() < cutoff and not self._resumable(file_id):
                    self.abort(upload["Key"], upload["UploadId"])
                    with contextlib.suppress(Exception):
                        self.untouch(file_id)
                    count += 1
        return count

    def _resumable(self, file_id: str) -> bool:
        """Whether a resumable upload is becoming ``file_id`` (its multipart upload is
        ``files/<file_id>`` too, and it lives as long as its record)."""
        return self.exists(self.location.key("tus-files", file_id))

    def free_bytes(self) -> int:
        """An object store has no free space to tell."""
        return UNLIMITED

    # -- resumable uploads -------------------------------------------------------------

    def create_upload(self, key: str, file_id: str) -> None:
        bucket = self.location.bucket
        target = self.location.key("files", file_id)
        upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=target)["UploadId"]
        # Marks the multipart upload of files/<file_id> as a resumable upload's, which
        # sweep_temp leaves alone.
        self.client.put_object(Bucket=bucket, Key=self.location.key("tus-files", file_id), Body=b"")
        self.client.put_object(Bucket=bucket, Key=self.tail_key(key, 0), Body=b"")
        record = _Upload(upload_id, file_id).encode()
        self.client.put_object(Bucket=bucket, Key=self.upload_key(key, "upload"), Body=record)

    def upload_record(self, key: str) -> _Upload:
        return _Upload.decode(self.get(self.upload_key(key, "upload")))

    def tails(self, key: str) -> set[int]:
        prefix = self.upload_key(key, "tail", "")
        return {int(name[len(prefix) :]) for name, _ in self.listing(prefix)}

    def drop_tails(self, key: str, ends: Sequence[int]) -> None:
        self.delete([self.tail_key(key, end) for end in ends])

    def upload_part(self, key: str, upload: _Upload, number: int, body: bytes) -> str:
        """Upload part ``number`` and record its ETag in ``tus/<key>/part/<number>``: a
        part uploaded again (a resumed append) replaces it, and some servers (SeaweedFS)
        list every upload of a part number, with no sign of which is the last."""
        with _not_found(key):
            etag = self.client.upload_part(
                Bucket=self.location.bucket,
                Key=self.location.key("files", upload.file_id),
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=body,
            )["ETag"]
        self.client.put_object(
            Bucket=self.location.bucket, Key=self._part_key(key, number), Body=etag.encode()
        )
        return etag

    def _part_key(self, key: str, number: int) -> str:
        return self.upload_key(key, "part", f"{number:05d}")

    def append(self, key: str, offset: int) -> S3Appending:
        return S3Appending(self, key, offset)

    def seal(self, key: str) -> str:
        """Complete the upload's object from its parts and its last tail, once; its key."""
        upload = self.upload_record(key)
        target = self.location.key("files", upload.file_id)
        with self._sealing:
            if self.exists(target):
                return target
            tails = self.tails(key)
            if not tails:
                raise FileNotFoundError(key)
            end = max(tails)
            full = end // self.part_size
            etags = [self.get(self._part_key(key, n)).decode() for n in range(1, full + 1)]
            tail = self.get(self.tail_key(key, end))
            if tail or full == 0:
                etags.append(self.upload_part(key, upload, full + 1, tail))
            parts: list[CompletedPartTypeDef] = [
                {"PartNumber": number, "ETag": etag} for number, etag in enumerate(etags, 1)
            ]
            with _not_found(key):
                self.client.complete_multipart_upload(
                    Bucket=self.location.bucket,
                    Key=target,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                )
        return target

    def join(self, key: str, parts: Sequence[str]) -> None:
        """The parts' bytes, read back and written as parts of this upload."""
        appending = self.append(key, 0)
        try:
            for part in parts:
                reader = self.read_upload(part)
                try:
                    at = 0
                    while at < reader.size:
                        block = reader.read(at, self.part_size)
                        appending.write(memoryview(block))
                        at += len(block)
                finally:
                    reader.close()
            appending.keep(appending.written)
        finally:
            appending.close()
        self.seal(key)

    def read_upload(self, key: str) -> S3Reader:
        """The bytes of an upload that takes no more (it is sealed first)."""
        return S3Reader(self.client, self.location.bucket, self.seal(key))

    def finish_upload(self, key: str, file_id: str) -> None:
        """Sealing made the stored file: its multipart upload was ``files/<file_id>``."""
        upload = self.upload_record(key)
        if upload.file_id != file_id:
            raise ValueError(f"upload {key} becomes file {upload.file_id}, not {file_id}")
        self.seal(key)

    def remove_upload(self, key: str) -> None:
        """The upload's own objects; an unsealed multipart upload is aborted. A sealed
        one's object is a stored file now, or an orphan the orphan sweep removes."""
        try:
            upload = self.upload_record(key)
        except FileNotFoundError:
            upload = None
        if upload is not None:
            self.abort(self.location.key("files", upload.file_id), upload.upload_id)
            self.client.delete_object(
                Bucket=self.location.bucket, Key=self.location.key("tus-files", upload.file_id)
            )
        self.delete([name for name, _ in self.listing(self.upload_key(key, ""))])

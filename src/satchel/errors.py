"""The one error catalogue.

Every error a client can see is a :class:`SatchelError` subclass with a stable
``code``, an HTTP ``status`` and a human message. Lower layers raise these
(translating OS and driver errors with ``raise ... from exc``); the HTTP layer
renders them as JSON or HTML in one middleware.

    SatchelError
    ├── BadRequest          400
    │   ├── DigestMismatch  400
    │   ├── MalformedBody   400 (a body that breaks its own framing or coding)
    │   └── ConnectionLost  400 (logged only: nobody is left to read it)
    ├── Unauthorized        401
    ├── Forbidden           403
    │   ├── BadSignature    403 (a signed link's signature does not match)
    │   ├── UnsignedLink    403 (--require-signed-archives)
    │   ├── PasswordRequired 403 (a share with a password, none given)
    │   └── WrongPassword   403
    ├── NotFound            404
    │   ├── ArchiveNotFound 404 (HTML page for browsers, bilingual)
    │   ├── FileNotFound    404
    │   ├── ShareNotFound   404 (unknown, expired, used up or deleted)
    │   └── UploadNotFound  404 (tus: unknown, expired or terminated)
    ├── MethodNotAllowed    405
    ├── RequestTimeout      408
    ├── Conflict            409 (tus: Upload-Offset mismatch)
    │   ├── DownloadsInProgress 409 (every download left is running)
    │   ├── MemberGone      409 (a selection's file was removed: which one, in ``entry``)
    │   └── ShareClosed     409 (a closed or full share takes no more files)
    ├── LinkExpired         410 (a signed link past its expiry)
    ├── PreconditionFailed  412
    ├── PayloadTooLarge     413
    ├── UnsupportedMediaType 415
    ├── RangeNotSatisfiable 416
    ├── Locked              423 (tus: another PATCH holds the upload)
    ├── TooManyRequests     429 (with Retry-After)
    ├── ChecksumMismatch    460 (tus checksum extension)
    ├── ServiceUnavailable  503 (with Retry-After)
    ├── InsufficientStorage 507
    └── ConfigError         (not HTTP: the CLI prints it and exits 2)
"""

from __future__ import annotations


class SatchelError(Exception):
    code = "internal_error"
    status = 500
    message = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int | None = None,
        upload_offset: int | None = None,
        **details: object,
    ) -> None:
        """``retry_after``: seconds after which trying again may work. ``upload_offset``:
        where a resumable upload stands. Cores say these; only the HTTP layer turns
        them (and ``details["headers"]``, which it sets itself) into headers."""
        self.message = message or type(self).message
        self.retry_after = retry_after
        self.upload_offset = upload_offset
        self.details = details
        super().__init__(self.message)


class BadRequest(SatchelError):
    code = "bad_request"
    status = 400
    message = "The request is malformed."


class DigestMismatch(BadRequest):
    code = "digest_mismatch"
    message = "The body does not match its Content-Digest / Repr-Digest; nothing was stored."


class MalformedBody(BadRequest):
    code = "malformed_body"
    message = "The request body is malformed; nothing was stored."


class ConnectionLost(BadRequest):
    code = "connection_lost"
    message = "The connection was lost."


class Unauthorized(SatchelError):
    code = "unauthorized"
    status = 401
    message = "This needs 'Authorization: Bearer <upload token>'."


class Forbidden(SatchelError):
    code = "forbidden"
    status = 403
    message = "Not allowed."


class BadSignature(Forbidden):
    code = "bad_signature"
    message = "This link's signature is not valid: it was changed, or made with another secret."


class UnsignedLink(Forbidden):
    code = "unsigned_link"
    message = "This server serves archives only by signed links (?expires=…&sig=…)."


class PasswordRequired(Forbidden):
    code = "password_required"
    message = "This share has a password: give it (Satchel-Share-Password for programs)."


class WrongPassword(Forbidden):
    code = "wrong_password"
    message = "That is not this share's password."


class NotFound(SatchelError):
    code = "not_found"
    status = 404
    message = "Nothing is here."


class ArchiveNotFound(NotFound):
    code = "archive_not_found"
    message = "The archive does not exist or has been deleted."
    message_ru = "Архив не существует или был удален"


class FileNotFound(NotFound):
    code = "file_not_found"
    message = "No such file: the id is unknown, or the file expired, was used up or was deleted."


class ShareNotFound(NotFound):
    code = "share_not_found"
    message = "No such share: the link is wrong, or the share expired, was used up or deleted."


class UploadNotFound(NotFound):
    code = "upload_not_found"
    message = "No such resumable upload: it never existed, expired or was terminated."


class LinkExpired(SatchelError):
    code = "link_expired"
    status = 410
    message = "This link has expired; ask whoever gave it to you for a new one."


class MethodNotAllowed(SatchelError):
    code = "method_not_allowed"
    status = 405
    message = "This method is not allowed here."


class PreconditionFailed(SatchelError):
    code = "precondition_failed"
    status = 412
    message = "A precondition (If-Match / If-Unmodified-Since) did not hold."


class RequestTimeout(SatchelError):
    code = "request_timeout"
    status = 408
    message = "The request body stalled; nothing was stored."


class Conflict(SatchelError):
    code = "conflict"
    status = 409
    message = "The request conflicts with the resource's current state."


class DownloadsInProgress(Conflict):
    code = "downloads_in_progress"
    message = (
        "Every download this file has left is in progress; one that fails is given back, "
        "so retry later."
    )


class MemberGone(Conflict):
    code = "member_gone"
    message = "A file of this archive is gone, so the archive cannot be made whole."


class ShareClosed(Conflict):
    code = "share_closed"
    message = "This share is closed: it takes no more files."


class UnsupportedMediaType(SatchelError):
    code = "unsupported_media_type"
    status = 415
    message = "The request body has a media type this endpoint does not take."


class Locked(SatchelError):
    code = "locked"
    status = 423
    message = "Another request is writing to this upload; retry when it is done."


class ChecksumMismatch(SatchelError):
    code = "checksum_mismatch"
    status = 460
    message = "The chunk does not match its Upload-Checksum; it was discarded."


class PayloadTooLarge(SatchelError):
    code = "payload_too_large"
    status = 413
    message = "The upload is larger than this server accepts; nothing was stored."


class InsufficientStorage(SatchelError):
    code = "insufficient_storage"
    status = 507
    message = "The server has not enough free space for this upload; nothing was stored."


class RangeNotSatisfiable(SatchelError):
    code = "range_not_satisfiable"
    status = 416
    message = "None of the requested byte ranges lies inside the representation."


class TooManyRequests(SatchelError):
    code = "too_many_requests"
    status = 429
    message = "This client has too many requests running; retry later."


class ServiceUnavailable(SatchelError):
    code = "service_unavailable"
    status = 503
    message = "The server is too busy for this request; retry later."


class ConfigError(SatchelError):
    code = "config_error"
    message = "Invalid configuration."


def for_status(status: int) -> type[SatchelError]:
    """The catalogue's class for an HTTP status a lower layer (aiohttp) chose."""
    for kind in _BY_STATUS:
        if kind.status == status:
            return kind
    return BadRequest if 400 <= status < 500 else SatchelError


_BY_STATUS = (
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    TooManyRequests,
    ServiceUnavailable,
)


class BodyCut(Exception):
    """A body that cannot go on after its headers went out (a file changed, vanished or
    is shorter than its record). Not an HTTP error: by then the only honest answer is
    to cut the connection."""


class ArchiveChanged(BodyCut):
    """A file of an archive changed or vanished after the headers went out."""

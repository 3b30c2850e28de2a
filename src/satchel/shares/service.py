"""The share service: make, look up, change, delete and purge shares; who may add
files, see them (the password) and download them (the limit)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from satchel.archive.manifest import Manifest, Picked, build_selection
from satchel.archive.service import stored_source
from satchel.blocking import blocking
from satchel.errors import (
    DownloadsInProgress,
    Forbidden,
    PasswordRequired,
    ShareClosed,
    ShareNotFound,
    TooManyRequests,
    WrongPassword,
)
from satchel.files.rules import ID_RE, Retention, StoredFile, new_delete_token, new_id, token_digest
from satchel.files.service import FileStore
from satchel.shares.rules import (
    MAX_FILES,
    Attempts,
    Bounds,
    Change,
    Keep,
    NewShare,
    Share,
    archive_names,
    check_password,
    expiry_after,
    hash_password,
)
from satchel.zipstream import Limits

log = logging.getLogger("satchel.shares")


class ShareRepo(Protocol):
    async def insert(self, share: Share, owner_token_sha256: str) -> None: ...

    async def get(self, share_id: str) -> Share | None: ...

    async def expiry(self, share_id: str) -> datetime | None: ...

    async def owns(self, share_id: str, owner_token_sha256: str) -> bool: ...

    async def update(self, share: Share, *, closing: bool = False) -> None:
        """Keep its settings; its files' expiry follows its own. ``closing``: it was
        open until now (a ``share.closed`` event, reason ``closed``)."""
        ...

    async def files(self, share_id: str) -> list[StoredFile]: ...

    async def count_files(self, share_id: str) -> int: ...

    async def delete(self, share_id: str, reason: str) -> bool:
        """Gone, and a ``share.closed`` event with ``reason``; False if it was already."""
        ...

    async def claim_download(self, share_id: str, now: datetime) -> bool: ...

    async def end_download(self, share_id: str, *, completed: bool, claimed: bool) -> None: ...

    async def ended(self, now: datetime) -> list[Share]:
        """Shares expired or used up."""
        ...


@dataclass
class Shares:
    repo: ShareRepo
    store: FileStore
    bounds: Bounds
    limits: Limits = Limits()
    attempts: Attempts = field(default_factory=Attempts)

    async def create(self, wanted: NewShare) -> tuple[Share, str]:
        """A new, empty share, and its owner token."""
        now = datetime.now(UTC)
        password = None
        if wanted.password is not None:
            password = await blocking(hash_password, wanted.password)
        share = Share(
            id=new_id(),
            created_at=now,
            expires_at=now + timedelta(days=wanted.days),
            max_downloads=wanted.max_downloads,
            password=password,
        )
        token = new_delete_token()
        await self.repo.insert(share, token_digest(token))
        log.info("Share %s made", share.id[:8])
        return share, token

    async def get(self, share_id: str) -> Share:
        """The share, or 404 if it is unknown, expired or used up."""
        share = await self.repo.get(share_id) if ID_RE.fullmatch(share_id) else None
        if share is None or not share.available(datetime.now(UTC)):
            raise ShareNotFound()
        return share

    async def owned(self, share_id: str, owner_token: str | None) -> Share:
        """The share if ``owner_token`` is its owner's; 403 if not."""
        share = await self.get(share_id)
        if not owner_token or not await self.repo.owns(share_id, token_digest(owner_token)):
            raise Forbidden("This needs the share's owner token: 'Authorization: Bearer <it>'.")
        return share

    async def joining(self, share_id: str, owner_token: str | None) -> Retention:
        """How a file that joins the share is kept; 403 without its owner token, 409 once
        it is closed or full. Asked before the body is read."""
        share = await self.owned(share_id, owner_token)
        if share.closed:
            raise ShareClosed()
        if await self.repo.count_files(share_id) >= MAX_FILES:
            raise ShareClosed(f"This share has {MAX_FILES} files, as many as a share takes.")
        return Retention(None, self.bounds.max_days, share=share_id)  # the days: unused

    async def change(self, share: Share, change: Change) -> Share:
        now = datetime.now(UTC)
        changed = share
        if not isinstance(change.days, Keep):
            expires = expiry_after(share, change.days, now, self.bounds.max_days)
            changed = replace(changed, expires_at=expires)
        if not isinstance(change.max_downloads, Keep):
            changed = replace(changed, max_downloads=change.max_downloads)
        if not isinstance(change.password, Keep):
            password = change.password
            record = None if password is None else await blocking(hash_password, password)
            changed = replace(changed, password=record)
        if change.close and not share.closed:
            changed = replace(changed, closed_at=now)
        closing = changed.closed and not share.closed
        await self.repo.update(changed, closing=closing)
        if closing:
            log.info("Share %s closed", share.id[:8])
        return changed

    async def delete(self, share: Share) -> None:
        """The share and its files are gone."""
        await self.store.remove(await self.repo.files(share.id))
        if await self.repo.delete(share.id, "deleted"):
            log.info("Share %s deleted", share.id[:8])

    async def files(self, share: Share) -> list[StoredFile]:
        now = datetime.now(UTC)
        return [f for f in await self.repo.files(share.id) if f.available(now)]

    async def file(self, share: Share, file_id: str) -> StoredFile:
        record = await self.store.repo.get(file_id) if ID_RE.fullmatch(file_id) else None
        if record is None or record.share != share.id or not record.available(datetime.now(UTC)):
            raise ShareNotFound("The share has no such file (any more).")
        return record

    def manifest(self, share: Share, files: Sequence[StoredFile]) -> Manifest:
        """ "Download all": the share's files, oldest first, under their own names (told
        apart where two are the same)."""
        names = archive_names([f.name for f in files])
        picked = [
            Picked(name, stored_source(f), None, f.crc32)
            for name, f in zip(names, files, strict=True)
        ]
        return build_selection(f"s/{share.id}", f"s/{share.id}", picked, self.limits)

    # -- the password ------------------------------------------------------------------

    async def unlock(self, share: Share, password: str | None, client: str) -> None:
        """Nothing if ``password`` opens the share; 403 if it does not, 429 once this
        client has tried too many wrong ones lately."""
        if share.password is None:
            return
        if password is None:
            raise PasswordRequired()
        now = datetime.now(UTC)
        wait = self.attempts.wait(client, share.id, now)
        if wait:
            raise TooManyRequests(
                f"Too many wrong passwords for this share; try again in {wait} s.",
                retry_after=wait,
            )
        if not await blocking(check_password, password, share.password):
            self.attempts.failed(client, share.id, now)
            raise WrongPassword()
        self.attempts.succeeded(client, share.id)

    # -- the download limit -------------------------------------------------------------

    async def start_download(self, share: Share) -> None:
        """Before a whole download: claim one of those left (409 when all are running)."""
        if share.max_downloads is not None and not await self.repo.claim_download(
            share.id, datetime.now(UTC)
        ):
            await self.get(share.id)
            raise DownloadsInProgress(
                "Every download this share has left is in progress; retry later."
            )

    async def end_download(self, share: Share, *, completed: bool) -> None:
        claimed = share.max_downloads is not None
        await self.repo.end_download(share.id, completed=completed, claimed=claimed)

    # -- housekeeping --------------------------------------------------------------------

    async def purge(self) -> int:
        """Remove shares expired or used up, with their files."""
        now = datetime.now(UTC)
        ended = await self.repo.ended(now)
        for share in ended:
            await self.store.remove(await self.repo.files(share.id))
            reason = "expired" if share.expires_at <= now else "used_up"
            if await self.repo.delete(share.id, reason):
                log.info("Share %s %s", share.id[:8], reason.replace("_", " "))
        return len(ended)

"""The archive service: where folders live, where their CRCs are kept, their manifests."""

from __future__ import annotations

from dataclasses import dataclass

from satchel.archive.manifest import FOLDER_RE, CrcEntry, CrcRepo, Manifest, build_manifest
from satchel.blocking import blocking
from satchel.errors import ArchiveNotFound
from satchel.space import Space
from satchel.storage.base import FileVersion, Folders
from satchel.zipstream import Limits


@dataclass(frozen=True)
class Archives:
    """The archive service: where folders live and where their CRCs are kept."""

    folders: Folders
    store: CrcRepo
    limits: Limits = Limits()
    space: Space | None = None  # the photos root's room, for files written into folders

    async def remember(self, folder: str, version: FileVersion, crc: int) -> None:
        """Cache the CRC of a file just written into a folder (it was computed on the way in)."""
        await self.store.save(folder, [CrcEntry(version, crc)])

    async def manifest(self, folder: str) -> Manifest:
        """Scan the folder (stat only, no reads) and plan its archive."""
        if not FOLDER_RE.fullmatch(folder):
            raise ArchiveNotFound(folder=folder)
        files, folder_mtime = await blocking(self.folders.scan, folder)
        return build_manifest(folder, files, folder_mtime, self.limits)

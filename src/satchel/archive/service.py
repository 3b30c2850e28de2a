"""The archive services: folders, where their CRCs are kept and their manifests; and
archives of a selection, kept by id, planned from what they name when they are asked."""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from satchel import metrics
from satchel.archive.manifest import (
    FOLDER_RE,
    CrcEntry,
    CrcRepo,
    Manifest,
    Picked,
    Plans,
    build_manifest,
    build_selection,
)
from satchel.archive.selection import (
    Entry,
    Request,
    Selection,
    clashing_names,
    default_name,
    selection_key,
)
from satchel.archive.snapshot import Snapshot, by_version, crcs_of, pack
from satchel.blocking import blocking
from satchel.errors import ArchiveNotFound, BadRequest, LinkExpired, MemberGone, SatchelError
from satchel.files.rules import StoredFile, new_id
from satchel.space import Space
from satchel.storage.base import FileVersion, Folders, Listing, SourceFile, Storage, watched
from satchel.zipstream import Limits

# An expired selection's link says 410 for this long, then it is forgotten (404).
KEEP_EXPIRED = timedelta(days=1)
# A CRC snapshot not kept again for this long is dropped (its folder or selection may
# be gone): the next archive of an unchanged folder reads its files for their CRCs once
# more, and keeps a new one.
KEEP_SNAPSHOTS = timedelta(days=30)
SAVE_SLICE = 2000  # CRCs saved in one statement


@dataclass(frozen=True)
class Archives:
    """The archive service: where folders live and where their CRCs are kept."""

    folders: Folders
    store: CrcRepo
    limits: Limits = Limits()
    space: Space | None = None  # the photos root's room, for files written into folders
    plans: Plans = field(default_factory=Plans)  # the latest folder plans, reused

    def __post_init__(self) -> None:
        if watched(self.folders):
            self.plans.dropped = self.folders.forget

    async def remember(self, folder: str, version: FileVersion, crc: int) -> None:
        """Cache the CRC of a file just written into a folder (it was computed on the way in)."""
        await self.store.save(folder, [CrcEntry(version, crc)])

    async def manifest(self, folder: str) -> Manifest:
        """Scan the folder (stat only, no reads) and plan its archive, in a thread."""
        if not FOLDER_RE.fullmatch(folder):
            raise ArchiveNotFound(folder=folder)
        return await blocking(self._plan, folder)

    def _plan(self, folder: str) -> Manifest:
        """The folder's kept plan while its watch says nothing changed, or while a scan
        finds the same files; else a new one."""
        plans = self.plans
        watch = self.folders if watched(self.folders) else None
        stamp = None
        if watch is not None:
            plan = plans.unscanned(folder, self.limits, lambda s: watch.unchanged(folder, s))
            if plan is not None:
                metrics.ARCHIVE_PLANS.labels("unscanned").inc()
                return plan
            files, folder_mtime, stamp = watch.scan_watched(folder)
        else:
            files, folder_mtime = self.folders.scan(folder)
        plan = plans.get(folder, files, self.limits, stamp)
        if plan is not None:
            metrics.ARCHIVE_PLANS.labels("reused").inc()
            return plan
        metrics.ARCHIVE_PLANS.labels("planned").inc()
        plan = build_manifest(folder, files, folder_mtime, self.limits, plans, stamp)
        if watch is not None and stamp is not None and not plans.holds(folder):
            watch.forget(folder)  # too large, or empty: not kept, so not watched
        return plan

    def listing(self, folder: str) -> Listing:
        """The folder's files as they are now, from its plan; blocking."""
        files = self._plan(folder).files
        assert isinstance(files, Listing)  # a folder's plan has its files in columns
        return files

    async def known_crcs(self, manifest: Manifest) -> Known:
        """Each file's CRC where one is known: all of them from the archive's snapshot
        while its ETag holds; else from the stored files' records, the snapshot (for the
        files that did not change) and the folders' caches."""
        snapshot = await self.store.snapshot(manifest.key, manifest.etag)
        if snapshot is not None and snapshot.etag == manifest.etag:
            # the same files (an ETag is a hash of their versions)
            if len(snapshot.crcs) == 4 * len(manifest.files):
                return Known(crcs_of(snapshot), snapshot=True)
            snapshot = None  # damaged: its CRCs are computed again
        # 100,000 files: a tenth of a second each, not on the event loop
        before = await blocking(by_version, snapshot) if snapshot is not None else {}
        cached = {f: await self.store.load(f) for f in set(manifest.folders) if f is not None}
        if not before and not any(cached.values()):  # a cold archive
            return Known(manifest.crcs, snapshot=False)
        return Known(await blocking(_known, manifest, before, cached), snapshot=False)

    async def save_crcs(
        self, manifest: Manifest, known: Known, used: Sequence[int], computed: Sequence[int]
    ) -> None:
        """Once every CRC is known, keep them in the archive's snapshot (one row, by
        version); the CRCs computed go into their folders' caches too unless it is a
        folder's archive, whose snapshot has them (a cold folder of 100,000 files
        computes as many, and would write as many rows). ``used``: each member's CRC
        where the archive reached it, else -1; ``computed``: the indexes of those not
        known before."""
        if not known.snapshot:
            # 100,000 files: a tenth of a second of packing, not on the event loop
            snapshot = await blocking(_snapshot, manifest, known.crcs, used)
            if snapshot is not None:
                await self.store.keep_snapshot(manifest.key, snapshot)
                if manifest.folders[:1] == (manifest.key,):
                    return
        by_folder: dict[str, list[CrcEntry]] = defaultdict(list)
        for index in computed:
            folder = manifest.folders[index]
            if folder is not None:
                by_folder[folder].append(CrcEntry(manifest.files[index].version, used[index]))
        for folder, entries in by_folder.items():
            for at in range(0, len(entries), SAVE_SLICE):
                await self.store.save(folder, entries[at : at + SAVE_SLICE])

    async def purge(self) -> int:
        """Forget snapshots not renewed for a while: of folders and selections gone."""
        return await self.store.prune_snapshots(datetime.now(UTC) - KEEP_SNAPSHOTS)


@dataclass(frozen=True, slots=True)
class Known:
    """An archive's CRCs known before it is sent (None where not), and whether they came
    from its snapshot."""

    crcs: Sequence[int | None]
    snapshot: bool


class SelectionRepo(Protocol):
    """Where selections are kept."""

    async def insert(self, selection: Selection) -> None: ...

    async def get(self, selection_id: str) -> Selection | None:
        """The selection, expired or not."""
        ...

    async def delete(self, selection_id: str) -> bool: ...

    async def purge(self, before: datetime) -> int:
        """Forget selections that expired before ``before``: how many."""
        ...


class StoredFiles(Protocol):
    """What a selection needs of the stored files' records."""

    async def get_many(self, ids: Sequence[str]) -> dict[str, StoredFile]: ...


@dataclass(frozen=True)
class Selections:
    """Archives of a selection of folder members and stored files."""

    archives: Archives
    repo: SelectionRepo
    files: StoredFiles
    storage: Storage  # where stored files are opened

    async def create(self, request: Request) -> tuple[Selection, Manifest]:
        """Check every entry against what is there now, then keep the selection. A gone
        entry is the client's mistake here (400), not a conflict."""
        picked = await self._pick(request.entries, BadRequest)
        now = datetime.now(UTC)
        entries = tuple(
            Entry(e.folder, e.path, p.name) for e, p in zip(request.entries, picked, strict=True)
        )
        selection = Selection(
            new_id(), request.name, entries, now, now + timedelta(seconds=request.ttl)
        )
        await self.repo.insert(selection)
        return selection, self._plan(selection, picked)

    async def get(self, selection_id: str) -> Selection:
        """404 for an unknown selection, 410 for an expired one."""
        selection = await self.repo.get(selection_id)
        if selection is None:
            raise ArchiveNotFound()
        if selection.expires_at <= datetime.now(UTC):
            raise LinkExpired("This archive link has expired; ask whoever gave it for a new one.")
        return selection

    async def manifest(self, selection: Selection) -> Manifest:
        """Plan its archive from what is there now; 409 naming an entry that is gone."""
        return self._plan(selection, await self._pick(selection.entries, MemberGone))

    def _plan(self, selection: Selection, picked: Sequence[Picked]) -> Manifest:
        label, key = f"m/{selection.id}", f"m/{selection_key(selection.id)}"
        return build_selection(label, key, picked, self.archives.limits)

    async def delete(self, selection_id: str) -> bool:
        return await self.repo.delete(selection_id)

    async def purge(self) -> int:
        return await self.repo.purge(datetime.now(UTC) - KEEP_EXPIRED)

    async def _pick(self, entries: Sequence[Entry], gone: type[SatchelError]) -> list[Picked]:
        """Every entry as the file it names now, with its name in the ZIP. Folder members
        are found as a folder's archive finds them, so a selection holds only what that
        folder's archive would."""
        members = await blocking(self._members, entries)
        ids = sorted({e.path for e in entries if e.folder is None})
        records = await self.files.get_many(ids) if ids else {}
        now = datetime.now(UTC)
        picked = []
        for at, entry in enumerate(entries):
            where = f"entries[{at}]"
            if entry.folder is not None:
                source = members.get((entry.folder, entry.path))
                if source is None:
                    raise gone(
                        f"{where}: {entry.source} is not in the photos root.",
                        entry=at,
                        path=entry.source,
                    )
                picked.append(Picked(default_name(entry), source, entry.folder))
                continue
            record = records.get(entry.path)
            if record is None or not record.available(now):
                raise gone(
                    f"{where}: the stored file {entry.path} is gone (deleted or expired).",
                    entry=at,
                    file=entry.path,
                )
            refused = (
                "belongs to a share, and is served only through it"
                if record.share is not None
                else "has a download limit, which an archive cannot count"
                if record.max_downloads is not None
                else None
            )
            if refused is not None:
                raise gone(
                    f"{where}: the stored file {entry.path} {refused}.", entry=at, file=entry.path
                )
            picked.append(
                Picked(default_name(entry, record.name), stored_source(record), None, record.crc32)
            )
        clash = clashing_names([p.name for p in picked])
        if clash is not None:
            raise BadRequest(f"Names in the archive clash: {clash}.")
        return picked

    def _members(self, entries: Sequence[Entry]) -> dict[tuple[str, str], SourceFile]:
        """The folder members the entries name, as they are now, by (folder, path): from
        each folder's plan, which a watched folder in which nothing changed has without
        a scan (a few photos picked from thousands would scan them all every time)."""
        wanted: defaultdict[str, set[str]] = defaultdict(set)
        for entry in entries:
            if entry.folder is not None:
                wanted[entry.folder].add(entry.path)
        found: dict[tuple[str, str], SourceFile] = {}
        for folder, paths in wanted.items():
            try:
                files = self.archives.listing(folder)
            except ArchiveNotFound:
                continue
            for at, name in enumerate(files.names):
                if name in paths:
                    found[folder, name] = files[at]
        return found


def _known(
    manifest: Manifest, before: dict[FileVersion, int], cached: dict[str, dict[FileVersion, int]]
) -> list[int | None]:
    """Each file's CRC where the manifest, the snapshot before (``before``) or its
    folder's cache knows it."""
    crcs: list[int | None] = []
    for source, folder, crc in zip(manifest.files, manifest.folders, manifest.crcs, strict=True):
        if crc is None:
            crc = before.get(source.version)
        if crc is None and folder is not None:
            crc = cached[folder].get(source.version)
        crcs.append(crc)
    return crcs


def _snapshot(
    manifest: Manifest, known: Sequence[int | None], used: Sequence[int]
) -> Snapshot | None:
    """The archive's snapshot if every CRC is known: used, or known before."""
    crcs = array(
        "q", (k if c < 0 and k is not None else c for c, k in zip(used, known, strict=True))
    )
    return None if -1 in crcs else pack(manifest.etag, manifest.files, crcs)


def stored_source(record: StoredFile) -> SourceFile:
    """A stored file as an archive's source: its bytes never change under its id; its
    time in the ZIP is when it was stored."""
    mtime_ns = int(record.created_at.timestamp()) * 1_000_000_000
    return SourceFile(FileVersion(record.id, record.size, mtime_ns, 0), record.id, stored=True)

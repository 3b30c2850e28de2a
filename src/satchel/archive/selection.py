"""Archives of a selection: what ``POST /archives/`` asks for, checked completely before
anything is looked up. Pure: no IO.

A selection is an ordered list of entries, each a member of a photo folder
(``{"path": "<folder>/<path inside it>"}``) or a stored file (``{"file": "<id>"}``),
with an optional name inside the ZIP (``"name"``, sub-folders allowed). Its archive
keeps that order. The selection is kept by reference: what its link serves is each
entry as it is when the link is followed, and an entry gone by then refuses the archive.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from satchel.archive.manifest import FOLDER_RE
from satchel.errors import BadRequest
from satchel.files.rules import ID_RE, clean_filename
from satchel.zipstream.names import unsafe_reason

MAX_ENTRIES = 10_000
MAX_BODY = 4 * 1024 * 1024  # bytes of JSON: 10,000 entries of long paths fit


@dataclass(frozen=True, slots=True)
class Entry:
    """A photo folder member (``folder`` and its ``path`` in it) or a stored file
    (``folder`` None, ``path`` its id); ``name`` in the ZIP, None for the default."""

    folder: str | None
    path: str
    name: str | None = None

    @property
    def source(self) -> str:
        """What the entry names, as the client wrote it."""
        return self.path if self.folder is None else f"{self.folder}/{self.path}"


@dataclass(frozen=True, slots=True)
class Request:
    name: str  # the download's file name; "" for the default
    ttl: int  # seconds
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Selection:
    """A kept selection: every entry's name in the ZIP is settled."""

    id: str
    name: str
    entries: tuple[Entry, ...]
    created_at: datetime
    expires_at: datetime


def selection_key(selection_id: str) -> str:
    """The id is the secret in the link; the database keeps only this hash of it, as it
    does for resumable uploads."""
    return hashlib.sha256(f"satchel selection\0{selection_id}".encode()).hexdigest()


def parse_request(body: object, *, default_ttl: int, max_ttl: int) -> Request:
    """The JSON body of ``POST /archives/``, every part checked; BadRequest says which."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object with an 'entries' list.")
    _only(body, {"name", "ttl", "entries"}, "the body")
    name = body.get("name", "")
    if not isinstance(name, str):
        raise BadRequest("'name' must be a string.")
    ttl = body.get("ttl", default_ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= max_ttl:
        raise BadRequest(f"'ttl' must be a whole number of seconds from 1 to {max_ttl}.")
    raw = body.get("entries")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'entries' must be a list of at least one entry.")
    if len(raw) > MAX_ENTRIES:
        raise BadRequest(f"'entries' has {len(raw)} entries; at most {MAX_ENTRIES} are taken.")
    entries = tuple(_entry(item, at) for at, item in enumerate(raw))
    return Request(clean_filename(name), ttl, entries)


def _only(item: dict[str, object], keys: set[str], where: str) -> None:
    unknown = sorted(set(item) - keys)
    if unknown:
        raise BadRequest(f"Unknown key {unknown[0]!r} in {where}.")


def _entry(item: object, at: int) -> Entry:
    where = f"entries[{at}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with 'path' or 'file'.")
    _only(item, {"path", "file", "name"}, where)
    name = item.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise BadRequest(f"{where}.name must be a string.")
        reason = unsafe_reason(name)
        if reason is not None:
            raise BadRequest(f"{where}.name {name!r} is not a safe name in a ZIP: {reason}.")
    path, file_id = item.get("path"), item.get("file")
    if (path is None) == (file_id is None):
        raise BadRequest(f"{where} must have one of 'path' or 'file'.")
    if file_id is not None:
        if not isinstance(file_id, str) or not ID_RE.fullmatch(file_id):
            raise BadRequest(f"{where}.file is not a stored file's id.")
        return Entry(None, file_id, name)
    if not isinstance(path, str):
        raise BadRequest(f"{where}.path must be a string.")
    folder, _, inside = path.partition("/")
    if not FOLDER_RE.fullmatch(folder) or not inside:
        raise BadRequest(f"{where}.path must be '<folder>/<path in it>', not {path!r}.")
    reason = unsafe_reason(inside)
    if reason is not None:
        raise BadRequest(f"{where}.path {path!r} is not a path inside its folder: {reason}.")
    return Entry(folder, inside, name)


def default_name(entry: Entry, stored_name: str | None = None) -> str:
    """Its name in the ZIP when the client gave none: a member's path inside its folder,
    a stored file's own name. BadRequest if a stored file's name cannot be a ZIP name."""
    if entry.name is not None:
        return entry.name
    if entry.folder is not None:
        return entry.path
    assert stored_name is not None
    if unsafe_reason(stored_name) is not None:
        raise BadRequest(
            f"The stored file {entry.path} is named {stored_name!r}, which cannot name a "
            "member of a ZIP: give the entry a 'name'."
        )
    return stored_name


def clashing_names(names: Sequence[str]) -> str | None:
    """Why these names cannot all be in one ZIP, or None: two the same (as a file
    system that ignores case and Unicode normalisation sees them: Windows, macOS), or a
    file where another has a folder."""
    files: dict[str, str] = {}
    folders: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name.casefold())
        if key in files:
            return f"{files[key]!r} and {name!r} would be the same file once extracted"
        files[key] = name
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), name)
    for key, name in files.items():
        if key in folders:
            return f"{name!r} is a file, but {folders[key]!r} needs a folder there"
    return None


def entries_json(entries: Sequence[Entry]) -> str:
    """Entries as the database keeps them, each with its settled name."""
    return json.dumps(
        [
            {"file": e.path, "name": e.name}
            if e.folder is None
            else {"path": e.source, "name": e.name}
            for e in entries
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def entries_from_json(text: str) -> tuple[Entry, ...]:
    entries = []
    for item in json.loads(text):
        if "file" in item:
            entries.append(Entry(None, item["file"], item["name"]))
        else:
            folder, _, path = item["path"].partition("/")
            entries.append(Entry(folder, path, item["name"]))
    return tuple(entries)

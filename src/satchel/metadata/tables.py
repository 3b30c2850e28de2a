"""The SQL schema (SQLAlchemy core). Migrations in ``migrations/`` create it."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    false,
    func,
)

metadata = MetaData()

# CRC-32 of archive members, computed at most once per file version.
# A version is (size, mtime_ns, inode): any change to the file makes a new one.
crc_cache = Table(
    "crc_cache",
    metadata,
    Column("folder", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("crc32", BigInteger, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every CRC-32 of the latest archive of each folder or selection (the label), with the
# version of each file (satchel.archive.snapshot): all valid while the archive's ETag
# is, each while its file's version is. One row, read and written, instead of one a
# file: what a folder of 100,000 files needs.
crc_snapshots = Table(
    "crc_snapshots",
    metadata,
    Column("label", Text, primary_key=True),
    Column("etag", Text, nullable=False),
    Column("crcs", LargeBinary, nullable=False),
    Column("versions", LargeBinary, nullable=False),  # satchel.archive.snapshot
    Column("saved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Uploaded files. The stored bytes live under <data>/files/<id[:2]>/<id>, by id only.
files = Table(
    "files",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("crc32", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("max_downloads", Integer, nullable=True),
    Column("downloads", Integer, nullable=False, server_default="0"),  # completed ones
    Column("delete_token_sha256", Text, nullable=False),
    # Whole downloads in progress: each holds one of the downloads left until it ends.
    Column("claims", Integer, nullable=False, server_default="0"),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Column("share", Text, nullable=True),  # the share it belongs to: served only through it
    Index("files_expires_at", "expires_at"),
    Index("files_share", "share"),
)

# Resumable (tus) uploads in progress. The bytes live under <data>/tus/<key> until the
# upload completes and becomes the stored file `file_id`. The key is a hash of the id
# in the upload's URL (satchel.tus.upload_key): the id itself is kept nowhere.
tus_uploads = Table(
    "tus_uploads",
    metadata,
    Column("id", Text, primary_key=True),  # the key
    Column("upload_length", BigInteger, nullable=True),
    Column("upload_offset", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),  # JSON
    Column("file_id", Text, nullable=False),
    Column("max_downloads", Integer, nullable=True),
    Column("max_days", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("completed", Boolean, nullable=False, server_default=false()),
    Column("upload_concat", Text, nullable=True),
    Index("tus_uploads_expires_at", "expires_at"),
)

# Who does a piece of shared work (the expiry sweep of a shared storage) until when.
leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)

# Archives of a selection (POST /archives/). The key is a hash of the id in the link
# (satchel.archive.selection.selection_key); entries are JSON, each with its ZIP name.
selections = Table(
    "selections",
    metadata,
    Column("id", Text, primary_key=True),  # the key
    Column("name", Text, nullable=False),
    Column("entries", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("selections_expires_at", "expires_at"),
)

# Webhook deliveries not yet made (satchel.hooks): one row an event an endpoint, written
# when the event happens, removed once the endpoint said 2xx. A try claims its row until
# ``claimed_until``, so one instance sends it at a time.
hook_outbox = Table(
    "hook_outbox",
    metadata,
    Column("id", Text, primary_key=True),  # the webhook-id
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Index("hook_outbox_next_at", "next_at"),
)

# Shares: stored files under one link (files.share). Downloads are counted and claimed
# as a limited file's are; the owner token is kept as its SHA-256, the password as its
# scrypt record (satchel.shares.rules).
shares = Table(
    "shares",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner_token_sha256", Text, nullable=False),
    Column("password", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("max_downloads", Integer, nullable=True),
    Column("downloads", Integer, nullable=False, server_default="0"),
    Column("claims", Integer, nullable=False, server_default="0"),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Index("shares_expires_at", "expires_at"),
)

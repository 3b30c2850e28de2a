"""The SQL schema (SQLAlchemy core). Migrations in ``migrations/`` create it."""

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, func

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

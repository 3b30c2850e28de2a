"""Stored files behind links.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("crc32", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_downloads", sa.Integer, nullable=True),
        sa.Column("downloads", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delete_token_sha256", sa.Text, nullable=False),
    )
    op.create_index("files_expires_at", "files", ["expires_at"])


def downgrade() -> None:
    op.drop_index("files_expires_at", "files")
    op.drop_table("files")

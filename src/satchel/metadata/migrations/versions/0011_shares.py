"""Shares: several stored files under one link.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner_token_sha256", sa.Text, nullable=False),
        sa.Column("password", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_downloads", sa.Integer, nullable=True),
        sa.Column("downloads", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("shares_expires_at", "shares", ["expires_at"])
    # A nullable column is added in place on SQLite too: no copy of the files table.
    op.add_column("files", sa.Column("share", sa.Text, nullable=True))
    op.create_index("files_share", "files", ["share"])


def downgrade() -> None:
    op.drop_index("files_share", "files")
    with op.batch_alter_table("files") as batch:  # SQLite drops a column by a copy
        batch.drop_column("share")
    op.drop_index("shares_expires_at", "shares")
    op.drop_table("shares")

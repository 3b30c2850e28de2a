"""Resumable (tus) uploads in progress.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "tus_uploads",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("upload_length", sa.BigInteger, nullable=True),
        sa.Column("upload_offset", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("file_id", sa.Text, nullable=False),
        sa.Column("delete_token", sa.Text, nullable=False),
        sa.Column("max_downloads", sa.Integer, nullable=True),
        sa.Column("max_days", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("tus_uploads_expires_at", "tus_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("tus_uploads_expires_at", "tus_uploads")
    op.drop_table("tus_uploads")

"""Resumable uploads: the concatenation extension.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("tus_uploads", sa.Column("upload_concat", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("tus_uploads", "upload_concat")

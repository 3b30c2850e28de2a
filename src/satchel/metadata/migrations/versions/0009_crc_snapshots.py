"""CRC snapshots: every CRC of a folder's (or a selection's) latest archive in one row.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "crc_snapshots",
        sa.Column("label", sa.Text, primary_key=True),
        sa.Column("etag", sa.Text, nullable=False),
        sa.Column("crcs", sa.LargeBinary, nullable=False),
        sa.Column("versions", sa.LargeBinary, nullable=False),
        sa.Column(
            "saved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("crc_snapshots")

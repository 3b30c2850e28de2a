"""Stored files: downloads in progress hold a claim, so Max-Downloads is exact.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("files", sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
    op.add_column("files", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("files", "claimed_at")
    op.drop_column("files", "claims")

"""Resumable uploads: kept by a hash of their id, and no delete token in clear.

The id in an upload's URL grants writing to it and learning its stored file's delete
token, so the table keeps only sha256 of it (satchel.tus.upload_key), and the delete
token, now derived from the id, is kept nowhere. Finished uploads are dropped: their
stored files were told their old tokens, which cannot be derived again (a HEAD on such
an upload now answers 404; its stored file and links are untouched). The bytes of
unfinished ones are renamed by TusStore at start.

Revision ID: 0006
Revises: 0005
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    uploads = sa.table("tus_uploads", sa.column("id", sa.Text), sa.column("completed", sa.Boolean))
    conn = op.get_bind()
    conn.execute(sa.delete(uploads).where(uploads.c.completed.is_(True)))
    for (upload_id,) in conn.execute(sa.select(uploads.c.id)).all():
        key = hashlib.sha256(f"satchel tus upload\0{upload_id}".encode()).hexdigest()
        conn.execute(sa.update(uploads).where(uploads.c.id == upload_id).values(id=key))
    with op.batch_alter_table("tus_uploads") as batch:
        batch.drop_column("delete_token")


def downgrade() -> None:
    raise NotImplementedError("the ids are hashed: unfinished uploads cannot be restored")

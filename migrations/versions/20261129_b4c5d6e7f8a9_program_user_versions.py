"""program and user profile versions

Revision ID: b4c5d6e7f8a9
Revises: a3b4c5d6e7f8
Create Date: 2026-11-29 10:30:00

Optimistic locks (issue 9, "nothing typed is lost"): ``program.version`` (SQLAlchemy's
version_id_col) and ``app_user.profile_version`` (bumped by administrators' profile edits
only, not by sign-ins). Existing rows start at 1.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)

# revision identifiers, used by Alembic.
revision = "b4c5d6e7f8a9"
down_revision = "a3b4c5d6e7f8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("profile_version", sa.Integer(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("profile_version")
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.drop_column("version")

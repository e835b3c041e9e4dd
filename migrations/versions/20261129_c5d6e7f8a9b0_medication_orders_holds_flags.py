"""medication orders, holds and flags

Revision ID: c5d6e7f8a9b0
Revises: b5c6d7e8f9a0
Create Date: 2026-11-29 10:30:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = "c5d6e7f8a9b0"
down_revision = "b5c6d7e8f9a0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

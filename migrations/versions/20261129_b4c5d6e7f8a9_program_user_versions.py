"""program and user profile versions

Revision ID: b4c5d6e7f8a9
Revises: a3b4c5d6e7f8
Create Date: 2026-11-29 10:30:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = "b4c5d6e7f8a9"
down_revision = "a3b4c5d6e7f8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""stored phone numbers and ZIP codes in their canonical form

Revision ID: b5c6d7e8f9a0
Revises: b4c5d6e7f8a9
Create Date: 2026-11-29 10:30:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = "b5c6d7e8f9a0"
down_revision = "b4c5d6e7f8a9"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

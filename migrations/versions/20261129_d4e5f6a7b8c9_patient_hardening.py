"""patient hardening

Revision ID: d4e5f6a7b8c9
Revises: a8d1f0c2b3e4
Create Date: 2026-11-29 07:15:00

"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'd4e5f6a7b8c9'
down_revision = 'a8d1f0c2b3e4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

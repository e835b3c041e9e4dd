"""audit keyed chain

Revision ID: a8d1f0c2b3e4
Revises: 856dde6e6507
Create Date: 2026-11-29 07:15:00

"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'a8d1f0c2b3e4'
down_revision = '856dde6e6507'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

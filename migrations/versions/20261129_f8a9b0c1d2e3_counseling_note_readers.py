"""counseling-note readers a site allows

Revision ID: f8a9b0c1d2e3
Revises: e8f9a0b1c2d3
Create Date: 2026-11-29 14:00:00

Placeholder: filled in by the change that owns it.
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "f8a9b0c1d2e3"
down_revision = "e8f9a0b1c2d3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""index the enrollment a transfer came from

Revision ID: c9d0e1f2a3b4
Revises: b8c9d0e1f2a3
Create Date: 2026-11-29 21:50:00

Issue 14: the census, retention and TEDS reports follow transfer chains
(``enrollment.transferred_from_id``) in most of their statements; without an index each
lookup scans the enrollment table (bench/README.md).
"""

from alembic import op

revision = "c9d0e1f2a3b4"
down_revision = "b8c9d0e1f2a3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_enrollment_transferred_from_id"),
        "enrollment",
        ["transferred_from_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_enrollment_transferred_from_id"), table_name="enrollment")

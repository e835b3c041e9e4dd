"""saved form drafts

Revision ID: a3b4c5d6e7f8
Revises: f2a3b4c5d6e7
Create Date: 2026-11-29 08:27:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = "a3b4c5d6e7f8"
down_revision = "f2a3b4c5d6e7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_form_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", clinic.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", clinic.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_saved_form_draft_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_saved_form_draft_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_form_draft")),
    )
    with op.batch_alter_table("saved_form_draft", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_saved_form_draft_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_saved_form_draft_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("saved_form_draft", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saved_form_draft_user_id"))
        batch_op.drop_index(batch_op.f("ix_saved_form_draft_expires_at"))
    op.drop_table("saved_form_draft")

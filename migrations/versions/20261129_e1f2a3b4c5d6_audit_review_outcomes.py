"""audit review outcomes

Emergency-access reviews record an outcome (appropriate / escalated) and a note. Only
``break_glass_grant`` changes (an ordinary table, rebuilt by batch mode on SQLite);
``audit_event`` is never touched, so its append-only triggers stay.

Revision ID: e1f2a3b4c5d6
Revises: d4e5f6a7b8c9
Create Date: 2026-11-29 08:25:00

"""
import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'e1f2a3b4c5d6'
down_revision = 'd4e5f6a7b8c9'
branch_labels = None
depends_on = None

OUTCOME_VALID = "review_outcome IS NULL OR review_outcome IN ('appropriate', 'escalated')"
REVIEW_COMPLETE = "(acknowledged_at IS NULL) = (review_outcome IS NULL)"
ESCALATION_EXPLAINED = (
    "review_outcome IS NULL OR review_outcome <> 'escalated' "
    "OR (review_note IS NOT NULL AND length(trim(review_note)) > 0)"
)
NOTE_LENGTH = "review_note IS NULL OR length(review_note) <= 1000"


def upgrade() -> None:
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_outcome', sa.Enum('appropriate', 'escalated', name='review_outcome', native_enum=False, create_constraint=False, length=16), nullable=True))
        batch_op.add_column(sa.Column('review_note', sa.String(length=1000), nullable=True))
    # Grants acknowledged before outcomes existed were reviewed with nothing to escalate
    # (an escalation was handled outside the app): they become "appropriate", so the
    # CHECK that every acknowledged grant has an outcome holds for them too.
    op.execute(
        "UPDATE break_glass_grant SET review_outcome = 'appropriate' "
        "WHERE acknowledged_at IS NOT NULL"
    )
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_break_glass_grant_review_outcome_valid'), OUTCOME_VALID)
        batch_op.create_check_constraint(op.f('ck_break_glass_grant_review_complete'), REVIEW_COMPLETE)
        batch_op.create_check_constraint(op.f('ck_break_glass_grant_escalation_explained'), ESCALATION_EXPLAINED)
        batch_op.create_check_constraint(op.f('ck_break_glass_grant_review_note_length'), NOTE_LENGTH)


def downgrade() -> None:
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_break_glass_grant_review_note_length'), type_='check')
        batch_op.drop_constraint(op.f('ck_break_glass_grant_escalation_explained'), type_='check')
        batch_op.drop_constraint(op.f('ck_break_glass_grant_review_complete'), type_='check')
        batch_op.drop_constraint(op.f('ck_break_glass_grant_review_outcome_valid'), type_='check')
        batch_op.drop_column('review_note')
        batch_op.drop_column('review_outcome')

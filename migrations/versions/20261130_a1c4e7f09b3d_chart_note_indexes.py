"""index progress notes by attendee and counseling notes by patient

Revision ID: a1c4e7f09b3d
Revises: 79b6d03fbd22
Create Date: 2026-11-30 01:20:00

Issue 15: the chart's therapy history reads the notes of the patient's attendee rows
(``progress_note.attendee_id IN (...)``, entered in error included). The only index on
``attendee_id`` was the partial unique one of live notes, which that query cannot use:
PostgreSQL scanned every progress note (404 ms at 100,000 patients). The new index leaves
group notes (attendee_id NULL) out: the group-note half of the query goes through
ix_progress_note_session, and the planner has no index of every group note to AND in.

The chart's count of readable counseling notes filters on ``patient_id`` alone, the second
column of (author_id, patient_id, id): a scan of the whole index, or of the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "a1c4e7f09b3d"
down_revision = "79b6d03fbd22"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("progress_note", schema=None) as batch_op:
        batch_op.create_index(
            "ix_progress_note_attendee",
            ["attendee_id"],
            unique=False,
            sqlite_where=sa.text("attendee_id IS NOT NULL"),
            postgresql_where=sa.text("attendee_id IS NOT NULL"),
        )
    with op.batch_alter_table("counseling_note", schema=None) as batch_op:
        batch_op.create_index("ix_counseling_note_patient", ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("counseling_note", schema=None) as batch_op:
        batch_op.drop_index("ix_counseling_note_patient")
    with op.batch_alter_table("progress_note", schema=None) as batch_op:
        batch_op.drop_index("ix_progress_note_attendee")

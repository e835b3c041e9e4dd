"""index the patient list's sorts for keyset pages

Revision ID: 79b6d03fbd22
Revises: c9d0e1f2a3b4
Create Date: 2026-11-30 00:10:00

Issue 15: the patient list pages by keyset (clinic/pagination.py): ORDER BY the sort
column then the id, seeking past the cursor row. Each sort gets an index ending in the id
so that page 500 reads what page 1 reads: (last_key, id) replaces (last_key), which it
serves as well; (date_of_birth, id) and (intake_date, id) are new. The MRN sort uses the
MRN's unique index.
"""

from alembic import op

revision = "79b6d03fbd22"
down_revision = "c9d0e1f2a3b4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index("ix_patient_last_key_id", ["last_key", "id"], unique=False)
        batch_op.drop_index("ix_patient_last_key")
        batch_op.create_index("ix_patient_date_of_birth_id", ["date_of_birth", "id"], unique=False)
        batch_op.create_index("ix_patient_intake_date_id", ["intake_date", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_intake_date_id")
        batch_op.drop_index("ix_patient_date_of_birth_id")
        batch_op.create_index("ix_patient_last_key", ["last_key"], unique=False)
        batch_op.drop_index("ix_patient_last_key_id")

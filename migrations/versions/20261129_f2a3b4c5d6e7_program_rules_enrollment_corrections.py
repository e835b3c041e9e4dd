"""program kind rules and enrollment corrections

Revision ID: f2a3b4c5d6e7
Revises: e1f2a3b4c5d6
Create Date: 2026-11-29 08:26:00

"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'f2a3b4c5d6e7'
down_revision = 'e1f2a3b4c5d6'
branch_labels = None
depends_on = None

CAPS = {"take_home_cap_days_0_14": 7, "take_home_cap_days_15_30": 14, "take_home_cap_days_31_plus": 28}
# 42 CFR 8.12(i) take-home caps are an opioid treatment program's only.
TAKE_HOME_CAPS_OTP_ONLY = (
    "(kind = 'methadone_otp' AND "
    + " AND ".join(f"{c} IS NOT NULL" for c in CAPS)
    + ") OR (kind <> 'methadone_otp' AND "
    + " AND ".join(f"{c} IS NULL" for c in CAPS)
    + ")"
)

# Enrollment corrections are history: never rewritten, never removed.
APPEND_ONLY_SQLITE = [
    (f"enrollment_correction_no_{operation.lower()}", operation) for operation in ("UPDATE", "DELETE")
]
APPEND_ONLY_PG_FUNCTION = """
BEGIN
  RAISE EXCEPTION 'enrollment_correction is append-only: % refused', TG_OP
    USING ERRCODE = 'check_violation', CONSTRAINT = 'enrollment_correction_append_only';
END"""


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION enrollment_correction_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $fn${APPEND_ONLY_PG_FUNCTION}\n$fn$"
        )
        op.execute(
            "CREATE TRIGGER enrollment_correction_no_update_delete BEFORE UPDATE OR DELETE "
            "ON enrollment_correction FOR EACH ROW EXECUTE FUNCTION enrollment_correction_append_only()"
        )
        op.execute(
            "CREATE TRIGGER enrollment_correction_no_truncate BEFORE TRUNCATE "
            "ON enrollment_correction FOR EACH STATEMENT EXECUTE FUNCTION enrollment_correction_append_only()"
        )
    else:
        for name, operation in APPEND_ONLY_SQLITE:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON enrollment_correction "
                "BEGIN SELECT RAISE(ABORT, 'enrollment_correction_append_only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS enrollment_correction_no_truncate ON enrollment_correction")
        op.execute("DROP TRIGGER IF EXISTS enrollment_correction_no_update_delete ON enrollment_correction")
        op.execute("DROP FUNCTION IF EXISTS enrollment_correction_append_only()")
    else:
        for name, _operation in APPEND_ONLY_SQLITE:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    # --- take-home caps: OTPs only -----------------------------------------------------
    with op.batch_alter_table('program', schema=None) as batch_op:
        for column in CAPS:
            batch_op.alter_column(column, existing_type=sa.Integer(), nullable=True, server_default=None)
    # Programs of other kinds had the federal caps by default: they never applied.
    op.execute(
        "UPDATE program SET " + ", ".join(f"{c} = NULL" for c in CAPS) + " WHERE kind <> 'methadone_otp'"
    )
    with op.batch_alter_table('program', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_program_take_home_caps_otp_only'), TAKE_HOME_CAPS_OTP_ONLY)

    # --- enrollment corrections: who, when, field, old value, new value, why -----------
    op.create_table('enrollment_correction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('field', sa.Enum('primary_counselor', 'level_of_care', 'admitted_on', 'discharge', name='corrected_field', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('old_value', sa.String(length=160), nullable=True),
    sa.Column('new_value', sa.String(length=160), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('corrected_by_id', sa.Integer(), nullable=False),
    sa.Column('corrected_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(reason) >= 10', name=op.f('ck_enrollment_correction_reason_given')),
    sa.ForeignKeyConstraint(['corrected_by_id'], ['app_user.id'], name=op.f('fk_enrollment_correction_corrected_by_id_app_user')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_enrollment_correction_enrollment_id_enrollment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_correction'))
    )
    with op.batch_alter_table('enrollment_correction', schema=None) as batch_op:
        batch_op.create_index('ix_enrollment_correction_enrollment_id', ['enrollment_id', 'corrected_at'], unique=False)
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table('enrollment_correction', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollment_correction_enrollment_id')
    op.drop_table('enrollment_correction')

    with op.batch_alter_table('program', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_program_take_home_caps_otp_only'), type_='check')
    for column, federal in CAPS.items():
        op.execute(f"UPDATE program SET {column} = {federal} WHERE {column} IS NULL")
    with op.batch_alter_table('program', schema=None) as batch_op:
        for column, federal in CAPS.items():
            batch_op.alter_column(column, existing_type=sa.Integer(), nullable=False, server_default=str(federal))

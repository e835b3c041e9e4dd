"""medication orders, holds and flags

Revision ID: c5d6e7f8a9b0
Revises: b5c6d7e8f9a0
Create Date: 2026-11-29 10:30:00

Issue 10: medication orders (one active per patient and medication; clinical columns never
change after insert: a trigger on both engines refuses it, only the ending columns may be
set, once), stop-dose holds (one live per patient), patient flags, ``app_user.may_dispense``
(clinicians only) and the programs' dose-change steps (methadone 10 mg, buprenorphine 4 mg).
Holds and flags are never edited or deleted: triggers let only a hold's lift and a flag's
clear be set, once.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = "c5d6e7f8a9b0"
down_revision = "b5c6d7e8f9a0"
branch_labels = None
depends_on = None

# An order's clinical columns are written once (clinic.medications.models
# ORDER_CLINICAL_COLUMNS): a dose change is a new order. Only the ending columns (status,
# end_on, ended_reason, ended_by_id, ended_at) change, and only while the order is active.
CLINICAL_COLUMNS = (
    "patient_id", "enrollment_id", "medication", "product_form", "strength", "dose_mg",
    "schedule", "split_first_mg", "split_second_mg", "start_on", "prescriber_id", "reason",
    "justification", "last_opioid_use_on", "replaces_id", "created_at",
)
RULE = "medication_order_clinical_immutable"
PG_FUNCTION = (
    "BEGIN\n"
    "  IF TG_OP = 'DELETE' OR OLD.status = 'ended' OR "
    + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in CLINICAL_COLUMNS)
    + " THEN\n"
    f"    RAISE EXCEPTION '{RULE}: % refused', TG_OP\n"
    f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{RULE}';\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)
SQLITE_TRIGGERS = [
    (
        "medication_order_no_clinical_update",
        "BEFORE UPDATE ON medication_order",
        "OLD.status = 'ended' OR "
        + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in CLINICAL_COLUMNS),
    ),
    ("medication_order_no_delete", "BEFORE DELETE ON medication_order", "1"),
]


# Holds and flags are records of who decided what: once written, only their lift (hold) or
# clear (flag) columns are set, once, from NULL; no row is deleted (nor the table
# truncated). ``(table, rule, written-once columns, closing columns)``.
CLOSED_ONCE = (
    (
        "medication_hold",
        "medication_hold_lift_once",
        ("id", "patient_id", "reason", "until_on", "placed_by_id", "placed_at"),
        ("lifted_at", "lifted_by_id", "lift_reason"),
    ),
    (
        "patient_flag",
        "patient_flag_clear_once",
        ("id", "patient_id", "category", "text", "created_by_id", "created_at"),
        ("cleared_at", "cleared_by_id"),
    ),
)


def _changed(columns, distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)


def _create_closed_once_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, rule, written, closing in CLOSED_ONCE:
        # Refused: any change of a written column, or a closing column set again.
        already = " OR ".join(f"OLD.{c} IS NOT NULL" for c in closing)
        if postgresql:
            op.execute(
                f"CREATE FUNCTION {rule}() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
                "BEGIN\n"
                f"  IF TG_OP <> 'UPDATE' OR {already} OR {_changed(written, 'IS DISTINCT FROM')}"
                " THEN\n"
                f"    RAISE EXCEPTION '{rule}: % refused', TG_OP\n"
                f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
                "  END IF;\n"
                "  RETURN NEW;\n"
                "END\n$fn$"
            )
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {rule}()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} FOR EACH ROW "
                f"WHEN {already} OR {_changed(written, 'IS NOT')} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} FOR EACH ROW "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def _drop_closed_once_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, rule, _written, _closing in CLOSED_ONCE:
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {rule} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {rule}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {RULE}() RETURNS trigger LANGUAGE plpgsql AS $fn${PG_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {RULE} BEFORE UPDATE OR DELETE ON medication_order "
            f"FOR EACH ROW EXECUTE FUNCTION {RULE}()"
        )
        op.execute(
            "CREATE TRIGGER medication_order_no_truncate BEFORE TRUNCATE ON medication_order "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {RULE}()"
        )
    else:
        for name, event, condition in SQLITE_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{RULE}'); END"
            )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS medication_order_no_truncate ON medication_order")
        op.execute(f"DROP TRIGGER IF EXISTS {RULE} ON medication_order")
        op.execute(f"DROP FUNCTION IF EXISTS {RULE}()")
    else:
        for name, *_rest in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("may_dispense", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_check_constraint(op.f("ck_app_user_may_dispense_is_clinician"), "NOT may_dispense OR role = 'clinician'")

    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.add_column(sa.Column("methadone_step_mg", sa.Integer(), server_default="10", nullable=False))
        batch_op.add_column(sa.Column("buprenorphine_step_mg", sa.Integer(), server_default="4", nullable=False))
        batch_op.create_check_constraint(op.f("ck_program_methadone_step_range"), "methadone_step_mg BETWEEN 1 AND 100")
        batch_op.create_check_constraint(op.f("ck_program_buprenorphine_step_range"), "buprenorphine_step_mg BETWEEN 1 AND 32")

    op.create_table('medication_hold',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('until_on', sa.Date(), nullable=True),
    sa.Column('placed_by_id', sa.Integer(), nullable=False),
    sa.Column('placed_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lifted_by_id', sa.Integer(), nullable=True),
    sa.Column('lift_reason', sa.String(length=500), nullable=True),
    sa.CheckConstraint('(lifted_at IS NULL) = (lifted_by_id IS NULL) AND (lifted_at IS NULL) = (lift_reason IS NULL)', name=op.f('ck_medication_hold_lift_complete')),
    sa.CheckConstraint('length(reason) > 0', name=op.f('ck_medication_hold_reason_not_empty')),
    sa.CheckConstraint('lift_reason IS NULL OR length(lift_reason) > 0', name=op.f('ck_medication_hold_lift_reason_not_empty')),
    sa.ForeignKeyConstraint(['lifted_by_id'], ['app_user.id'], name=op.f('fk_medication_hold_lifted_by_id_app_user')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_medication_hold_patient_id_patient')),
    sa.ForeignKeyConstraint(['placed_by_id'], ['app_user.id'], name=op.f('fk_medication_hold_placed_by_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_medication_hold'))
    )
    with op.batch_alter_table('medication_hold', schema=None) as batch_op:
        batch_op.create_index('ix_medication_hold_patient_placed', ['patient_id', 'placed_at'], unique=False)
        batch_op.create_index('uq_medication_hold_live_patient', ['patient_id'], unique=True, sqlite_where=sa.text('lifted_at IS NULL'), postgresql_where=sa.text('lifted_at IS NULL'))

    op.create_table('patient_flag',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.Enum('info', 'warning', name='flag_category', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('text', sa.String(length=500), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cleared_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cleared_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('(cleared_at IS NULL) = (cleared_by_id IS NULL)', name=op.f('ck_patient_flag_clear_complete')),
    sa.CheckConstraint('length(text) > 0', name=op.f('ck_patient_flag_text_not_empty')),
    sa.ForeignKeyConstraint(['cleared_by_id'], ['app_user.id'], name=op.f('fk_patient_flag_cleared_by_id_app_user')),
    sa.ForeignKeyConstraint(['created_by_id'], ['app_user.id'], name=op.f('fk_patient_flag_created_by_id_app_user')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_flag_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_flag'))
    )
    with op.batch_alter_table('patient_flag', schema=None) as batch_op:
        batch_op.create_index('ix_patient_flag_patient_cleared', ['patient_id', 'cleared_at'], unique=False)

    op.create_table('medication_order',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('medication', sa.Enum('methadone', 'buprenorphine', 'buprenorphine_naloxone', 'xr_buprenorphine', 'naltrexone', 'xr_naltrexone', name='medication', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('product_form', sa.Enum('oral_liquid', 'tablet', 'dispersible_tablet', 'sublingual_film', 'sublingual_tablet', 'injection', name='product_form', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('strength', sa.String(length=40), nullable=False),
    sa.Column('dose_mg', sa.Numeric(precision=7, scale=2), nullable=False),
    sa.Column('schedule', sa.Enum('daily', 'split', 'weekly', 'monthly', 'every_4_weeks', name='medication_schedule', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('split_first_mg', sa.Numeric(precision=7, scale=2), nullable=True),
    sa.Column('split_second_mg', sa.Numeric(precision=7, scale=2), nullable=True),
    sa.Column('start_on', sa.Date(), nullable=False),
    sa.Column('end_on', sa.Date(), nullable=True),
    sa.Column('status', sa.Enum('active', 'ended', name='order_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('prescriber_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('justification', sa.String(length=1000), nullable=True),
    sa.Column('last_opioid_use_on', sa.Date(), nullable=True),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('ended_reason', sa.String(length=500), nullable=True),
    sa.Column('ended_by_id', sa.Integer(), nullable=True),
    sa.Column('ended_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(medication = 'methadone' AND product_form IN ('oral_liquid', 'dispersible_tablet', 'tablet')) OR (medication = 'buprenorphine' AND product_form IN ('sublingual_tablet', 'sublingual_film')) OR (medication = 'buprenorphine_naloxone' AND product_form IN ('sublingual_film', 'sublingual_tablet')) OR (medication = 'xr_buprenorphine' AND product_form IN ('injection')) OR (medication = 'naltrexone' AND product_form IN ('tablet')) OR (medication = 'xr_naltrexone' AND product_form IN ('injection'))", name=op.f('ck_medication_order_medication_form')),
    sa.CheckConstraint("(medication IN ('xr_buprenorphine', 'xr_naltrexone') AND schedule IN ('weekly', 'monthly', 'every_4_weeks')) OR (medication NOT IN ('xr_buprenorphine', 'xr_naltrexone') AND schedule IN ('daily', 'split'))", name=op.f('ck_medication_order_schedule_fits_medication')),
    sa.CheckConstraint("(schedule = 'split' AND split_first_mg IS NOT NULL AND split_second_mg IS NOT NULL AND split_first_mg > 0 AND split_second_mg > 0 AND split_first_mg + split_second_mg = dose_mg) OR (schedule <> 'split' AND split_first_mg IS NULL AND split_second_mg IS NULL)", name=op.f('ck_medication_order_split_portions')),
    sa.CheckConstraint("(status = 'ended') = (ended_at IS NOT NULL) AND (status <> 'ended' OR (end_on IS NOT NULL AND ended_reason IS NOT NULL AND ended_by_id IS NOT NULL))", name=op.f('ck_medication_order_ended_complete')),
    sa.CheckConstraint('dose_mg > 0 AND dose_mg <= 1000', name=op.f('ck_medication_order_dose_in_range')),
    sa.CheckConstraint("end_on IS NULL OR end_on >= start_on OR status = 'ended'", name=op.f('ck_medication_order_end_after_start')),
    sa.CheckConstraint('ended_reason IS NULL OR length(ended_reason) > 0', name=op.f('ck_medication_order_ended_reason_not_empty')),
    sa.CheckConstraint('justification IS NULL OR length(justification) > 0', name=op.f('ck_medication_order_justification_not_empty')),
    sa.CheckConstraint('last_opioid_use_on IS NULL OR last_opioid_use_on <= start_on', name=op.f('ck_medication_order_last_use_before_start')),
    sa.CheckConstraint('length(strength) > 0', name=op.f('ck_medication_order_strength_not_empty')),
    sa.CheckConstraint('reason IS NULL OR length(reason) > 0', name=op.f('ck_medication_order_reason_not_empty')),
    sa.ForeignKeyConstraint(['ended_by_id'], ['app_user.id'], name=op.f('fk_medication_order_ended_by_id_app_user')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_medication_order_enrollment_id_enrollment')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_medication_order_patient_id_patient')),
    sa.ForeignKeyConstraint(['prescriber_id'], ['app_user.id'], name=op.f('fk_medication_order_prescriber_id_app_user')),
    sa.ForeignKeyConstraint(['replaces_id'], ['medication_order.id'], name=op.f('fk_medication_order_replaces_id_medication_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_medication_order'))
    )
    with op.batch_alter_table('medication_order', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_medication_order_enrollment_id'), ['enrollment_id'], unique=False)
        batch_op.create_index('ix_medication_order_patient_start', ['patient_id', 'start_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_medication_order_replaces_id'), ['replaces_id'], unique=False)
        batch_op.create_index('ix_medication_order_status_start', ['status', 'start_on'], unique=False)
        batch_op.create_index('uq_medication_order_active_patient_medication', ['patient_id', 'medication'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
    _create_triggers()
    _create_closed_once_triggers()


def downgrade() -> None:
    _drop_closed_once_triggers()
    _drop_triggers()
    with op.batch_alter_table('medication_order', schema=None) as batch_op:
        batch_op.drop_index('uq_medication_order_active_patient_medication', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_medication_order_status_start')
        batch_op.drop_index(batch_op.f('ix_medication_order_replaces_id'))
        batch_op.drop_index('ix_medication_order_patient_start')
        batch_op.drop_index(batch_op.f('ix_medication_order_enrollment_id'))

    op.drop_table('medication_order')
    with op.batch_alter_table('patient_flag', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_flag_patient_cleared')

    op.drop_table('patient_flag')
    with op.batch_alter_table('medication_hold', schema=None) as batch_op:
        batch_op.drop_index('uq_medication_hold_live_patient', sqlite_where=sa.text('lifted_at IS NULL'), postgresql_where=sa.text('lifted_at IS NULL'))
        batch_op.drop_index('ix_medication_hold_patient_placed')

    op.drop_table('medication_hold')

    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_program_buprenorphine_step_range"), type_="check")
        batch_op.drop_constraint(op.f("ck_program_methadone_step_range"), type_="check")
        batch_op.drop_column("buprenorphine_step_mg")
        batch_op.drop_column("methadone_step_mg")

    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_app_user_may_dispense_is_clinician"), type_="check")
        batch_op.drop_column("may_dispense")

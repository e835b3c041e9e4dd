"""patient hardening

Names in any script (search keys recomputed with anyascii, a name-token table for word
searches), one unconfirmed registration per person, one care-plan review a day, form
submission tokens (idempotent creates), and the date rules between records held by the
database from both sides: CHECKs on enrollment (milestones not after the discharge) and
triggers for the rules that span tables, on both engines.

SQLite drops a table's triggers when a batch operation rebuilds the table: a later
migration that rebuilds patient, enrollment or care_plan_review must call
``create_triggers()`` of this module again.

Revision ID: d4e5f6a7b8c9
Revises: a8d1f0c2b3e4
Create Date: 2026-11-29 07:15:00

"""
import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)
# The same key functions as the app, so the keys recomputed here are the ones searches
# compute (clinic/patients/names.py).
from clinic.patients.names import name_tokens, normalise, search_key


# revision identifiers, used by Alembic.
revision = 'd4e5f6a7b8c9'
down_revision = 'a8d1f0c2b3e4'
branch_labels = None
depends_on = None

SearchKey = sa.String(length=80).with_variant(sa.String(length=80, collation='C'), 'postgresql')
UNCONFIRMED_IDENTITY = "NOT duplicate_confirmed AND entered_in_error_at IS NULL"

# --- triggers: SQLite ----------------------------------------------------------------------
# RAISE(ABORT, name): the error message is the rule's name, which the app maps to the
# service's message (clinic.web.constraint_name).

_PATIENT_IN_ERROR = "EXISTS (SELECT 1 FROM patient p WHERE p.id = NEW.patient_id AND p.entered_in_error_at IS NOT NULL)"
_REVIEW_PATIENT_IN_ERROR = (
    "EXISTS (SELECT 1 FROM enrollment e JOIN patient p ON p.id = e.patient_id "
    "WHERE e.id = NEW.enrollment_id AND p.entered_in_error_at IS NOT NULL)"
)
_BEFORE_INTAKE = "NEW.admitted_on < (SELECT p.intake_date FROM patient p WHERE p.id = NEW.patient_id)"
_REVIEW_OUTSIDE = (
    "NOT EXISTS (SELECT 1 FROM enrollment e WHERE e.id = NEW.enrollment_id "
    "AND e.care_plan_on IS NOT NULL AND NEW.reviewed_on >= e.care_plan_on "
    "AND (e.discharged_on IS NULL OR NEW.reviewed_on <= e.discharged_on))"
)
_REVIEWS_OUTSIDE = (
    "EXISTS (SELECT 1 FROM care_plan_review r WHERE r.enrollment_id = NEW.id "
    "AND (NEW.care_plan_on IS NULL OR r.reviewed_on < NEW.care_plan_on "
    "OR (NEW.discharged_on IS NOT NULL AND r.reviewed_on > NEW.discharged_on)))"
)
_TRANSFER_SOURCE_WRONG = (
    "NEW.transferred_from_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM enrollment s "
    "WHERE s.id = NEW.transferred_from_id AND s.patient_id = NEW.patient_id "
    "AND s.discharged_on = NEW.admitted_on AND s.discharge_reason = 4)"
)
_TRANSFER_TARGET_WRONG = (
    "EXISTS (SELECT 1 FROM enrollment t WHERE t.transferred_from_id = NEW.id "
    "AND (t.admitted_on IS NOT NEW.discharged_on OR NEW.discharge_reason IS NOT 4))"
)

SQLITE_TRIGGERS = [
    # (trigger name, timing and event, condition, rule name)
    ("patient_frozen_in_error", "BEFORE UPDATE ON patient", "OLD.entered_in_error_at IS NOT NULL", "patient_entered_in_error"),
    (
        "patient_intake_before_admissions",
        "BEFORE UPDATE OF intake_date ON patient",
        "NEW.intake_date > (SELECT min(e.admitted_on) FROM enrollment e WHERE e.patient_id = NEW.id)",
        "patient_intake_before_admissions",
    ),
    ("enrollment_in_error_insert", "BEFORE INSERT ON enrollment", _PATIENT_IN_ERROR, "patient_entered_in_error"),
    ("enrollment_in_error_update", "BEFORE UPDATE ON enrollment", _PATIENT_IN_ERROR, "patient_entered_in_error"),
    ("enrollment_after_intake_insert", "BEFORE INSERT ON enrollment", _BEFORE_INTAKE, "enrollment_after_intake"),
    (
        "enrollment_after_intake_update",
        "BEFORE UPDATE OF admitted_on, patient_id ON enrollment",
        _BEFORE_INTAKE,
        "enrollment_after_intake",
    ),
    (
        "enrollment_dates_cover_reviews",
        "BEFORE UPDATE OF discharged_on, care_plan_on ON enrollment",
        _REVIEWS_OUTSIDE,
        "enrollment_dates_cover_reviews",
    ),
    ("enrollment_transfer_source_insert", "BEFORE INSERT ON enrollment", _TRANSFER_SOURCE_WRONG, "enrollment_transfer_matches"),
    (
        "enrollment_transfer_source_update",
        "BEFORE UPDATE OF transferred_from_id, admitted_on, patient_id ON enrollment",
        _TRANSFER_SOURCE_WRONG,
        "enrollment_transfer_matches",
    ),
    (
        "enrollment_transfer_target_update",
        "BEFORE UPDATE OF discharged_on, discharge_reason ON enrollment",
        _TRANSFER_TARGET_WRONG,
        "enrollment_transfer_matches",
    ),
    ("review_in_error_insert", "BEFORE INSERT ON care_plan_review", _REVIEW_PATIENT_IN_ERROR, "patient_entered_in_error"),
    ("review_in_error_update", "BEFORE UPDATE ON care_plan_review", _REVIEW_PATIENT_IN_ERROR, "patient_entered_in_error"),
    ("review_within_enrollment_insert", "BEFORE INSERT ON care_plan_review", _REVIEW_OUTSIDE, "review_within_enrollment"),
    ("review_within_enrollment_update", "BEFORE UPDATE ON care_plan_review", _REVIEW_OUTSIDE, "review_within_enrollment"),
]

# --- triggers: PostgreSQL -----------------------------------------------------------------
# Each raises check_violation with CONSTRAINT = the rule's name. The rows a rule reads in
# another table are locked FOR SHARE, so a write racing it on that row waits and is then
# checked against what was committed (no write skew under READ COMMITTED).

PG_FUNCTIONS = {
    "patient_before_update": """
BEGIN
  IF OLD.entered_in_error_at IS NOT NULL THEN
    RAISE EXCEPTION 'This record was entered in error and can no longer be changed.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'patient_entered_in_error';
  END IF;
  IF NEW.intake_date IS DISTINCT FROM OLD.intake_date AND NEW.intake_date >
      (SELECT min(e.admitted_on) FROM enrollment e WHERE e.patient_id = NEW.id) THEN
    RAISE EXCEPTION 'The intake date is after the patient''s first admission.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'patient_intake_before_admissions';
  END IF;
  RETURN NEW;
END""",
    "enrollment_before_write": """
DECLARE
  intake date;
  in_error timestamptz;
BEGIN
  SELECT p.intake_date, p.entered_in_error_at INTO intake, in_error
    FROM patient p WHERE p.id = NEW.patient_id FOR SHARE;
  IF in_error IS NOT NULL THEN
    RAISE EXCEPTION 'This record was entered in error and can no longer be changed.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'patient_entered_in_error';
  END IF;
  IF (TG_OP = 'INSERT' OR NEW.admitted_on IS DISTINCT FROM OLD.admitted_on
      OR NEW.patient_id IS DISTINCT FROM OLD.patient_id) AND NEW.admitted_on < intake THEN
    RAISE EXCEPTION 'The admission date is before the patient''s intake date.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'enrollment_after_intake';
  END IF;
  IF TG_OP = 'UPDATE' AND (NEW.discharged_on IS DISTINCT FROM OLD.discharged_on
      OR NEW.care_plan_on IS DISTINCT FROM OLD.care_plan_on) AND EXISTS (
        SELECT 1 FROM care_plan_review r WHERE r.enrollment_id = NEW.id
          AND (NEW.care_plan_on IS NULL OR r.reviewed_on < NEW.care_plan_on
               OR (NEW.discharged_on IS NOT NULL AND r.reviewed_on > NEW.discharged_on))) THEN
    RAISE EXCEPTION 'A care-plan review lies outside the initial care plan and the discharge.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'enrollment_dates_cover_reviews';
  END IF;
  IF NEW.transferred_from_id IS NOT NULL AND (TG_OP = 'INSERT'
      OR NEW.transferred_from_id IS DISTINCT FROM OLD.transferred_from_id
      OR NEW.admitted_on IS DISTINCT FROM OLD.admitted_on
      OR NEW.patient_id IS DISTINCT FROM OLD.patient_id) AND NOT EXISTS (
        SELECT 1 FROM enrollment s WHERE s.id = NEW.transferred_from_id
          AND s.patient_id = NEW.patient_id AND s.discharged_on = NEW.admitted_on
          AND s.discharge_reason = 4 FOR SHARE) THEN
    RAISE EXCEPTION 'A transfer starts on the day the enrollment it comes from ended.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'enrollment_transfer_matches';
  END IF;
  IF TG_OP = 'UPDATE' AND (NEW.discharged_on IS DISTINCT FROM OLD.discharged_on
      OR NEW.discharge_reason IS DISTINCT FROM OLD.discharge_reason) AND EXISTS (
        SELECT 1 FROM enrollment t WHERE t.transferred_from_id = NEW.id
          AND (t.admitted_on IS DISTINCT FROM NEW.discharged_on
               OR NEW.discharge_reason IS DISTINCT FROM 4)) THEN
    RAISE EXCEPTION 'A transfer starts on the day the enrollment it comes from ended.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'enrollment_transfer_matches';
  END IF;
  RETURN NEW;
END""",
    "care_plan_review_before_write": """
DECLARE
  care_plan date;
  discharged date;
  in_error timestamptz;
BEGIN
  SELECT e.care_plan_on, e.discharged_on, p.entered_in_error_at
    INTO care_plan, discharged, in_error
    FROM enrollment e JOIN patient p ON p.id = e.patient_id
    WHERE e.id = NEW.enrollment_id FOR SHARE;
  IF in_error IS NOT NULL THEN
    RAISE EXCEPTION 'This record was entered in error and can no longer be changed.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'patient_entered_in_error';
  END IF;
  IF care_plan IS NULL OR NEW.reviewed_on < care_plan
      OR (discharged IS NOT NULL AND NEW.reviewed_on > discharged) THEN
    RAISE EXCEPTION 'A care-plan review lies between the initial care plan and the discharge.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'review_within_enrollment';
  END IF;
  RETURN NEW;
END""",
}
PG_TRIGGERS = [
    # (trigger and function name, table, events)
    ("patient_before_update", "patient", "UPDATE"),
    ("enrollment_before_write", "enrollment", "INSERT OR UPDATE"),
    ("care_plan_review_before_write", "care_plan_review", "INSERT OR UPDATE"),
]


def create_triggers() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${body}\n$fn$"
            )
        for name, table, events in PG_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {events} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
    else:
        for name, event, condition, rule in SQLITE_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def drop_triggers() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name, table, _events in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name, *_rest in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _recompute_name_keys() -> None:
    """Keys in any script (anyascii) for every existing patient, their name tokens, and
    the earlier of two identical identities left unconfirmed (the others were registered
    past a warning, or before the warning looked at every site)."""
    bind = op.get_bind()
    patient = sa.table(
        "patient",
        sa.column("id", sa.Integer),
        sa.column("first_name", sa.String),
        sa.column("last_name", sa.String),
        sa.column("preferred_name", sa.String),
        sa.column("first_key", sa.String),
        sa.column("last_key", sa.String),
        sa.column("preferred_key", sa.String),
    )
    token = sa.table("patient_name_token", sa.column("patient_id", sa.Integer), sa.column("token", sa.String))
    rows = bind.execute(
        sa.select(patient.c.id, patient.c.first_name, patient.c.last_name, patient.c.preferred_name)
    ).all()
    tokens = []
    for row in rows:
        first, last, preferred = normalise(row.first_name), normalise(row.last_name), normalise(row.preferred_name)
        bind.execute(
            patient.update()
            .where(patient.c.id == row.id)
            .values(
                first_name=first,
                last_name=last,
                preferred_name=preferred,
                first_key=search_key(first),
                last_key=search_key(last),
                preferred_key=search_key(preferred) or None,
            )
        )
        tokens.extend({"patient_id": row.id, "token": t} for t in sorted(name_tokens(first, last, preferred)))
    if tokens:
        bind.execute(token.insert(), tokens)
    op.execute(
        "UPDATE patient SET duplicate_confirmed = TRUE WHERE entered_in_error_at IS NULL "
        "AND EXISTS (SELECT 1 FROM patient p2 WHERE p2.last_key = patient.last_key "
        "AND p2.first_key = patient.first_key AND p2.date_of_birth = patient.date_of_birth "
        "AND p2.entered_in_error_at IS NULL AND p2.id < patient.id)"
    )


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_confirmed', sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table('patient_name_token',
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('token', SearchKey, nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_name_token_patient_id_patient'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('patient_id', 'token', name=op.f('pk_patient_name_token'))
    )
    with op.batch_alter_table('patient_name_token', schema=None) as batch_op:
        batch_op.create_index('ix_patient_name_token_token', ['token', 'patient_id'], unique=False)

    op.create_table('form_submission',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('result_url', sa.String(length=200), nullable=False),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_form_submission_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_form_submission')),
    sa.UniqueConstraint('token', name=op.f('uq_form_submission_token'))
    )

    _recompute_name_keys()

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index('uq_patient_unconfirmed_identity', ['last_key', 'first_key', 'date_of_birth'], unique=True, sqlite_where=sa.text(UNCONFIRMED_IDENTITY), postgresql_where=sa.text(UNCONFIRMED_IDENTITY))

    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_enrollment_exam_before_discharge'), 'medical_exam_on IS NULL OR discharged_on IS NULL OR medical_exam_on <= discharged_on')
        batch_op.create_check_constraint(op.f('ck_enrollment_assessment_before_discharge'), 'assessment_on IS NULL OR discharged_on IS NULL OR assessment_on <= discharged_on')
        batch_op.create_check_constraint(op.f('ck_enrollment_care_plan_before_discharge'), 'care_plan_on IS NULL OR discharged_on IS NULL OR care_plan_on <= discharged_on')

    with op.batch_alter_table('care_plan_review', schema=None) as batch_op:
        batch_op.create_unique_constraint(op.f('uq_care_plan_review_enrollment_id_reviewed_on'), ['enrollment_id', 'reviewed_on'])

    create_triggers()


def downgrade() -> None:
    drop_triggers()

    with op.batch_alter_table('care_plan_review', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_care_plan_review_enrollment_id_reviewed_on'), type_='unique')

    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_enrollment_care_plan_before_discharge'), type_='check')
        batch_op.drop_constraint(op.f('ck_enrollment_assessment_before_discharge'), type_='check')
        batch_op.drop_constraint(op.f('ck_enrollment_exam_before_discharge'), type_='check')

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index('uq_patient_unconfirmed_identity', sqlite_where=sa.text(UNCONFIRMED_IDENTITY), postgresql_where=sa.text(UNCONFIRMED_IDENTITY))

    op.drop_table('form_submission')
    with op.batch_alter_table('patient_name_token', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_name_token_token')

    op.drop_table('patient_name_token')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('duplicate_confirmed')

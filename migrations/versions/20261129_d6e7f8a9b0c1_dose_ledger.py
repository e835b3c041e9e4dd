"""dose ledger, flag acknowledgements, missed-dose reviews

Revision ID: d6e7f8a9b0c1
Revises: c5d6e7f8a9b0
Create Date: 2026-11-29 10:30:00

The dose ledger (21 CFR 1304.24(a)) is append-only: triggers refuse UPDATE and DELETE on
both engines (and TRUNCATE on PostgreSQL), as for the audit trail; a mistake is corrected
by a reversal row. The refusal names the rule ``dose_entry_append_only`` (SQLite: the
RAISE message; PostgreSQL: a check_violation with that CONSTRAINT), so it arrives as an
IntegrityError on both engines.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "d6e7f8a9b0c1"
down_revision = "c5d6e7f8a9b0"
branch_labels = None
depends_on = None

APPEND_ONLY_SQLITE = (
    ("dose_entry_no_update", "UPDATE"),
    ("dose_entry_no_delete", "DELETE"),
)
APPEND_ONLY_PG_FUNCTION = """
BEGIN
  RAISE EXCEPTION 'dose_entry is append-only: % refused', TG_OP
    USING ERRCODE = 'check_violation', CONSTRAINT = 'dose_entry_append_only';
END"""


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION dose_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
            + APPEND_ONLY_PG_FUNCTION
            + "\n$$"
        )
        op.execute(
            "CREATE TRIGGER dose_entry_no_update_delete BEFORE UPDATE OR DELETE "
            "ON dose_entry FOR EACH ROW EXECUTE FUNCTION dose_entry_append_only()"
        )
        op.execute(
            "CREATE TRIGGER dose_entry_no_truncate BEFORE TRUNCATE "
            "ON dose_entry FOR EACH STATEMENT EXECUTE FUNCTION dose_entry_append_only()"
        )
    else:
        for name, operation in APPEND_ONLY_SQLITE:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON dose_entry "
                "BEGIN SELECT RAISE(ABORT, 'dose_entry_append_only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS dose_entry_no_truncate ON dose_entry")
        op.execute("DROP TRIGGER IF EXISTS dose_entry_no_update_delete ON dose_entry")
        op.execute("DROP FUNCTION IF EXISTS dose_entry_append_only()")
    else:
        for name, _operation in APPEND_ONLY_SQLITE:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "flag_acknowledgement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flag_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("acknowledged_on", sa.Date(), nullable=False),
        sa.Column("acknowledged_by_id", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"],
            ["app_user.id"],
            name=op.f("fk_flag_acknowledgement_acknowledged_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["flag_id"],
            ["patient_flag.id"],
            name=op.f("fk_flag_acknowledgement_flag_id_patient_flag"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_flag_acknowledgement_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_acknowledgement")),
        sa.UniqueConstraint(
            "flag_id", "acknowledged_on", name="uq_flag_acknowledgement_flag_id_acknowledged_on"
        ),
    )
    with op.batch_alter_table("flag_acknowledgement", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flag_acknowledgement_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "dose_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "observed",
                "take_home",
                "missed",
                "held",
                "reversal",
                "injection",
                name="dose_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column(
            "medication",
            sa.Enum(
                "methadone",
                "buprenorphine",
                "buprenorphine_naloxone",
                "xr_buprenorphine",
                "naltrexone",
                "xr_naltrexone",
                name="dose_medication",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("substance", sa.String(length=32), nullable=False),
        sa.Column("strength", sa.String(length=40), nullable=False),
        sa.Column(
            "dosage_form",
            sa.Enum(
                "oral_liquid",
                "tablet",
                "dispersible_tablet",
                "sublingual_film",
                "sublingual_tablet",
                "injection",
                name="dose_form",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("dispensed_on", sa.Date(), nullable=False),
        sa.Column("dispensed_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount_mg", sa.Numeric(precision=7, scale=2), nullable=True),
        sa.Column("take_home_mg", sa.Numeric(precision=7, scale=2), nullable=True),
        sa.Column("take_home_form", sa.String(length=40), nullable=True),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("dispenser_id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("reverses_id", sa.Integer(), nullable=True),
        sa.Column("lot", sa.String(length=40), nullable=True),
        sa.Column("injection_site", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "(kind = 'injection') = (lot IS NOT NULL AND injection_site IS NOT NULL)",
            name=op.f("ck_dose_entry_injection_details"),
        ),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)",
            name=op.f("ck_dose_entry_reversal_reverses"),
        ),
        sa.CheckConstraint(
            "(kind IN ('observed', 'injection')) = (slot IS NOT NULL)",
            name=op.f("ck_dose_entry_slot_for_given"),
        ),
        sa.CheckConstraint(
            "NOT (kind IN ('observed', 'injection')) OR (amount_mg IS NOT NULL AND amount_mg > 0)",
            name=op.f("ck_dose_entry_amount_given"),
        ),
        sa.CheckConstraint(
            "kind NOT IN ('missed', 'held') OR amount_mg IS NULL",
            name=op.f("ck_dose_entry_no_amount_not_given"),
        ),
        sa.CheckConstraint(
            "kind NOT IN ('reversal', 'missed', 'held')"
            " OR (reason IS NOT NULL AND length(reason) > 0)",
            name=op.f("ck_dose_entry_reason_given"),
        ),
        sa.CheckConstraint(
            "(take_home_mg IS NULL) = (take_home_form IS NULL)",
            name=op.f("ck_dose_entry_take_home_complete"),
        ),
        sa.CheckConstraint(
            "amount_mg IS NULL OR amount_mg > 0", name=op.f("ck_dose_entry_amount_positive")
        ),
        sa.CheckConstraint("slot IS NULL OR slot > 0", name=op.f("ck_dose_entry_slot_positive")),
        sa.CheckConstraint(
            "take_home_mg IS NULL OR take_home_mg > 0", name=op.f("ck_dose_entry_take_home_amount")
        ),
        sa.ForeignKeyConstraint(
            ["dispenser_id"], ["app_user.id"], name=op.f("fk_dose_entry_dispenser_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["medication_order.id"],
            name=op.f("fk_dose_entry_order_id_medication_order"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_dose_entry_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["dose_entry.id"], name=op.f("fk_dose_entry_reverses_id_dose_entry")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_dose_entry_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_entry")),
        sa.UniqueConstraint(
            "patient_id", "dispensed_on", "slot", name="uq_dose_entry_patient_day_slot"
        ),
    )
    with op.batch_alter_table("dose_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dose_entry_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            "ix_dose_entry_patient_history", ["patient_id", "dispensed_at", "id"], unique=False
        )
        batch_op.create_index("ix_dose_entry_site_day", ["site_id", "dispensed_on"], unique=False)
        batch_op.create_index(
            "uq_dose_entry_reverses_id",
            ["reverses_id"],
            unique=True,
            sqlite_where=sa.text("reverses_id IS NOT NULL"),
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
        )

    op.create_table(
        "missed_dose_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_on", sa.Date(), nullable=False),
        sa.Column("missed_days", sa.Integer(), nullable=False),
        sa.Column(
            "decision",
            sa.Enum(
                "continue",
                "hold",
                "new_order",
                name="review_decision",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=False),
        sa.Column("reviewed_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "missed_days >= 0", name=op.f("ck_missed_dose_review_missed_days_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["medication_order.id"],
            name=op.f("fk_missed_dose_review_order_id_medication_order"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_missed_dose_review_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"],
            ["app_user.id"],
            name=op.f("fk_missed_dose_review_reviewed_by_id_app_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_dose_review")),
    )
    with op.batch_alter_table("missed_dose_review", schema=None) as batch_op:
        batch_op.create_index(
            "ix_missed_dose_review_patient", ["patient_id", "reviewed_on"], unique=False
        )

    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("missed_dose_review", schema=None) as batch_op:
        batch_op.drop_index("ix_missed_dose_review_patient")

    op.drop_table("missed_dose_review")
    with op.batch_alter_table("dose_entry", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_dose_entry_reverses_id",
            sqlite_where=sa.text("reverses_id IS NOT NULL"),
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_dose_entry_site_day")
        batch_op.drop_index("ix_dose_entry_patient_history")
        batch_op.drop_index(batch_op.f("ix_dose_entry_order_id"))

    op.drop_table("dose_entry")
    with op.batch_alter_table("flag_acknowledgement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flag_acknowledgement_patient_id"))

    op.drop_table("flag_acknowledgement")

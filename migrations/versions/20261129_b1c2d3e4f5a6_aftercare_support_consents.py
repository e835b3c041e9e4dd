"""support network, Part 2 consents and restriction requests

Revision ID: b1c2d3e4f5a6
Revises: a0b1c2d3e4f5
Create Date: 2026-11-29 14:00:00

Issue 12 (aftercare, task E1): ``support_person`` (a patient's recovery support network),
``part2_consent`` (42 CFR 2.31 written consents: every element a NOT NULL column, text
elements CHECKed non-empty, exactly one recipient, the expiry and signature rules) and
``disclosure_restriction`` (§2.26 restriction requests).

Triggers on both engines (the therapy notes' pattern): a consent's elements
(``CONSENT_ELEMENTS`` below) never change and its revocation is written once
(``part2_consent_immutable``); a restriction's request never changes and its lifting is
written once (``disclosure_restriction_immutable``); a support person's patient never
changes and their archiving is written once (``support_person_immutable``); none of the
three tables loses a row (``<table>_no_delete``). The refusal names the rule (SQLite: the
RAISE message; PostgreSQL: a check_violation with that CONSTRAINT), so it arrives as an
IntegrityError on both engines.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "b1c2d3e4f5a6"
down_revision = "a0b1c2d3e4f5"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
CONSENT_ELEMENTS = (
    "patient_id",
    "patient_name",
    "kind",
    "program_id",
    "program_name",
    "information_description",
    "resource_id",
    "support_person_id",
    "recipient_class",
    "recipient_name",
    "purpose",
    "purpose_text",
    "right_to_revoke",
    "expiry_kind",
    "expires_on",
    "expiry_event",
    "signature_method",
    "paper_scan_reference",
    "electronic_signature_name",
    "signed_on",
    "redisclosure_statement",
    "based_on_id",
    "recorded_by_id",
    "recorded_at",
)
CONSENT_REVOCATION = ("revoked_on", "revocation_method", "revoked_by_id", "revoked_at")
RESTRICTION_ELEMENTS = (
    "patient_id",
    "purpose",
    "resource_id",
    "support_person_id",
    "recipient_class",
    "details",
    "requested_on",
    "recorded_by_id",
    "recorded_at",
)
RESTRICTION_LIFT = ("lifted_on", "lift_reason", "lifted_by_id", "lifted_at")
# table -> (frozen columns, written-once columns, the column that marks them written)
IMMUTABLE = {
    "part2_consent": (CONSENT_ELEMENTS, CONSENT_REVOCATION, "revoked_on"),
    "disclosure_restriction": (RESTRICTION_ELEMENTS, RESTRICTION_LIFT, "lifted_on"),
    # A support person stays in the network of the patient who named them (a consent names
    # them by id); taken out of it once.
    "support_person": (
        ("patient_id", "created_by_id", "created_at"),
        ("archived_at", "archived_by_id"),
        "archived_at",
    ),
}
NO_DELETE_TABLES = ("support_person", "part2_consent", "disclosure_restriction")


def _changed(columns, distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)


def _refused_update(table: str, distinct: str) -> str:
    frozen, once, mark = IMMUTABLE[table]
    return f"({_changed(frozen, distinct)}) OR (OLD.{mark} IS NOT NULL AND ({_changed(once, distinct)}))"


def _raise(rule: str) -> str:
    return (
        f"    RAISE EXCEPTION '{rule}: % refused', TG_OP\n"
        f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
    )


def _pg_function(table: str) -> str:
    body = "BEGIN\n  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN\n" + _raise(f"{table}_no_delete")
    body += "  END IF;\n"
    if table in IMMUTABLE:
        body += f"  IF {_refused_update(table, 'IS DISTINCT FROM')} THEN\n"
        body += _raise(f"{table}_immutable") + "  END IF;\n"
    return body + "  RETURN NEW;\nEND"


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in NO_DELETE_TABLES:
            function = f"{table}_guard"
            op.execute(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$fn${_pg_function(table)}\n$fn$"
            )
            events = "UPDATE OR DELETE" if table in IMMUTABLE else "DELETE"
            op.execute(
                f"CREATE TRIGGER {table}_guard BEFORE {events} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {function}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
    else:
        for table in NO_DELETE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table}_no_delete'); END"
            )
            if table in IMMUTABLE:
                op.execute(
                    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} FOR EACH ROW "
                    f"WHEN {_refused_update(table, 'IS NOT')} "
                    f"BEGIN SELECT RAISE(ABORT, '{table}_immutable'); END"
                )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in NO_DELETE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_guard ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_guard()")
    else:
        for table in NO_DELETE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable")


def upgrade() -> None:
    op.create_table(
        "support_person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column(
            "relationship",
            sa.Enum(
                "family",
                "friend",
                "sponsor",
                "peer_recovery_coach",
                "other",
                name="support_relationship",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("can_offer_housing", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notes", sa.String(length=2000), nullable=True),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("archived_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archived_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "(archived_at IS NULL) = (archived_by_id IS NULL)",
            name=op.f("ck_support_person_archived_complete"),
        ),
        sa.CheckConstraint(
            "email IS NULL OR length(email) > 0", name=op.f("ck_support_person_email_not_empty")
        ),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_support_person_name_not_empty")),
        sa.CheckConstraint(
            "notes IS NULL OR length(notes) > 0", name=op.f("ck_support_person_notes_not_empty")
        ),
        sa.CheckConstraint(
            "phone IS NULL OR length(phone) > 0", name=op.f("ck_support_person_phone_not_empty")
        ),
        sa.ForeignKeyConstraint(
            ["archived_by_id"],
            ["app_user.id"],
            name=op.f("fk_support_person_archived_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_support_person_created_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_support_person_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["app_user.id"],
            name=op.f("fk_support_person_updated_by_id_app_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_person")),
    )
    op.create_index(
        "ix_support_person_patient", "support_person", ["patient_id", "archived_at"], unique=False
    )
    op.create_table(
        "part2_consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "specific_disclosure",
                "tpo",
                "counseling_notes",
                name="consent_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("program_name", sa.String(length=200), nullable=False),
        sa.Column("information_description", sa.String(length=2000), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("support_person_id", sa.Integer(), nullable=True),
        sa.Column(
            "recipient_class",
            sa.Enum(
                "residences",
                "support_groups",
                "outpatient_care",
                "peer_support",
                "aftercare_directory",
                "support_network",
                name="consent_recipient_class",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("recipient_name", sa.String(length=2000), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "aftercare_referral",
                "care_coordination",
                "tpo",
                "other",
                name="consent_purpose",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("purpose_text", sa.String(length=2000), nullable=False),
        sa.Column("right_to_revoke", sa.String(length=2000), nullable=False),
        sa.Column(
            "expiry_kind",
            sa.Enum(
                "date",
                "event",
                "none",
                name="consent_expiry",
                native_enum=False,
                create_constraint=True,
                length=8,
            ),
            nullable=False,
        ),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("expiry_event", sa.String(length=200), nullable=True),
        sa.Column(
            "signature_method",
            sa.Enum(
                "paper",
                "electronic",
                name="consent_signature",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("paper_scan_reference", sa.String(length=200), nullable=True),
        sa.Column("electronic_signature_name", sa.String(length=200), nullable=True),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("redisclosure_statement", sa.String(length=2000), nullable=True),
        sa.Column("based_on_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_on", sa.Date(), nullable=True),
        sa.Column("revocation_method", sa.String(length=2000), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(expiry_kind = 'date') = (expires_on IS NOT NULL)",
            name=op.f("ck_part2_consent_expiry_date_when_dated"),
        ),
        sa.CheckConstraint(
            "(expiry_kind = 'event') = (expiry_event IS NOT NULL)",
            name=op.f("ck_part2_consent_expiry_event_when_event"),
        ),
        sa.CheckConstraint(
            "(kind = 'tpo') = (purpose = 'tpo')", name=op.f("ck_part2_consent_tpo_purpose")
        ),
        sa.CheckConstraint(
            "(signature_method = 'paper') = (paper_scan_reference IS NOT NULL) AND (signature_method = 'electronic') = (electronic_signature_name IS NOT NULL)",
            name=op.f("ck_part2_consent_signature_evidence"),
        ),
        sa.CheckConstraint(
            "expiry_kind <> 'none' OR kind = 'tpo'",
            name=op.f("ck_part2_consent_no_expiry_only_tpo"),
        ),
        sa.CheckConstraint(
            "kind <> 'tpo' OR redisclosure_statement IS NOT NULL",
            name=op.f("ck_part2_consent_tpo_redisclosure"),
        ),
        sa.CheckConstraint(
            "(CASE WHEN resource_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN support_person_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN recipient_class IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_part2_consent_one_recipient"),
        ),
        sa.CheckConstraint(
            "(revoked_on IS NULL) = (revocation_method IS NULL) AND (revoked_on IS NULL) = (revoked_by_id IS NULL) AND (revoked_on IS NULL) = (revoked_at IS NULL)",
            name=op.f("ck_part2_consent_revocation_complete"),
        ),
        sa.CheckConstraint(
            "electronic_signature_name IS NULL OR length(electronic_signature_name) > 0",
            name=op.f("ck_part2_consent_electronic_signature_name_not_empty"),
        ),
        sa.CheckConstraint(
            "expires_on IS NULL OR expires_on >= signed_on",
            name=op.f("ck_part2_consent_expires_after_signature"),
        ),
        sa.CheckConstraint(
            "expiry_event IS NULL OR length(expiry_event) > 0",
            name=op.f("ck_part2_consent_expiry_event_not_empty"),
        ),
        sa.CheckConstraint(
            "length(information_description) > 0",
            name=op.f("ck_part2_consent_information_description_not_empty"),
        ),
        sa.CheckConstraint(
            "length(patient_name) > 0", name=op.f("ck_part2_consent_patient_name_not_empty")
        ),
        sa.CheckConstraint(
            "length(program_name) > 0", name=op.f("ck_part2_consent_program_name_not_empty")
        ),
        sa.CheckConstraint(
            "length(purpose_text) > 0", name=op.f("ck_part2_consent_purpose_text_not_empty")
        ),
        sa.CheckConstraint(
            "length(recipient_name) > 0", name=op.f("ck_part2_consent_recipient_name_not_empty")
        ),
        sa.CheckConstraint(
            "length(right_to_revoke) > 0", name=op.f("ck_part2_consent_right_to_revoke_not_empty")
        ),
        sa.CheckConstraint(
            "paper_scan_reference IS NULL OR length(paper_scan_reference) > 0",
            name=op.f("ck_part2_consent_paper_scan_reference_not_empty"),
        ),
        sa.CheckConstraint(
            "redisclosure_statement IS NULL OR length(redisclosure_statement) > 0",
            name=op.f("ck_part2_consent_redisclosure_statement_not_empty"),
        ),
        sa.CheckConstraint(
            "revocation_method IS NULL OR length(revocation_method) > 0",
            name=op.f("ck_part2_consent_revocation_method_not_empty"),
        ),
        sa.CheckConstraint(
            "revoked_on IS NULL OR revoked_on >= signed_on",
            name=op.f("ck_part2_consent_revoked_after_signature"),
        ),
        sa.ForeignKeyConstraint(
            ["based_on_id"],
            ["part2_consent.id"],
            name=op.f("fk_part2_consent_based_on_id_part2_consent"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_part2_consent_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_part2_consent_program_id_program")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["app_user.id"],
            name=op.f("fk_part2_consent_recorded_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["aftercare_resource.id"],
            name=op.f("fk_part2_consent_resource_id_aftercare_resource"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"], ["app_user.id"], name=op.f("fk_part2_consent_revoked_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["support_person_id"],
            ["support_person.id"],
            name=op.f("fk_part2_consent_support_person_id_support_person"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_part2_consent")),
    )
    op.create_index("ix_part2_consent_expires_on", "part2_consent", ["expires_on"], unique=False)
    op.create_index(
        "ix_part2_consent_patient", "part2_consent", ["patient_id", "signed_on"], unique=False
    )
    op.create_index("ix_part2_consent_resource", "part2_consent", ["resource_id"], unique=False)
    op.create_index(
        "ix_part2_consent_support_person", "part2_consent", ["support_person_id"], unique=False
    )
    op.create_table(
        "disclosure_restriction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "aftercare_referral",
                "care_coordination",
                "tpo",
                "other",
                name="restriction_purpose",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("support_person_id", sa.Integer(), nullable=True),
        sa.Column(
            "recipient_class",
            sa.Enum(
                "residences",
                "support_groups",
                "outpatient_care",
                "peer_support",
                "aftercare_directory",
                "support_network",
                name="restriction_recipient_class",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("details", sa.String(length=2000), nullable=False),
        sa.Column("requested_on", sa.Date(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lifted_on", sa.Date(), nullable=True),
        sa.Column("lift_reason", sa.String(length=2000), nullable=True),
        sa.Column("lifted_by_id", sa.Integer(), nullable=True),
        sa.Column("lifted_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(CASE WHEN resource_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN support_person_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN recipient_class IS NULL THEN 0 ELSE 1 END) <= 1",
            name=op.f("ck_disclosure_restriction_at_most_one_recipient"),
        ),
        sa.CheckConstraint(
            "(lifted_on IS NULL) = (lift_reason IS NULL) AND (lifted_on IS NULL) = (lifted_by_id IS NULL) AND (lifted_on IS NULL) = (lifted_at IS NULL)",
            name=op.f("ck_disclosure_restriction_lift_complete"),
        ),
        sa.CheckConstraint(
            "length(details) > 0", name=op.f("ck_disclosure_restriction_details_not_empty")
        ),
        sa.CheckConstraint(
            "lift_reason IS NULL OR length(lift_reason) > 0",
            name=op.f("ck_disclosure_restriction_lift_reason_not_empty"),
        ),
        sa.CheckConstraint(
            "lifted_on IS NULL OR lifted_on >= requested_on",
            name=op.f("ck_disclosure_restriction_lifted_after_request"),
        ),
        sa.ForeignKeyConstraint(
            ["lifted_by_id"],
            ["app_user.id"],
            name=op.f("fk_disclosure_restriction_lifted_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_disclosure_restriction_patient_id_patient"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["app_user.id"],
            name=op.f("fk_disclosure_restriction_recorded_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["aftercare_resource.id"],
            name=op.f("fk_disclosure_restriction_resource_id_aftercare_resource"),
        ),
        sa.ForeignKeyConstraint(
            ["support_person_id"],
            ["support_person.id"],
            name=op.f("fk_disclosure_restriction_support_person_id_support_person"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosure_restriction")),
    )
    op.create_index(
        "ix_disclosure_restriction_patient",
        "disclosure_restriction",
        ["patient_id", "lifted_on"],
        unique=False,
    )

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index("ix_disclosure_restriction_patient", table_name="disclosure_restriction")
    op.drop_table("disclosure_restriction")
    op.drop_index("ix_part2_consent_support_person", table_name="part2_consent")
    op.drop_index("ix_part2_consent_resource", table_name="part2_consent")
    op.drop_index("ix_part2_consent_patient", table_name="part2_consent")
    op.drop_index("ix_part2_consent_expires_on", table_name="part2_consent")
    op.drop_table("part2_consent")
    op.drop_index("ix_support_person_patient", table_name="support_person")
    op.drop_table("support_person")

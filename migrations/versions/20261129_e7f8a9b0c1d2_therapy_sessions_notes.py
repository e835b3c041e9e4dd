"""therapy sessions, attendance, progress notes and addenda

Revision ID: e7f8a9b0c1d2
Revises: d6e7f8a9b0c1
Create Date: 2026-11-29 11:30:00

Issue 11 (first increment): therapy sessions and their attendees, progress notes (draft →
signed), addenda, SUD counseling notes; ``app_user.is_trainee`` / ``supervisor_id``
(co-signature) and ``program.note_late_hours`` (late entries, default 72).

Triggers on both engines (the dose ledger's pattern): a signed progress note's frozen
columns (``clinic.therapy.models.SIGNED_FROZEN_COLUMNS``) never change, and its
co-signature and entered-in-error mark are written once (``progress_note_signed_immutable``);
minutes attended never exceed the session's duration, whichever is written last
(``session_attendee_minutes_within_duration``);
progress notes are never deleted (``progress_note_no_delete``); addenda and counseling
notes are append-only (``note_addendum_append_only``, ``counseling_note_append_only``).
The refusal names the rule (SQLite: the RAISE message; PostgreSQL: a check_violation with
that CONSTRAINT), so it arrives as an IntegrityError on both engines.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "e7f8a9b0c1d2"
down_revision = "d6e7f8a9b0c1"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
FROZEN_COLUMNS = (
    "session_id",
    "attendee_id",
    "author_id",
    "status",
    "text",
    "text_sha256",
    "signed_by_id",
    "signed_at",
    "late",
    "cosign_required",
    "cosigner_id",
    "created_at",
)
WRITE_ONCE_COLUMNS = (
    "cosigned_at",
    "entered_in_error_at",
    "entered_in_error_reason",
    "entered_in_error_by_id",
)
SIGNED_RULE = "progress_note_signed_immutable"
NO_DELETE_RULE = "progress_note_no_delete"
APPEND_ONLY_TABLES = ("note_addendum", "counseling_note")


def _changed(columns, distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)


def _write_once(distinct: str) -> str:
    return " OR ".join(
        f"(OLD.{c} IS NOT NULL AND OLD.{c} {distinct} NEW.{c})" for c in WRITE_ONCE_COLUMNS
    )


PG_SIGNED_FUNCTION = (
    "BEGIN\n"
    "  IF TG_OP = 'DELETE' THEN\n"
    f"    RAISE EXCEPTION '{NO_DELETE_RULE}: % refused', TG_OP\n"
    f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{NO_DELETE_RULE}';\n"
    "  END IF;\n"
    f"  IF (OLD.status = 'signed' AND ({_changed(FROZEN_COLUMNS, 'IS DISTINCT FROM')}))"
    f" OR {_write_once('IS DISTINCT FROM')} THEN\n"
    f"    RAISE EXCEPTION '{SIGNED_RULE}: % refused', TG_OP\n"
    f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{SIGNED_RULE}';\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)
SQLITE_SIGNED_TRIGGERS = [
    (
        "progress_note_no_signed_update",
        "BEFORE UPDATE ON progress_note",
        f"(OLD.status = 'signed' AND ({_changed(FROZEN_COLUMNS, 'IS NOT')})) OR {_write_once('IS NOT')}",
        SIGNED_RULE,
    ),
    ("progress_note_no_delete", "BEFORE DELETE ON progress_note", "1", NO_DELETE_RULE),
]


# Minutes attended lie within the session's duration, whichever of the two is written last.
MINUTES_RULE = "session_attendee_minutes_within_duration"
_MINUTES_OVER = (
    "NEW.minutes_attended > (SELECT s.duration_minutes FROM therapy_session s "
    "WHERE s.id = NEW.session_id)"
)
_DURATION_UNDER = (
    "EXISTS (SELECT 1 FROM session_attendee a WHERE a.session_id = NEW.id "
    "AND a.minutes_attended > NEW.duration_minutes)"
)
SQLITE_MINUTES_TRIGGERS = [
    ("session_attendee_minutes_insert", "BEFORE INSERT ON session_attendee", _MINUTES_OVER),
    (
        "session_attendee_minutes_update",
        "BEFORE UPDATE OF minutes_attended, session_id ON session_attendee",
        _MINUTES_OVER,
    ),
    (
        "therapy_session_duration_covers_minutes",
        "BEFORE UPDATE OF duration_minutes ON therapy_session",
        _DURATION_UNDER,
    ),
]
# PL/pgSQL resolves every NEW.field of an expression: one branch per table.
_PG_RAISE = (
    f"    RAISE EXCEPTION '{MINUTES_RULE}: % refused', TG_OP\n"
    f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{MINUTES_RULE}';\n"
)
PG_MINUTES_FUNCTION = (
    "BEGIN\n"
    "  IF TG_TABLE_NAME = 'session_attendee' THEN\n"
    f"    IF {_MINUTES_OVER} THEN\n{_PG_RAISE}    END IF;\n"
    "  ELSE\n"
    f"    IF {_DURATION_UNDER} THEN\n{_PG_RAISE}    END IF;\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)


def _append_only_function(table: str) -> str:
    rule = f"{table}_append_only"
    return (
        "BEGIN\n"
        f"  RAISE EXCEPTION '{table} is append-only: % refused', TG_OP\n"
        f"    USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
        "END"
    )


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {SIGNED_RULE}() RETURNS trigger LANGUAGE plpgsql AS $fn${PG_SIGNED_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {SIGNED_RULE} BEFORE UPDATE OR DELETE ON progress_note "
            f"FOR EACH ROW EXECUTE FUNCTION {SIGNED_RULE}()"
        )
        op.execute(
            "CREATE TRIGGER progress_note_no_truncate BEFORE TRUNCATE ON progress_note "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {SIGNED_RULE}()"
        )
        op.execute(
            f"CREATE FUNCTION {MINUTES_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_MINUTES_FUNCTION}\n$fn$"
        )
        op.execute(
            "CREATE TRIGGER session_attendee_minutes BEFORE INSERT OR UPDATE OF "
            "minutes_attended, session_id ON session_attendee "
            f"FOR EACH ROW EXECUTE FUNCTION {MINUTES_RULE}()"
        )
        op.execute(
            "CREATE TRIGGER therapy_session_duration_covers_minutes BEFORE UPDATE OF "
            "duration_minutes ON therapy_session "
            f"FOR EACH ROW EXECUTE FUNCTION {MINUTES_RULE}()"
        )
        for table in APPEND_ONLY_TABLES:
            rule = f"{table}_append_only"
            op.execute(
                f"CREATE FUNCTION {rule}() RETURNS trigger LANGUAGE plpgsql AS $fn$"
                + _append_only_function(table)
                + "\n$fn$"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {rule}()"
            )
    else:
        for name, event, condition, rule in SQLITE_SIGNED_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )
        for name, event, condition in SQLITE_MINUTES_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{MINUTES_RULE}'); END"
            )
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table}_append_only'); END"
                )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
        op.execute(
            "DROP TRIGGER IF EXISTS therapy_session_duration_covers_minutes ON therapy_session"
        )
        op.execute("DROP TRIGGER IF EXISTS session_attendee_minutes ON session_attendee")
        op.execute(f"DROP FUNCTION IF EXISTS {MINUTES_RULE}()")
        op.execute("DROP TRIGGER IF EXISTS progress_note_no_truncate ON progress_note")
        op.execute(f"DROP TRIGGER IF EXISTS {SIGNED_RULE} ON progress_note")
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNED_RULE}()")
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")
        for name, *_rest in SQLITE_MINUTES_TRIGGERS + SQLITE_SIGNED_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "therapy_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "individual",
                "group",
                "family",
                name="session_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "modality",
            sa.Enum(
                "cbt",
                "motivational_interviewing",
                "contingency_management",
                "twelve_step_facilitation",
                "community_reinforcement",
                "relapse_prevention",
                "matrix_model",
                "dbt",
                "peer_support",
                name="session_modality",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "setting",
            sa.Enum(
                "in_person",
                "video",
                "audio_only",
                name="session_setting",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("group_name", sa.String(length=120), nullable=True),
        sa.Column("series_key", sa.String(length=32), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "recorded",
                name="session_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("recorded_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("entered_in_error_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("entered_in_error_reason", sa.String(length=500), nullable=True),
        sa.Column("entered_in_error_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "(status = 'recorded') = (recorded_at IS NOT NULL) AND (recorded_at IS NULL) = (recorded_by_id IS NULL)",
            name=op.f("ck_therapy_session_recorded_complete"),
        ),
        sa.CheckConstraint(
            "group_name IS NULL OR (length(group_name) > 0 AND kind <> 'individual')",
            name=op.f("ck_therapy_session_group_name_for_groups"),
        ),
        sa.CheckConstraint(
            "(entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL) AND (entered_in_error_at IS NULL) = (entered_in_error_by_id IS NULL)",
            name=op.f("ck_therapy_session_entered_in_error_complete"),
        ),
        sa.CheckConstraint(
            "duration_minutes BETWEEN 1 AND 600", name=op.f("ck_therapy_session_duration_range")
        ),
        sa.CheckConstraint(
            "entered_in_error_reason IS NULL OR length(entered_in_error_reason) > 0",
            name=op.f("ck_therapy_session_entered_in_error_reason_not_empty"),
        ),
        sa.CheckConstraint(
            "series_key IS NULL OR length(series_key) = 32",
            name=op.f("ck_therapy_session_series_key_length"),
        ),
        sa.ForeignKeyConstraint(
            ["clinician_id"], ["app_user.id"], name=op.f("fk_therapy_session_clinician_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_therapy_session_created_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["entered_in_error_by_id"],
            ["app_user.id"],
            name=op.f("fk_therapy_session_entered_in_error_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["app_user.id"],
            name=op.f("fk_therapy_session_recorded_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_therapy_session_site_id_site")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_therapy_session")),
    )
    with op.batch_alter_table("therapy_session", schema=None) as batch_op:
        batch_op.create_index("ix_therapy_session_series_key", ["series_key"], unique=False)
        batch_op.create_index(
            "ix_therapy_session_site_start", ["site_id", "starts_at"], unique=False
        )
        batch_op.create_index(
            "ix_therapy_session_status_start", ["clinician_id", "status", "starts_at"], unique=False
        )
        batch_op.create_index(
            "uq_therapy_session_live_clinician_start",
            ["clinician_id", "starts_at"],
            unique=True,
            sqlite_where=sa.text("entered_in_error_at IS NULL"),
            postgresql_where=sa.text("entered_in_error_at IS NULL"),
        )

    op.create_table(
        "session_attendee",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "attendance",
            sa.Enum(
                "attended",
                "late",
                "left_early",
                "no_show",
                "cancelled_by_patient",
                "cancelled_by_clinic",
                name="session_attendance",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("minutes_attended", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "attendance NOT IN ('attended', 'late', 'left_early') OR (minutes_attended IS NOT NULL AND minutes_attended > 0)",
            name=op.f("ck_session_attendee_present_has_minutes"),
        ),
        sa.CheckConstraint(
            "attendance NOT IN ('no_show', 'cancelled_by_patient', 'cancelled_by_clinic') OR minutes_attended IS NULL OR minutes_attended = 0",
            name=op.f("ck_session_attendee_absent_no_minutes"),
        ),
        sa.CheckConstraint(
            "attendance IS NOT NULL OR minutes_attended IS NULL",
            name=op.f("ck_session_attendee_minutes_when_recorded"),
        ),
        sa.CheckConstraint(
            "minutes_attended IS NULL OR minutes_attended BETWEEN 0 AND 600",
            name=op.f("ck_session_attendee_minutes_range"),
        ),
        sa.CheckConstraint(
            "position BETWEEN 1 AND 20", name=op.f("ck_session_attendee_position_range")
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollment.id"],
            name=op.f("fk_session_attendee_enrollment_id_enrollment"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_session_attendee_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["therapy_session.id"],
            name=op.f("fk_session_attendee_session_id_therapy_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_attendee")),
        sa.UniqueConstraint(
            "session_id", "patient_id", name="uq_session_attendee_session_id_patient_id"
        ),
        sa.UniqueConstraint(
            "session_id", "position", name="uq_session_attendee_session_id_position"
        ),
    )
    with op.batch_alter_table("session_attendee", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_session_attendee_enrollment_id"), ["enrollment_id"], unique=False
        )
        batch_op.create_index(
            "ix_session_attendee_patient", ["patient_id", "session_id"], unique=False
        )

    op.create_table(
        "counseling_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("attendee_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(text) > 0 AND length(text) <= 200000",
            name=op.f("ck_counseling_note_text_length"),
        ),
        sa.CheckConstraint(
            "length(text_sha256) = 64", name=op.f("ck_counseling_note_sha256_length")
        ),
        sa.ForeignKeyConstraint(
            ["attendee_id"],
            ["session_attendee.id"],
            name=op.f("fk_counseling_note_attendee_id_session_attendee"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_counseling_note_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_counseling_note_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["therapy_session.id"],
            name=op.f("fk_counseling_note_session_id_therapy_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counseling_note")),
    )
    with op.batch_alter_table("counseling_note", schema=None) as batch_op:
        batch_op.create_index(
            "ix_counseling_note_author_patient", ["author_id", "patient_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_counseling_note_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "progress_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("attendee_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "signed",
                name="note_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("signed_by_id", sa.Integer(), nullable=True),
        sa.Column("signed_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("late", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cosign_required", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cosigner_id", sa.Integer(), nullable=True),
        sa.Column("cosigned_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("entered_in_error_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("entered_in_error_reason", sa.String(length=500), nullable=True),
        sa.Column("entered_in_error_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "(cosign_required AND cosigner_id IS NOT NULL AND status = 'signed') OR (NOT cosign_required AND cosigner_id IS NULL)",
            name=op.f("ck_progress_note_cosigner_when_required"),
        ),
        sa.CheckConstraint(
            "(status = 'signed') = (signed_at IS NOT NULL) AND (signed_at IS NULL) = (signed_by_id IS NULL) AND (signed_at IS NULL) = (text_sha256 IS NULL)",
            name=op.f("ck_progress_note_signed_complete"),
        ),
        sa.CheckConstraint(
            "status = 'signed' OR NOT late", name=op.f("ck_progress_note_late_when_signed")
        ),
        sa.CheckConstraint(
            "(entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL) AND (entered_in_error_at IS NULL) = (entered_in_error_by_id IS NULL)",
            name=op.f("ck_progress_note_entered_in_error_complete"),
        ),
        sa.CheckConstraint(
            "cosigned_at IS NULL OR cosign_required",
            name=op.f("ck_progress_note_cosigned_when_required"),
        ),
        sa.CheckConstraint(
            "cosigner_id IS NULL OR cosigner_id <> signed_by_id",
            name=op.f("ck_progress_note_cosigner_not_signer"),
        ),
        sa.CheckConstraint(
            "entered_in_error_reason IS NULL OR length(entered_in_error_reason) > 0",
            name=op.f("ck_progress_note_entered_in_error_reason_not_empty"),
        ),
        sa.CheckConstraint(
            "length(text) > 0 AND length(text) <= 200000", name=op.f("ck_progress_note_text_length")
        ),
        sa.CheckConstraint(
            "text_sha256 IS NULL OR length(text_sha256) = 64",
            name=op.f("ck_progress_note_sha256_length"),
        ),
        sa.ForeignKeyConstraint(
            ["attendee_id"],
            ["session_attendee.id"],
            name=op.f("fk_progress_note_attendee_id_session_attendee"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_progress_note_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["cosigner_id"], ["app_user.id"], name=op.f("fk_progress_note_cosigner_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["entered_in_error_by_id"],
            ["app_user.id"],
            name=op.f("fk_progress_note_entered_in_error_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["therapy_session.id"],
            name=op.f("fk_progress_note_session_id_therapy_session"),
        ),
        sa.ForeignKeyConstraint(
            ["signed_by_id"], ["app_user.id"], name=op.f("fk_progress_note_signed_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_progress_note")),
    )
    with op.batch_alter_table("progress_note", schema=None) as batch_op:
        batch_op.create_index(
            "ix_progress_note_author_status", ["author_id", "status", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_progress_note_cosigner", ["cosigner_id", "cosigned_at"], unique=False
        )
        batch_op.create_index("ix_progress_note_session", ["session_id"], unique=False)
        batch_op.create_index(
            "uq_progress_note_live_attendee",
            ["attendee_id"],
            unique=True,
            sqlite_where=sa.text("attendee_id IS NOT NULL AND entered_in_error_at IS NULL"),
            postgresql_where=sa.text("attendee_id IS NOT NULL AND entered_in_error_at IS NULL"),
        )
        batch_op.create_index(
            "uq_progress_note_live_group",
            ["session_id"],
            unique=True,
            sqlite_where=sa.text("attendee_id IS NULL AND entered_in_error_at IS NULL"),
            postgresql_where=sa.text("attendee_id IS NULL AND entered_in_error_at IS NULL"),
        )

    op.create_table(
        "note_addendum",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("signed_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(text) > 0 AND length(text) <= 200000", name=op.f("ck_note_addendum_text_length")
        ),
        sa.CheckConstraint("length(text_sha256) = 64", name=op.f("ck_note_addendum_sha256_length")),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_note_addendum_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["note_id"], ["progress_note.id"], name=op.f("fk_note_addendum_note_id_progress_note")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_addendum")),
    )
    with op.batch_alter_table("note_addendum", schema=None) as batch_op:
        batch_op.create_index("ix_note_addendum_note", ["note_id", "id"], unique=False)

    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_trainee", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("supervisor_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_app_user_supervisor_id_app_user"), "app_user", ["supervisor_id"], ["id"]
        )
        batch_op.create_check_constraint(
            op.f("ck_app_user_trainee_has_supervisor"),
            "NOT is_trainee OR (role = 'clinician' AND supervisor_id IS NOT NULL)",
        )
        batch_op.create_check_constraint(
            op.f("ck_app_user_supervisor_for_trainee"), "supervisor_id IS NULL OR is_trainee"
        )
        batch_op.create_check_constraint(
            op.f("ck_app_user_supervisor_not_self"), "supervisor_id IS NULL OR supervisor_id <> id"
        )

    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("note_late_hours", sa.Integer(), server_default="72", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_program_note_late_hours_range"), "note_late_hours BETWEEN 1 AND 720"
        )

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_program_note_late_hours_range"), type_="check")
        batch_op.drop_column("note_late_hours")

    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_app_user_supervisor_not_self"), type_="check")
        batch_op.drop_constraint(op.f("ck_app_user_supervisor_for_trainee"), type_="check")
        batch_op.drop_constraint(op.f("ck_app_user_trainee_has_supervisor"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_app_user_supervisor_id_app_user"), type_="foreignkey"
        )
        batch_op.drop_column("supervisor_id")
        batch_op.drop_column("is_trainee")

    with op.batch_alter_table("note_addendum", schema=None) as batch_op:
        batch_op.drop_index("ix_note_addendum_note")

    op.drop_table("note_addendum")
    with op.batch_alter_table("progress_note", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_progress_note_live_group",
            sqlite_where=sa.text("attendee_id IS NULL AND entered_in_error_at IS NULL"),
            postgresql_where=sa.text("attendee_id IS NULL AND entered_in_error_at IS NULL"),
        )
        batch_op.drop_index(
            "uq_progress_note_live_attendee",
            sqlite_where=sa.text("attendee_id IS NOT NULL AND entered_in_error_at IS NULL"),
            postgresql_where=sa.text("attendee_id IS NOT NULL AND entered_in_error_at IS NULL"),
        )
        batch_op.drop_index("ix_progress_note_session")
        batch_op.drop_index("ix_progress_note_cosigner")
        batch_op.drop_index("ix_progress_note_author_status")

    op.drop_table("progress_note")
    with op.batch_alter_table("counseling_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_counseling_note_session_id"))
        batch_op.drop_index("ix_counseling_note_author_patient")

    op.drop_table("counseling_note")
    with op.batch_alter_table("session_attendee", schema=None) as batch_op:
        batch_op.drop_index("ix_session_attendee_patient")
        batch_op.drop_index(batch_op.f("ix_session_attendee_enrollment_id"))

    op.drop_table("session_attendee")
    with op.batch_alter_table("therapy_session", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_therapy_session_live_clinician_start",
            sqlite_where=sa.text("entered_in_error_at IS NULL"),
            postgresql_where=sa.text("entered_in_error_at IS NULL"),
        )
        batch_op.drop_index("ix_therapy_session_status_start")
        batch_op.drop_index("ix_therapy_session_site_start")
        batch_op.drop_index("ix_therapy_session_series_key")

    op.drop_table("therapy_session")

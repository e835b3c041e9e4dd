"""therapy sessions: entered in error written once, never deleted

Revision ID: e8f9a0b1c2d3
Revises: e7f8a9b0c1d2
Create Date: 2026-11-29 14:00:00

Issue 11: a whole session is marked entered in error (``sessions.mark_session_entered_in_error``),
never deleted. Triggers on both engines (the therapy_sessions_notes migration's pattern) back it:

- ``therapy_session_in_error_once``: a session's entered-in-error mark (time, reason, who)
  is written once: never changed, never cleared;
- ``therapy_session_no_delete`` / ``session_attendee_no_delete``: sessions and their
  attendee rows are never deleted (nor truncated on PostgreSQL);
- ``session_attendee_identity_fixed``: an attendee row's session, patient, enrollment and
  position never change (else a signed note about patient A would move to B's chart);
- ``therapy_session_signed_context_fixed``: once a session has a signed note, its site,
  clinician, start, duration and kind (what the note attests, and what makes it late)
  never change;
- a signed progress note is never renumbered (``progress_note_signed_immutable``, the rule
  of the therapy_sessions_notes migration, now also on ``id``).

The refusal names the rule (SQLite: the RAISE message; PostgreSQL: a check_violation with
that CONSTRAINT), so it arrives as an IntegrityError on both engines. The columns
themselves (and their CHECKs) came with the therapy_sessions_notes migration.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e8f9a0b1c2d3"
down_revision = "e7f8a9b0c1d2"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
WRITE_ONCE_COLUMNS = (
    "entered_in_error_at",
    "entered_in_error_reason",
    "entered_in_error_by_id",
)
IN_ERROR_RULE = "therapy_session_in_error_once"
NO_DELETE_TABLES = ("therapy_session", "session_attendee")
ATTENDEE_RULE = "session_attendee_identity_fixed"
ATTENDEE_IDENTITY = ("session_id", "patient_id", "enrollment_id", "position")
CONTEXT_RULE = "therapy_session_signed_context_fixed"
SIGNED_CONTEXT = ("site_id", "clinician_id", "starts_at", "duration_minutes", "kind")
SIGNED_NOTE_RULE = "progress_note_signed_immutable"
HAS_SIGNED_NOTE = (
    "EXISTS (SELECT 1 FROM progress_note n WHERE n.session_id = OLD.id AND n.status = 'signed')"
)


def _changed(columns: tuple[str, ...], distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)


def _write_once(distinct: str) -> str:
    return " OR ".join(
        f"(OLD.{c} IS NOT NULL AND OLD.{c} {distinct} NEW.{c})" for c in WRITE_ONCE_COLUMNS
    )


def _raise(rule: str) -> str:
    return (
        f"    RAISE EXCEPTION '{rule}: % refused', TG_OP\n"
        f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
    )


PG_IN_ERROR_FUNCTION = (
    "BEGIN\n"
    f"  IF {_write_once('IS DISTINCT FROM')} THEN\n{_raise(IN_ERROR_RULE)}"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)


def _pg_no_delete_function(table: str) -> str:
    return f"BEGIN\n{_raise(f'{table}_no_delete')}END"


def _pg_refuse_when(condition: str, rule: str) -> str:
    return f"BEGIN\n  IF {condition} THEN\n{_raise(rule)}  END IF;\n  RETURN NEW;\nEND"


# (trigger, table, PostgreSQL condition, SQLite condition, rule)
GUARDS = (
    (
        ATTENDEE_RULE,
        "session_attendee",
        _changed(ATTENDEE_IDENTITY, "IS DISTINCT FROM"),
        _changed(ATTENDEE_IDENTITY, "IS NOT"),
        ATTENDEE_RULE,
    ),
    (
        CONTEXT_RULE,
        "therapy_session",
        f"({_changed(SIGNED_CONTEXT, 'IS DISTINCT FROM')}) AND {HAS_SIGNED_NOTE}",
        f"({_changed(SIGNED_CONTEXT, 'IS NOT')}) AND {HAS_SIGNED_NOTE}",
        CONTEXT_RULE,
    ),
    (
        "progress_note_id_fixed",
        "progress_note",
        "OLD.status = 'signed' AND OLD.id <> NEW.id",
        "OLD.status = 'signed' AND OLD.id <> NEW.id",
        SIGNED_NOTE_RULE,
    ),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {IN_ERROR_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_IN_ERROR_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {IN_ERROR_RULE} BEFORE UPDATE ON therapy_session "
            f"FOR EACH ROW EXECUTE FUNCTION {IN_ERROR_RULE}()"
        )
        for table in NO_DELETE_TABLES:
            rule = f"{table}_no_delete"
            op.execute(
                f"CREATE FUNCTION {rule}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$fn${_pg_no_delete_function(table)}\n$fn$"
            )
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {rule}()"
            )
        for name, table, condition, _sqlite, rule in GUARDS:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$fn${_pg_refuse_when(condition, rule)}\n$fn$"
            )
            op.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
    else:
        op.execute(
            f"CREATE TRIGGER {IN_ERROR_RULE} BEFORE UPDATE ON therapy_session "
            f"FOR EACH ROW WHEN {_write_once('IS NOT')} "
            f"BEGIN SELECT RAISE(ABORT, '{IN_ERROR_RULE}'); END"
        )
        for table in NO_DELETE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table}_no_delete'); END"
            )
        for name, table, _pg, condition, rule in GUARDS:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} "
                f"FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table, *_rest in GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        for table in NO_DELETE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_no_delete()")
        op.execute(f"DROP TRIGGER IF EXISTS {IN_ERROR_RULE} ON therapy_session")
        op.execute(f"DROP FUNCTION IF EXISTS {IN_ERROR_RULE}()")
    else:
        for name, *_rest in GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for table in NO_DELETE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        op.execute(f"DROP TRIGGER IF EXISTS {IN_ERROR_RULE}")

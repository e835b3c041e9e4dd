"""take-home bottles: dispensings, returns and incidents append-only, call-back outcome written once

Revision ID: b8c9d0e1f2a3
Revises: a7b8c9d0e1f2
Create Date: 2026-11-29 17:20:00

Issue 13 (take-home bottles; DOMAIN.md "Take-home bottles", 21 CFR 1304.24). Triggers on
both engines (the refusal names the rule, so it arrives as an IntegrityError on both):

- ``take_home_dispensing_append_only``, ``bottle_return_append_only``,
  ``diversion_incident_append_only``: no UPDATE, DELETE (and on PostgreSQL TRUNCATE) — a
  dispensing is part of the dose ledger's record, a return check and an incident are
  clinical findings;
- ``call_back_no_delete``: a call-back is never deleted (nor truncated);
- ``call_back_fixed``: its patient, site, call time and day, due time, caller and the
  bottles expected never change;
- ``call_back_outcome_once``: its outcome (with the count, note, who, when and incident)
  is written once: a call-back whose outcome is recorded changes no more;
- ``call_back_count_matches``: an outcome's count fits it — none for a no-show, never
  above the bottles expected, all of them for a complete count, fewer for a short one;
- ``uq_call_back_open_patient``: one call-back awaiting its outcome per patient.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b8c9d0e1f2a3"
down_revision = "a7b8c9d0e1f2"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("take_home_dispensing", "bottle_return", "diversion_incident")
NO_DELETE_RULE = "call_back_no_delete"
FIXED_RULE = "call_back_fixed"
ONCE_RULE = "call_back_outcome_once"
COUNT_RULE = "call_back_count_matches"
_COUNT_WRONG = (
    "OLD.outcome IS NULL AND NEW.outcome IS NOT NULL"
    " AND ((NEW.outcome = 'no_show') <> (NEW.bottles_counted IS NULL)"
    " OR NEW.bottles_counted > NEW.bottles_expected"
    " OR (NEW.outcome = 'complete' AND NEW.bottles_counted <> NEW.bottles_expected)"
    " OR (NEW.outcome = 'short' AND NEW.bottles_counted >= NEW.bottles_expected))"
)
_FIXED_CHANGED = (
    "OLD.patient_id <> NEW.patient_id OR OLD.site_id <> NEW.site_id"
    " OR OLD.called_at <> NEW.called_at OR OLD.called_on <> NEW.called_on"
    " OR OLD.due_by <> NEW.due_by OR OLD.called_by_id <> NEW.called_by_id"
    " OR OLD.bottles_expected <> NEW.bottles_expected"
)

PG_CALL_BACK_FUNCTION = f"""
BEGIN
  IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION '{NO_DELETE_RULE}: a call-back is never deleted (% refused)', TG_OP
      USING ERRCODE = 'check_violation', CONSTRAINT = '{NO_DELETE_RULE}';
  END IF;
  IF OLD.outcome IS NOT NULL THEN
    RAISE EXCEPTION '{ONCE_RULE}: a call-back''s outcome is written once'
      USING ERRCODE = 'check_violation', CONSTRAINT = '{ONCE_RULE}';
  END IF;
  IF {_FIXED_CHANGED} THEN
    RAISE EXCEPTION '{FIXED_RULE}: its patient, time and bottles expected never change'
      USING ERRCODE = 'check_violation', CONSTRAINT = '{FIXED_RULE}';
  END IF;
  IF {_COUNT_WRONG} THEN
    RAISE EXCEPTION '{COUNT_RULE}: the count does not fit the outcome'
      USING ERRCODE = 'check_violation', CONSTRAINT = '{COUNT_RULE}';
  END IF;
  RETURN NEW;
END"""

SQLITE_CALL_BACK_TRIGGERS = (
    ("call_back_no_delete", "BEFORE DELETE ON call_back", "1", NO_DELETE_RULE),
    ("call_back_outcome_once", "BEFORE UPDATE ON call_back", "OLD.outcome IS NOT NULL", ONCE_RULE),
    ("call_back_fixed", "BEFORE UPDATE ON call_back", _FIXED_CHANGED, FIXED_RULE),
    ("call_back_count_matches", "BEFORE UPDATE ON call_back", _COUNT_WRONG, COUNT_RULE),
)


def _append_only_function(table: str) -> str:
    return (
        "BEGIN\n"
        f"  RAISE EXCEPTION '{table} is append-only: % refused', TG_OP\n"
        f"    USING ERRCODE = 'check_violation', CONSTRAINT = '{table}_append_only';\n"
        "END"
    )


def upgrade() -> None:
    op.create_index(
        "uq_call_back_open_patient",
        "call_back",
        ["patient_id"],
        unique=True,
        sqlite_where=sa.text("outcome IS NULL"),
        postgresql_where=sa.text("outcome IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
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
        op.execute(
            "CREATE FUNCTION call_back_rules() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_CALL_BACK_FUNCTION}\n$fn$"
        )
        op.execute(
            "CREATE TRIGGER call_back_rules BEFORE UPDATE OR DELETE ON call_back "
            "FOR EACH ROW EXECUTE FUNCTION call_back_rules()"
        )
        op.execute(
            "CREATE TRIGGER call_back_no_truncate BEFORE TRUNCATE ON call_back "
            "FOR EACH STATEMENT EXECUTE FUNCTION call_back_rules()"
        )
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table}_append_only'); END"
                )
        for name, event, condition, rule in SQLITE_CALL_BACK_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS call_back_no_truncate ON call_back")
        op.execute("DROP TRIGGER IF EXISTS call_back_rules ON call_back")
        op.execute("DROP FUNCTION IF EXISTS call_back_rules()")
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    else:
        for name, *_rest in SQLITE_CALL_BACK_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")
    op.drop_index("uq_call_back_open_patient", table_name="call_back")

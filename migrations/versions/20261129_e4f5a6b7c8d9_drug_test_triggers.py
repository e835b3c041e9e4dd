"""drug tests: results append-only, the error mark written once

Revision ID: e4f5a6b7c8d9
Revises: d3e4f5a6b7c8
Create Date: 2026-11-29 17:20:00

Issue 13 (drug tests, ``clinic.medications.drug_tests``). Triggers on both engines (the
therapy sessions' pattern, migration e8f9a0b1c2d3):

- ``drug_test_result_append_only``: a result is never changed nor deleted (nor truncated on
  PostgreSQL): a definitive result follows a presumptive one as a new row;
- ``drug_test_no_delete``: a test is never deleted (nor truncated): it is marked entered in
  error;
- ``drug_test_clinical_fixed``: a test's clinical columns (who, when, what was collected,
  the validity checks, the random selection, who recorded it) never change;
- ``drug_test_in_error_once``: the entered-in-error mark (time, reason, who) is written
  once: never changed, never cleared;
- ``drug_test_result_order``: no result for a test entered in error, no presumptive result
  after a definitive one, and an "other" substance's result is recorded once per method
  whatever its letter case ("Kratom", "kratom");
- ``drug_test_selection_once``: a random selection answers one test (not entered in
  error): it would otherwise count twice towards the 8 a year.

The refusal names the rule (SQLite: the RAISE message; PostgreSQL: a check_violation with
that CONSTRAINT), so it arrives as an IntegrityError on both engines.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e4f5a6b7c8d9"
down_revision = "d3e4f5a6b7c8"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
RESULT_RULE = "drug_test_result_append_only"
NO_DELETE_RULE = "drug_test_no_delete"
CLINICAL_RULE = "drug_test_clinical_fixed"
IN_ERROR_RULE = "drug_test_in_error_once"
CLINICAL_COLUMNS = (
    "id",
    "patient_id",
    "site_id",
    "collected_at",
    "collected_on",
    "specimen",
    "observed",
    "reason",
    "collected_by_id",
    "temperature_in_range",
    "adulteration_suspected",
    "selection_id",
    "recorded_by_id",
    "recorded_at",
)
WRITE_ONCE_COLUMNS = ("entered_in_error_at", "entered_in_error_reason", "entered_in_error_by_id")


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


def _pg_refuse(rule: str) -> str:
    return f"BEGIN\n{_raise(rule)}END"


def _pg_refuse_when(condition: str, rule: str) -> str:
    return f"BEGIN\n  IF {condition} THEN\n{_raise(rule)}  END IF;\n  RETURN NEW;\nEND"


# (trigger, PostgreSQL condition, SQLite condition) of the UPDATE guards on drug_test
UPDATE_GUARDS = (
    (
        CLINICAL_RULE,
        _changed(CLINICAL_COLUMNS, "IS DISTINCT FROM"),
        _changed(CLINICAL_COLUMNS, "IS NOT"),
    ),
    (IN_ERROR_RULE, _write_once("IS DISTINCT FROM"), _write_once("IS NOT")),
)
# (function, table, events) that always refuse
ALWAYS_REFUSED = (
    (RESULT_RULE, "drug_test_result", ("UPDATE", "DELETE")),
    (NO_DELETE_RULE, "drug_test", ("DELETE",)),
)


ORDER_RULE = "drug_test_result_order"
SELECTION_RULE = "drug_test_selection_once"
# (rule, table, condition on NEW) of the INSERT guards; the same SQL on both engines
INSERT_GUARDS = (
    (
        ORDER_RULE,
        "drug_test_result",
        "EXISTS (SELECT 1 FROM drug_test t WHERE t.id = NEW.test_id"
        " AND t.entered_in_error_at IS NOT NULL)"
        " OR EXISTS (SELECT 1 FROM drug_test_result r WHERE r.test_id = NEW.test_id"
        " AND r.analyte = NEW.analyte AND lower(r.other_name) = lower(NEW.other_name)"
        # the same spelling twice is uq_drug_test_result_test_analyte_method's
        " AND ((r.method = NEW.method AND r.other_name <> NEW.other_name)"
        " OR (NEW.method = 'presumptive' AND r.method = 'definitive')))",
    ),
    (
        SELECTION_RULE,
        "drug_test",
        "NEW.selection_id IS NOT NULL AND NEW.entered_in_error_at IS NULL"
        " AND EXISTS (SELECT 1 FROM drug_test t WHERE t.selection_id = NEW.selection_id"
        " AND t.entered_in_error_at IS NULL)",
    ),
)


def _function(name: str, body: str) -> str:
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${body}\n$fn$"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for rule, table, events in ALWAYS_REFUSED:
            op.execute(_function(rule, _pg_refuse(rule)))
            for event in events:
                op.execute(
                    f"CREATE TRIGGER {rule}_{event.lower()} BEFORE {event} ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
                )
            op.execute(
                f"CREATE TRIGGER {rule}_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {rule}()"
            )
        for rule, condition, _sqlite in UPDATE_GUARDS:
            op.execute(_function(rule, _pg_refuse_when(condition, rule)))
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE UPDATE ON drug_test "
                f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
            )
        for rule, table, condition in INSERT_GUARDS:
            op.execute(_function(rule, _pg_refuse_when(condition, rule)))
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {rule}()"
            )
    else:
        for rule, table, events in ALWAYS_REFUSED:
            for event in events:
                op.execute(
                    f"CREATE TRIGGER {rule}_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
                )
        for rule, _pg, condition in UPDATE_GUARDS:
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE UPDATE ON drug_test "
                f"FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )
        for rule, table, condition in INSERT_GUARDS:
            op.execute(
                f"CREATE TRIGGER {rule} BEFORE INSERT ON {table} "
                f"FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for rule, table, _condition in INSERT_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {rule} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {rule}()")
        for rule, _pg, _sqlite in UPDATE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {rule} ON drug_test")
            op.execute(f"DROP FUNCTION IF EXISTS {rule}()")
        for rule, table, events in ALWAYS_REFUSED:
            op.execute(f"DROP TRIGGER IF EXISTS {rule}_truncate ON {table}")
            for event in events:
                op.execute(f"DROP TRIGGER IF EXISTS {rule}_{event.lower()} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {rule}()")
    else:
        for rule, _table, _condition in INSERT_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {rule}")
        for rule, _pg, _sqlite in UPDATE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {rule}")
        for rule, _table, events in ALWAYS_REFUSED:
            for event in events:
                op.execute(f"DROP TRIGGER IF EXISTS {rule}_{event.lower()}")

"""take-home decisions: signed elements fixed, approval and ending written once

Revision ID: a7b8c9d0e1f2
Revises: f5a6b7c8d9e0
Create Date: 2026-11-29 17:20:00

Triggers on both engines (the refusal names the rule, so it arrives as an IntegrityError on
both: PostgreSQL raises ``check_violation`` with the rule as its constraint name, SQLite
``RAISE(ABORT, '<rule>')``):

- ``take_home_decision_fixed``: a decision's recorded elements (patient, order, schedule,
  days, the cap that applied, the six criteria and their notes, safe-storage education,
  who recorded it and when) never change;
- ``take_home_decision_approval_once``: an approval or a decline, once written, never
  changes (nor is cleared);
- ``take_home_decision_end_once``: an ending, once written, never changes;
- ``take_home_decision_criteria_met``: a decision is approved only with all six criteria
  met (42 CFR 8.12(i)(2));
- ``take_home_decision_end_approved``: only an approved decision is ended;
- ``take_home_decision_no_delete``: decisions are never deleted (nor truncated);
- ``take_home_review_append_only``: reviews are never changed or deleted.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "a7b8c9d0e1f2"
down_revision = "f5a6b7c8d9e0"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
CRITERIA = ("substance_use", "attendance", "behaviour", "diversion", "storage", "other")
RECORDED_COLUMNS = (
    "patient_id",
    "site_id",
    "enrollment_id",
    "order_id",
    "medication",
    "schedule_kind",
    "start_on",
    "end_on",
    "days",
    "weekdays",
    "treatment_day",
    "cap_days",
    "counted_days",
    *(f"{name}_{part}" for name in CRITERIA for part in ("met", "note")),
    "storage_education_on",
    "recorded_by_id",
    "recorded_at",
)
APPROVAL_COLUMNS = ("approved_by_id", "approved_at")
DECLINE_COLUMNS = ("declined_by_id", "declined_at", "declined_reason")
END_COLUMNS = ("ended_on", "ended_by_id", "ended_at", "end_reason")

FIXED_RULE = "take_home_decision_fixed"
APPROVAL_RULE = "take_home_decision_approval_once"
END_RULE = "take_home_decision_end_once"
CRITERIA_RULE = "take_home_decision_criteria_met"
END_APPROVED_RULE = "take_home_decision_end_approved"
NO_DELETE_RULE = "take_home_decision_no_delete"
REVIEW_RULE = "take_home_review_append_only"


def _changed(columns, distinct: str) -> str:
    return " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)


def _conditions(distinct: str) -> dict[str, str]:
    """The refusal condition of each rule (``distinct``: the engine's null-safe "differs")."""
    return {
        FIXED_RULE: _changed(RECORDED_COLUMNS, distinct),
        APPROVAL_RULE: (
            f"(OLD.approved_at IS NOT NULL AND ({_changed(APPROVAL_COLUMNS, distinct)}))"
            f" OR (OLD.declined_at IS NOT NULL AND ({_changed(DECLINE_COLUMNS, distinct)}))"
        ),
        END_RULE: f"OLD.ended_at IS NOT NULL AND ({_changed(END_COLUMNS, distinct)})",
        CRITERIA_RULE: (
            "NEW.approved_at IS NOT NULL AND NOT ("
            + " AND ".join(f"NEW.{name}_met" for name in CRITERIA)
            + ")"
        ),
        END_APPROVED_RULE: "NEW.ended_at IS NOT NULL AND NEW.approved_at IS NULL",
    }


def _raise(rule: str) -> str:
    return (
        f"    RAISE EXCEPTION '{rule}: % refused', TG_OP\n"
        f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
    )


def _pg_decision_function() -> str:
    rules = _conditions("IS DISTINCT FROM")
    body = "BEGIN\n  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN\n" + _raise(NO_DELETE_RULE)
    body += "  END IF;\n  IF TG_OP = 'UPDATE' THEN\n"
    for rule in (FIXED_RULE, APPROVAL_RULE, END_RULE):
        body += f"    IF {rules[rule]} THEN\n  {_raise(rule)}    END IF;\n"
    body += "  END IF;\n"
    for rule in (CRITERIA_RULE, END_APPROVED_RULE):
        body += f"  IF {rules[rule]} THEN\n{_raise(rule)}  END IF;\n"
    return body + "  RETURN NEW;\nEND"


PG_REVIEW_FUNCTION = (
    "BEGIN\n"
    "  RAISE EXCEPTION 'take_home_review is append-only: % refused', TG_OP\n"
    f"    USING ERRCODE = 'check_violation', CONSTRAINT = '{REVIEW_RULE}';\n"
    "END"
)


def _sqlite_triggers() -> list[tuple[str, str, str, str]]:
    rules = _conditions("IS NOT")
    columns = ", ".join
    return [
        (
            FIXED_RULE,
            f"BEFORE UPDATE OF {columns(RECORDED_COLUMNS)} ON take_home_decision",
            rules[FIXED_RULE],
            FIXED_RULE,
        ),
        (
            APPROVAL_RULE,
            f"BEFORE UPDATE OF {columns(APPROVAL_COLUMNS + DECLINE_COLUMNS)} ON take_home_decision",
            rules[APPROVAL_RULE],
            APPROVAL_RULE,
        ),
        (
            END_RULE,
            f"BEFORE UPDATE OF {columns(END_COLUMNS)} ON take_home_decision",
            rules[END_RULE],
            END_RULE,
        ),
        (
            f"{CRITERIA_RULE}_insert",
            "BEFORE INSERT ON take_home_decision",
            rules[CRITERIA_RULE],
            CRITERIA_RULE,
        ),
        (
            f"{CRITERIA_RULE}_update",
            "BEFORE UPDATE ON take_home_decision",
            rules[CRITERIA_RULE],
            CRITERIA_RULE,
        ),
        (
            f"{END_APPROVED_RULE}_insert",
            "BEFORE INSERT ON take_home_decision",
            rules[END_APPROVED_RULE],
            END_APPROVED_RULE,
        ),
        (
            f"{END_APPROVED_RULE}_update",
            "BEFORE UPDATE ON take_home_decision",
            rules[END_APPROVED_RULE],
            END_APPROVED_RULE,
        ),
        (NO_DELETE_RULE, "BEFORE DELETE ON take_home_decision", "1", NO_DELETE_RULE),
        ("take_home_review_no_update", "BEFORE UPDATE ON take_home_review", "1", REVIEW_RULE),
        ("take_home_review_no_delete", "BEFORE DELETE ON take_home_review", "1", REVIEW_RULE),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {FIXED_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${_pg_decision_function()}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {FIXED_RULE} BEFORE INSERT OR UPDATE OR DELETE "
            f"ON take_home_decision FOR EACH ROW EXECUTE FUNCTION {FIXED_RULE}()"
        )
        op.execute(
            "CREATE TRIGGER take_home_decision_no_truncate BEFORE TRUNCATE ON take_home_decision "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FIXED_RULE}()"
        )
        op.execute(
            f"CREATE FUNCTION {REVIEW_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_REVIEW_FUNCTION}\n$fn$"
        )
        op.execute(
            "CREATE TRIGGER take_home_review_no_update_delete BEFORE UPDATE OR DELETE "
            f"ON take_home_review FOR EACH ROW EXECUTE FUNCTION {REVIEW_RULE}()"
        )
        op.execute(
            "CREATE TRIGGER take_home_review_no_truncate BEFORE TRUNCATE ON take_home_review "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {REVIEW_RULE}()"
        )
    else:
        for name, event, condition, rule in _sqlite_triggers():
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS take_home_review_no_truncate ON take_home_review")
        op.execute("DROP TRIGGER IF EXISTS take_home_review_no_update_delete ON take_home_review")
        op.execute(f"DROP FUNCTION IF EXISTS {REVIEW_RULE}()")
        op.execute("DROP TRIGGER IF EXISTS take_home_decision_no_truncate ON take_home_decision")
        op.execute(f"DROP TRIGGER IF EXISTS {FIXED_RULE} ON take_home_decision")
        op.execute(f"DROP FUNCTION IF EXISTS {FIXED_RULE}()")
    else:
        for name, *_rest in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")

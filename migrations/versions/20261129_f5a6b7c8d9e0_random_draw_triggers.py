"""random drug-test draws: append-only

The day's draw (``random_test_draw``) and its selections (``random_test_selection``) are
the record that the draw was made on its day, with its seed, and fair: never updated,
deleted or truncated (42 CFR 8.12(f)(6); clinic.medications.drug_test_draw).

Revision ID: f5a6b7c8d9e0
Revises: e4f5a6b7c8d9
Create Date: 2026-11-29 17:20:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "f5a6b7c8d9e0"
down_revision = "e4f5a6b7c8d9"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("random_test_draw", "random_test_selection")


def _append_only_function(table: str) -> str:
    return (
        "BEGIN\n"
        f"  RAISE EXCEPTION '{table} is append-only: % refused', TG_OP\n"
        f"    USING ERRCODE = 'check_violation', CONSTRAINT = '{table}_append_only';\n"
        "END"
    )


def upgrade() -> None:
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
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table}_append_only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")

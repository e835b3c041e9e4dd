"""counseling-note readers a site allows

Revision ID: f8a9b0c1d2e3
Revises: e8f9a0b1c2d3
Create Date: 2026-11-29 14:00:00

Issue 11: the clinicians a site allows to read the SUD counseling notes written there
(``counseling_note_reader``). A grant is never deleted: it is revoked once, with who and
when. One live grant per site and clinician (partial unique index
``uq_counseling_note_reader_live``). A trigger on both engines
(``counseling_note_reader_grant_immutable``) refuses DELETE, any change to a grant's site,
clinician, grantor or time, and any change to a revocation once written (the therapy
migration's pattern: the refusal names the rule, an IntegrityError on both engines).
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "f8a9b0c1d2e3"
down_revision = "e8f9a0b1c2d3"
branch_labels = None
depends_on = None

TABLE = "counseling_note_reader"
RULE = "counseling_note_reader_grant_immutable"
LIVE = "revoked_at IS NULL"
# Kept here, not imported: a migration describes the schema of its day.
FROZEN_COLUMNS = ("id", "site_id", "user_id", "granted_by_id", "granted_at")
WRITE_ONCE_COLUMNS = ("revoked_at", "revoked_by_id")


def _refused(distinct: str) -> str:
    frozen = " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in FROZEN_COLUMNS)
    once = " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in WRITE_ONCE_COLUMNS)
    return f"({frozen}) OR (OLD.revoked_at IS NOT NULL AND ({once}))"


_PG_RAISE = (
    f"    RAISE EXCEPTION '{RULE}: % refused', TG_OP\n"
    f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{RULE}';\n"
)
# DELETE and TRUNCATE first: a statement trigger has no OLD row to compare.
PG_FUNCTION = (
    "BEGIN\n"
    f"  IF TG_OP <> 'UPDATE' THEN\n{_PG_RAISE}  END IF;\n"
    f"  IF {_refused('IS DISTINCT FROM')} THEN\n{_PG_RAISE}  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)
SQLITE_TRIGGERS = [
    (f"{TABLE}_no_update", f"BEFORE UPDATE ON {TABLE}", _refused("IS NOT")),
    (f"{TABLE}_no_delete", f"BEFORE DELETE ON {TABLE}", "1"),
]


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("granted_by_id", sa.Integer(), nullable=False),
        sa.Column("granted_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", clinic.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(revoked_at IS NULL) = (revoked_by_id IS NULL)",
            name=op.f("ck_counseling_note_reader_revoked_complete"),
        ),
        sa.CheckConstraint(
            "revoked_at IS NULL OR revoked_at >= granted_at",
            name=op.f("ck_counseling_note_reader_revoked_after"),
        ),
        sa.ForeignKeyConstraint(
            ["granted_by_id"],
            ["app_user.id"],
            name=op.f("fk_counseling_note_reader_granted_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["app_user.id"],
            name=op.f("fk_counseling_note_reader_revoked_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_counseling_note_reader_site_id_site")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_counseling_note_reader_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counseling_note_reader")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            "uq_counseling_note_reader_live",
            ["site_id", "user_id"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
        batch_op.create_index(
            "ix_counseling_note_reader_user", ["user_id", "site_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {RULE}() RETURNS trigger LANGUAGE plpgsql AS $fn${PG_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {RULE} BEFORE UPDATE OR DELETE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {RULE}()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {RULE}()"
        )
    else:
        for name, event, condition in SQLITE_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{RULE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {RULE} ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {RULE}()")
    else:
        for name, *_rest in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index("ix_counseling_note_reader_user")
        batch_op.drop_index(
            "uq_counseling_note_reader_live",
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
    op.drop_table(TABLE)

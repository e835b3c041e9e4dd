"""aftercare referrals, their status history and the disclosures they make

Revision ID: c2d3e4f5a6b7
Revises: b1c2d3e4f5a6
Create Date: 2026-11-29 14:00:00

Issue 12 (referrals and disclosures): ``referral`` (a resource or a support person, exactly
one), ``referral_event`` (each status change; a CHECK allows the DOMAIN's transitions only)
and ``part2_disclosure`` (the accounting of disclosures, 42 CFR 2.25).

Triggers on both engines (the therapy notes' pattern; the refusal names the rule, so it
arrives as an IntegrityError on both):
- ``referral_status_transition``: a referral is created as a draft, and its status changes
  along an allowed (from, to) pair only;
- ``referral_sent_needs_disclosure``: a draft becomes "sent" only with its disclosure on
  record (sending is a disclosure, never a bare status change);
- ``referral_status_event``: a referral's status is its latest event's: a status changes
  only after the event of that very move is written (a (from, to) pair happens at most once
  in a referral's life, the path having no cycle), and an event starts from the referral's
  status at the time (the creation event, from nothing, comes first and once);
- ``referral_no_delete``: referrals are never deleted (closed instead);
- ``referral_event_append_only``, ``part2_disclosure_append_only``: no UPDATE, DELETE (and on
  PostgreSQL TRUNCATE).
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "c2d3e4f5a6b7"
down_revision = "b1c2d3e4f5a6"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
STATUSES = ("draft", "sent", "accepted", "declined", "waitlisted", "placed", "closed")
PURPOSES = ("aftercare_referral", "care_coordination", "tpo", "other")
ALLOWED_PAIRS = (
    ("draft", "sent"),
    ("draft", "closed"),
    ("sent", "accepted"),
    ("sent", "declined"),
    ("sent", "waitlisted"),
    ("sent", "closed"),
    ("accepted", "placed"),
    ("accepted", "closed"),
    ("declined", "closed"),
    ("waitlisted", "accepted"),
    ("waitlisted", "declined"),
    ("waitlisted", "placed"),
    ("waitlisted", "closed"),
)
TRANSITION_RULE = "referral_status_transition"
SENT_RULE = "referral_sent_needs_disclosure"
NO_DELETE_RULE = "referral_no_delete"
EVENT_RULE = "referral_status_event"
APPEND_ONLY_TABLES = ("referral_event", "part2_disclosure")


def _pairs(old: str, new: str) -> str:
    return " OR ".join(f"({old} = '{a}' AND {new} = '{b}')" for a, b in ALLOWED_PAIRS)


def _enum(values, name: str, length: int) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


_BAD_MOVE = f"OLD.status <> NEW.status AND NOT ({_pairs('OLD.status', 'NEW.status')})"
_NO_EVENT = (
    "OLD.status <> NEW.status AND NOT EXISTS (SELECT 1 FROM referral_event e "
    "WHERE e.referral_id = NEW.id AND e.from_status = OLD.status AND e.to_status = NEW.status)"
)
_EVENT_OUT_OF_STEP = (
    "(NEW.from_status IS NULL AND EXISTS (SELECT 1 FROM referral_event e "
    "WHERE e.referral_id = NEW.referral_id)) OR (NEW.from_status IS NOT NULL AND "
    "NEW.from_status <> (SELECT r.status FROM referral r WHERE r.id = NEW.referral_id))"
)
_SENT_BARE = (
    "OLD.status = 'draft' AND NEW.status = 'sent' AND NOT EXISTS "
    "(SELECT 1 FROM part2_disclosure d WHERE d.referral_id = NEW.id)"
)


def _raise(rule: str) -> str:
    return (
        f"    RAISE EXCEPTION '{rule}: % refused', TG_OP\n"
        f"      USING ERRCODE = 'check_violation', CONSTRAINT = '{rule}';\n"
    )


PG_REFERRAL_FUNCTION = (
    "BEGIN\n"
    "  IF TG_OP = 'DELETE' THEN\n"
    f"{_raise(NO_DELETE_RULE)}"
    "  END IF;\n"
    "  IF TG_OP = 'INSERT' THEN\n"
    "    IF NEW.status <> 'draft' THEN\n"
    f"  {_raise(TRANSITION_RULE)}"
    "    END IF;\n"
    "    RETURN NEW;\n"
    "  END IF;\n"
    f"  IF {_BAD_MOVE} THEN\n"
    f"{_raise(TRANSITION_RULE)}"
    "  END IF;\n"
    f"  IF {_SENT_BARE} THEN\n"
    f"{_raise(SENT_RULE)}"
    "  END IF;\n"
    f"  IF {_NO_EVENT} THEN\n"
    f"{_raise(EVENT_RULE)}"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END"
)
SQLITE_REFERRAL_TRIGGERS = [
    (
        "referral_created_draft",
        "BEFORE INSERT ON referral",
        "NEW.status <> 'draft'",
        TRANSITION_RULE,
    ),
    ("referral_status_move", "BEFORE UPDATE OF status ON referral", _BAD_MOVE, TRANSITION_RULE),
    ("referral_sent_disclosed", "BEFORE UPDATE OF status ON referral", _SENT_BARE, SENT_RULE),
    ("referral_status_evented", "BEFORE UPDATE OF status ON referral", _NO_EVENT, EVENT_RULE),
    ("referral_no_delete", "BEFORE DELETE ON referral", "1", NO_DELETE_RULE),
    (
        "referral_event_in_step",
        "BEFORE INSERT ON referral_event",
        _EVENT_OUT_OF_STEP,
        EVENT_RULE,
    ),
]
PG_EVENT_FUNCTION = (
    f"BEGIN\n  IF {_EVENT_OUT_OF_STEP} THEN\n{_raise(EVENT_RULE)}  END IF;\n  RETURN NEW;\nEND"
)


def _append_only_function(table: str) -> str:
    return (
        "BEGIN\n"
        f"  RAISE EXCEPTION '{table} is append-only: % refused', TG_OP\n"
        f"    USING ERRCODE = 'check_violation', CONSTRAINT = '{table}_append_only';\n"
        "END"
    )


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {TRANSITION_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_REFERRAL_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {TRANSITION_RULE} BEFORE INSERT OR UPDATE OR DELETE ON referral "
            f"FOR EACH ROW EXECUTE FUNCTION {TRANSITION_RULE}()"
        )
        op.execute(
            "CREATE TRIGGER referral_no_truncate BEFORE TRUNCATE ON referral "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {TRANSITION_RULE}()"
        )
        op.execute(
            f"CREATE FUNCTION {EVENT_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_EVENT_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER referral_event_in_step BEFORE INSERT ON referral_event "
            f"FOR EACH ROW EXECUTE FUNCTION {EVENT_RULE}()"
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
        for name, event, condition, rule in SQLITE_REFERRAL_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{rule}'); END"
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
        op.execute("DROP TRIGGER IF EXISTS referral_event_in_step ON referral_event")
        op.execute(f"DROP FUNCTION IF EXISTS {EVENT_RULE}()")
        op.execute("DROP TRIGGER IF EXISTS referral_no_truncate ON referral")
        op.execute(f"DROP TRIGGER IF EXISTS {TRANSITION_RULE} ON referral")
        op.execute(f"DROP FUNCTION IF EXISTS {TRANSITION_RULE}()")
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")
        for name, *_rest in SQLITE_REFERRAL_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("support_person_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("purpose", _enum(PURPOSES, "referral_purpose", 32), nullable=False),
        sa.Column("status", _enum(STATUSES, "referral_status", 16), nullable=False),
        sa.Column("follow_up_on", sa.Date(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "(resource_id IS NULL) <> (support_person_id IS NULL)",
            name=op.f("ck_referral_one_recipient"),
        ),
        sa.CheckConstraint(
            "length(reason) > 0 AND length(reason) <= 1000",
            name=op.f("ck_referral_reason_length"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_referral_created_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_referral_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["aftercare_resource.id"],
            name=op.f("fk_referral_resource_id_aftercare_resource"),
        ),
        sa.ForeignKeyConstraint(
            ["support_person_id"],
            ["support_person.id"],
            name=op.f("fk_referral_support_person_id_support_person"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
    )
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index("ix_referral_patient", ["patient_id", "id"], unique=False)
        batch_op.create_index(
            "ix_referral_status_follow_up", ["status", "follow_up_on"], unique=False
        )
        batch_op.create_index("ix_referral_resource_id", ["resource_id"], unique=False)
        batch_op.create_index("ix_referral_support_person_id", ["support_person_id"], unique=False)

    op.create_table(
        "referral_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("from_status", _enum(STATUSES, "referral_event_from", 16), nullable=True),
        sa.Column("to_status", _enum(STATUSES, "referral_event_to", 16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.CheckConstraint(
            "(from_status IS NULL AND to_status = 'draft') OR "
            + _pairs("from_status", "to_status"),
            name=op.f("ck_referral_event_allowed_transition"),
        ),
        sa.CheckConstraint(
            "note IS NULL OR (length(note) > 0 AND length(note) <= 1000)",
            name=op.f("ck_referral_event_note_length"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["app_user.id"], name=op.f("fk_referral_event_actor_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_referral_event_referral_id_referral")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_event")),
    )
    with op.batch_alter_table("referral_event", schema=None) as batch_op:
        batch_op.create_index("ix_referral_event_referral", ["referral_id", "id"], unique=False)

    op.create_table(
        "part2_disclosure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=True),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("support_person_id", sa.Integer(), nullable=True),
        sa.Column("recipient_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("purpose", _enum(PURPOSES, "disclosure_purpose", 32), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("disclosed_by_id", sa.Integer(), nullable=False),
        sa.Column("disclosed_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disclosed_on", sa.Date(), nullable=False),
        sa.CheckConstraint(
            "(resource_id IS NULL) <> (support_person_id IS NULL)",
            name=op.f("ck_part2_disclosure_one_recipient"),
        ),
        sa.CheckConstraint(
            "length(recipient_name) > 0 AND length(recipient_name) <= 200",
            name=op.f("ck_part2_disclosure_recipient_name_length"),
        ),
        sa.CheckConstraint(
            "length(description) > 0 AND length(description) <= 2000",
            name=op.f("ck_part2_disclosure_description_length"),
        ),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["part2_consent.id"],
            name=op.f("fk_part2_disclosure_consent_id_part2_consent"),
        ),
        sa.ForeignKeyConstraint(
            ["disclosed_by_id"],
            ["app_user.id"],
            name=op.f("fk_part2_disclosure_disclosed_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_part2_disclosure_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referral.id"],
            name=op.f("fk_part2_disclosure_referral_id_referral"),
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["aftercare_resource.id"],
            name=op.f("fk_part2_disclosure_resource_id_aftercare_resource"),
        ),
        sa.ForeignKeyConstraint(
            ["support_person_id"],
            ["support_person.id"],
            name=op.f("fk_part2_disclosure_support_person_id_support_person"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_part2_disclosure")),
    )
    with op.batch_alter_table("part2_disclosure", schema=None) as batch_op:
        batch_op.create_index("uq_part2_disclosure_referral", ["referral_id"], unique=True)
        batch_op.create_index(
            "ix_part2_disclosure_patient_on", ["patient_id", "disclosed_on"], unique=False
        )
        batch_op.create_index("ix_part2_disclosure_consent_id", ["consent_id"], unique=False)

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("part2_disclosure", schema=None) as batch_op:
        batch_op.drop_index("ix_part2_disclosure_consent_id")
        batch_op.drop_index("ix_part2_disclosure_patient_on")
        batch_op.drop_index("uq_part2_disclosure_referral")
    op.drop_table("part2_disclosure")
    with op.batch_alter_table("referral_event", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_event_referral")
    op.drop_table("referral_event")
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_support_person_id")
        batch_op.drop_index("ix_referral_resource_id")
        batch_op.drop_index("ix_referral_status_follow_up")
        batch_op.drop_index("ix_referral_patient")
    op.drop_table("referral")

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
- ``referral_recipient_fixed``: a referral's patient, recipient and purpose never change (a
  different recipient is a new referral, with its own consent check);
- ``part2_disclosure_consented``: a disclosure is stored only under a consent of the same
  patient that covers it on its day (42 CFR 2.31): the purpose; not a counseling-notes
  consent, nor a TPO consent for a support person (no provider or payer, §2.33(b)); signed
  on or before the day, not revoked, not expired (by date or by the end of treatment);
  naming the recipient by id or by a class that includes it; with no restriction in force
  forbidding it (§2.26); and only with its referral's patient, recipient and purpose, to an
  active resource or a support person of the patient's network who is not archived;
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
FIXED_RULE = "referral_recipient_fixed"
CONSENTED_RULE = "part2_disclosure_consented"
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
_RECIPIENT_CHANGED = (
    "OLD.patient_id <> NEW.patient_id"
    " OR COALESCE(OLD.resource_id, 0) <> COALESCE(NEW.resource_id, 0)"
    " OR COALESCE(OLD.support_person_id, 0) <> COALESCE(NEW.support_person_id, 0)"
    " OR OLD.purpose <> NEW.purpose"
)
# The classes of recipients and the resource kinds each includes (consent_models.RecipientClass
# of this day), for a consent naming a class.
_CLASS_KINDS = {
    "residences": ("halfway_house", "recovery_residence"),
    "support_groups": ("support_group",),
    "outpatient_care": ("outpatient_care",),
    "peer_support": ("peer_support",),
    "aftercare_directory": (
        "halfway_house",
        "recovery_residence",
        "support_group",
        "outpatient_care",
        "peer_support",
    ),
}


def _class_includes_kind(alias: str) -> str:
    """SQL: the recipient class of ``alias`` (a consent or a restriction) includes the
    kind of the resource ``a``."""
    return " OR ".join(
        f"({alias}.recipient_class = '{cls}' AND a.kind IN ({', '.join(repr(k) for k in kinds)}))"
        for cls, kinds in _CLASS_KINDS.items()
    )


# consent_rules._treatment_ended: discharged on a day D (signed_on <= D <= the disclosure's
# day) with no enrollment of the patient open at the end of D; or none open at the end of
# the signature day.
_TREATMENT_ENDED = (
    "(EXISTS (SELECT 1 FROM enrollment e WHERE e.patient_id = c.patient_id"
    " AND e.discharged_on IS NOT NULL AND e.discharged_on >= c.signed_on"
    " AND e.discharged_on <= NEW.disclosed_on AND NOT EXISTS (SELECT 1 FROM enrollment o"
    " WHERE o.patient_id = e.patient_id AND o.admitted_on <= e.discharged_on"
    " AND (o.discharged_on IS NULL OR o.discharged_on > e.discharged_on)))"
    " OR NOT EXISTS (SELECT 1 FROM enrollment s WHERE s.patient_id = c.patient_id"
    " AND s.admitted_on <= c.signed_on"
    " AND (s.discharged_on IS NULL OR s.discharged_on > c.signed_on)))"
)
_COVERING_CONSENT = (
    "EXISTS (SELECT 1 FROM part2_consent c WHERE c.id = NEW.consent_id"  # noqa: S608 (constants)
    " AND c.patient_id = NEW.patient_id AND c.purpose = NEW.purpose"
    " AND c.kind <> 'counseling_notes' AND c.signed_on <= NEW.disclosed_on"
    " AND NOT (c.kind = 'tpo' AND NEW.support_person_id IS NOT NULL)"
    " AND (c.revoked_on IS NULL OR c.revoked_on > NEW.disclosed_on)"
    " AND (c.expires_on IS NULL OR c.expires_on >= NEW.disclosed_on)"
    f" AND NOT (c.expiry_kind = 'event' AND {_TREATMENT_ENDED})"
    " AND (c.resource_id = NEW.resource_id OR c.support_person_id = NEW.support_person_id"
    " OR (c.recipient_class = 'support_network' AND NEW.support_person_id IS NOT NULL)"
    " OR EXISTS (SELECT 1 FROM aftercare_resource a WHERE a.id = NEW.resource_id"
    f" AND ({_class_includes_kind('c')}))))"
)
# consent_rules._forbids: a restriction in force on the day, for this purpose or any, to
# anyone, to this recipient, or to a class that includes it (§2.26).
_RESTRICTED = (
    "EXISTS (SELECT 1 FROM disclosure_restriction x"  # noqa: S608 (constants)
    " WHERE x.patient_id = NEW.patient_id AND x.requested_on <= NEW.disclosed_on"
    " AND (x.lifted_on IS NULL OR x.lifted_on > NEW.disclosed_on)"
    " AND (x.purpose IS NULL OR x.purpose = NEW.purpose)"
    " AND ((x.resource_id IS NULL AND x.support_person_id IS NULL"
    " AND x.recipient_class IS NULL)"
    " OR x.resource_id = NEW.resource_id OR x.support_person_id = NEW.support_person_id"
    " OR (x.recipient_class = 'support_network' AND NEW.support_person_id IS NOT NULL)"
    " OR EXISTS (SELECT 1 FROM aftercare_resource a WHERE a.id = NEW.resource_id"
    f" AND ({_class_includes_kind('x')}))))"
)
_UNCONSENTED = (
    f"NOT {_COVERING_CONSENT} OR {_RESTRICTED}"  # noqa: S608 (constants)
    " OR (NEW.referral_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM referral r"
    " WHERE r.id = NEW.referral_id AND r.patient_id = NEW.patient_id"
    " AND COALESCE(r.resource_id, 0) = COALESCE(NEW.resource_id, 0)"
    " AND COALESCE(r.support_person_id, 0) = COALESCE(NEW.support_person_id, 0)"
    " AND r.purpose = NEW.purpose))"
    " OR (NEW.resource_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM aftercare_resource a"
    " WHERE a.id = NEW.resource_id AND a.active))"
    " OR (NEW.support_person_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM support_person p"
    " WHERE p.id = NEW.support_person_id AND p.patient_id = NEW.patient_id"
    " AND p.archived_at IS NULL))"
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
    "  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN\n"
    f"{_raise(NO_DELETE_RULE)}"
    "  END IF;\n"
    "  IF TG_OP = 'INSERT' THEN\n"
    "    IF NEW.status <> 'draft' THEN\n"
    f"  {_raise(TRANSITION_RULE)}"
    "    END IF;\n"
    "    RETURN NEW;\n"
    "  END IF;\n"
    f"  IF {_RECIPIENT_CHANGED} THEN\n"
    f"{_raise(FIXED_RULE)}"
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
        FIXED_RULE,
        "BEFORE UPDATE OF patient_id, resource_id, support_person_id, purpose ON referral",
        _RECIPIENT_CHANGED,
        FIXED_RULE,
    ),
    (CONSENTED_RULE, "BEFORE INSERT ON part2_disclosure", _UNCONSENTED, CONSENTED_RULE),
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
PG_CONSENTED_FUNCTION = (
    f"BEGIN\n  IF {_UNCONSENTED} THEN\n{_raise(CONSENTED_RULE)}  END IF;\n  RETURN NEW;\nEND"
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
        op.execute(
            f"CREATE FUNCTION {CONSENTED_RULE}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fn${PG_CONSENTED_FUNCTION}\n$fn$"
        )
        op.execute(
            f"CREATE TRIGGER {CONSENTED_RULE} BEFORE INSERT ON part2_disclosure "
            f"FOR EACH ROW EXECUTE FUNCTION {CONSENTED_RULE}()"
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
        op.execute(f"DROP TRIGGER IF EXISTS {CONSENTED_RULE} ON part2_disclosure")
        op.execute(f"DROP FUNCTION IF EXISTS {CONSENTED_RULE}()")
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

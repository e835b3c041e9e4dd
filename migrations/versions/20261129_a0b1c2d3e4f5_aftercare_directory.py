"""aftercare resource directory

Revision ID: a0b1c2d3e4f5
Revises: f8a9b0c1d2e3
Create Date: 2026-11-29 14:00:00

Issue 12 (resource directory): ``aftercare_resource``, the halfway houses, recovery
residences, support groups, outpatient programs and peer recovery services staff refer
patients to (``clinic.aftercare.models``). Every single-row rule is a CHECK: a NARR level
for recovery residences only, a support-group type exactly for support groups, meeting
times for groups only, beds for residences only (0 <= available <= total, the date they
were confirmed exactly when available beds are recorded), "accepts methadone: yes" never
beside "accepts MOUD: no", a USPS state code, a 5- or 9-digit ZIP code.
"""

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "a0b1c2d3e4f5"
down_revision = "f8a9b0c1d2e3"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration describes the schema of its day.
RESIDENCES_SQL = "'halfway_house', 'recovery_residence'"
BEDS_MAX = 1000


def _enum(name: str, length: int, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


def upgrade() -> None:
    op.create_table(
        "aftercare_resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column(
            "kind",
            _enum(
                "resource_kind",
                24,
                "halfway_house",
                "recovery_residence",
                "support_group",
                "outpatient_care",
                "peer_support",
            ),
            nullable=False,
        ),
        sa.Column("narr_level", _enum("narr_level", 4, "I", "II", "III", "IV"), nullable=True),
        sa.Column(
            "support_group_type",
            _enum(
                "support_group_type",
                24,
                "na",
                "aa",
                "smart_recovery",
                "medication_assisted",
                "recovery_dharma",
                "lifering",
                "family_group",
            ),
            nullable=True,
        ),
        sa.Column("street", sa.String(length=120), nullable=True),
        sa.Column("city", sa.String(length=80), nullable=True),
        sa.Column("state", sa.String(length=2), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("contact_name", sa.String(length=120), nullable=True),
        sa.Column(
            "accepts_moud",
            _enum("accepts_moud", 8, "yes", "no", "unknown"),
            server_default="unknown",
            nullable=False,
        ),
        sa.Column(
            "accepts_methadone",
            _enum("accepts_methadone", 8, "yes", "no", "unknown"),
            server_default="unknown",
            nullable=False,
        ),
        sa.Column("beds_total", sa.Integer(), nullable=True),
        sa.Column("beds_available", sa.Integer(), nullable=True),
        sa.Column("beds_confirmed_on", sa.Date(), nullable=True),
        sa.Column("meeting_times", sa.String(length=500), nullable=True),
        sa.Column(
            "gender_served",
            _enum("gender_served", 8, "all", "women", "men"),
            server_default="all",
            nullable=False,
        ),
        sa.Column("notes", sa.String(length=2000), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("created_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", clinic.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "length(trim(name)) > 0", name=op.f("ck_aftercare_resource_name_not_empty")
        ),
        sa.CheckConstraint(
            "narr_level IS NULL OR kind = 'recovery_residence'",
            name=op.f("ck_aftercare_resource_narr_level_residences"),
        ),
        sa.CheckConstraint(
            "(kind = 'support_group') = (support_group_type IS NOT NULL)",
            name=op.f("ck_aftercare_resource_support_group_type_groups"),
        ),
        sa.CheckConstraint(
            "meeting_times IS NULL OR kind = 'support_group'",
            name=op.f("ck_aftercare_resource_meeting_times_groups"),
        ),
        sa.CheckConstraint(
            "NOT (accepts_methadone = 'yes' AND accepts_moud = 'no')",
            name=op.f("ck_aftercare_resource_methadone_is_moud"),
        ),
        sa.CheckConstraint(
            "(beds_total IS NULL AND beds_available IS NULL AND beds_confirmed_on IS NULL)"
            f" OR kind IN ({RESIDENCES_SQL})",
            name=op.f("ck_aftercare_resource_beds_residences"),
        ),
        sa.CheckConstraint(
            f"beds_total IS NULL OR beds_total BETWEEN 0 AND {BEDS_MAX}",
            name=op.f("ck_aftercare_resource_beds_total_range"),
        ),
        sa.CheckConstraint(
            "beds_available IS NULL"
            " OR (beds_total IS NOT NULL AND beds_available BETWEEN 0 AND beds_total)",
            name=op.f("ck_aftercare_resource_beds_available_range"),
        ),
        sa.CheckConstraint(
            "(beds_available IS NULL) = (beds_confirmed_on IS NULL)",
            name=op.f("ck_aftercare_resource_beds_confirmed"),
        ),
        sa.CheckConstraint(
            "state IS NULL OR (length(state) = 2 AND state = upper(state))",
            name=op.f("ck_aftercare_resource_state_code"),
        ),
        sa.CheckConstraint(
            "postal_code IS NULL OR length(postal_code) IN (5, 10)",
            name=op.f("ck_aftercare_resource_postal_code_length"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_aftercare_resource_version_positive")),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_aftercare_resource_site_id_site")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_aftercare_resource_created_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["app_user.id"],
            name=op.f("fk_aftercare_resource_updated_by_id_app_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftercare_resource")),
    )
    with op.batch_alter_table("aftercare_resource", schema=None) as batch_op:
        batch_op.create_index("ix_aftercare_resource_active_kind", ["active", "kind"], unique=False)
        batch_op.create_index("ix_aftercare_resource_city", ["city"], unique=False)
        batch_op.create_index("ix_aftercare_resource_site_id", ["site_id"], unique=False)
        batch_op.create_index(
            "ix_aftercare_resource_accepts_moud",
            ["accepts_moud", "accepts_methadone"],
            unique=False,
        )
        batch_op.create_index(
            "ix_aftercare_resource_beds_available", ["beds_available"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("aftercare_resource", schema=None) as batch_op:
        batch_op.drop_index("ix_aftercare_resource_beds_available")
        batch_op.drop_index("ix_aftercare_resource_accepts_moud")
        batch_op.drop_index("ix_aftercare_resource_site_id")
        batch_op.drop_index("ix_aftercare_resource_city")
        batch_op.drop_index("ix_aftercare_resource_active_kind")
    op.drop_table("aftercare_resource")

"""The aftercare resource directory (issue 12; DOMAIN.md "Aftercare referrals").

A resource is a place or group staff refer patients to: a halfway house, a sober-living
home (recovery residence, with its NARR level I-IV), a support group (with its type), a
continuing outpatient program or a peer recovery support service. Whether it accepts
residents or members on MOUD, and on methadone specifically, is recorded because many do
not, and staff need to know before referring.

Resources are network-wide: every site sees them; ``site_id`` is an optional "site area"
(the site nearest to it), used to filter. Resources are never deleted (referrals point at
them): a resource that closed is deactivated. Every single-row rule is a CHECK here; the
service (``clinic.aftercare.directory``) checks the same rules first, in the users' words.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.patients.models import str_enum
from clinic.sites.models import Site

NAME_MAX = 120
STREET_MAX = 120
CITY_MAX = 80
CONTACT_MAX = 120
EMAIL_MAX = 254
PHONE_MAX = 32
MEETING_TIMES_MAX = 500
NOTES_MAX = 2000
# A residence with more beds than this is a typing mistake, not a sober-living home.
BEDS_MAX = 1000
# Beds confirmed longer ago than this are shown as stale (issue 12).
BEDS_STALE_AFTER_DAYS = 14


class ResourceKind(StrEnum):
    HALFWAY_HOUSE = "halfway_house"
    RECOVERY_RESIDENCE = "recovery_residence"
    SUPPORT_GROUP = "support_group"
    OUTPATIENT_CARE = "outpatient_care"
    PEER_SUPPORT = "peer_support"

    @property
    def label(self) -> str:
        return {
            "halfway_house": "Halfway house",
            "recovery_residence": "Sober living / recovery residence",
            "support_group": "Support group",
            "outpatient_care": "Continuing outpatient care",
            "peer_support": "Peer recovery support",
        }[self.value]

    @property
    def is_residence(self) -> bool:
        """A place to live: it has beds."""
        return self in RESIDENCES


RESIDENCES = (ResourceKind.HALFWAY_HOUSE, ResourceKind.RECOVERY_RESIDENCE)
RESIDENCES_SQL = ", ".join(repr(k.value) for k in RESIDENCES)


class NarrLevel(StrEnum):
    """National Alliance for Recovery Residences levels of support."""

    I = "I"  # noqa: E741 (the level's name)
    II = "II"
    III = "III"
    IV = "IV"

    @property
    def label(self) -> str:
        return {
            "I": "Level I — peer-run",
            "II": "Level II — monitored",
            "III": "Level III — supervised",
            "IV": "Level IV — service provider",
        }[self.value]


class SupportGroupType(StrEnum):
    NA = "na"
    AA = "aa"
    SMART_RECOVERY = "smart_recovery"
    MEDICATION_ASSISTED = "medication_assisted"
    RECOVERY_DHARMA = "recovery_dharma"
    LIFERING = "lifering"
    FAMILY_GROUP = "family_group"

    @property
    def label(self) -> str:
        return {
            "na": "Narcotics Anonymous (NA)",
            "aa": "Alcoholics Anonymous (AA)",
            "smart_recovery": "SMART Recovery",
            "medication_assisted": "Medication-assisted recovery group",
            "recovery_dharma": "Recovery Dharma",
            "lifering": "LifeRing",
            "family_group": "Family group",
        }[self.value]


class Tristate(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return {"yes": "Yes", "no": "No", "unknown": "Not known"}[self.value]


class GenderServed(StrEnum):
    ALL = "all"
    WOMEN = "women"
    MEN = "men"

    @property
    def label(self) -> str:
        return {"all": "All genders", "women": "Women", "men": "Men"}[self.value]


class AftercareResource(Base):
    __tablename__ = "aftercare_resource"
    __table_args__ = (
        sa.CheckConstraint("length(trim(name)) > 0", name="name_not_empty"),
        sa.CheckConstraint(
            "narr_level IS NULL OR kind = 'recovery_residence'", name="narr_level_residences"
        ),
        sa.CheckConstraint(
            "(kind = 'support_group') = (support_group_type IS NOT NULL)",
            name="support_group_type_groups",
        ),
        sa.CheckConstraint(
            "meeting_times IS NULL OR kind = 'support_group'", name="meeting_times_groups"
        ),
        sa.CheckConstraint(
            "NOT (accepts_methadone = 'yes' AND accepts_moud = 'no')",
            name="methadone_is_moud",
        ),
        sa.CheckConstraint(
            f"(beds_total IS NULL AND beds_available IS NULL AND beds_confirmed_on IS NULL)"
            f" OR kind IN ({RESIDENCES_SQL})",
            name="beds_residences",
        ),
        sa.CheckConstraint(
            f"beds_total IS NULL OR beds_total BETWEEN 0 AND {BEDS_MAX}", name="beds_total_range"
        ),
        sa.CheckConstraint(
            "beds_available IS NULL"
            " OR (beds_total IS NOT NULL AND beds_available BETWEEN 0 AND beds_total)",
            name="beds_available_range",
        ),
        sa.CheckConstraint(
            "(beds_available IS NULL) = (beds_confirmed_on IS NULL)", name="beds_confirmed"
        ),
        sa.CheckConstraint(
            "state IS NULL OR (length(state) = 2 AND state = upper(state))", name="state_code"
        ),
        sa.CheckConstraint(
            "postal_code IS NULL OR length(postal_code) IN (5, 10)", name="postal_code_length"
        ),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.Index("ix_aftercare_resource_active_kind", "active", "kind"),
        sa.Index("ix_aftercare_resource_city", "city"),
        sa.Index("ix_aftercare_resource_site_id", "site_id"),
        sa.Index("ix_aftercare_resource_accepts_moud", "accepts_moud", "accepts_methadone"),
        sa.Index("ix_aftercare_resource_beds_available", "beds_available"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    kind: Mapped[ResourceKind] = mapped_column(str_enum(ResourceKind, "resource_kind", 24))
    narr_level: Mapped[NarrLevel | None] = mapped_column(str_enum(NarrLevel, "narr_level", 4))
    support_group_type: Mapped[SupportGroupType | None] = mapped_column(
        str_enum(SupportGroupType, "support_group_type", 24)
    )
    street: Mapped[str | None] = mapped_column(sa.String(STREET_MAX))
    city: Mapped[str | None] = mapped_column(sa.String(CITY_MAX))
    state: Mapped[str | None] = mapped_column(sa.String(2))
    postal_code: Mapped[str | None] = mapped_column(sa.String(10))
    phone: Mapped[str | None] = mapped_column(sa.String(PHONE_MAX))  # E.164
    email: Mapped[str | None] = mapped_column(sa.String(EMAIL_MAX))
    contact_name: Mapped[str | None] = mapped_column(sa.String(CONTACT_MAX))
    accepts_moud: Mapped[Tristate] = mapped_column(
        str_enum(Tristate, "accepts_moud", 8),
        default=Tristate.UNKNOWN,
        server_default=Tristate.UNKNOWN.value,
    )
    accepts_methadone: Mapped[Tristate] = mapped_column(
        str_enum(Tristate, "accepts_methadone", 8),
        default=Tristate.UNKNOWN,
        server_default=Tristate.UNKNOWN.value,
    )
    beds_total: Mapped[int | None]
    beds_available: Mapped[int | None]
    beds_confirmed_on: Mapped[dt.date | None]
    meeting_times: Mapped[str | None] = mapped_column(sa.String(MEETING_TIMES_MAX))
    gender_served: Mapped[GenderServed] = mapped_column(
        str_enum(GenderServed, "gender_served", 8),
        default=GenderServed.ALL,
        server_default=GenderServed.ALL.value,
    )
    notes: Mapped[str | None] = mapped_column(sa.String(NOTES_MAX))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # The "site area": the site nearest to the resource (optional; every site sees it).
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("site.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    site: Mapped[Site | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    updated_by: Mapped[User | None] = relationship(foreign_keys=[updated_by_id])

    __mapper_args__ = {"version_id_col": version}

    @property
    def is_residence(self) -> bool:
        return ResourceKind(self.kind).is_residence

    @property
    def has_free_bed(self) -> bool:
        return bool(self.beds_available)

"""The aftercare resource directory: adding, changing, deactivating and finding resources
(issue 12, "Resource directory"; DOMAIN.md "Aftercare referrals").

Every change is audited (``clinic.audit.record``; the *names* of changed fields, never
their values). The rules a row must keep are CHECKs on ``aftercare_resource`` as well;
``check_resource`` says them first, next to the field, in the users' words. Addresses,
phone numbers, ZIP codes and states are read as the patients' are
(``clinic.patients.contact``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.aftercare.models import (
    BEDS_MAX,
    BEDS_STALE_AFTER_DAYS,
    CITY_MAX,
    CONTACT_MAX,
    EMAIL_MAX,
    MEETING_TIMES_MAX,
    NAME_MAX,
    NOTES_MAX,
    STREET_MAX,
    AftercareResource,
    GenderServed,
    NarrLevel,
    ResourceKind,
    SupportGroupType,
    Tristate,
)
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import has_control_characters
from clinic.pagination import SortSpec
from clinic.patients.contact import (
    InvalidContact,
    normalise_phone,
    normalise_state,
    normalise_zip,
)
from clinic.sites.models import Site

ENTITY = "aftercare_resource"
EMAIL_MESSAGE = "Enter an email address such as intake@example.org."
METHADONE_NOT_MOUD_MESSAGE = (
    "Methadone is a medication for opioid use disorder: a place that accepts residents on "
    "methadone accepts MOUD. Change one of the two answers."
)
# Which fields each kind of resource has no use for (their CHECKs).
RESIDENCE_ONLY_MESSAGE = "Beds are recorded for halfway houses and recovery residences only."
NARR_ONLY_MESSAGE = "A NARR level is for sober-living homes (recovery residences) only."
GROUP_TYPE_NEEDED_MESSAGE = "Choose the kind of support group."
GROUP_TYPE_ONLY_MESSAGE = "A support-group type is for support groups only."
MEETING_TIMES_ONLY_MESSAGE = "Meeting times are recorded for support groups only."


@dataclass
class ResourceData:
    """A resource's fields as entered (form or CSV row): text as typed, choices as their
    values; ``check_resource`` turns it into what is stored."""

    name: str
    kind: ResourceKind | str
    narr_level: NarrLevel | str | None = None
    support_group_type: SupportGroupType | str | None = None
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    phone: str | None = None
    email: str | None = None
    contact_name: str | None = None
    accepts_moud: Tristate | str = Tristate.UNKNOWN
    accepts_methadone: Tristate | str = Tristate.UNKNOWN
    beds_total: int | None = None
    beds_available: int | None = None
    beds_confirmed_on: dt.date | None = None
    meeting_times: str | None = None
    gender_served: GenderServed | str = GenderServed.ALL
    notes: str | None = None
    site_id: int | None = None

    @classmethod
    def of(cls, resource: AftercareResource) -> ResourceData:
        return cls(**{f.name: getattr(resource, f.name) for f in fields(cls)})


FIELD_NAMES = tuple(f.name for f in fields(ResourceData))
_TEXT_LIMITS = {
    "name": NAME_MAX,
    "street": STREET_MAX,
    "city": CITY_MAX,
    "contact_name": CONTACT_MAX,
    "meeting_times": MEETING_TIMES_MAX,
    "notes": NOTES_MAX,
}
_MULTI_LINE = {"meeting_times", "notes"}


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if name in _MULTI_LINE:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if has_control_characters(text, multi_line=name in _MULTI_LINE):
        raise DomainError(
            "Remove the control or invisible formatting characters (often pasted in by accident).",
            field=name,
        )
    if len(text) > _TEXT_LIMITS[name]:
        raise DomainError(f"Use at most {_TEXT_LIMITS[name]} characters.", field=name)
    return text or None


def _choice(enum: type, value: Any, name: str, message: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return enum(value)
    except ValueError:
        raise DomainError(message, field=name) from None


def _contact(normalise: Any, value: Any, name: str) -> str | None:
    if value is not None and has_control_characters(str(value)):
        raise DomainError(
            "Remove the control or invisible formatting characters (often pasted in by accident).",
            field=name,
        )
    try:
        return normalise(value)
    except InvalidContact as error:
        raise DomainError(error.message, field=name) from None


def _email(value: Any) -> str | None:
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if len(text) > EMAIL_MAX or has_control_characters(text):
        raise DomainError(EMAIL_MESSAGE, field="email")
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise DomainError(EMAIL_MESSAGE, field="email") from None
    return text


def _count(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("Enter a whole number of beds.", field=name)
    if not 0 <= value <= BEDS_MAX:
        raise DomainError(f"Enter a number of beds from 0 to {BEDS_MAX}.", field=name)
    return value


def check_resource(data: ResourceData, *, today: dt.date | None = None) -> ResourceData:
    """The resource as stored, or a DomainError naming the first field that is wrong.

    The rules (each a CHECK on ``aftercare_resource`` too): a name; a NARR level for
    recovery residences only; a support-group type for, and only for, support groups;
    meeting times for groups only; beds for residences only, 0 <= available <= total,
    with the date they were confirmed (not in the future) whenever available beds are
    given; "accepts methadone: yes" means MOUD is accepted too (methadone is MOUD), so
    "unknown" MOUD becomes "yes" and "no" is refused. Phone, ZIP code and state are
    checked and normalised as a patient's are."""
    name = _text(data.name, "name")
    if not name:
        raise DomainError("Enter the resource's name.", field="name")
    kind = _choice(ResourceKind, data.kind, "kind", "Choose the kind of resource.")
    if kind is None:
        raise DomainError("Choose the kind of resource.", field="kind")
    narr = _choice(NarrLevel, data.narr_level, "narr_level", "Choose a NARR level (I to IV).")
    if narr is not None and kind is not ResourceKind.RECOVERY_RESIDENCE:
        raise DomainError(NARR_ONLY_MESSAGE, field="narr_level")
    group = _choice(
        SupportGroupType, data.support_group_type, "support_group_type", GROUP_TYPE_NEEDED_MESSAGE
    )
    if kind is ResourceKind.SUPPORT_GROUP and group is None:
        raise DomainError(GROUP_TYPE_NEEDED_MESSAGE, field="support_group_type")
    if kind is not ResourceKind.SUPPORT_GROUP and group is not None:
        raise DomainError(GROUP_TYPE_ONLY_MESSAGE, field="support_group_type")
    meeting_times = _text(data.meeting_times, "meeting_times")
    if meeting_times and kind is not ResourceKind.SUPPORT_GROUP:
        raise DomainError(MEETING_TIMES_ONLY_MESSAGE, field="meeting_times")
    tristate = "Choose yes, no or not known."
    moud = _choice(Tristate, data.accepts_moud, "accepts_moud", tristate) or Tristate.UNKNOWN
    methadone = (
        _choice(Tristate, data.accepts_methadone, "accepts_methadone", tristate) or Tristate.UNKNOWN
    )
    if methadone is Tristate.YES:
        if moud is Tristate.NO:
            raise DomainError(METHADONE_NOT_MOUD_MESSAGE, field="accepts_methadone")
        moud = Tristate.YES
    total = _count(data.beds_total, "beds_total")
    available = _count(data.beds_available, "beds_available")
    confirmed = data.beds_confirmed_on
    if confirmed is not None and not isinstance(confirmed, dt.date):
        raise DomainError("Enter the date the beds were confirmed.", field="beds_confirmed_on")
    if not kind.is_residence:
        for field, value in (
            ("beds_total", total),
            ("beds_available", available),
            ("beds_confirmed_on", confirmed),
        ):
            if value is not None:
                raise DomainError(RESIDENCE_ONLY_MESSAGE, field=field)
    if available is not None:
        if total is None:
            raise DomainError(
                "Enter the total number of beds too (available beds are out of it).",
                field="beds_total",
            )
        if available > total:
            raise DomainError(
                f"Available beds cannot be more than the total ({total}).",
                field="beds_available",
            )
        if confirmed is None:
            raise DomainError(
                "Enter the date the available beds were confirmed.", field="beds_confirmed_on"
            )
    elif confirmed is not None:
        raise DomainError(
            "Enter the number of available beds that was confirmed that day.",
            field="beds_available",
        )
    if confirmed is not None and today is not None and confirmed > today:
        raise DomainError(
            "The beds cannot be confirmed on a date still to come.", field="beds_confirmed_on"
        )
    if confirmed is not None and confirmed.year < 2000:
        raise DomainError("Enter the date the beds were confirmed.", field="beds_confirmed_on")
    gender = _choice(GenderServed, data.gender_served, "gender_served", "Choose who it serves.")
    site_id = data.site_id or None
    if site_id is not None and db.session.get(Site, site_id) is None:
        raise DomainError("Choose one of the sites, or none.", field="site_id")
    return ResourceData(
        name=name,
        kind=kind,
        narr_level=narr,
        support_group_type=group,
        street=_text(data.street, "street"),
        city=_text(data.city, "city"),
        state=_contact(normalise_state, data.state, "state"),
        postal_code=_contact(normalise_zip, data.postal_code, "postal_code"),
        phone=_contact(normalise_phone, data.phone, "phone"),
        email=_email(data.email),
        contact_name=_text(data.contact_name, "contact_name"),
        accepts_moud=moud,
        accepts_methadone=methadone,
        beds_total=total,
        beds_available=available,
        beds_confirmed_on=confirmed,
        meeting_times=meeting_times,
        gender_served=gender or GenderServed.ALL,
        notes=_text(data.notes, "notes"),
        site_id=site_id,
    )


# --- changes -------------------------------------------------------------------------------


def create_resource(
    *, actor: User, data: ResourceData, today: dt.date | None = None, source: str = "form"
) -> AftercareResource:
    """Add a resource to the directory (staff and administrators: RESOURCES_MANAGE)."""
    checked = check_resource(data, today=today)
    now = utcnow()
    actor_id = getattr(actor, "id", None)
    resource = AftercareResource(
        **vars(checked),
        active=True,
        created_at=now,
        created_by_id=actor_id,
        updated_at=now,
        updated_by_id=actor_id,
    )
    db.session.add(resource)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type=ENTITY,
        entity_id=resource.id,
        site_id=resource.site_id,
        details={"source": source} if source != "form" else None,
    )
    return resource


def _check_version(resource: AftercareResource, expected_version: int | None) -> None:
    """Optimistic locking: saving over someone else's newer change is refused, never
    silently undone (a form sent without its version is refused the same way)."""
    if expected_version is None or resource.version != expected_version:
        raise ConflictError()


def update_resource(
    resource: AftercareResource,
    *,
    actor: User,
    data: ResourceData,
    expected_version: int | None,
    today: dt.date | None = None,
) -> list[str]:
    """Change a resource; returns the names of the fields changed (audited by name)."""
    _check_version(resource, expected_version)
    checked = check_resource(data, today=today)
    changed = [n for n in FIELD_NAMES if getattr(resource, n) != getattr(checked, n)]
    for name in changed:
        setattr(resource, name, getattr(checked, name))
    if changed:
        resource.updated_at = utcnow()
        resource.updated_by_id = getattr(actor, "id", None)
        db.session.flush()
        record(
            AuditAction.UPDATE,
            actor=actor,
            entity_type=ENTITY,
            entity_id=resource.id,
            site_id=resource.site_id,
            details={"fields": changed},
        )
    return changed


def set_active(
    resource: AftercareResource, *, actor: User, active: bool, expected_version: int | None
) -> AftercareResource:
    """Deactivate a resource that closed or no longer takes referrals (it stays on record:
    referrals point at it), or reactivate it."""
    _check_version(resource, expected_version)
    if resource.active == active:
        raise DomainError(
            "This resource is already active." if active else "This resource is already inactive."
        )
    resource.active = active
    resource.updated_at = utcnow()
    resource.updated_by_id = getattr(actor, "id", None)
    db.session.flush()
    record(
        AuditAction.REACTIVATE if active else AuditAction.DEACTIVATE,
        actor=actor,
        entity_type=ENTITY,
        entity_id=resource.id,
        site_id=resource.site_id,
    )
    return resource


# --- reading -------------------------------------------------------------------------------


def beds_stale(resource: AftercareResource, today: dt.date) -> bool:
    """Beds confirmed more than 14 days before ``today`` (the site-local day) are stale:
    staff should call before counting on them (issue 12)."""
    confirmed = resource.beds_confirmed_on
    return confirmed is not None and (today - confirmed).days > BEDS_STALE_AFTER_DAYS


@dataclass(frozen=True)
class DirectoryFilters:
    """What the directory page filters on (each None or empty: not filtered)."""

    kind: ResourceKind | None = None
    accepts_moud: Tristate | None = None
    accepts_methadone: Tristate | None = None
    beds_available: bool = False  # at least one bed available
    city: str | None = None
    site_id: int | None = None  # the "site area"
    text: str | None = None  # in the name, city, contact person or notes
    include_inactive: bool = False

    def summary(self) -> dict[str, Any]:
        """The filters, for an audit event's details (what was exported)."""
        shown = {k: v for k, v in vars(self).items() if v not in (None, False, "")}
        if "text" in shown:
            shown["text"] = True  # whether text was searched, never the words
        return {k: str(v) if isinstance(v, str) else v for k, v in shown.items()}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def search_query(filters: DirectoryFilters) -> sa.Select:
    """The resources matching ``filters`` (unsorted; ``DIRECTORY_SORTS`` sorts them), with
    their site loaded in the same round trip."""
    r = AftercareResource
    query = sa.select(r).options(selectinload(r.site))
    if not filters.include_inactive:
        query = query.where(r.active)
    if filters.kind is not None:
        query = query.where(r.kind == filters.kind)
    if filters.accepts_moud is not None:
        query = query.where(r.accepts_moud == filters.accepts_moud)
    if filters.accepts_methadone is not None:
        query = query.where(r.accepts_methadone == filters.accepts_methadone)
    if filters.beds_available:
        query = query.where(r.beds_available > 0)
    if filters.city:
        query = query.where(sa.func.lower(r.city) == filters.city.strip().lower())
    if filters.site_id is not None:
        query = query.where(r.site_id == filters.site_id)
    if filters.text and filters.text.strip():
        pattern = _like(filters.text.strip())
        query = query.where(
            sa.or_(
                *(
                    sa.func.lower(column).like(pattern, escape="\\")
                    for column in (r.name, r.city, r.contact_name, r.notes)
                )
            )
        )
    return query


DIRECTORY_SORTS = SortSpec(
    columns={
        "name": sa.func.lower(AftercareResource.name),
        "kind": AftercareResource.kind,
        "city": sa.func.lower(AftercareResource.city),
        "beds": AftercareResource.beds_available,
        "confirmed": AftercareResource.beds_confirmed_on,
    },
    default="name",
    params=("kind", "moud", "methadone", "beds", "city", "area", "q", "inactive"),
)


def resource_by_id(resource_id: int) -> AftercareResource | None:
    return db.session.get(AftercareResource, resource_id)


def export_rows(filters: DirectoryFilters) -> list[AftercareResource]:
    """Every resource matching ``filters``, by name (the CSV export)."""
    query = search_query(filters).order_by(
        sa.func.lower(AftercareResource.name), AftercareResource.id
    )
    return list(db.session.scalars(query))


def record_export(*, actor: User, filters: DirectoryFilters, count: int) -> None:
    """The directory's CSV export, audited as an export (what was filtered, how many)."""
    record(
        AuditAction.EXPORT,
        actor=actor,
        entity_type=ENTITY,
        details={"filters": filters.summary(), "rows": count},
    )

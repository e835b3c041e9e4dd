"""A site's clinic calendar and label details, maintained by its administrators (issue 13):
the weekdays it is closed, its holidays (``SiteClosure``), and the address and phone printed
on take-home bottle labels.

Rules (DOMAIN.md "Take-home methadone"; 42 CFR 8.12(i)): take-home doses for a
clinic-closed day are allowed outside the time-in-treatment caps, so the calendar decides
what a cap counts. Decisions already recorded keep the count they were recorded with.

- Only an administrator of the site (``CALENDAR_MANAGE``, and the site among theirs, or an
  organisation-wide administrator) changes it.
- A site is open at least one day a week (at most six closed weekdays).
- A holiday is added for today or later (a past day would rewrite what past caps counted),
  at most ``HOLIDAY_YEARS_AHEAD`` years ahead, once per day; only a future holiday (after
  today) is removed.

Services check, write, audit (no free text) and flush; the caller commits. Dates are the
site's local days.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import has_control_characters
from clinic.security import Permission
from clinic.sites.models import ADDRESS_MAX, CLOSURE_NAME_MAX, PHONE_MAX, Site, SiteClosure
from clinic.sites.time import site_today

HOLIDAY_YEARS_AHEAD = 3
HOLIDAY_DAYS_AHEAD = 366 * HOLIDAY_YEARS_AHEAD
NOT_SITE_ADMIN_MESSAGE = "Only an administrator of this site maintains its calendar."
DUPLICATE_HOLIDAY_MESSAGE = "This day is already a holiday of the site."


def may_manage(user: User, site: Site) -> bool:
    """An administrator of ``site``: the permission, and the site among theirs (or all)."""
    return user.can(Permission.CALENDAR_MANAGE) and (user.all_sites or site.id in user.site_ids)


def managed_sites(user: User) -> list[Site]:
    """The sites whose calendar the user maintains, by code. One statement."""
    if not user.can(Permission.CALENDAR_MANAGE):
        return []
    query = sa.select(Site).order_by(Site.code)
    if not user.all_sites:
        query = query.where(Site.id.in_(user.site_ids or {-1}))
    return list(db.session.scalars(query))


def _require(user: User, site: Site) -> None:
    if not may_manage(user, site):
        raise DomainError(NOT_SITE_ADMIN_MESSAGE)


def _audit(
    site: Site, actor: User, entity_type: str, entity_id: int, action: AuditAction, **details
) -> None:
    record(
        action,
        actor=actor,
        entity_type=entity_type,
        entity_id=entity_id,
        site_id=site.id,
        details=details or None,
    )


def _text(
    value: str | None, *, field: str, limit: int, required: str | None = None, lines: bool = False
) -> str:
    text = (value or "").replace("\r\n", "\n").strip()
    if required and not text:
        raise DomainError(required, field=field)
    if has_control_characters(text, multi_line=lines):
        raise DomainError("Remove the control characters.", field=field)
    if len(text) > limit:
        raise DomainError(f"At most {limit} characters.", field=field)
    return text


def set_closed_weekdays(site: Site, *, actor: User, weekdays: str | None) -> None:
    """The ISO weekdays (1 = Monday ... 7 = Sunday, digits) the site is closed; "" for
    none. Stored distinct and ascending; at most six."""
    _require(actor, site)
    raw = (weekdays or "").replace(",", "")
    if any(c not in "1234567" for c in raw):
        raise DomainError("Choose days of the week.", field="weekdays")
    digits = "".join(sorted(set(raw)))
    if len(digits) == 7:
        raise DomainError("A site is open at least one day a week.", field="weekdays")
    if digits == site.closed_weekdays:
        return
    site.closed_weekdays = digits
    db.session.flush()
    _audit(site, actor, "site_calendar", site.id, AuditAction.UPDATE, closed_weekdays=digits)


def set_label_details(site: Site, *, actor: User, address: str | None, phone: str | None) -> None:
    """The address and phone printed on take-home bottle labels."""
    _require(actor, site)
    address_text = _text(
        address,
        lines=True,
        field="address",
        limit=ADDRESS_MAX,
        required="Enter the address printed on bottle labels.",
    )
    phone_text = _text(
        phone,
        field="phone",
        limit=PHONE_MAX,
        required="Enter the phone number printed on bottle labels.",
    )
    if not any(c.isdigit() for c in phone_text):
        raise DomainError("Enter a phone number.", field="phone")
    site.address, site.phone = address_text, phone_text
    db.session.flush()
    _audit(site, actor, "site_label_details", site.id, AuditAction.UPDATE)


def holidays(site: Site, *, since: dt.date) -> list[SiteClosure]:
    """The site's holidays from ``since`` on, by day. One statement."""
    return list(
        db.session.scalars(
            sa.select(SiteClosure)
            .where(SiteClosure.site_id == site.id, SiteClosure.closed_on >= since)
            .order_by(SiteClosure.closed_on)
        )
    )


def add_holiday(
    site: Site,
    *,
    actor: User,
    closed_on: dt.date | None,
    name: str | None,
    now: dt.datetime | None = None,
) -> SiteClosure:
    """A holiday of the site (see the module docstring)."""
    _require(actor, site)
    label = _text(name, field="name", limit=CLOSURE_NAME_MAX, required="Name the holiday.")
    today = site_today(site, now)
    if closed_on is None:
        raise DomainError("Enter the day.", field="closed_on")
    if closed_on < today:
        raise DomainError("A holiday is added for today or later.", field="closed_on")
    if closed_on > today + dt.timedelta(days=HOLIDAY_DAYS_AHEAD):
        raise DomainError(
            f"A holiday is at most {HOLIDAY_YEARS_AHEAD} years ahead.", field="closed_on"
        )
    exists = db.session.scalar(
        sa.select(SiteClosure.id).where(
            SiteClosure.site_id == site.id, SiteClosure.closed_on == closed_on
        )
    )
    if exists is not None:
        raise DomainError(DUPLICATE_HOLIDAY_MESSAGE, field="closed_on")
    closure = SiteClosure(site_id=site.id, closed_on=closed_on, name=label, created_by_id=actor.id)
    db.session.add(closure)
    db.session.flush()
    _audit(
        site, actor, "site_closure", closure.id, AuditAction.CREATE, closed_on=closed_on.isoformat()
    )
    return closure


def remove_holiday(closure: SiteClosure, *, actor: User, now: dt.datetime | None = None) -> None:
    """Remove a future holiday (after today): a past or today's holiday stays, as the caps
    of that day counted it."""
    site = db.session.get(Site, closure.site_id)
    _require(actor, site)
    if closure.closed_on <= site_today(site, now):
        raise DomainError("Only a future holiday is removed.")
    _audit(
        site,
        actor,
        "site_closure",
        closure.id,
        AuditAction.UPDATE,
        change="removed",
        closed_on=closure.closed_on.isoformat(),
    )
    db.session.delete(closure)
    db.session.flush()


def holiday_for(user: User, site: Site, closure_id: int) -> SiteClosure | None:
    """A holiday of ``site`` by id (None if it is another site's or does not exist)."""
    closure = db.session.get(SiteClosure, closure_id)
    if closure is None or closure.site_id != site.id or not may_manage(user, site):
        return None
    return closure

"""Sites: the places a clinic organisation works from. Patients and users belong to sites.

A site's clinic calendar (issue 13): the weekdays it is closed (``closed_weekdays``, ISO
digits, e.g. ``"7"`` for Sunday) and its holidays (``SiteClosure``). Take-home methadone for
a clinic-closed day is allowed outside the 42 CFR 8.12(i) time-in-treatment caps.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db import Base, utcnow

SITE_CODE_MAX = 10
ADDRESS_MAX = 300
PHONE_MAX = 32
CLOSURE_NAME_MAX = 120
# ISO weekdays (1 = Monday ... 7 = Sunday) as a string of distinct digits, ascending.
DEFAULT_CLOSED_WEEKDAYS = "7"


def _strip_digits(column: str) -> str:
    expression = column
    for digit in "1234567":
        expression = f"replace({expression}, '{digit}', '')"
    return expression


class Site(Base):
    __tablename__ = "site"
    __table_args__ = (
        sa.CheckConstraint(f"length(code) BETWEEN 2 AND {SITE_CODE_MAX}", name="code_length"),
        sa.CheckConstraint("code = upper(code)", name="code_upper"),
        sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
        # At most six closed weekdays, each an ISO digit 1-7 (a clinic open no day of the
        # week is no clinic); distinct and ascending is the service's job.
        sa.CheckConstraint(
            f"length(closed_weekdays) <= 6 AND {_strip_digits('closed_weekdays')} = ''",
            name="closed_weekdays_valid",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(SITE_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    # IANA zone name; clinical days (dose day, admission date) are dates in this zone.
    timezone: Mapped[str] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # The last medical record number given at this site (see patients.registry).
    last_mrn: Mapped[int] = mapped_column(default=0, server_default="0")
    # Printed on take-home bottle labels (DOMAIN.md "Take-home bottles").
    address: Mapped[str] = mapped_column(sa.String(ADDRESS_MAX), default="", server_default="")
    phone: Mapped[str] = mapped_column(sa.String(PHONE_MAX), default="", server_default="")
    # The clinic calendar: ISO weekdays the site does not dispense (see the module docstring).
    closed_weekdays: Mapped[str] = mapped_column(
        sa.String(7), default=DEFAULT_CLOSED_WEEKDAYS, server_default=DEFAULT_CLOSED_WEEKDAYS
    )


class SiteClosure(Base):
    """A day the site is closed (a holiday), maintained by its administrators: take-home
    doses for it are allowed outside the 42 CFR 8.12(i) caps. ``closed_on`` is a
    site-local date."""

    __tablename__ = "site_closure"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "closed_on", name="uq_site_closure_site_id_closed_on"),
        sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    closed_on: Mapped[dt.date]
    name: Mapped[str] = mapped_column(sa.String(CLOSURE_NAME_MAX))
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

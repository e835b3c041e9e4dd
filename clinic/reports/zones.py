"""Site-local days of UTC instants, for report queries (issue 14; DOMAIN.md: dates are
the site's local dates).

A session's ``starts_at`` or a referral's ``created_at`` is a UTC instant; a report's
period is a range of site-local days. Each site has its own time zone
(``Site.timezone``, an IANA name), so "on a day of the period" means: at or after the
site's local midnight of the first day and before its local midnight of the day after
the last, as UTC instants. ``site_zones`` reads the zones (one statement);
``in_local_days`` and ``per_site_instant`` build the SQL conditions with each site's own
bounds (no time-zone arithmetic in SQL, so both engines read them alike).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.db import UTCDateTime
from clinic.reports.database import session
from clinic.sites.models import Site


def site_zones(site_ids: Iterable[int]) -> dict[int, ZoneInfo]:
    """The time zone of each site: ``{site_id: ZoneInfo}`` (one statement; an unknown id
    is absent)."""
    rows = session.execute(
        sa.select(Site.id, Site.timezone).where(Site.id.in_(tuple(site_ids) or (-1,)))
    )
    return {site_id: ZoneInfo(zone) for site_id, zone in rows}


def local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant at which ``day`` starts in ``zone``."""
    return dt.datetime.combine(day, dt.time(0), zone).astimezone(dt.UTC)


def _instant(value: dt.datetime) -> sa.ColumnElement:
    return sa.literal(value, UTCDateTime())


def in_local_days(
    site_column: sa.ColumnElement,
    instant_column: sa.ColumnElement,
    zones: Mapping[int, ZoneInfo],
    first: dt.date,
    last: dt.date,
) -> sa.ColumnElement[bool]:
    """SQL: ``instant_column`` (UTC) falls on a day from ``first`` to ``last`` (both
    included) in the time zone of the site ``site_column`` names — for each site in
    ``zones``, its own local midnights as UTC bounds (false for any other site)."""
    if not zones:
        return sa.false()
    bounds = {
        site_id: (local_midnight(first, zone), local_midnight(last + dt.timedelta(days=1), zone))
        for site_id, zone in zones.items()
    }
    return sa.and_(
        # The widest bounds first: a plain range an index on the instant can use.
        instant_column >= _instant(min(lo for lo, _ in bounds.values())),
        instant_column < _instant(max(hi for _, hi in bounds.values())),
        sa.or_(
            *(
                sa.and_(site_column == site_id, instant_column >= lo, instant_column < hi)
                for site_id, (lo, hi) in sorted(bounds.items())
            )
        ),
    )


def per_site_instant(
    site_column: sa.ColumnElement, instants: Mapping[int, dt.datetime]
) -> sa.ColumnElement:
    """SQL: the UTC instant given for the site ``site_column`` names (NULL for others, and
    for every site when ``instants`` is empty: no site in scope)."""
    if not instants:
        return sa.null().cast(UTCDateTime())
    return sa.case(
        *((site_column == site_id, _instant(value)) for site_id, value in sorted(instants.items())),
        else_=sa.null(),
    )

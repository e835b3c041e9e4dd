"""Clinical days are dates in the site's own time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from clinic.db import utcnow
from clinic.sites.models import Site


def site_today(site: Site, now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(ZoneInfo(site.timezone)).date()


def user_zone(user) -> ZoneInfo:
    """The time zone of a user's day: their first site's (UTC for a user of no site, such
    as an organisation-wide administrator)."""
    sites = user.sites
    return ZoneInfo(sites[0].timezone) if sites else ZoneInfo("UTC")


def user_today(user, now: dt.datetime | None = None) -> dt.date:
    """Today at the user's first site (``user_zone``), never the server's date."""
    return (now or utcnow()).astimezone(user_zone(user)).date()

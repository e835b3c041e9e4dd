"""Clinical days are dates in the site's own time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from clinic.db import utcnow
from clinic.sites.models import Site


def site_today(site: Site, now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(ZoneInfo(site.timezone)).date()

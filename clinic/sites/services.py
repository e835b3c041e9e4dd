"""Use cases for sites."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.sites.models import SITE_CODE_MAX, Site

SITE_CODE_RE = re.compile(rf"^[A-Z0-9]{{2,{SITE_CODE_MAX}}}$")


def create_site(*, code: str, name: str, timezone: str) -> Site:
    """Add a site. The code is part of every MRN, so it is short, upper-case and unique."""
    code = code.strip().upper()
    if not SITE_CODE_RE.match(code):
        raise DomainError(
            f"Site code must be 2 to {SITE_CODE_MAX} letters or digits.", field="code"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(f"Unknown time zone {timezone!r}.", field="timezone") from None
    if site_by_code(code) is not None:
        raise DomainError(f"A site with code {code} exists already.", field="code")
    site = Site(code=code, name=name.strip(), timezone=timezone)
    db.session.add(site)
    db.session.flush()
    return site


def site_by_code(code: str) -> Site | None:
    return db.session.scalar(sa.select(Site).where(Site.code == code.strip().upper()))

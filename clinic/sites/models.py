"""Sites: the places a clinic organisation works from. Patients and users belong to sites."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db import Base

SITE_CODE_MAX = 10


class Site(Base):
    __tablename__ = "site"
    __table_args__ = (
        sa.CheckConstraint(f"length(code) BETWEEN 2 AND {SITE_CODE_MAX}", name="code_length"),
        sa.CheckConstraint("code = upper(code)", name="code_upper"),
        sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(SITE_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    # IANA zone name; clinical days (dose day, admission date) are dates in this zone.
    timezone: Mapped[str] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # The last medical record number given at this site (see patients.registry).
    last_mrn: Mapped[int] = mapped_column(default=0, server_default="0")

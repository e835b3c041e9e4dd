"""Idempotency keys for forms that create records (any domain, through
``clinic.web.save(..., once=...)``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db import Base, utcnow


class FormSubmission(Base):
    """An idempotency key: the hidden token of a form that creates something, stored in
    the same transaction as what it created. The same form posted twice (a double click,
    a resent request) finds its token and is shown the first result instead of creating
    a second record; two posts racing each other meet the unique constraint.

    Any domain may use it, through ``clinic.web.save(..., once=...)``."""

    __tablename__ = "form_submission"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    # Where the first submission led (a path of this app, from url_for).
    result_url: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

"""Forms sent after the session ended, kept for the same user (issue 9, "nothing typed is
lost").

The flow:

1. A form is POSTed with a valid CSRF token but the server-side session has just timed
   out (idle or absolute limit). The login gate calls ``keep()``: the form's fields (never
   the CSRF token) are stored for the user whose session it was, for ``DRAFT_MINUTES``,
   and the draft's id goes in the signed cookie. The browser is sent to the sign-in page.
2. At sign-in, ``claim()`` looks at that id: the same user gets the draft back (the
   sign-in leads to the form's page); anyone else gets nothing and the draft is deleted.
   Password fields and the user's own account forms are never kept.
3. On the form's page, ``restore()`` hands the fields to ``ClinicForm`` (which shows them
   filled in) and deletes the draft: it is used once. Nothing is saved until the user
   sends the form again.

The content may be patient data: it is never logged, never shown to another user, and
expires. Fields are limited in number and size (``MAX_FIELDS``, ``MAX_BYTES``): a larger
form is not kept.
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from flask import current_app, g, request, session
from flask_wtf.csrf import ValidationError, validate_csrf
from werkzeug.datastructures import MultiDict

from clinic.accounts.models import SavedFormDraft, User
from clinic.db import utcnow
from clinic.extensions import db

DRAFT_MINUTES = 30
MAX_FIELDS = 200
MAX_BYTES = 200_000
COOKIE_KEY = "form_draft"  # the draft's id, in the signed session cookie
RESTORE_KEY = "form_draft_restore"
# Fields never kept: the CSRF token is tied to the old session.
NOT_KEPT = frozenset({"csrf_token"})
KEPT_MESSAGE = (
    "You were signed out, so your form was not saved. What you typed is kept: sign in "
    "again to see it."
)


def purge_expired(now: dt.datetime | None = None) -> None:
    db.session.execute(
        sa.delete(SavedFormDraft).where(SavedFormDraft.expires_at <= (now or utcnow()))
    )


def keep(user_id: int) -> bool:
    """Store this request's form for ``user_id`` (whose session has just ended) and
    remember it in the cookie. Returns False, storing nothing, when the request carries no
    valid CSRF token (a forged or stale POST) or the form is too large. Flushes; the
    caller commits."""
    if (request.blueprint or "") == "accounts":
        return False  # the user's own sign-in, password and MFA forms: nothing to keep
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    # Never a password (a new user's temporary password, a confirmation).
    pairs = [
        (k, v)
        for k, v in request.form.items(multi=True)
        if k not in NOT_KEPT and "password" not in k.lower()
    ]
    payload = json.dumps(pairs)
    if not pairs or len(pairs) > MAX_FIELDS or len(payload.encode()) > MAX_BYTES:
        return False
    now = utcnow()
    purge_expired(now)
    discard()  # one draft per browser: the newest
    draft = SavedFormDraft(
        user_id=user_id,
        path=request.full_path.rstrip("?")[:2000],
        payload=payload,
        created_at=now,
        expires_at=now + dt.timedelta(minutes=DRAFT_MINUTES),
    )
    db.session.add(draft)
    db.session.flush()
    session[COOKIE_KEY] = draft.id
    return True


def discard() -> None:
    """Delete the draft this browser points at, if any (flushes)."""
    draft_id = session.pop(COOKIE_KEY, None)
    if isinstance(draft_id, int):
        db.session.execute(sa.delete(SavedFormDraft).where(SavedFormDraft.id == draft_id))


def claim(user: User, draft_id: object) -> str | None:
    """At sign-in: the path of the draft ``draft_id`` (taken from the cookie before the
    session was renewed) when it belongs to ``user`` and has not expired; the sign-in
    then leads there and the page shows it. A draft of another user is deleted and None
    returned. Flushes; the caller commits."""
    if not isinstance(draft_id, int):
        return None
    draft = db.session.get(SavedFormDraft, draft_id)
    if draft is None:
        return None
    if draft.user_id != user.id or draft.expires_at <= utcnow():
        db.session.delete(draft)
        db.session.flush()
        return None
    session[RESTORE_KEY] = draft.id
    from clinic.accounts.auth import safe_next

    return safe_next(draft.path)


def restore() -> MultiDict | None:
    """On a GET of the draft's page by its owner: the fields to show (once), deleting the
    draft. Committed here: a GET page has no other write. None when there is nothing to
    restore for this page."""
    if request.method != "GET" or RESTORE_KEY not in session:
        return None
    if "restored_form" in g:
        return g.restored_form
    from flask_login import current_user

    draft = db.session.get(SavedFormDraft, session.get(RESTORE_KEY))
    if draft is None or not current_user.is_authenticated or draft.user_id != current_user.id:
        session.pop(RESTORE_KEY, None)
        return None
    if draft.path.split("?", 1)[0] != request.path:
        return None  # not this page (a redirect on the way): keep it for the form's page
    session.pop(RESTORE_KEY, None)
    data = MultiDict(json.loads(draft.payload)) if draft.expires_at > utcnow() else None
    db.session.delete(draft)
    db.session.commit()
    g.restored_form = data
    if data is not None:
        current_app.logger.info("a kept form was restored for its user")
    return data

"""Tie server-side sessions to Flask-Login and the login gate.

The signed cookie holds only a random token (``sid``); ``UserSession`` is the truth.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, flash, g, redirect, request, session, url_for
from flask_login import current_user

from clinic import forms
from clinic.accounts import authentication, drafts, user_sessions
from clinic.accounts.models import User, UserSession
from clinic.extensions import db, login_manager
from clinic.forms import has_control_characters
from clinic.security import add_gate_hook, add_signed_out_post_hook

# Sessions that end by a time limit may leave a form to keep (clinic.accounts.drafts);
# a session ended on purpose (sign-out, password reset, administrator) never does.
TIMED_OUT = frozenset({"idle_timeout", "absolute_timeout"})
# The warning comes a minute before the idle sign-out (half the timeout when shorter).
WARNING_SECONDS = 60
# Typing sends at most one keep-alive every 30 s (a fifth of the timeout when shorter).
KEEP_ALIVE_EVERY_SECONDS = 30

# Endpoints a user may still open while a password change or MFA enrolment is pending.
SETUP_ENDPOINTS = frozenset({"accounts.change_password", "accounts.mfa_setup", "accounts.logout"})
# Requests the MFA enrolment page itself makes: any other means the user left it.
MFA_SETUP_PAGE_ENDPOINTS = frozenset({"accounts.mfa_setup", "accounts.keep_alive"})


def load_user_from_session(_request) -> User | None:
    token = session.get("sid")
    if not token:
        return None
    check = user_sessions.check_session(token)
    if check.changed:
        db.session.commit()
    if check.session is None:
        session.pop("sid", None)
        g.session_ended_reason = check.ended_reason
        if check.ended_reason in TIMED_OUT:
            g.session_ended_user_id = check.user_id
        return None
    g.user_session_id = check.session.id
    # Read now, while the row is loaded: a commit (the touch above) expires it.
    g.mfa_setup_pending = check.session.mfa_setup_secret is not None
    return check.session.user


def complete_login(user: User) -> str | None:
    """Start a fresh server-side session for ``user`` in this browser. Returns the path of
    a form this user sent after their last session timed out (``drafts.claim``), where the
    sign-in should lead; a form another user left in this browser is deleted."""
    token = user_sessions.start_session(
        user, ip=request.remote_addr, user_agent=request.headers.get("User-Agent")
    )
    draft_id = session.get(drafts.COOKIE_KEY)
    session.clear()
    session["sid"] = token
    return drafts.claim(user, draft_id)


def clear_keeping_draft() -> None:
    """Empty the cookie session but for the kept form's id (before a second factor)."""
    draft_id = session.get(drafts.COOKIE_KEY)
    session.clear()
    if draft_id is not None:
        session[drafts.COOKIE_KEY] = draft_id


def end_login() -> None:
    session.clear()


def keep_form_of_timed_out_session() -> Response | None:
    """A form POSTed just after the session timed out: keep it for the same user and send
    the browser to the sign-in page (303), instead of a 401 that loses what was typed."""
    user_id = g.get("session_ended_user_id")
    if user_id is None or not drafts.keep(user_id):
        return None
    db.session.commit()
    flash(drafts.KEPT_MESSAGE, "warning")
    return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")), code=303)


def session_timing() -> dict:
    """For base.html: when this browser's session ends and when to warn (seconds), so the
    page can warn a minute before and replace itself at the idle sign-out."""
    session_id = g.get("user_session_id")
    if session_id is None or not current_user.is_authenticated:
        return {}
    user_session = db.session.get(UserSession, session_id)
    if user_session is None:
        return {}
    idle_seconds = user_sessions.idle_timeout().total_seconds()
    return {
        "session_timing": {
            "seconds_left": round(user_sessions.seconds_left(user_session), 1),
            "warn_seconds": round(min(WARNING_SECONDS, idle_seconds / 2), 1),
            "keep_alive_every": round(min(KEEP_ALIVE_EVERY_SECONDS, idle_seconds / 5), 1),
        }
    }


# Printable ASCII but the space: what a path and query copied from a URL consist of
# (anything else arrives percent-encoded). No CR/LF can reach a Location header, and no
# tab or newline that a browser would drop to turn "/\t/evil.example" into "//evil.example".
_NEXT_CHARACTERS = re.compile(r"[\x21-\x7e]+")
NEXT_MAX = 2000


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a same-site path (with its query), else None: no open
    redirects, and nothing that cannot be sent in a ``Location`` header.

    Refused: anything not starting with a single "/", backslashes, characters other than
    printable ASCII (control characters, CR/LF, spaces), a scheme or host, and the same
    tricks percent-encoded ("/%2F/evil.example", "/%5Cevil.example", "/x%0D%0A..."),
    which some proxies and servers decode. OWASP Unvalidated Redirects and Forwards
    Cheat Sheet; CWE-601, CWE-113.
    """
    if not target or len(target) > NEXT_MAX or not _NEXT_CHARACTERS.fullmatch(target):
        return None
    for form in (target, unquote(target)):
        if not form.startswith("/") or form.startswith("//") or "\\" in form:
            return None
        if has_control_characters(form):
            return None
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return None
    return target


def forget_abandoned_mfa_setup(access) -> None:
    """The user left the MFA enrolment page: forget the secret it showed (kept on the
    session row, ``authentication.start_mfa_setup``). Writes only when one is pending;
    whether one is pending was read with the session row, so other requests cost no query."""
    if request.endpoint in MFA_SETUP_PAGE_ENDPOINTS or not g.get("mfa_setup_pending"):
        return None
    user_session = db.session.get(UserSession, g.user_session_id)
    if user_session is not None and user_session.mfa_setup_secret is not None:
        authentication.forget_mfa_setup(user_session)
        db.session.commit()
    return None


def account_setup_gate(access) -> Response | None:
    """Before anything else: change a temporary password, enrol in MFA where required."""
    if request.endpoint in SETUP_ENDPOINTS:
        return None
    if current_user.must_change_password:
        flash("Choose a new password before you continue.", "warning")
        return redirect(url_for("accounts.change_password"))
    if authentication.mfa_required_for(current_user) and not current_user.mfa_enabled:
        flash("Your role requires two-step verification. Set it up to continue.", "warning")
        return redirect(url_for("accounts.mfa_setup"))
    return None


def register(app: Flask) -> None:
    login_manager.request_loader(load_user_from_session)
    login_manager.session_protection = None  # server-side sessions do this job
    add_gate_hook(forget_abandoned_mfa_setup)  # first: also when the next hook redirects
    add_gate_hook(account_setup_gate)
    add_signed_out_post_hook(keep_form_of_timed_out_session)
    forms.restored_formdata = drafts.restore
    app.context_processor(session_timing)
    # The proxy set-up (ProxyFix) and the client-address check live in clinic.edge.

"""Tie server-side sessions to Flask-Login and the login gate.

The signed cookie holds only a random token (``sid``); ``UserSession`` is the truth.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, flash, g, redirect, request, session, url_for
from flask_login import current_user

from clinic.accounts import services
from clinic.accounts.models import User
from clinic.extensions import db, login_manager
from clinic.forms import has_control_characters
from clinic.security import add_gate_hook

# Endpoints a user may still open while a password change or MFA enrolment is pending.
SETUP_ENDPOINTS = frozenset({"accounts.change_password", "accounts.mfa_setup", "accounts.logout"})


def load_user_from_session(_request) -> User | None:
    token = session.get("sid")
    if not token:
        return None
    check = services.check_session(token)
    if check.changed:
        db.session.commit()
    if check.session is None:
        session.pop("sid", None)
        g.session_ended_reason = check.ended_reason
        return None
    g.user_session_id = check.session.id
    return check.session.user


def complete_login(user: User) -> None:
    """Start a fresh server-side session for ``user`` in this browser."""
    token = services.start_session(
        user, ip=request.remote_addr, user_agent=request.headers.get("User-Agent")
    )
    session.clear()
    session["sid"] = token


def end_login() -> None:
    session.clear()


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


def account_setup_gate(access) -> Response | None:
    """Before anything else: change a temporary password, enrol in MFA where required."""
    if request.endpoint in SETUP_ENDPOINTS:
        return None
    if current_user.must_change_password:
        flash("Choose a new password before you continue.", "warning")
        return redirect(url_for("accounts.change_password"))
    if services.mfa_required_for(current_user) and not current_user.mfa_enabled:
        flash("Your role requires two-step verification. Set it up to continue.", "warning")
        return redirect(url_for("accounts.mfa_setup"))
    return None


def register(app: Flask) -> None:
    login_manager.request_loader(load_user_from_session)
    login_manager.session_protection = None  # server-side sessions do this job
    add_gate_hook(account_setup_gate)
    # The proxy set-up (ProxyFix) and the client-address check live in clinic.edge.

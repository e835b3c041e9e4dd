"""Server-side sessions: start, check (idle and absolute timeouts), keep alive, revoke.
HIPAA 164.312(a)(2)(iii) automatic logoff. Each function changes rows and flushes; the
caller commits."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from clinic.accounts import passwords
from clinic.accounts.models import User, UserSession
from clinic.audit import AuditAction, AuditOutcome, record
from clinic.db import utcnow
from clinic.extensions import db

SESSION_TOUCH_SECONDS = 60


def audit_user(
    action: AuditAction,
    user_id: int | None,
    *,
    actor: User | None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    **details: object,
) -> None:
    """An audit event about a user account (never with passwords or codes in it)."""
    record(
        action, actor=actor, entity_type="user", entity_id=user_id, outcome=outcome, details=details
    )


# --- sessions --------------------------------------------------------------------------


def start_session(user: User, *, ip: str | None, user_agent: str | None) -> str:
    """Open a server-side session; returns the token for the cookie (a new one at every
    login, so a session id planted before login is worthless)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        UserSession(
            user_id=user.id,
            token_hash=passwords.token_digest(token),
            created_at=now,
            last_seen_at=now,
            ip=(ip or "")[:45] or None,
            user_agent=(user_agent or "")[:255] or None,
        )
    )
    user.last_login_at = now
    user.failed_logins = 0
    db.session.flush()
    audit_user(AuditAction.LOGIN, user.id, actor=user, mfa=user.mfa_enabled)
    return token


@dataclass
class SessionCheck:
    session: UserSession | None
    ended_reason: str | None = None  # "idle_timeout", "absolute_timeout", "revoked", ...
    changed: bool = False  # rows were written and need a commit
    user_id: int | None = None  # whose session it was (also when it has just ended)


def idle_timeout() -> dt.timedelta:
    """The idle sign-out (``SESSION_IDLE_TIMEOUT_MINUTES``, a float allowed for tests)."""
    return dt.timedelta(minutes=float(current_app.config["SESSION_IDLE_TIMEOUT_MINUTES"]))


def absolute_timeout() -> dt.timedelta:
    return dt.timedelta(hours=float(current_app.config["SESSION_ABSOLUTE_TIMEOUT_HOURS"]))


def _touch_interval() -> float:
    # Once a minute at most, but often enough that a short idle timeout still sees
    # activity (a tenth of it).
    return min(SESSION_TOUCH_SECONDS, idle_timeout().total_seconds() / 10)


def seconds_left(session: UserSession, now: dt.datetime | None = None) -> float:
    """Seconds (float, >= 0) before ``session`` ends: whichever comes first of the idle
    sign-out (from ``last_seen_at``) and the absolute limit (from ``created_at``)."""
    now = now or utcnow()
    idle_end = session.last_seen_at + idle_timeout()
    absolute_end = session.created_at + absolute_timeout()
    return max(0.0, (min(idle_end, absolute_end) - now).total_seconds())


def keep_alive(session: UserSession) -> float:
    """The user is active (typing in a form): reset the idle clock of ``session``.
    The absolute limit is never extended (``created_at`` is untouched). Returns
    ``seconds_left()`` afterwards. HIPAA 164.312(a)(2)(iii) automatic logoff."""
    now = utcnow()
    session.last_seen_at = now
    db.session.flush()
    return seconds_left(session, now)


def check_session(token: str) -> SessionCheck:
    """Find the live session for a cookie's token, ending it if it has timed out.

    Idle and absolute timeouts (HIPAA automatic logoff) are enforced here, on the server.
    ``last_seen_at`` is written at most once a minute, not on every request.
    """
    session = db.session.scalar(
        sa.select(UserSession).where(UserSession.token_hash == passwords.token_digest(token))
    )
    if session is None:
        return SessionCheck(None, "unknown")
    if session.revoked_at is not None:
        return SessionCheck(None, "revoked")
    now = utcnow()
    idle = idle_timeout()
    absolute = absolute_timeout()
    reason = None
    if not session.user.active:
        reason = "deactivated"
    elif now - session.created_at >= absolute:
        reason = "absolute_timeout"
    elif now - session.last_seen_at >= idle:
        reason = "idle_timeout"
    if reason:
        revoke_session(session, reason=reason)
        audit_user(AuditAction.SESSION_EXPIRED, session.user_id, actor=None, reason=reason)
        return SessionCheck(None, reason, changed=True, user_id=session.user_id)
    if (now - session.last_seen_at).total_seconds() >= _touch_interval():
        session.last_seen_at = now
        db.session.flush()
        return SessionCheck(session, changed=True)
    return SessionCheck(session)


def revoke_session(session: UserSession, *, reason: str) -> None:
    """End ``session``; an ended session keeps no two-step verification secret."""
    if session.revoked_at is None:
        session.revoked_at = utcnow()
        session.revoked_reason = reason
        session.mfa_setup_secret = None
        session.mfa_setup_until = None
        db.session.flush()


def logout(session: UserSession) -> None:
    revoke_session(session, reason="logout")
    audit_user(AuditAction.LOGOUT, session.user_id, actor=session.user)


def revoke_all_sessions(user: User, *, reason: str, except_session_id: int | None = None) -> int:
    """End every live session of the user (but ``except_session_id``); returns how many."""
    query = sa.update(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
    )
    if except_session_id is not None:
        query = query.where(UserSession.id != except_session_id)
    result = db.session.execute(
        query.values(
            revoked_at=utcnow(),
            revoked_reason=reason,
            mfa_setup_secret=None,  # an ended session keeps no enrolment secret
            mfa_setup_until=None,
        ).execution_options(synchronize_session=False)
    )
    db.session.flush()
    return result.rowcount


def live_sessions(user: User) -> list[UserSession]:
    return list(
        db.session.scalars(
            sa.select(UserSession)
            .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
            .order_by(UserSession.created_at.desc())
        )
    )

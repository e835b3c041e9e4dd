"""Signing in: the password check with lockout, and the second factor (TOTP and recovery
codes). HIPAA 164.312(d) person or entity authentication. Each function checks its rule,
changes rows and flushes; the caller commits.

TOTP secrets are stored encrypted (``clinic.accounts.mfa_secrets``): the user's in
``app_user.mfa_secret``, one being enrolled in ``user_session.mfa_setup_secret``."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import pyotp
import sqlalchemy as sa
from flask import current_app

from clinic.accounts import mfa_secrets, passwords
from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.accounts.services import lock_user_rows, user_by_username
from clinic.accounts.user_sessions import audit_user, revoke_all_sessions
from clinic.audit import AuditAction, AuditOutcome
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db

RECOVERY_CODE_COUNT = 10
TOTP_STEP_SECONDS = 30
# How long the secret shown on the enrolment page stays valid.
MFA_SETUP_MINUTES = 10
AUTHENTICATOR_UNAVAILABLE = (
    "Codes from your authenticator app cannot be checked at the moment (the server cannot "
    "read your two-step verification settings; the administrators have been told). "
    "Sign in with one of your recovery codes, or ask an administrator for help."
)


class AuthenticatorUnavailable(DomainError):
    """The user's stored TOTP secret cannot be decrypted with ``MFA_ENCRYPTION_KEYS``:
    no authenticator code can be checked (recovery codes still work)."""


# --- login -----------------------------------------------------------------------------


@dataclass
class LoginAttempt:
    user: User | None  # set only when the password was right and the account may log in
    known_user: User | None  # the account the name belongs to, for the audit trail
    locked_now: bool = False


def authenticate(username: str, password: str) -> LoginAttempt:
    """Check a username and password.

    Unknown user, wrong password, locked and deactivated accounts all fail the same way
    and take the same time (a password hash is always verified). Five consecutive
    failures lock the account for LOGIN_LOCKOUT_MINUTES.
    """
    user = user_by_username(username)  # None for a name no user can have
    if user is None:
        passwords.spend_verification_time(password[: passwords.MAX_LENGTH])
        # The name typed is not kept: it may be a mistyped password.
        _record_failed_login(None, "unknown_user")
        return LoginAttempt(user=None, known_user=None)
    ok = passwords.verify_password(user.password_hash, password)
    now = utcnow()
    if not user.active or user.is_locked(now):
        _record_failed_login(user, "deactivated" if not user.active else "locked")
        return LoginAttempt(user=None, known_user=user)
    if not ok:
        _record_failed_login(user, "wrong_password")
        return LoginAttempt(user=None, known_user=user, locked_now=record_failure(user))
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    if not user.mfa_enabled:
        user.failed_logins = 0
    db.session.flush()
    return LoginAttempt(user=user, known_user=user)


def _record_failed_login(user: User | None, reason: str) -> None:
    audit_user(
        AuditAction.LOGIN_FAILED,
        user.id if user else None,
        actor=None,
        outcome=AuditOutcome.FAILURE,
        reason=reason,
    )


def record_failure(user: User) -> bool:
    """Count a failed password or code; True when this failure locks the account."""
    config = current_app.config
    # Counted in the database, not on the row read at the start of the request: guesses
    # sent at the same moment each count.
    count = db.session.execute(
        sa.update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    locked = count >= config["LOGIN_LOCKOUT_FAILURES"]
    if locked:
        db.session.execute(
            sa.update(User)
            .where(User.id == user.id)
            .values(
                locked_until=utcnow() + dt.timedelta(minutes=config["LOGIN_LOCKOUT_MINUTES"]),
                failed_logins=0,
            )
            .execution_options(synchronize_session=False)
        )
    db.session.refresh(user, ["failed_logins", "locked_until"])
    if locked:
        audit_user(
            AuditAction.LOCKOUT,
            user.id,
            actor=None,
            outcome=AuditOutcome.DENIED,
            minutes=config["LOGIN_LOCKOUT_MINUTES"],
        )
    db.session.flush()
    return locked


def mfa_required_for(user: User) -> bool:
    roles = {r.strip() for r in current_app.config["MFA_REQUIRED_ROLES"].split(",") if r.strip()}
    return user.role.value in roles


# --- MFA -------------------------------------------------------------------------------


def new_mfa_secret() -> str:
    return pyotp.random_base32()


def start_mfa_setup(user_session: UserSession) -> str:
    """A new secret for the enrolment page of this browser's session; returns it (to show
    once) and keeps it, encrypted, on the session row for ``MFA_SETUP_MINUTES``. Never in
    the cookie, which the browser can read. Replaces any earlier one."""
    secret = new_mfa_secret()
    user_session.mfa_setup_secret = mfa_secrets.encrypt(secret)
    user_session.mfa_setup_until = utcnow() + dt.timedelta(minutes=MFA_SETUP_MINUTES)
    db.session.flush()
    return secret


def pending_mfa_setup(user_session: UserSession) -> str | None:
    """The secret the enrolment page showed in this session, or None when there is none,
    it has expired, or no configured key decrypts it any more (a key dropped meanwhile)."""
    token, until = user_session.mfa_setup_secret, user_session.mfa_setup_until
    if token is None or until is None or until <= utcnow():
        return None
    try:
        return mfa_secrets.decrypt(token)
    except mfa_secrets.MfaSecretUnreadable:
        return None


def forget_mfa_setup(user_session: UserSession) -> None:
    """Drop the enrolment secret of this session (confirmed, or the page was left)."""
    user_session.mfa_setup_secret = None
    user_session.mfa_setup_until = None
    db.session.flush()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(
        name=user.username, issuer_name=current_app.config["MFA_ISSUER"]
    )


def _matching_timestep(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code this is (one step of clock drift allowed either way)."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if secrets.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code):
            return step
    return None


def enable_mfa(user: User, *, password: str, secret: str, code: str) -> list[str]:
    """Turn on TOTP after the user proves the authenticator works; returns ten recovery
    codes, shown once and kept only as hashes.

    Two enrolments at the same moment (a double click, two tabs) take turns on the
    user's row: the second replaces the first one's codes, so exactly ten codes are
    valid, those shown last, never twenty.
    """
    if not passwords.verify_password(user.password_hash, password):
        raise DomainError("That is not your current password.", field="password")
    step = _matching_timestep(secret, code.strip().replace(" ", ""), utcnow())
    if step is None:
        raise DomainError("That code does not match. Check the time on your device.", field="code")
    lock_user_rows(User.id == user.id)
    # Read the codes again under the lock: another enrolment may just have added some.
    db.session.expire(user, ["recovery_codes"])
    user.mfa_secret = mfa_secrets.encrypt(secret)
    user.mfa_enabled_at = utcnow()
    user.mfa_last_timestep = step
    codes = _replace_recovery_codes(user)
    revoke_all_sessions(user, reason="mfa_changed")
    db.session.flush()
    audit_user(AuditAction.MFA_CHANGE, user.id, actor=user, change="enabled")
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    user.recovery_codes.clear()
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
    user.recovery_codes.extend(RecoveryCode(code_hash=passwords.token_digest(c)) for c in codes)
    return codes


def disable_mfa(user: User, *, password: str) -> None:
    if mfa_required_for(user):
        raise DomainError("Your role requires two-step verification.")
    if not passwords.verify_password(user.password_hash, password):
        raise DomainError("That is not your current password.", field="password")
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_timestep = None
    user.recovery_codes.clear()
    revoke_all_sessions(user, reason="mfa_changed")
    db.session.flush()
    audit_user(AuditAction.MFA_CHANGE, user.id, actor=user, change="disabled")


def _claim(statement: sa.Update) -> bool:
    result = db.session.execute(statement.execution_options(synchronize_session=False))
    return result.rowcount == 1


def _stored_secret(user: User) -> str:
    """The user's TOTP secret, decrypted. Raises ``AuthenticatorUnavailable`` (logged as
    an error for the administrators, audited as a failed sign-in; never the token) when
    no key in ``MFA_ENCRYPTION_KEYS`` decrypts it."""
    try:
        return mfa_secrets.decrypt(user.mfa_secret or "")
    except mfa_secrets.MfaSecretUnreadable:
        current_app.logger.error(
            "two-step verification: no key in %s decrypts the stored secret of user id %s "
            "(the key that encrypted it was removed or is not this deployment's); they can "
            "sign in only with a recovery code until that key is listed again or an "
            "administrator resets their two-step verification",
            mfa_secrets.SETTING,
            user.id,
        )
        _record_failed_login(user, "mfa_secret_unreadable")
        raise AuthenticatorUnavailable(AUTHENTICATOR_UNAVAILABLE, field="code") from None


def verify_second_factor(user: User, code: str) -> bool:
    """A current TOTP code not used before, or an unused recovery code (used up now).
    A failure counts towards the lockout like a wrong password.

    Raises ``AuthenticatorUnavailable`` for a TOTP code when the stored secret cannot be
    decrypted (a server fault: not counted towards the lockout, but audited)."""
    code = code.strip().replace(" ", "").lower()
    ok = False
    if user.mfa_secret and code.isdigit() and len(code) == 6:
        step = _matching_timestep(_stored_secret(user), code, utcnow())
        if step is not None:
            # A conditional UPDATE: of two requests with the same code, only one wins.
            ok = _claim(
                sa.update(User)
                .where(User.id == user.id)
                .where(sa.or_(User.mfa_last_timestep.is_(None), User.mfa_last_timestep < step))
                .values(mfa_last_timestep=step)
            )
    elif len(code) == 17:
        digest = passwords.token_digest(code)
        for recovery in user.recovery_codes:
            if recovery.used_at is None and passwords.digests_equal(recovery.code_hash, digest):
                ok = _claim(
                    sa.update(RecoveryCode)
                    .where(RecoveryCode.id == recovery.id, RecoveryCode.used_at.is_(None))
                    .values(used_at=utcnow())
                )
                break
    db.session.expire(user, ["mfa_last_timestep", "recovery_codes"])
    if ok:
        user.failed_logins = 0
        db.session.flush()
    else:
        _record_failed_login(user, "wrong_second_factor")
        record_failure(user)
    return ok


def unused_recovery_codes(user: User) -> int:
    return sum(1 for c in user.recovery_codes if c.used_at is None)

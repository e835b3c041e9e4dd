"""Users, their sites, their login sessions and MFA recovery codes.

Users are deactivated, never deleted (HIPAA 164.312(a)(2)(i): unique user IDs stay
attributable in the audit trail).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db import Base, utcnow
from clinic.security import PERMISSION_USER_FLAGS, Permission, Role, role_can
from clinic.sites.models import Site

USERNAME_MAX = 64
# A Fernet token of a 32-character TOTP secret is 140 characters; room for longer secrets.
MFA_TOKEN_MAX = 255

user_site = sa.Table(
    "user_site",
    Base.metadata,
    sa.Column("user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("site_id", sa.ForeignKey("site.id"), primary_key=True, index=True),
)


def role_enum() -> sa.Enum:
    return sa.Enum(
        Role,
        native_enum=False,
        create_constraint=True,
        length=16,
        name="role",
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class User(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        # Usernames are case-insensitive: kept lower-case, unique.
        sa.CheckConstraint("username = lower(username)", name="username_lower"),
        sa.CheckConstraint("length(username) >= 2", name="username_length"),
        sa.CheckConstraint(
            "NOT is_prescriber OR role = 'clinician'", name="prescriber_is_clinician"
        ),
        sa.CheckConstraint(
            "NOT may_dispense OR role = 'clinician'", name="may_dispense_is_clinician"
        ),
        sa.CheckConstraint("NOT all_sites OR role = 'admin'", name="all_sites_admin_only"),
        sa.CheckConstraint("failed_logins >= 0", name="failed_logins_positive"),
        # A trainee clinician has a supervisor (who co-signs their notes, issue 11); no one
        # supervises themselves. That the supervisor is a clinician is the services' check.
        sa.CheckConstraint(
            "NOT is_trainee OR (role = 'clinician' AND supervisor_id IS NOT NULL)",
            name="trainee_has_supervisor",
        ),
        sa.CheckConstraint("supervisor_id IS NULL OR is_trainee", name="supervisor_for_trainee"),
        sa.CheckConstraint(
            "supervisor_id IS NULL OR supervisor_id <> id", name="supervisor_not_self"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(USERNAME_MAX), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(120))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    role: Mapped[Role] = mapped_column(role_enum())
    is_prescriber: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # May record doses (a practitioner, nurse or pharmacist: 21 CFR 1304.24, issue 10).
    may_dispense: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # A trainee's signed progress notes wait for the supervisor's co-signature (issue 11).
    is_trainee: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    supervisor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    # Organisation-wide administrators see every site.
    all_sites: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None]
    # A Fernet token of the TOTP secret (clinic.accounts.mfa_secrets), never the secret.
    mfa_secret: Mapped[str | None] = mapped_column(sa.String(MFA_TOKEN_MAX))
    mfa_enabled_at: Mapped[dt.datetime | None]
    # The last TOTP time step accepted: a code cannot be used twice.
    mfa_last_timestep: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Optimistic lock for administrators' profile edits (name, email, role, sites,
    # prescriber, active), bumped by those only: a sign-in writes this row too
    # (last_login_at, failed_logins), so a version_id_col would make every sign-in a
    # "conflict" for an administrator editing the account.
    profile_version: Mapped[int] = mapped_column(default=1, server_default="1")

    sites: Mapped[list[Site]] = relationship(secondary=user_site, order_by=Site.code)
    recovery_codes: Mapped[list[RecoveryCode]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    # Flask-Login's interface
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    def can(self, permission: Permission) -> bool:
        if not (self.active and role_can(self.role, permission)):
            return False
        flag = PERMISSION_USER_FLAGS.get(Permission(permission))
        return flag is None or bool(getattr(self, flag))

    @property
    def mfa_enabled(self) -> bool:
        return self.mfa_enabled_at is not None

    def is_locked(self, now: dt.datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())

    @property
    def site_ids(self) -> set[int]:
        return {s.id for s in self.sites}


class RecoveryCode(Base):
    """A one-time MFA recovery code, kept only as a hash."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class UserSession(Base):
    """A login. The cookie carries only a random token; its hash identifies this row,
    so the server can end a session (logout, password change, deactivation) for good."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))
    # A two-step verification enrolment under way in this browser: the new secret shown
    # on /account/mfa (a Fernet token, like app_user.mfa_secret), kept here rather than in
    # the readable cookie until the user confirms it, leaves the page or signs out.
    mfa_setup_secret: Mapped[str | None] = mapped_column(sa.String(MFA_TOKEN_MAX))
    mfa_setup_until: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class SavedFormDraft(Base):
    """What a user sent in a form after their session had ended, kept so that it comes
    back filled in when the SAME user signs in again (issue 9, "nothing typed is lost").

    It may hold patient data: it is kept only for its owner (``user_id``), for a short
    time (``expires_at``), deleted as soon as it is used or another user signs in on the
    browser, and its content is never logged or shown in ``__repr__``.
    """

    __tablename__ = "saved_form_draft"
    __table_args__ = (sa.CheckConstraint("expires_at > created_at", name="expires_after_created"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    # The path (and query) the form was sent to: the page it comes back on.
    path: Mapped[str] = mapped_column(sa.String(2000))
    # JSON list of [name, value] pairs, without the CSRF token.
    payload: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"<SavedFormDraft {self.id} user={self.user_id}>"

"""Use cases for user accounts: creating, changing and deactivating users, and who may
change whom. Signing in and MFA are ``clinic.accounts.authentication``; server-side sessions
``clinic.accounts.user_sessions``.

HIPAA 164.312(a)(2)(i) unique user identification. Each function checks its rule, changes rows and
flushes; the caller commits.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

import sqlalchemy as sa

from clinic.accounts import passwords
from clinic.accounts.models import USERNAME_MAX, User
from clinic.accounts.user_sessions import audit_user, revoke_all_sessions
from clinic.audit import AuditAction, AuditOutcome
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE, has_control_characters
from clinic.security import Role
from clinic.sites.models import Site

USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
# The longest text a user search can match: a full name (User.full_name, 120).
USER_SEARCH_MAX = 120
USERNAME_TAKEN = "That username is taken."
OUT_OF_REACH = (
    "Only an organisation-wide administrator can change this account: "
    "it also works at sites outside yours."
)
LAST_ADMIN = "The last active administrator cannot be removed."


class _Unversioned(enum.Enum):
    NOT_FROM_A_FORM = "not_from_a_form"


# ``expected_version`` of a caller that holds no form (the operator's CLI, a script): it
# reads the row under the lock, so there is no older copy whose change could be lost.
# A form's version is always passed, None included (a form sent without it: refused).
NOT_FROM_A_FORM: Final = _Unversioned.NOT_FROM_A_FORM
ExpectedVersion = int | None | _Unversioned


# --- users -----------------------------------------------------------------------------


def normalise_username(username: str) -> str:
    return username.strip().lower()


def user_by_username(username: str) -> User | None:
    """The user with this (case-insensitive) username, or None.

    A name no username can have (longer than USERNAME_MAX, or with control characters,
    which PostgreSQL refuses outright in the case of NUL) is answered None without a
    query, so raw input never reaches the database.
    """
    username = normalise_username(username)
    if len(username) > USERNAME_MAX or has_control_characters(username):
        return None
    return db.session.scalar(sa.select(User).where(User.username == username))


def visible_users_query(actor: User) -> sa.Select:
    """Users the actor may see: all for organisation-wide administrators, otherwise
    those who share one of the actor's sites."""
    query = sa.select(User)
    if not actor.all_sites:
        shared = sa.select(User.id).join(User.sites).where(Site.id.in_(actor.site_ids or {-1}))
        query = query.where(User.id.in_(shared))
    return query


def search_users(query: sa.Select, text: str) -> sa.Select:
    """Narrow a user query to usernames or full names starting with ``text`` (any case;
    ``%`` and ``_`` taken literally). Empty ``text``: the query unchanged.

    Raises DomainError (field ``q``) for text holding control characters (PostgreSQL
    refuses a NUL in a query outright) or longer than USER_SEARCH_MAX, which no name can
    start with: the caller shows the message and lists nobody.
    """
    if has_control_characters(text):
        raise DomainError(
            "Remove the control or invisible formatting characters from the search.", field="q"
        )
    text = text.strip()
    if len(text) > USER_SEARCH_MAX:
        raise DomainError(f"Search with at most {USER_SEARCH_MAX} characters.", field="q")
    if not text:
        return query
    prefix = text.lower()
    return query.where(
        sa.or_(
            User.username.startswith(prefix, autoescape=True),
            sa.func.lower(User.full_name).startswith(prefix, autoescape=True),
        )
    )


def get_visible_user(actor: User, user_id: int) -> User | None:
    """The user, or None when it does not exist or lies outside the actor's sites."""
    return db.session.scalar(visible_users_query(actor).where(User.id == user_id))


def assignable_sites(actor: User | None) -> list[Site]:
    query = sa.select(Site).where(Site.active).order_by(Site.code)
    if actor is not None and not actor.all_sites:
        query = query.where(Site.id.in_(actor.site_ids or {-1}))
    return list(db.session.scalars(query))


# --- who may change whom -----------------------------------------------------------------


class OutOfReachError(DomainError):
    """A site administrator tried to change an account that also holds a site outside
    theirs (or every site). ``user_id`` and ``action`` say what was refused."""

    def __init__(self, user_id: int, action: str) -> None:
        super().__init__(OUT_OF_REACH)
        self.user_id = user_id
        self.action = action


def may_manage(actor: User | None, user: User) -> bool:
    """Whether ``actor`` may change ``user``'s account (details, role, sites, password,
    two-step verification, sessions, status).

    An organisation-wide administrator (and the operator's CLI, ``actor`` None) may change
    anyone. A site administrator may change only accounts every site of which is one of
    theirs: otherwise they could take over an account that reaches patients and users
    of sites they do not manage (reset its password and sign in as it). Seeing such an
    account is still allowed when it shares one of their sites. HIPAA 164.308(a)(4)
    information access management: access is granted only within the grantor's authority.
    """
    if actor is None or actor.all_sites:
        return True
    if user.all_sites:
        return False
    return user.site_ids <= actor.site_ids


def check_may_manage(user: User, *, actor: User | None, action: str) -> None:
    """Raise OutOfReachError unless ``actor`` may change ``user`` (see ``may_manage``).

    Every service that changes another user's account calls this first, before anything
    is changed (after ``_lock_for_change``, so the user's sites cannot change under it).
    The caller rolls back as for any DomainError, then records the refusal with
    ``record_refusal`` (a rollback drops the audit events the request had queued).
    """
    if not may_manage(actor, user):
        raise OutOfReachError(user.id, action)


def record_refusal(error: OutOfReachError, *, actor: User) -> None:
    """Record a refused change of an account in the audit trail (``access_denied``,
    outcome ``denied``), after the caller rolled back the request's changes."""
    audit_user(
        AuditAction.ACCESS_DENIED,
        error.user_id,
        actor=actor,
        outcome=AuditOutcome.DENIED,
        refused=error.action,
        reason="outside_sites",
    )


def _check_user_fields(
    *,
    username: str | None,
    full_name: str,
    email: str | None,
    role: Role,
    sites: list[Site],
    is_prescriber: bool,
    all_sites: bool,
    actor: User | None,
    may_dispense: bool = False,
) -> None:
    if username is not None and (
        not (2 <= len(username) <= USERNAME_MAX) or not set(username) <= USERNAME_CHARS
    ):
        raise DomainError(
            "Use 2 to 64 letters, digits, dots, dashes or underscores.", field="username"
        )
    # The forms refuse these already; the CLI and other callers are held to the same rule.
    for field, value in (("full_name", full_name), ("email", email or "")):
        if has_control_characters(value):
            raise DomainError(CONTROL_CHARACTER_MESSAGE, field=field)
    if is_prescriber and role != Role.CLINICIAN:
        raise DomainError("Only clinicians can be prescribers.", field="is_prescriber")
    if may_dispense and role != Role.CLINICIAN:
        raise DomainError("Only clinicians can dispense.", field="may_dispense")
    if all_sites and role != Role.ADMIN:
        raise DomainError("Only administrators can work at all sites.", field="all_sites")
    if all_sites and actor is not None and not actor.all_sites:
        raise DomainError(
            "Only an organisation-wide administrator can grant all sites.", field="all_sites"
        )
    if not all_sites and not sites:
        raise DomainError("Choose at least one site.", field="sites")
    if actor is not None and not actor.all_sites:
        outside = {s.id for s in sites} - actor.site_ids
        if outside:
            raise DomainError("You can only assign your own sites.", field="sites")


def _is_violation_of(error: sa.exc.IntegrityError, constraint: sa.Constraint) -> bool:
    """Whether ``error`` is the violation of ``constraint`` (a unique constraint):
    PostgreSQL names the constraint; SQLite names its columns."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:
        return diag.constraint_name == constraint.name
    columns = ", ".join(f"{c.table.name}.{c.name}" for c in constraint.columns)
    return str(error.orig) == f"UNIQUE constraint failed: {columns}"


def _username_constraint() -> sa.Constraint:
    return next(c for c in User.__table__.constraints if c.name == "uq_app_user_username")


def create_user(
    *,
    actor: User | None,
    username: str,
    full_name: str,
    role: Role,
    password: str,
    sites: Iterable[Site] = (),
    email: str | None = None,
    is_prescriber: bool = False,
    all_sites: bool = False,
    must_change_password: bool = False,
    may_dispense: bool = False,
) -> User:
    """Add a user. ``actor`` is None for the operator's CLI.

    A site administrator may create users only at their own sites, and never one who
    works at all sites. Usernames are unique (the ``uq_app_user_username`` constraint):
    a name taken by a request at the same moment (a double click, a race) is refused
    like one taken long ago, with DomainError "That username is taken." on ``username``;
    the caller rolls back, as for every DomainError.
    """
    username = normalise_username(username)
    role = Role(role)
    sites = list(sites)
    _check_user_fields(
        username=username,
        full_name=full_name,
        email=email,
        role=role,
        sites=sites,
        is_prescriber=is_prescriber,
        all_sites=all_sites,
        actor=actor,
        may_dispense=may_dispense,
    )
    if user_by_username(username) is not None:
        raise DomainError(USERNAME_TAKEN, field="username")
    problems = passwords.password_problems(password, username=username, other_inputs=[full_name])
    if problems:
        raise DomainError(" ".join(problems), field="password")
    user = User(
        username=username,
        full_name=full_name.strip(),
        email=(email or "").strip() or None,
        role=role,
        is_prescriber=is_prescriber,
        may_dispense=may_dispense,
        all_sites=all_sites,
        password_hash=passwords.hash_password(password),
        must_change_password=must_change_password,
        sites=sites,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except sa.exc.IntegrityError as error:
        # The check above passed, but another request took the name before this insert.
        if _is_violation_of(error, _username_constraint()):
            raise DomainError(USERNAME_TAKEN, field="username") from None
        raise
    audit_user(
        AuditAction.CREATE, user.id, actor=actor, role=role.value, via="web" if actor else "cli"
    )
    return user


def lock_user_rows(condition: sa.ColumnElement[bool]) -> list[int]:
    """Lock the rows of ``app_user`` matching ``condition`` until the transaction ends,
    and return their ids (in id order, so two lockers never deadlock).

    PostgreSQL: SELECT ... FOR UPDATE; a second locker waits, then sees the first one's
    committed change. SQLite has no row locks and pysqlite opens a transaction only at
    the first write, so a no-op UPDATE of the rows takes the database's single write lock
    now: a second writer waits (busy_timeout) and reads after the first one committed.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            sa.update(User)
            .where(condition)
            .values(role=User.role)
            .execution_options(synchronize_session=False)
        )
        return list(db.session.scalars(sa.select(User.id).where(condition).order_by(User.id)))
    return list(
        db.session.scalars(sa.select(User.id).where(condition).order_by(User.id).with_for_update())
    )


def _lock_for_change(user: User) -> None:
    """Lock ``user``'s row and every active administrator's row until the transaction
    ends, then read ``user`` again (sites included).

    The checks that follow are made on rows no other change can alter before this one
    commits: whether the actor may change the user (an organisation-wide administrator
    giving them another site at the same moment is waited for), and whether they are the
    last active administrator (two administrators deactivating or demoting each other at
    the same moment: the second waits for the first, then counts again). One statement
    locks them all, in id order, so two changes never deadlock.
    """
    lock_user_rows(sa.or_(User.id == user.id, sa.and_(User.role == Role.ADMIN, User.active)))
    db.session.expire(user)


def check_profile_version(user: User, expected_version: ExpectedVersion) -> None:
    """Optimistic locking of an account's profile (``User.profile_version``): the version
    the administrator's form was built from must still be the account's. A form sent
    without its version (None: a crafted POST) is refused the same way. Called under
    ``_lock_for_change``, so two edits at the same moment take turns and the second is
    refused. Sign-ins write the same row but not this column: they never conflict."""
    if expected_version is NOT_FROM_A_FORM:
        return
    if expected_version is None or user.profile_version != expected_version:
        # Every edit conflict's type: the page shows the record's values beside the
        # user's (clinic.web.conflict_rows).
        raise ConflictError()


def _profile_changed(user: User) -> None:
    """Every administrator's write to the profile (name, email, role, sites, prescriber,
    active) makes the forms built from the previous one out of date."""
    user.profile_version = (user.profile_version or 1) + 1


def mark_profile_changed(user: User) -> None:
    """An administrator's change to the profile made through another domain's service
    (a trainee's supervisor, ``clinic.therapy.notes.set_trainee_supervisor``) also makes
    the forms built from the previous profile out of date."""
    _profile_changed(user)


def _refuse_losing_last_admin(user: User) -> None:
    """Refuse to demote or deactivate the last active administrator (DomainError).
    The caller has locked the rows (``_lock_for_change``), so the count holds until it
    commits."""
    if user.role != Role.ADMIN or not user.active:
        return
    others = db.session.scalar(
        sa.select(sa.func.count(User.id)).where(
            User.role == Role.ADMIN, User.active, User.id != user.id
        )
    )
    if not others:
        raise DomainError(LAST_ADMIN)


def update_user(
    user: User,
    *,
    actor: User,
    full_name: str,
    email: str | None,
    role: Role,
    sites: Iterable[Site],
    is_prescriber: bool,
    all_sites: bool,
    expected_version: ExpectedVersion = NOT_FROM_A_FORM,
    may_dispense: bool | None = None,
) -> list[str]:
    """Change a user's details, role and sites. A role change ends their sessions.

    ``expected_version``: the ``profile_version`` the administrator's form was built
    from; another administrator's change saved since is refused (``ConflictError``)
    rather than silently undone, and so is a form sent without it.

    Raises OutOfReachError when ``actor`` may not change ``user`` (``may_manage``: a site
    administrator, a user who also works elsewhere), before anything is changed. A site
    administrator assigns only their own sites and never all sites; they may make a user
    of their sites an administrator of those sites, which reaches no further than they do.
    An administrator cannot change their own role, and the last active administrator
    stays one (DomainError). Returns the names of the fields that changed.
    """
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="edit")
    check_profile_version(user, expected_version)
    role = Role(role)
    sites = list(sites)
    _check_user_fields(
        username=None,
        full_name=full_name,
        email=email,
        role=role,
        sites=sites,
        is_prescriber=is_prescriber,
        all_sites=all_sites,
        actor=actor,
        may_dispense=bool(may_dispense),
    )
    if role != user.role:
        if user.id == actor.id:
            raise DomainError("You cannot change your own role.", field="role")
        _refuse_losing_last_admin(user)
    changed = []
    new_values = {
        "full_name": full_name.strip(),
        "email": (email or "").strip() or None,
        "role": role,
        "is_prescriber": is_prescriber,
        "all_sites": all_sites,
    }
    if may_dispense is not None:  # None: not on the caller's form (the CLI): unchanged
        new_values["may_dispense"] = may_dispense
    for name, value in new_values.items():
        if getattr(user, name) != value:
            setattr(user, name, value)
            changed.append(name)
    if {s.id for s in sites} != user.site_ids:
        user.sites = sites
        changed.append("sites")
    if changed:
        _profile_changed(user)
    if "role" in changed:
        revoke_all_sessions(user, reason="role_changed")
    db.session.flush()
    if changed:
        audit_user(AuditAction.UPDATE, user.id, actor=actor, fields=changed)
    return changed


def deactivate_user(
    user: User, *, actor: User | None, expected_version: ExpectedVersion = NOT_FROM_A_FORM
) -> None:
    """Deactivate (never delete) a user; their sessions end at once. ``actor`` is None
    for the operator's CLI.

    Raises OutOfReachError (``may_manage``) first; DomainError for oneself, for the
    last active administrator, and over a newer profile (``check_profile_version``).
    """
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="deactivate")
    check_profile_version(user, expected_version)
    if actor is not None and user.id == actor.id:
        raise DomainError("You cannot deactivate yourself.")
    _refuse_losing_last_admin(user)
    if user.active:
        _profile_changed(user)
    user.active = False
    revoke_all_sessions(user, reason="deactivated")
    db.session.flush()
    audit_user(AuditAction.DEACTIVATE, user.id, actor=actor, via="web" if actor else "cli")


def reactivate_user(
    user: User, *, actor: User, expected_version: ExpectedVersion = NOT_FROM_A_FORM
) -> None:
    """Let a deactivated user sign in again. Raises OutOfReachError (``may_manage``),
    and DomainError over a newer profile (``check_profile_version``)."""
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="reactivate")
    check_profile_version(user, expected_version)
    if not user.active:
        _profile_changed(user)
    user.active = True
    user.failed_logins = 0
    user.locked_until = None
    db.session.flush()
    audit_user(AuditAction.REACTIVATE, user.id, actor=actor)


def reset_password(user: User, *, actor: User | None) -> str:
    """Give the user a temporary password, to be changed at their next login; returns it.
    ``actor`` is None for the operator's CLI (``flask users reset-password``).
    Raises OutOfReachError (``may_manage``): a password reset hands over the account."""
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="reset-password")
    temporary = passwords.generate_password()
    user.password_hash = passwords.hash_password(temporary)
    user.password_changed_at = utcnow()
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    revoke_all_sessions(user, reason="password_reset")
    db.session.flush()
    who = {"reset_by_administrator": True} if actor is not None else {"reset_by_operator": True}
    audit_user(AuditAction.PASSWORD_CHANGE, user.id, actor=actor, **who)
    return temporary


def unlock_user(user: User, *, actor: User | None) -> None:
    """Clear the failed sign-ins and the lock. ``actor`` is None for the operator's CLI.
    Raises OutOfReachError (``may_manage``)."""
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="unlock")
    user.failed_logins = 0
    user.locked_until = None
    db.session.flush()
    audit_user(AuditAction.UNLOCK, user.id, actor=actor, via="web" if actor else "cli")


def reset_mfa(user: User, *, actor: User) -> None:
    """For a user who lost their authenticator: they enrol again at the next login.
    Raises OutOfReachError (``may_manage``)."""
    _lock_for_change(user)
    check_may_manage(user, actor=actor, action="reset-mfa")
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_timestep = None
    user.recovery_codes.clear()
    revoke_all_sessions(user, reason="mfa_reset")
    db.session.flush()
    audit_user(AuditAction.MFA_CHANGE, user.id, actor=actor, change="reset_by_administrator")


def change_password(user: User, *, current_password: str, new_password: str) -> None:
    """The user's own change: needs the current password; ends every session of theirs
    (the caller starts a fresh one for the current browser)."""
    if not passwords.verify_password(user.password_hash, current_password):
        raise DomainError("That is not your current password.", field="current_password")
    if current_password == new_password:
        raise DomainError("Choose a password you have not just used.", field="new_password")
    problems = passwords.password_problems(
        new_password, username=user.username, other_inputs=[user.full_name]
    )
    if problems:
        raise DomainError(" ".join(problems), field="new_password")
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    revoke_all_sessions(user, reason="password_changed")
    db.session.flush()
    audit_user(AuditAction.PASSWORD_CHANGE, user.id, actor=user)


def end_sessions(user: User, *, actor: User, keep_session_id: int | None = None) -> int:
    """An administrator's "sign out everywhere", or the user's own "sign out my other
    sessions" (``keep_session_id``: this browser's session, which keeps its time limits).
    Returns how many sessions ended. Raises OutOfReachError when an administrator may
    not change ``user`` (``may_manage``)."""
    if actor.id != user.id:
        _lock_for_change(user)
        check_may_manage(user, actor=actor, action="end-sessions")
    reason = "ended_by_user" if actor.id == user.id else "ended_by_admin"
    ended = revoke_all_sessions(user, reason=reason, except_session_id=keep_session_id)
    audit_user(AuditAction.SESSIONS_ENDED, user.id, actor=actor, sessions=ended)
    return ended

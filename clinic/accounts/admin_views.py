"""User administration (administrators only)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.accounts import services, user_sessions
from clinic.accounts.forms import ConfirmForm, NewUserForm, UserForm
from clinic.accounts.models import User
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.pagination import SortSpec, paginate_sorted
from clinic.security import Permission, Role, require_permission
from clinic.sites.models import Site
from clinic.therapy import notes as therapy_notes
from clinic.web import Once, conflict_rows, save

bp = Blueprint("users", __name__, url_prefix="/admin/users")

USER_SORTS = SortSpec(
    {
        "username": User.username,
        "name": User.full_name,
        "role": User.role,
        "last_login": User.last_login_at,
    },
    default="username",
    params=("q", "show"),
)


def _user_or_404(user_id: int) -> User:
    """Load then authorise: a user outside the administrator's sites is 'not found'."""
    user = services.get_visible_user(current_user, user_id)
    if user is None:
        record_denied("user", user_id)
        abort(404)
    return user


def _site_choices(form: UserForm, user: User | None = None) -> None:
    sites = services.assignable_sites(current_user)
    form.sites.choices = [SelectChoice(s.id, f"{s.code} — {s.name}") for s in sites]


def _supervisor_choices(form: UserForm, user: User | None = None) -> None:
    """Active clinicians sharing a site with the trainee (on a new account, or one with
    no site yet: with the administrator's sites); ``set_trainee_supervisor`` checks the
    rule again against the sites saved."""
    site_ids = user.site_ids if user is not None and user.site_ids else None
    if site_ids is None:
        site_ids = {s.id for s in services.assignable_sites(current_user)}
    query = (
        sa.select(User)
        .where(
            User.role == Role.CLINICIAN,
            User.active,
            User.sites.any(Site.id.in_(site_ids or {-1})),
        )
        .order_by(User.full_name, User.id)
    )
    if user is not None:
        query = query.where(User.id != user.id)
    form.supervisor_id.choices = [
        SelectChoice("", "None"),
        *(SelectChoice(u.id, f"{u.full_name} ({u.username})") for u in db.session.scalars(query)),
    ]


def _chosen_supervisor(form: UserForm) -> User | None:
    """The supervisor the form names, when it marks a trainee (the select only offers
    active clinicians of the trainee's sites: ``_supervisor_choices``)."""
    if not form.is_trainee.data or form.supervisor_id.data is None:
        return None
    return db.session.get(User, form.supervisor_id.data)


def _check_trainee_role(form: UserForm, supervisor: User | None) -> None:
    if supervisor is not None and form.role.data != Role.CLINICIAN.value:
        raise DomainError("Only clinicians are trainees.", field="is_trainee")


def _chosen_sites(form: UserForm) -> list[Site]:
    ids = [i for i in (form.sites.data or []) if isinstance(i, int)]
    if not ids:
        return []
    return list(db.session.scalars(sa.select(Site).where(Site.id.in_(ids))))


@bp.get("/")
@require_permission(Permission.USERS_MANAGE)
def index():
    show = request.args.get("show", "active")
    query = services.visible_users_query(current_user).options(sa.orm.selectinload(User.sites))
    if show == "active":
        query = query.where(User.active)
    elif show == "inactive":
        query = query.where(~User.active)
    search = request.args.get("q", "")
    search_error = None
    try:
        query = services.search_users(query, search)
    except DomainError as error:
        # A search no name can match (control characters, too long): say so, list nobody.
        search_error = error.message
        query = query.where(sa.false())
    page = paginate_sorted(query, USER_SORTS, tiebreak=User.id)
    return render_template(
        "accounts/admin/index.html",
        page=page,
        supervisors=_supervisor_names(page.items),
        show=show,
        q=search.strip() if search_error is None else "",  # never echo control characters
        search_error=search_error,
    )


@bp.route("/new", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def create():
    form = NewUserForm()
    _site_choices(form)
    _supervisor_choices(form)
    if form.validate_on_submit():
        outcome = save(form, lambda: _create_user(form))
        if outcome.saved:
            user = outcome.result
            flash(
                f"User {user.username} created. They must change the password at first login.",
                "success",
            )
            return redirect(url_for("users.detail", user_id=user.id))
    form.password.data = ""
    return render_template("accounts/admin/form.html", form=form, user=None)


def _create_user(form: NewUserForm) -> User:
    """The account, then (a trainee) its supervisor: one transaction (``save``)."""
    supervisor = _chosen_supervisor(form)
    _check_trainee_role(form, supervisor)
    user = services.create_user(
        actor=current_user,
        username=form.username.data,
        full_name=form.full_name.data,
        email=form.email.data,
        role=form.role.data,
        is_prescriber=form.is_prescriber.data,
        may_dispense=form.may_dispense.data,
        all_sites=form.all_sites.data,
        sites=_chosen_sites(form),
        password=form.password.data,
        must_change_password=True,
    )
    if supervisor is not None:
        therapy_notes.set_trainee_supervisor(user, actor=current_user, supervisor=supervisor)
    return user


def _update_user(user: User, form: UserForm) -> list[str]:
    """The profile, and the trainee's supervisor, in one transaction (``save``). A
    supervisor taken off goes first (a trainee is a clinician: CHECK
    trainee_has_supervisor, should the role change too); one given goes last (the role
    and sites it is checked against are the new ones). A change of supervisor alone makes
    older forms of this account out of date too (its profile version)."""
    supervisor = _chosen_supervisor(form)
    _check_trainee_role(form, supervisor)
    new_supervisor_id = supervisor.id if supervisor is not None else None
    supervision_changed = new_supervisor_id != user.supervisor_id
    if supervision_changed and supervisor is None:
        services.check_may_manage(user, actor=current_user, action="edit")
        services.check_profile_version(user, form.version_number)
        therapy_notes.set_trainee_supervisor(user, actor=current_user, supervisor=None)
    changed = services.update_user(
        user,
        actor=current_user,
        full_name=form.full_name.data,
        email=form.email.data,
        role=form.role.data,
        sites=_chosen_sites(form),
        is_prescriber=form.is_prescriber.data,
        may_dispense=form.may_dispense.data,
        all_sites=form.all_sites.data,
        expected_version=form.version_number,
    )
    if supervision_changed and supervisor is not None:
        therapy_notes.set_trainee_supervisor(user, actor=current_user, supervisor=supervisor)
    if supervision_changed:
        if not changed:
            services.mark_profile_changed(user)
            db.session.flush()
        changed = [*changed, "supervisor_id"]
    return changed


def _supervisor_names(users) -> dict[int, str]:
    """The supervisors' names of these accounts, by id: one query."""
    ids = {u.supervisor_id for u in users if u.supervisor_id is not None}
    if not ids:
        return {}
    rows = db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(ids)))
    return {row.id: row.full_name for row in rows}


@bp.get("/<int:user_id>")
@require_permission(Permission.USERS_MANAGE)
def detail(user_id: int):
    user = _user_or_404(user_id)
    return render_template(
        "accounts/admin/detail.html",
        user=user,
        supervisors=_supervisor_names([user]),
        sessions=user_sessions.live_sessions(user),
        confirm_form=ConfirmForm(),
        may_manage=services.may_manage(current_user, user),
    )


def _refused(error: services.OutOfReachError, user: User):
    """Undo whatever the request changed, record the refusal, and go back to the user's
    page with the reason. The pages that change an account are not shown for a user the
    administrator may not change (rather than a read-only form): the user's page shows
    everything there is to see."""
    db.session.rollback()
    services.record_refusal(error, actor=current_user)
    flash(error.message, "error")
    return redirect(url_for("users.detail", user_id=user.id))


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def edit(user_id: int):
    user = _user_or_404(user_id)
    if request.method == "GET":
        try:
            services.check_may_manage(user, actor=current_user, action="edit")
        except services.OutOfReachError as error:
            return _refused(error, user)
    form = UserForm(obj=user) if request.method == "GET" else UserForm()
    _site_choices(form, user)
    _supervisor_choices(form, user)
    if request.method == "GET" and not form.restored:
        form.role.data = user.role.value
        form.sites.data = [s.id for s in user.sites]
        form.version.data = user.profile_version
    conflict = None
    if form.validate_on_submit():
        # A refusal is shown once, next to its field or on top of the form (never also
        # flashed), as on every other edit page.
        outcome = save(
            form,
            lambda: _update_user(user, form),
            # A double click shows the first save's result, not a conflict with itself.
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="user_edit",
                result_url=lambda _result: url_for("users.detail", user_id=user.id),
                required=False,
            ),
        )
        if outcome.repeated_url:
            flash("This form had already been sent: it was saved once.", "info")
            return redirect(outcome.repeated_url)
        if isinstance(outcome.error, services.OutOfReachError):
            return _refused(outcome.error, user)  # rolled back by save(); now recorded
        if outcome.saved:
            flash("Saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("users.detail", user_id=user.id))
        conflict = conflict_rows(
            outcome, form, user, _profile_values, version_attr="profile_version"
        )
    return render_template("accounts/admin/form.html", form=form, user=user, conflict=conflict)


def _profile_values(user: User) -> dict[str, str]:
    """The profile as the edit form shows it, for a conflict's comparison."""
    return {
        "full_name": user.full_name,
        "email": user.email or "—",
        "role": user.role.label,
        "is_prescriber": "yes" if user.is_prescriber else "no",
        "may_dispense": "yes" if user.may_dispense else "no",
        "all_sites": "yes" if user.all_sites else "no",
        "sites": ", ".join(f"{s.code} — {s.name}" for s in user.sites) or "—",
        "supervisor_id": _supervisor_names([user]).get(user.supervisor_id, "—"),
    }


ACTIONS = {
    "deactivate": (
        "Deactivate",
        "They are signed out at once and can no longer sign in. Their records stay.",
        "danger",
    ),
    "reactivate": ("Reactivate", "They can sign in again with their password.", "primary"),
    "reset-password": (
        "Reset password",
        "Their current password stops working and every session of theirs ends. "
        "You will be shown a temporary password to hand over; they must change it.",
        "warning",
    ),
    "unlock": ("Unlock", "Clears the failed sign-in count and the lock.", "primary"),
    "end-sessions": ("End all sessions", "Signs them out everywhere.", "warning"),
    "reset-mfa": (
        "Reset two-step verification",
        "Their authenticator and recovery codes stop working; they enrol again.",
        "warning",
    ),
}


ACTION_RULE = "/<int:user_id>/<any(" + ",".join(f"'{a}'" for a in ACTIONS) + "):action>"


@bp.route(ACTION_RULE, methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def act(user_id: int, action: str):
    """Confirm (GET), then carry out (POST) an action on a user account."""
    user = _user_or_404(user_id)
    form = ConfirmForm()
    title, explanation, style = ACTIONS[action]
    if request.method == "GET":
        try:
            services.check_may_manage(user, actor=current_user, action=action)
        except services.OutOfReachError as error:
            return _refused(error, user)
    if form.validate_on_submit():
        temporary = None
        try:
            if action == "deactivate":
                services.deactivate_user(user, actor=current_user)
            elif action == "reactivate":
                services.reactivate_user(user, actor=current_user)
            elif action == "reset-password":
                temporary = services.reset_password(user, actor=current_user)
            elif action == "unlock":
                services.unlock_user(user, actor=current_user)
            elif action == "end-sessions":
                services.end_sessions(user, actor=current_user)
            elif action == "reset-mfa":
                services.reset_mfa(user, actor=current_user)
        except services.OutOfReachError as error:
            return _refused(error, user)
        except DomainError as error:
            db.session.rollback()
            flash(error.message, "error")
            return redirect(url_for("users.detail", user_id=user.id))
        db.session.commit()
        if temporary:
            return render_template(
                "accounts/admin/temporary_password.html", user=user, temporary=temporary
            )
        flash(f"{title}: done for {user.username}.", "success")
        return redirect(url_for("users.detail", user_id=user.id))
    return render_template(
        "accounts/admin/confirm.html",
        user=user,
        form=form,
        title=title,
        explanation=explanation,
        style=style,
    )

"""Sign-in, sign-out, second factor and the user's own account pages."""

from __future__ import annotations

import time

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from clinic.accounts import authentication, services, user_sessions
from clinic.accounts.auth import clear_keeping_draft, complete_login, end_login, safe_next
from clinic.accounts.forms import (
    ChangePasswordForm,
    ConfirmForm,
    EnableMfaForm,
    LoginForm,
    PasswordConfirmForm,
    SecondFactorForm,
)
from clinic.accounts.models import User, UserSession
from clinic.errors import DomainError
from clinic.extensions import db, limiter
from clinic.security import SESSION_END_MESSAGES, authenticated, public
from clinic.web import show_domain_error

bp = Blueprint("accounts", __name__)

LOGIN_FAILED = "Invalid username or password."
MFA_PENDING_SECONDS = 300
MFA_SETUP_EXPIRED = (
    "That set-up page had expired (it works for "
    f"{authentication.MFA_SETUP_MINUTES} minutes, in one tab): scan the new code below "
    "and enter the code your app then shows."
)


def login_rate_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(login_rate_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.home"))
    if request.method == "GET" and g.get("session_ended_reason") in SESSION_END_MESSAGES:
        # The page replaced itself at the idle sign-out: say why.
        flash(SESSION_END_MESSAGES[g.session_ended_reason], "warning")
    # Checked before anything is written: nothing in the request can fail after the
    # session is created.
    next_url = safe_next(request.args.get("next"))
    form = LoginForm()
    if form.validate_on_submit():
        attempt = authentication.authenticate(form.username.data, form.password.data)
        db.session.commit()  # keep the failure count even when the login fails
        if attempt.user is not None:
            if attempt.user.mfa_enabled:
                clear_keeping_draft()
                session["mfa_user_id"] = attempt.user.id
                session["mfa_started"] = int(time.time())
                return redirect(url_for("accounts.second_factor", next=next_url))
            draft_path = complete_login(attempt.user)
            db.session.commit()
            return redirect(draft_path or next_url or url_for("main.home"))
        form.form_errors.append(LOGIN_FAILED)
    form.password.data = ""
    return render_template("accounts/login.html", form=form)


def _pending_mfa_user() -> User | None:
    user_id = session.get("mfa_user_id")
    started = session.get("mfa_started", 0)
    if not user_id or time.time() - started > MFA_PENDING_SECONDS:
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or user.is_locked() or not user.mfa_enabled:
        return None
    return user


@bp.route("/login/verify", methods=["GET", "POST"])
@public
@limiter.limit(login_rate_limit, methods=["POST"])
def second_factor():
    if current_user.is_authenticated:
        return redirect(url_for("main.home"))
    user = _pending_mfa_user()
    if user is None:
        session.pop("mfa_user_id", None)
        session.pop("mfa_started", None)
        flash("Sign in again.", "warning")
        return redirect(url_for("accounts.login"))
    next_url = safe_next(request.args.get("next"))  # before anything is written
    form = SecondFactorForm()
    if form.validate_on_submit():
        try:
            ok = authentication.verify_second_factor(user, form.code.data)
        except authentication.AuthenticatorUnavailable as error:
            db.session.commit()  # the audit event; logged for the administrators
            form.code.errors = [error.message]
        else:
            if ok:
                draft_path = complete_login(user)
                db.session.commit()
                return redirect(draft_path or next_url or url_for("main.home"))
            db.session.commit()  # the failure counts towards the lockout
            if user.is_locked():
                session.clear()
                flash(LOGIN_FAILED, "error")
                return redirect(url_for("accounts.login"))
            form.code.errors = ["That code is not valid (a code works only once)."]
    form.code.data = ""
    return render_template("accounts/second_factor.html", form=form)


@bp.post("/logout")
@authenticated
def logout():
    user_session_id = g.get("user_session_id")
    if user_session_id is not None:
        user_sessions.logout(db.session.get(UserSession, user_session_id))
        db.session.commit()
    end_login()
    flash("You have signed out.", "info")
    return redirect(url_for("accounts.login"))


@bp.post("/session/keep-alive")
@authenticated
def keep_alive():
    """The user is typing (clinic.static/session.js): reset the idle clock, never the
    absolute limit. CSRF-protected (the X-CSRFToken header). Answers the seconds left."""
    user_session = db.session.get(UserSession, g.user_session_id)
    seconds_left = user_sessions.keep_alive(user_session)
    db.session.commit()
    return jsonify(seconds_left=round(seconds_left, 1))


@bp.get("/account")
@authenticated
def account():
    return render_template(
        "accounts/account.html",
        sessions=user_sessions.live_sessions(current_user),
        current_session_id=g.get("user_session_id"),
        unused_codes=authentication.unused_recovery_codes(current_user),
        mfa_required=authentication.mfa_required_for(current_user),
        end_form=ConfirmForm(),
        disable_form=PasswordConfirmForm(),
    )


@bp.post("/account/sessions/end-others")
@authenticated
def end_other_sessions():
    form = ConfirmForm()
    if form.validate_on_submit():
        ended = services.end_sessions(
            current_user, actor=current_user, keep_session_id=g.get("user_session_id")
        )
        db.session.commit()
        flash(f"Ended {ended} other session(s).", "success")
    return redirect(url_for("accounts.account"))


@bp.route("/account/password", methods=["GET", "POST"])
@authenticated
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            services.change_password(
                current_user,
                current_password=form.current_password.data,
                new_password=form.new_password.data,
            )
        except DomainError as error:
            show_domain_error(form, error)
        else:
            complete_login(current_user)  # every old session ended; keep this browser in
            db.session.commit()
            flash("Your password was changed. Other sessions were signed out.", "success")
            return redirect(url_for("accounts.account"))
    for field in (form.current_password, form.new_password, form.confirm_password):
        field.data = ""
    return render_template("accounts/change_password.html", form=form)


@bp.route("/account/mfa", methods=["GET", "POST"])
@authenticated
def mfa_setup():
    """Each visit shows a new secret, kept encrypted on this browser's session row (never
    in the cookie) until it is confirmed, the user leaves the page (``auth``'s gate hook)
    or signs out, or ``MFA_SETUP_MINUTES`` pass."""
    form = EnableMfaForm()
    user_session = db.session.get(UserSession, g.user_session_id)
    session.pop("mfa_setup_secret", None)  # where releases before issue 16 kept it
    secret = None
    if request.method == "POST":
        secret = authentication.pending_mfa_setup(user_session)
        if secret is None:
            form.form_errors.append(MFA_SETUP_EXPIRED)
    if secret is None:
        secret = authentication.start_mfa_setup(user_session)
        db.session.commit()
    elif form.validate_on_submit():
        try:
            codes = authentication.enable_mfa(
                current_user, password=form.password.data, secret=secret, code=form.code.data
            )
        except DomainError as error:
            show_domain_error(form, error)
        else:
            authentication.forget_mfa_setup(user_session)
            complete_login(current_user)
            db.session.commit()
            flash("Two-step verification is on.", "success")
            return render_template("accounts/recovery_codes.html", codes=codes)
    uri = authentication.provisioning_uri(current_user, secret)
    qr_svg = segno.make(uri, error="m").svg_inline(
        scale=4, title="QR code for your authenticator app"
    )
    form.password.data = ""
    form.code.data = ""
    return render_template("accounts/mfa_setup.html", form=form, secret=secret, qr_svg=qr_svg)


@bp.post("/account/mfa/disable")
@authenticated
def mfa_disable():
    form = PasswordConfirmForm()
    if form.validate_on_submit():
        try:
            authentication.disable_mfa(current_user, password=form.password.data)
        except DomainError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            complete_login(current_user)
            db.session.commit()
            flash("Two-step verification is off.", "success")
    else:
        flash("Enter your password to turn off two-step verification.", "error")
    return redirect(url_for("accounts.account"))

"""Roles, the permission table, the login gate and the security headers.

Deny by default: every endpoint must declare who may use it, with ``@public``,
``@authenticated`` or ``@require_permission(...)``. The gate runs before every request
and refuses an endpoint that declares nothing, so a forgotten decorator fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, abort, current_app, flash, g, redirect, request, url_for
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])


class Role(StrEnum):
    ADMIN = "admin"
    CLINICIAN = "clinician"
    STAFF = "staff"

    @property
    def label(self) -> str:
        return {"admin": "Administrator", "clinician": "Clinician", "staff": "Staff"}[self]


class Permission(StrEnum):
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    PATIENTS_READ = "patients.read"
    PATIENTS_REGISTER = "patients.register"  # register and edit demographics
    PATIENTS_MARK_ERROR = "patients.mark_error"
    ENROLLMENT_MANAGE = "enrollment.manage"  # admit, transfer, discharge
    DEADLINES_RECORD = "deadlines.record"  # exam, assessment, care plan and reviews
    PROGRAMS_MANAGE = "programs.manage"
    BREAK_GLASS = "break_glass"
    MEDICATION_READ = "medication.read"  # dose details, orders, holds, flags
    MEDICATION_ORDER = "medication.order"  # write orders: clinicians with the prescriber flag
    MEDICATION_HOLD = "medication.hold"  # holds, flags, missed-dose reviews
    DOSE_RECORD = "dose.record"  # record doses: clinicians with the may-dispense flag
    # Therapy (issue 11): session metadata (date, kind, modality, clinician, attendance,
    # minutes) for every role; note text and addenda for clinicians only.
    SESSIONS_READ = "sessions.read"
    SESSIONS_RECORD = "sessions.record"  # plan, record, write and sign notes
    NOTES_READ = "notes.read"
    # Aftercare (issue 12): the resource directory, support networks, 42 CFR Part 2 consents,
    # referrals and the accounting of disclosures.
    RESOURCES_MANAGE = "resources.manage"  # add, edit, import the aftercare directory
    AFTERCARE_READ = "aftercare.read"  # the directory, a patient's consents and referrals
    CONSENTS_RECORD = "consents.record"  # consents, revocations, restriction requests
    REFERRALS_MANAGE = "referrals.manage"  # support people, referrals, sending (disclosure)
    # Take-homes and drug tests (issue 13). Every role sees who is due a test or a call-back;
    # only clinicians and administrators see results, decisions and bottle findings.
    TESTS_DUE = "tests.due"  # the random-test worklist, today's draw, call-backs due
    DRUG_TESTS_READ = "drug_tests.read"  # results and the test history
    DRUG_TESTS_RECORD = "drug_tests.record"  # collect a test, enter results
    TAKE_HOMES_READ = "take_homes.read"  # decisions, the review list, bottles, incidents
    TAKE_HOMES_DECIDE = "take_homes.decide"  # record and review decisions, returns, call-backs
    TAKE_HOMES_APPROVE = "take_homes.approve"  # approve a decision: prescribers only
    CALENDAR_MANAGE = "calendar.manage"  # the site's closed weekdays and holidays
    REPORTS_READ = "reports.read"  # census, retention, continuity and the other reports


# What each role may do (DOMAIN.md, "Who uses it"). Later features add their rows.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            Permission.USERS_MANAGE,
            Permission.AUDIT_READ,
            Permission.PATIENTS_READ,
            Permission.PATIENTS_REGISTER,
            Permission.PATIENTS_MARK_ERROR,
            Permission.ENROLLMENT_MANAGE,
            Permission.DEADLINES_RECORD,
            Permission.PROGRAMS_MANAGE,
            Permission.MEDICATION_READ,
            Permission.SESSIONS_READ,
            Permission.RESOURCES_MANAGE,
            Permission.AFTERCARE_READ,
            Permission.CONSENTS_RECORD,
            Permission.REFERRALS_MANAGE,
            Permission.TESTS_DUE,
            Permission.DRUG_TESTS_READ,
            Permission.TAKE_HOMES_READ,
            Permission.CALENDAR_MANAGE,
            Permission.REPORTS_READ,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            Permission.PATIENTS_READ,
            Permission.ENROLLMENT_MANAGE,
            Permission.DEADLINES_RECORD,
            Permission.BREAK_GLASS,
            Permission.MEDICATION_READ,
            Permission.MEDICATION_ORDER,
            Permission.MEDICATION_HOLD,
            Permission.DOSE_RECORD,
            Permission.SESSIONS_READ,
            Permission.SESSIONS_RECORD,
            Permission.NOTES_READ,
            Permission.AFTERCARE_READ,
            Permission.TESTS_DUE,
            Permission.DRUG_TESTS_READ,
            Permission.DRUG_TESTS_RECORD,
            Permission.TAKE_HOMES_READ,
            Permission.TAKE_HOMES_DECIDE,
            Permission.TAKE_HOMES_APPROVE,
        }
    ),
    Role.STAFF: frozenset(
        {
            Permission.PATIENTS_READ,
            Permission.PATIENTS_REGISTER,
            Permission.SESSIONS_READ,
            Permission.RESOURCES_MANAGE,
            Permission.AFTERCARE_READ,
            Permission.CONSENTS_RECORD,
            Permission.REFERRALS_MANAGE,
            Permission.TESTS_DUE,
        }
    ),
}

# Permissions a role grants only to users who also carry a flag on their account (set by
# administrators): ``User.can`` consults this, so ``@require_permission`` and templates agree.
PERMISSION_USER_FLAGS: dict[Permission, str] = {
    Permission.MEDICATION_ORDER: "is_prescriber",
    Permission.DOSE_RECORD: "may_dispense",
    Permission.TAKE_HOMES_APPROVE: "is_prescriber",
}

SESSION_END_MESSAGES = {
    "idle_timeout": "You were signed out after a period of inactivity.",
    "absolute_timeout": "Your session reached its time limit. Please sign in again.",
    "revoked": "Your session was ended. Please sign in again.",
}

PUBLIC = "public"
AUTHENTICATED = "authenticated"
# Endpoints that extensions register, which carry no declaration of ours.
PUBLIC_ENDPOINTS = frozenset({"static", "bootstrap.static"})


def access_of(view: Callable[..., Any] | None) -> str | Permission | None:
    """The declaration on a view: PUBLIC, AUTHENTICATED, a Permission, or None."""
    return getattr(view, "_clinic_access", None)


def endpoint_access(app: Flask, endpoint: str) -> str | Permission | None:
    if endpoint in PUBLIC_ENDPOINTS:
        return PUBLIC
    return access_of(app.view_functions.get(endpoint))


def _declare(access: str | Permission) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        view._clinic_access = access  # type: ignore[attr-defined]
        return view

    return decorator


public = _declare(PUBLIC)
"""Anyone, logged in or not (login page, health check)."""

authenticated = _declare(AUTHENTICATED)
"""Any logged-in user, whatever the role (home page, own account)."""


def require_permission(permission: Permission) -> Callable[[F], F]:
    """Logged-in users whose role grants ``permission``; others get 403.

    The gate checks it before the view runs; the wrapper checks again, so the rule holds
    even if the view is called some other way.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated or not current_user.can(permission):
                abort(403)
            return view(*args, **kwargs)

        wrapped._clinic_access = permission  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def role_can(role: Role | str, permission: Permission) -> bool:
    return Permission(permission) in ROLE_PERMISSIONS.get(Role(role), frozenset())


# Hooks that later modules (accounts) add: each may return a response to stop the request.
_gate_hooks: list[Callable[[str | Permission], Response | None]] = []


def add_gate_hook(hook: Callable[[str | Permission], Response | None]) -> None:
    if hook not in _gate_hooks:
        _gate_hooks.append(hook)


# Called for a POST whose session has just timed out, before the 401: may keep the form
# and answer with a redirect to the sign-in page (accounts: clinic.accounts.drafts).
_signed_out_post_hooks: list[Callable[[], Response | None]] = []


def add_signed_out_post_hook(hook: Callable[[], Response | None]) -> None:
    if hook not in _signed_out_post_hooks:
        _signed_out_post_hooks.append(hook)


def login_gate() -> Response | None:
    if request.endpoint is None:
        return None  # no route matched: the 404 handler answers
    access = endpoint_access(current_app, request.endpoint)
    if access is None:
        current_app.logger.error("endpoint %s declares no access rule", request.endpoint)
        abort(403)
    if access == PUBLIC:
        return None
    if not current_user.is_authenticated:
        if g.get("session_ended_reason") in SESSION_END_MESSAGES:
            flash(SESSION_END_MESSAGES[g.session_ended_reason], "warning")
        if request.method == "GET":
            return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
        for signed_out_hook in _signed_out_post_hooks:
            response = signed_out_hook()
            if response is not None:
                return response
        abort(401)
    for hook in _gate_hooks:
        response = hook(access)
        if response is not None:
            return response
    if access != AUTHENTICATED and not current_user.can(access):
        abort(403)
    return None


CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_app.config["HSTS_ENABLED"]:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    if request.endpoint not in PUBLIC_ENDPOINTS:
        # Pages may show patient data: never keep them in a browser or proxy cache.
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    return response


def register(app: Flask) -> None:
    app.before_request(login_gate)
    app.after_request(security_headers)

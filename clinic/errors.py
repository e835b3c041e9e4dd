"""The domain error type and the HTTP error pages (which reveal nothing internal)."""

from __future__ import annotations

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from clinic.extensions import db


class DomainError(Exception):
    """A business rule refused an action. ``field`` names the form field it concerns."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


PAGES = {400, 403, 404, 405, 429, 500}


def _render(code: int, description: str | None = None):
    return (
        render_template(
            f"errors/{code if code in PAGES else 'generic'}.html",
            code=code,
            description=description,
        ),
        code,
    )


def record_denied(
    entity_type: str | None = None, entity_id: int | None = None, patient_id: int | None = None
) -> None:
    """Record a refused request in the audit trail (committed after the response)."""
    from flask_login import current_user

    from clinic.audit import AuditAction, AuditOutcome, record

    record(
        AuditAction.ACCESS_DENIED,
        actor=current_user,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient_id,
        outcome=AuditOutcome.DENIED,
        details={"endpoint": request.endpoint, "method": request.method},
    )


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        if request.path.startswith("/healthz"):
            return exc
        if exc.code == 403:
            record_denied()
        return _render(exc.code)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        """A form page (GET and POST) is shown again with the user's input and a message on
        the form, which fails its own CSRF check; nothing is saved. Other POSTs get a 400."""
        from clinic.security import login_gate

        rule = request.url_rule
        view = app.view_functions.get(request.endpoint or "")
        if rule is not None and view is not None and {"GET", "POST"} <= (rule.methods or set()):
            g.csrf_refused = True  # ClinicForm.validate_on_submit() now answers False
            try:
                refused = login_gate()  # the gate had not run yet: CSRF is checked first
                if refused is not None:
                    return refused
                return view(**(request.view_args or {})), 400
            except HTTPException as refusal:
                return _render(refusal.code or 400)
        return _render(
            400,
            "Your form expired or was sent without its security token. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        db.session.rollback()
        return _render(500)

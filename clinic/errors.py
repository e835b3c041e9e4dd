"""The domain error type and the HTTP error pages (which reveal nothing internal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import (
    Flask,
    current_app,
    g,
    has_request_context,
    make_response,
    render_template,
    request,
)
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from sqlalchemy import event
from werkzeug.exceptions import HTTPException, InternalServerError

from clinic.extensions import db

CSRF_REFUSED_DESCRIPTION = (
    "Your form expired or was sent without its security token. "
    "Go back, reload the page and try again."
)


class DomainError(Exception):
    """A business rule refused an action. ``field`` names the form field it concerns."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


CONFLICT_MESSAGE = (
    "Someone else changed this record after you opened it. Your entries are still in the "
    "form: check the record's current values, then save again."
)


class ConflictError(DomainError):
    """Optimistic locking refused a save: the record changed after the user's form was
    built from it (a service's version check, or the database's ``version_id_col``).
    Recognised by its type (``clinic.web.conflict_rows`` then shows the record's values
    beside the user's entries), never by its words."""

    def __init__(self, message: str = CONFLICT_MESSAGE) -> None:
        super().__init__(message)


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
    g.denial_recorded = True  # the 403 handler must not record the same refusal again


# --- a refused CSRF check must refuse ---------------------------------------------------
#
# To keep the user's input, the CSRF handler shows a form page again by running its view.
# Three guards make sure that run can only *show* the page:
# 1. ``g.csrf_refused``: ``ClinicForm.is_submitted()`` and ``validate_on_submit()`` answer
#    False, so a view's POST branch is never taken;
# 2. while the view runs, the database session refuses to flush, commit or execute an
#    INSERT/UPDATE/DELETE, and may not be left with unsaved changes (``WriteRefused``): a
#    view that acted outside its form check fails closed, its changes are rolled back and
#    the request is answered with the plain 400 page;
# 3. only a page (2xx) whose form carries the refusal message is shown again (the form
#    sets ``g.csrf_refusal_shown``): anything else becomes the plain 400 page.


class WriteRefused(RuntimeError):
    """A view tried to change the database while its page was shown after a CSRF refusal."""


def _writes_refused() -> bool:
    return has_request_context() and bool(g.get("csrf_rerendering"))


@contextmanager
def _refusing_writes() -> Iterator[None]:
    g.csrf_rerendering = True
    try:
        yield
    finally:
        g.csrf_rerendering = False


@event.listens_for(FlaskSession, "before_flush")
def _no_flush_while_refused(session: Any, flush_context: Any, instances: Any) -> None:
    if _writes_refused():
        raise WriteRefused("flush")


@event.listens_for(FlaskSession, "before_commit")
def _no_commit_while_refused(session: Any) -> None:
    if _writes_refused():
        raise WriteRefused("commit")


@event.listens_for(FlaskSession, "do_orm_execute")
def _no_dml_while_refused(state: Any) -> None:
    if _writes_refused() and (state.is_insert or state.is_update or state.is_delete):
        raise WriteRefused("statement")


def _show_form_again(view: Callable[..., Any], http_error: Callable[[HTTPException], Any]):
    from flask_login import current_user

    g.csrf_refused = True  # ClinicForm now never sees a submitted form
    # Load the signed-in user now: checking the session may legitimately write (its
    # last-seen time), which the guard below would refuse.
    _ = current_user.is_authenticated
    refusal: HTTPException | None = None
    try:
        with _refusing_writes():
            try:
                response = make_response(view(**(request.view_args or {})))
            except HTTPException as raised:  # the view's own refusal (404 out of reach)
                refusal = raised
            session = db.session()
            if session.new or session.dirty or session.deleted:
                # Changes the request's closing commit (page-view events) would save.
                raise WriteRefused("pending changes")
    except WriteRefused:
        db.session.rollback()
        current_app.logger.error(
            "view %s tried to write after a CSRF refusal; nothing was saved", request.endpoint
        )
        return _render(400, CSRF_REFUSED_DESCRIPTION)
    if refusal is not None:
        return http_error(refusal)
    # A view that answers its form's errors with 400 (the medication and therapy pages)
    # shows the page again as much as one that answers 200.
    shown = 200 <= response.status_code < 300 or response.status_code == 400
    if not shown or not _says_why(response):
        # A redirect or an error, or a page that does not say why the form was refused
        # (its view never checked the form, or its template did not show that form):
        # the plain 400 page says it.
        return _render(400, CSRF_REFUSED_DESCRIPTION)
    response.status_code = 400
    return response


def _says_why(response) -> bool:
    """The page shown again carries the refusal message (the form checked it and the
    template showed that form's errors)."""
    from clinic.forms import CSRF_REFUSED_MESSAGE

    if not g.get("csrf_refusal_shown"):
        return False
    body = response.get_data(as_text=True)
    # The form_errors macro marks the expired-token box; a form without a token field
    # shows the message among its form errors.
    return "data-csrf-refused" in body or escape(CSRF_REFUSED_MESSAGE) in body


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        if request.path.startswith("/healthz"):
            return exc
        if exc.code == 403 and not g.get("denial_recorded"):
            record_denied()
        return _render(exc.code)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        """Whoever may not use the page gets the login gate's answer (401/403) first. A
        form page (GET and POST) is shown again with the user's input and a message on the
        form; nothing is saved. Other POSTs get a 400."""
        from clinic.security import login_gate

        try:
            refused = login_gate()  # the gate had not run yet: the CSRF check answers first
        except HTTPException as refusal:
            return http_error(refusal)  # a 403 is recorded as any other
        if refused is not None:
            return refused
        rule = request.url_rule
        view = app.view_functions.get(request.endpoint or "")
        if rule is not None and view is not None and {"GET", "POST"} <= (rule.methods or set()):
            return _show_form_again(view, http_error)
        return _render(400, CSRF_REFUSED_DESCRIPTION)

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        db.session.rollback()
        return _render(500)

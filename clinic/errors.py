"""The domain error type and the HTTP error pages (which reveal nothing internal)."""

from __future__ import annotations

from flask import Flask, render_template, request
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


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        if request.path.startswith("/healthz"):
            return exc
        return _render(exc.code)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _render(
            400,
            "Your form expired or was sent without its security token. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        db.session.rollback()
        return _render(500)

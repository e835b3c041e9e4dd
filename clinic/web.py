"""Small helpers every blueprint's views share."""

from __future__ import annotations

from flask import flash

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import ClinicForm as FlaskForm


def show_domain_error(form: FlaskForm, error: DomainError) -> None:
    """Put a service's refusal next to the field it concerns (or on top of the form),
    and undo whatever the request had changed: nothing is saved half-way."""
    db.session.rollback()
    field = form._fields.get(error.field) if error.field else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)
        flash(error.message, "error")

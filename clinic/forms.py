"""The base form of every form in the app.

Three rules hold for every form, so no form can forget them:

- Text never carries control characters: NUL and the other C0 controls (tab and newline
  only in a textarea), DEL, the C1 controls, and the invisible bidirectional overrides
  and isolates (U+202A-U+202E, U+2066-U+2069) are refused with an error next to the
  field. PostgreSQL cannot store NUL at all, and a bidi override can make a name or a
  note read differently from what is stored ("Trojan Source", CVE-2021-42574).
- A whole number (``IntegerField``) fits the database's integer range (PostgreSQL's
  ``INTEGER``): a larger one is refused next to the field rather than failing in the
  database, whatever range the form itself allows.
- A request whose CSRF check failed never reaches a view's POST branch: the CSRF error
  handler shows the page again (with the user's input), and ``is_submitted()`` and
  ``validate_on_submit()`` answer False (see ``clinic.errors`` for the other guards).
"""

from __future__ import annotations

import re
from typing import Any

from flask import g, request
from flask_wtf import FlaskForm
from flask_wtf.form import SUBMIT_METHODS
from wtforms import IntegerField, StringField, TextAreaField

from clinic.converters import DATABASE_INT_MAX

# C0 controls but tab (09), newline (0A) and carriage return (0D), then DEL, C1 and the
# bidi embeddings/overrides/isolates. Tab/newline/CR are judged by the field's kind.
_ALWAYS_REFUSED = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
SINGLE_LINE_REFUSED = re.compile(f"[{_ALWAYS_REFUSED}\t\n\r]")
MULTI_LINE_REFUSED = re.compile(f"[{_ALWAYS_REFUSED}]")
CONTROL_CHARACTER_MESSAGE = (
    "Remove the control or invisible formatting characters (often pasted in by accident)."
)
NUMBER_TOO_LARGE_MESSAGE = "Enter a smaller number."
CSRF_REFUSED_MESSAGE = (
    "Your form expired or was sent without its security token. Nothing was saved: "
    "check your entries and send the form again."
)


def has_control_characters(value: str, *, multi_line: bool = False) -> bool:
    """True when ``value`` holds a character no text input may carry (see module doc).
    ``multi_line``: a textarea, where tab and line breaks (CR LF, LF) are allowed."""
    if multi_line:
        return MULTI_LINE_REFUSED.search(value.replace("\r\n", "\n").replace("\r", "")) is not None
    return SINGLE_LINE_REFUSED.search(value) is not None


class ClinicForm(FlaskForm):
    """Derive every form from this, never from ``FlaskForm`` directly."""

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for field in self:
            if isinstance(field, IntegerField) and isinstance(field.data, int):
                if abs(field.data) > DATABASE_INT_MAX and not field.errors:
                    field.errors = [*field.errors, NUMBER_TOO_LARGE_MESSAGE]
                    ok = False
                continue
            if not isinstance(field, StringField) or not isinstance(field.data, str):
                continue
            multi_line = isinstance(field, TextAreaField)
            if has_control_characters(field.data, multi_line=multi_line):
                field.errors = [*field.errors, CONTROL_CHARACTER_MESSAGE]
                ok = False
            elif multi_line and "\r" in field.data:
                # Browsers send a textarea's line breaks as CR LF: keep plain newlines.
                field.data = field.data.replace("\r\n", "\n").replace("\r", "\n")
        return ok

    def is_submitted(self) -> bool:
        # The CSRF error handler is showing this page again: to the view, nothing was sent
        # (the fields still show what the user typed).
        if g.get("csrf_refused"):
            return False
        return super().is_submitted()

    def validate_on_submit(self, extra_validators: Any = None) -> bool:
        if g.get("csrf_refused"):
            # The CSRF error handler is showing this page again: never act on it.
            if request.method in SUBMIT_METHODS:
                csrf_field = getattr(self, "csrf_token", None)
                if csrf_field is not None and not csrf_field.errors:
                    csrf_field.errors = [CSRF_REFUSED_MESSAGE]  # form_errors() shows it
                elif csrf_field is None and CSRF_REFUSED_MESSAGE not in self.form_errors:
                    self.form_errors.append(CSRF_REFUSED_MESSAGE)
                g.csrf_refusal_shown = True  # the page says why: the handler may show it
            return False
        return super().validate_on_submit(extra_validators=extra_validators)

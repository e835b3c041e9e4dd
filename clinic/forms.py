"""The base form of every form in the app.

Three rules hold for every form, so no form can forget them:

- Text never carries control characters: NUL and the other C0 controls (tab and newline
  only in a textarea), DEL, the C1 controls, the Unicode line and paragraph separators
  (U+2028, U+2029), the invisible bidirectional overrides, isolates and marks
  (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), and the invisible spaces and
  joiners that make two strings look alike (U+200B, U+2060-U+2064, U+FEFF, U+180E) are
  refused with an error next to the field. The zero-width (non-)joiners U+200C and U+200D
  stay allowed: Persian and Indic names are spelled with them. PostgreSQL cannot store
  NUL at all, and a bidi override can make a name or a note read differently from what
  is stored ("Trojan Source", CVE-2021-42574).
- A whole number (``IntegerField``) fits the database's integer range (PostgreSQL's
  ``INTEGER``): a larger one is refused next to the field rather than failing in the
  database, whatever range the form itself allows.
- A request whose CSRF check failed never reaches a view's POST branch: the CSRF error
  handler shows the page again (with the user's input), and ``is_submitted()`` and
  ``validate_on_submit()`` answer False (see ``clinic.errors`` for the other guards).

The first two hold for the fields of nested forms too (a ``FieldList`` of ``FormField``
rows, such as the attendee rows of a recorded session). ``TokenForm`` is the base of a form
that creates or changes something: its submission token is ``clinic.web.save``'s
idempotency key.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from flask import flash, g, request
from flask_wtf import FlaskForm
from flask_wtf.form import SUBMIT_METHODS, _Auto
from wtforms import (
    DateField,
    Field,
    FieldList,
    FormField,
    HiddenField,
    IntegerField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Length, Optional, ValidationError

from clinic.converters import DATABASE_INT_MAX

# C0 controls but tab (09), newline (0A) and carriage return (0D), then DEL, C1, the bidi
# embeddings/overrides/isolates/marks, the line/paragraph separators and the invisible
# spaces and joiners (module doc). Tab/newline/CR are judged by the field's kind.
_ALWAYS_REFUSED = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u180e\u200b\u200e\u200f"
    r"\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
)
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


# Set by clinic.accounts: on a GET, the fields of a form this user sent after their
# session had timed out (shown once, then forgotten), or None.
restored_formdata: Callable[[], Any] | None = None
RESTORED_MESSAGE = (
    "Your entries were kept while you signed in again. Nothing was saved yet: check them "
    "and send the form again."
)


# A typed-format hint ("YYYY-MM-DD"): wrong for <input type="date">, which shows the
# browser's own format (mm/dd/yyyy in a US Chromium), so typing the hint gave year 10730.
DATE_FORMAT_HINT = re.compile(r"\(?\b(?:YYYY-MM-DD|yyyy-mm-dd)\b\)?")
# The widest dates a date input offers: four-digit years only.
DATE_INPUT_MAX = "9999-12-31"


def _fit_date_input(field: DateField) -> None:
    """Drop a format hint from a date field's help (the browser shows its own format),
    and keep its year to four digits (``max``) unless the form set its own bounds."""
    description = str(field.description or "")
    if DATE_FORMAT_HINT.search(description):
        field.description = DATE_FORMAT_HINT.sub("", description).strip(" .,;:")
    render_kw = dict(field.render_kw or {})
    render_kw.setdefault("max", DATE_INPUT_MAX)
    field.render_kw = render_kw


def _leaf_fields(fields: Any) -> Iterator[Field]:
    """Every input field of a form, those of its nested rows included (``FieldList``
    entries, ``FormField`` subforms)."""
    for field in fields:
        if isinstance(field, FieldList):
            yield from _leaf_fields(field.entries)
        elif isinstance(field, FormField):
            yield from _leaf_fields(field.form)
        else:
            yield field


def _refresh_list_errors(fields: Any) -> None:
    """A ``FieldList`` gathers its entries' errors when it validates: gather them again
    after an error was added to a nested field (so ``form.errors`` shows it)."""
    for field in fields:
        if isinstance(field, FieldList):
            _refresh_list_errors(field.entries)
            errors = [entry.errors for entry in field.entries]
            field.errors = errors if any(errors) else []
        elif isinstance(field, FormField):
            _refresh_list_errors(field.form)


class ClinicForm(FlaskForm):
    """Derive every form from this, never from ``FlaskForm`` directly."""

    restored = False  # True when the fields show a form kept across a sign-in

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self:
            if isinstance(field, DateField):
                _fit_date_input(field)
        if args or "formdata" in kwargs or restored_formdata is None:
            return
        if request.method != "GET" or g.get("restored_form_used"):
            return
        data = restored_formdata()
        if not data or not any(name in self._fields for name in data if name != "csrf_token"):
            return
        # The page shows what the user had typed (never saved until sent again).
        g.restored_form_used = True
        self.restored = True
        same = {k: v for k, v in kwargs.items() if k not in {"meta", "prefix"}}
        self.process(data, **same)
        flash(RESTORED_MESSAGE, "warning")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for field in _leaf_fields(self):
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
        if not ok:
            _refresh_list_errors(self)
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


OUT_OF_DATE_FORM_MESSAGE = (
    "This form is incomplete or out of date, so nothing was saved: reload the page and "
    "enter your changes again."
)


def submission_token_field(*, required: bool = True) -> HiddenField:
    """The hidden field holding a form's submission token (``arm`` fills it). Required on
    a form that creates something (without it a double click creates twice); optional
    on an edit, where the record's version already refuses a repeat (only less kindly)."""
    checks = [Length(min=16, max=64, message=OUT_OF_DATE_FORM_MESSAGE)]
    return HiddenField(validators=checks if required else [Optional(), *checks])


def arm(form: FlaskForm, *, fresh: bool) -> None:
    """A new random token on a ``fresh`` form (a page opened, not one sent back); a form
    sent back with an error, or kept across a sign-in, keeps the token it had."""
    field = form.submission_token  # type: ignore[attr-defined]
    if fresh and not field.data:
        field.data = secrets.token_urlsafe(24)


def _record_version(form: Any, field: Any) -> None:
    """The version a form was built from is required: without it the optimistic lock
    could not tell an old form from a new one."""
    try:
        if int(field.data) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError(OUT_OF_DATE_FORM_MESSAGE) from None


def version_field() -> HiddenField:
    """The hidden field holding the version of the record an edit form was built from
    (its optimistic lock): required, a whole number from 1."""
    return HiddenField(validators=[_record_version])


# Hidden fields the user can neither see nor fix: their errors go on top of the form.
BOOKKEEPING_FIELDS = ("version", "submission_token")


class BookkeepingForm(ClinicForm):
    """A form with hidden bookkeeping fields (the ``version`` of the record it changes,
    a submission token): their errors, which no one can fix beside the field, are shown
    on top of the form."""

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for name in BOOKKEEPING_FIELDS:
            field = self._fields.get(name)
            for message in field.errors if field is not None else []:
                if message not in self.form_errors:
                    self.form_errors.append(message)
        return ok

    @property
    def version_number(self) -> int | None:
        """The record version the form was built from (None when absent or not a number)."""
        field = self._fields.get("version")
        try:
            return int(field.data) if field is not None else None
        except (TypeError, ValueError):
            return None


class TokenForm(BookkeepingForm):
    """A form that creates or changes something: a random submission token
    (``clinic.web.save``'s idempotency key), new on a fresh form, kept when the form comes
    back with an error or across a sign-in. Required here (a create); an edit form, which
    also carries the record's ``version`` (its optimistic lock), makes it optional with
    ``submission_token = submission_token_field(required=False)``."""

    submission_token = submission_token_field()

    def __init__(self, formdata: Any = _Auto, **kwargs: Any) -> None:
        if formdata is _Auto:
            # Not passed on: ClinicForm restores a form kept across a sign-in only when
            # the caller gave no formdata (clinic.accounts.drafts).
            super().__init__(**kwargs)
        else:
            super().__init__(formdata=formdata, **kwargs)
        arm(self, fresh=formdata is None or not self.is_submitted())

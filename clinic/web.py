"""Small helpers every blueprint's views share.

``save()`` is the one place where a form's service call is committed and every way it can
be refused becomes a message on the form: a service's ``DomainError`` (a stale version is
its subclass ``ConflictError``), an optimistic-lock conflict the database caught
(``StaleDataError``, made a ``ConflictError``) and a constraint the database enforced
for a request that raced another past the service's check (``IntegrityError``, mapped by
constraint name).
With ``once=``, it also makes a form idempotent: the same form posted twice (double
click, resend) shows the first result instead of creating a second record, or, for an
edit, instead of meeting its own first save as "someone else changed this record". A form
carries its token in a hidden field (``submission_token_field`` and ``arm``).

``conflict_rows()`` is the other half of an optimistic-lock refusal: the record's values
now beside the user's entries, and the form re-armed with the record's current version
(``templates/_conflict.html`` shows them). A conflict is recognised by its type
(``clinic.errors.ConflictError``), never by its words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from flask import flash
from sqlalchemy.orm.exc import StaleDataError
from wtforms import SelectChoice

from clinic.errors import CONFLICT_MESSAGE as CONFLICT_MESSAGE  # the pages' word for it
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import OUT_OF_DATE_FORM_MESSAGE as OUT_OF_DATE_FORM_MESSAGE
from clinic.forms import ClinicForm as FlaskForm
from clinic.forms import arm as arm  # the submission token's helpers live with the forms
from clinic.forms import submission_token_field as submission_token_field
from clinic.submissions import FormSubmission

T = TypeVar("T")

MISSING_SUBMISSION_KEY_MESSAGE = (
    "This form was sent incomplete, so nothing was saved: reload the page and send it again."
)
# A refusal the database gave for a rule the service also checks, with a message that
# depends on the winning record: run the service's checks again (now they see it).
RECHECK = "recheck"


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


def put_error_on_form(form: FlaskForm, error: DomainError) -> None:
    """The message next to its field, or once on top of the form (never also flashed:
    the form's own error box shows it)."""
    field = form._fields.get(error.field) if error.field else None
    if field is not None:
        if error.message not in field.errors:
            field.errors = [*field.errors, error.message]
    elif error.message not in form.form_errors:
        form.form_errors.append(error.message)


@dataclass
class Once:
    """An idempotency key: ``token`` is the form's hidden submission token, ``kind`` what
    the form creates or changes, ``result_url(result)`` where its first success led.
    ``required``: a post without a token is refused (a create); an edit without one is
    still saved once at most, by its version check."""

    token: str | None
    user_id: int
    kind: str
    result_url: Callable[[Any], str]
    required: bool = True


def already_sent(once: Once) -> str | None:
    """Where the first post of this form led, if it was saved: a page that would refuse
    the repeat before ``save()`` (a record marked entered in error, a discharge undone)
    shows the first result instead."""
    return _submitted(once) if once.token else None


@dataclass
class Outcome(Generic[T]):
    """What ``save()`` did. ``saved``: committed (by this request, or by an earlier post
    of the same form, then ``repeated_url`` is where that one led). Else ``error`` is on
    the form."""

    saved: bool
    result: T | None = None
    error: DomainError | None = None
    repeated_url: str | None = None


Refusal = DomainError | Callable[[], DomainError] | str


def save(
    form: FlaskForm,
    action: Callable[[], T],
    *,
    refusals: Mapping[str, Refusal] | None = None,
    once: Once | None = None,
) -> Outcome[T]:
    """Run ``action`` (a service call), commit, and turn a refusal into the form's message.

    - ``DomainError``: its message next to its field (or on top of the form).
    - ``StaleDataError`` (the row changed between the version check and the write): a
      ``ConflictError``, as a service's own version check raises.
    - ``IntegrityError``: the constraint's name (``constraint_name``) looked up in
      ``refusals``: a DomainError, a callable making one, or ``RECHECK`` (run ``action``
      again, rolled back: its checks now see the record that won). An unknown constraint
      is a bug and is raised (a 500).

    Any refusal rolls the whole request back. With ``once``, a post whose token was saved
    before (or by a racing post of the same form) is not run again: ``repeated_url``."""
    refusals = refusals or {}
    if once is not None and not once.token and not once.required:
        once = None  # an edit's version check still refuses a repeat
    if once is not None:
        if not once.token:
            error = DomainError(MISSING_SUBMISSION_KEY_MESSAGE)
            put_error_on_form(form, error)
            return Outcome(saved=False, error=error)
        first = _submitted(once)
        if first is not None:
            return Outcome(saved=True, repeated_url=first)
    try:
        result = action()
        if once is not None:
            _remember(once, result)
        db.session.commit()
    except DomainError as error:
        return _refused(form, error, once)
    except StaleDataError:
        return _refused(form, ConflictError(), once)
    except sa.exc.IntegrityError as exc:
        name = constraint_name(exc)
        db.session.rollback()
        if once is not None and (first := _submitted(once)) is not None:
            return Outcome(saved=True, repeated_url=first)
        refusal = refusals.get(name or "")
        if refusal is None:
            raise
        if refusal == RECHECK:
            error = _recheck(action)
        elif isinstance(refusal, DomainError):
            error = refusal
        else:
            error = refusal()  # type: ignore[operator]
        return _refused(form, error, once)
    return Outcome(saved=True, result=result)


def _refused(form: FlaskForm, error: DomainError, once: Once | None) -> Outcome:
    db.session.rollback()
    if once is not None and (first := _submitted(once)) is not None:
        # A racing post of this same form won: show its result, not a refusal.
        return Outcome(saved=True, repeated_url=first)
    put_error_on_form(form, error)
    return Outcome(saved=False, error=error)


def _recheck(action: Callable[[], Any]) -> DomainError:
    try:
        action()
    except DomainError as error:
        return error
    except (StaleDataError, sa.exc.IntegrityError):
        pass
    finally:
        db.session.rollback()
    return ConflictError()


def _submitted(once: Once) -> str | None:
    return db.session.scalar(
        sa.select(FormSubmission.result_url).where(
            FormSubmission.token == once.token, FormSubmission.user_id == once.user_id
        )
    )


def _remember(once: Once, result: Any) -> None:
    db.session.add(
        FormSubmission(
            token=once.token,
            user_id=once.user_id,
            kind=once.kind,
            result_url=once.result_url(result),
        )
    )
    db.session.flush()


_SQLITE_TRIGGER_NAME = re.compile(r"[a-z][a-z0-9_]{2,62}")


def constraint_name(error: sa.exc.IntegrityError) -> str | None:
    """The name of the constraint, unique index or trigger rule that refused a write.

    PostgreSQL reports it (``diag.constraint_name``; the triggers raise with
    ``CONSTRAINT = name``). SQLite names CHECK constraints, names a trigger's rule by its
    ``RAISE(ABORT, 'name')`` message, and lists a unique index's columns, which are
    looked up in the metadata."""
    orig = error.orig
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return diag.constraint_name
    message = str(orig).strip()
    if message.startswith("CHECK constraint failed: "):
        return message.removeprefix("CHECK constraint failed: ").strip()
    if message.startswith("UNIQUE constraint failed: "):
        columns = [c.strip() for c in message.removeprefix("UNIQUE constraint failed: ").split(",")]
        return _unique_named(columns)
    if _SQLITE_TRIGGER_NAME.fullmatch(message):
        return message
    return None


def _unique_named(qualified_columns: Sequence[str]) -> str | None:
    tables = {c.partition(".")[0] for c in qualified_columns}
    if len(tables) != 1:
        return None
    table = db.metadata.tables.get(tables.pop())
    if table is None:
        return None
    wanted = [c.partition(".")[2] for c in qualified_columns]
    for index in table.indexes:
        if index.unique and [c.name for c in index.columns] == wanted:
            return index.name
    for constraint in table.constraints:
        if (
            isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint)
            and [c.name for c in constraint.columns] == wanted
        ):
            return constraint.name
    return None


# --- edit conflicts ----------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class ConflictRow:
    """One field of a conflict's comparison."""

    label: str
    saved: str  # the record's value now (someone else's change)
    yours: str  # what this user entered

    @property
    def differs(self) -> bool:
        return self.saved != self.yours


def shown_day(day: dt.date) -> str:
    """A date as the pages write dates: "26 Jan 2026" (English month names whatever the
    server's locale; unambiguous, unlike 01/02/2026)."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def shown(field: Any) -> str:
    """A form field's value as the user sees it: a choice's label (several, for a
    multiple choice), a date as the pages write dates, a check box as yes / no."""
    data = field.data
    if field.type in ("SelectField", "SelectMultipleField") or hasattr(field, "iter_choices"):
        chosen = {str(d) for d in data} if isinstance(data, list | tuple) else {str(data)}
        labels = []
        for choice in field.choices or []:
            value = choice.value if isinstance(choice, SelectChoice) else choice[0]
            label = choice.label if isinstance(choice, SelectChoice) else choice[1]
            if str(value) in chosen and value not in ("", 0):
                labels.append(str(label))
        return ", ".join(labels) or "—"
    if isinstance(data, dt.date):
        return shown_day(data)
    if isinstance(data, bool):
        return "yes" if data else "no"
    return str(data).strip() if data not in (None, "") else "—"


def is_conflict(outcome: Outcome) -> bool:
    """Whether ``save()`` refused because someone else changed the record meanwhile
    (a service's version check, or the database's version_id_col)."""
    return isinstance(outcome.error, ConflictError)


def conflict_rows(
    outcome: Outcome,
    form: FlaskForm,
    record: Any,
    saved_values: Callable[[Any], Mapping[str, str]],
    *,
    version_attr: str = "version",
) -> list[ConflictRow] | None:
    """After "someone else changed this record": the record's values now beside the
    user's entries, and the form re-armed with the record's current version (its
    ``version_attr``, into the form's ``version`` field), so saving again (having looked)
    goes through instead of meeting the same refusal forever. None for any other outcome.

    ``saved_values(record)`` maps form field names to the record's values as shown. A
    form that came without a version never gets here: its version field refuses it (and
    the service refuses a missing version the same way)."""
    if not is_conflict(outcome):
        return None
    db.session.refresh(record)  # the committed values, after the rollback
    form.version.data = getattr(record, version_attr)  # type: ignore[attr-defined]
    rows = []
    for name, saved in saved_values(record).items():
        field = form._fields.get(name)
        label = field.label.text if field is not None else name
        yours = shown(field) if field is not None else "—"
        rows.append(ConflictRow(label, saved or "—", yours))
    return rows

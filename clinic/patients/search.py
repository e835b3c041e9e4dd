"""Finding patients: the patient search (name, date of birth, MRN, phone), its result
options, and the registration form prefilled from what was searched.

Results are scoped to the user's sites in the query itself (42 CFR Part 2, HIPAA 164.312(a)(1)):
a search is never a way to learn a patient of another site exists.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.visitors import InternalTraversal

from clinic.accounts.models import User
from clinic.patients.common import scoped
from clinic.patients.models import (
    Enrollment,
    Patient,
    PatientNameToken,
)
from clinic.patients.names import search_key


class InAll(sa.sql.expression.ColumnElement[bool]):
    """``column`` is in every one of ``id_sets`` (SELECTs of one id column).

    SQLite: ``column IN (set1) AND column IN (set2) ...`` (each a covering-index range,
    then the rows by rowid). PostgreSQL: ``column = ANY(ARRAY(set1 INTERSECT set2 ...))``:
    the ids are collected once and the rows fetched by primary key; with ``IN
    (subquery)`` its planner guesses thousands of matches for a name search and reads the
    whole patient table (several times slower at 100,000 patients, see
    bench/patient_search.py)."""

    # Not Boolean: SQLite would then compare the whole condition with 1 ("... = 1").
    type = sa.types.NullType()
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("id_sets", InternalTraversal.dp_clauseelement_list),
    ]

    def __init__(self, column: sa.ColumnElement, id_sets: list[sa.Select]) -> None:
        self.column = column
        self.id_sets = list(id_sets)


@compiles(InAll)
def _in_all(element: InAll, compiler, **kw) -> str:
    return compiler.process(sa.and_(*(element.column.in_(ids) for ids in element.id_sets)), **kw)


@compiles(InAll, "postgresql")
def _in_all_postgresql(element: InAll, compiler, **kw) -> str:
    sets = element.id_sets
    ids = sets[0] if len(sets) == 1 else sa.intersect(*sets)
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY(ARRAY({compiler.process(ids.scalar_subquery(), **kw)}))"


def _prefix(column: sa.ColumnElement, prefix: str) -> sa.ColumnElement[bool]:
    # A range, not LIKE: served by a plain b-tree index on SQLite and PostgreSQL alike.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(column >= prefix, column < upper)


DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y")
MRN_RE = re.compile(r"^[A-Za-z0-9]{2,10}-\d{1,9}$")


def parse_date(text: str) -> dt.date | None:
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def search_patients(user: User, text: str, *, include_in_error: bool = False) -> sa.Select:
    """Patients matching ``text``: an MRN, a date of birth, or the starts of names, each
    word matching the start of a word of the first, last or preferred name, in any script
    ("smi jo" finds Jo Smith, "petrov" and "Пет" find Петров, "parker" finds Watson-Parker;
    see ``clinic.patients.names``). Every branch is served by an index (see tests: EXPLAIN
    on both engines): a name word is a prefix range on ``patient_name_token.token``."""
    query = scoped(sa.select(Patient), user)
    if not include_in_error:
        query = query.where(Patient.entered_in_error_at.is_(None))
    text = text.strip()
    words = text.split()
    born = parse_date(text) if len(words) == 1 else None
    if born is not None:
        return query.where(Patient.date_of_birth == born)
    if len(words) == 1 and MRN_RE.match(text):
        return query.where(Patient.mrn == text.upper())
    # Each word: the patients with a name word starting so (an index-only range scan of
    # the token index); all the words: in each of those sets; then the patients by key.
    matching = [
        sa.select(PatientNameToken.patient_id).where(_prefix(PatientNameToken.token, key))
        for key in dict.fromkeys(search_key(word) for word in words[:4])
        if key
    ]
    if matching:
        query = query.where(InAll(Patient.id, matching))
    elif words:
        # Only punctuation or symbols ("%", "*"): no name starts so, rather than everyone.
        query = query.where(sa.false())
    return query


def search_result_options() -> list:
    """Loader options for a page of search results: each patient's site and enrollments
    with their programs, in three statements whatever the page size (no N+1)."""
    return [
        selectinload(Patient.site),
        selectinload(Patient.enrollments).selectinload(Enrollment.program),
    ]


def phone_last_four(phone: str | None) -> str | None:
    """The last four digits of a phone number ("+13125550147" -> "0147"): what a front
    desk asks a caller to confirm, without showing the whole number in a list."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    return digits[-4:] if len(digits) >= 4 else None


@dataclass
class RegistrationPrefill:
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: dt.date | None = None


def registration_prefill(text: str) -> RegistrationPrefill:
    """What a search that found nobody carries into the registration form: a date of
    birth typed goes to its field, an MRN nowhere (it is the clinic's, not the person's),
    and the words to the names: "Torres, Ana" and "ana torres" -> first Ana, last Torres;
    one word is the last name (what front desks search by); more words: the first is the
    first name, the rest the last name ("Ana de la Cruz"). A search typed all in lower
    case gets capitals ("ana torres" -> "Ana", "Torres"); one with any capital is kept as
    typed ("Ana de la Cruz", "ana McDonald")."""
    prefill = RegistrationPrefill()
    text = " ".join(text.split())[:200]
    if not text or MRN_RE.match(text):
        return prefill
    capitalise = text == text.lower()
    words = []
    for word in text.replace(",", " , ").split():
        born = parse_date(word)
        if born is not None and prefill.date_of_birth is None:
            prefill.date_of_birth = born
        else:
            words.append(word)

    def name(parts: list[str]) -> str | None:
        joined = " ".join(p.capitalize() if capitalise else p for p in parts if p != ",")
        return joined[:80] or None

    if "," in words:
        at = words.index(",")
        prefill.last_name, prefill.first_name = name(words[:at]), name(words[at + 1 :])
    elif len(words) == 1:
        prefill.last_name = name(words)
    elif words:
        prefill.first_name, prefill.last_name = name(words[:1]), name(words[1:])
    return prefill


# --- registration ----------------------------------------------------------------------

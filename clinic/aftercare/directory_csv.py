"""The directory as a CSV file: import (all or nothing) and export (issue 12).

Columns (the header row names them, in any order; only ``name`` and ``kind`` are required):

    name, kind, narr_level, support_group_type, street, city, state, zip, phone, email,
    contact_person, accepts_moud, accepts_methadone, beds_total, beds_available,
    beds_confirmed_on, meeting_times, gender_served, notes, active, site_area

- ``kind``: halfway_house, recovery_residence, support_group, outpatient_care,
  peer_support (or the label the pages show, e.g. "Support group").
- ``narr_level``: I, II, III or IV (1 to 4 too); recovery residences only.
- ``support_group_type``: na, aa, smart_recovery, medication_assisted, recovery_dharma,
  lifering, family_group; support groups only, and required for them.
- ``accepts_moud``, ``accepts_methadone``: yes, no or unknown (empty: unknown).
- ``beds_total``, ``beds_available``: whole numbers (residences only);
  ``beds_confirmed_on``: the date, YYYY-MM-DD or MM/DD/YYYY, required with available beds.
- ``gender_served``: all, women or men (empty: all). ``active``: yes or no (empty: yes).
- ``site_area``: a site's code (e.g. MAIN), or empty.

An import is one transaction: every row is checked first, with the same rules as the form
(``clinic.aftercare.directory.check_resource``); if any row is refused, nothing is
imported and the report lists each refused row by its number in the file (the header is
row 1) with why. A file that is not UTF-8, holds NUL bytes, is larger than ``MAX_BYTES``
or has more than ``MAX_ROWS`` rows is refused whole. The export writes the same columns
(so an exported file imports again), each cell escaped against formula injection
(``clinic.audit.csvsafe``), and is audited as an export.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import directory
from clinic.aftercare.models import (
    AftercareResource,
    GenderServed,
    NarrLevel,
    ResourceKind,
    SupportGroupType,
    Tristate,
)
from clinic.audit.csvsafe import FORMULA_PREFIXES, csv_lines
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import has_control_characters
from clinic.patients.contact import format_phone
from clinic.sites.models import Site

MAX_BYTES = 1_000_000
MAX_ROWS = 2_000
COLUMNS = (
    "name",
    "kind",
    "narr_level",
    "support_group_type",
    "street",
    "city",
    "state",
    "zip",
    "phone",
    "email",
    "contact_person",
    "accepts_moud",
    "accepts_methadone",
    "beds_total",
    "beds_available",
    "beds_confirmed_on",
    "meeting_times",
    "gender_served",
    "notes",
    "active",
    "site_area",
)
REQUIRED_COLUMNS = ("name", "kind")
# Column -> the form field (ResourceData) its problems are about, and the label reports use.
FIELD_OF_COLUMN = {"zip": "postal_code", "contact_person": "contact_name", "site_area": "site_id"}
COLUMN_OF_FIELD = {v: k for k, v in FIELD_OF_COLUMN.items()}
_MAX_CELL = 4_000  # no column holds more (notes: 2,000 characters)
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


@dataclass
class RowProblem:
    row: int  # the row's number in the file: the header is row 1
    column: str | None
    message: str


@dataclass
class ImportReport:
    """What an import found: the file refused whole (``file_problem``), or its rows, the
    refused ones with why. ``imported`` counts the resources created (0 when refused)."""

    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    file_problem: str | None = None
    imported: int = 0
    checked_only: bool = False

    @property
    def ok(self) -> bool:
        return self.file_problem is None and not self.problems

    @property
    def refused_rows(self) -> int:
        return len({p.row for p in self.problems})


class ImportRefused(DomainError):
    """An import with a refused row or a refused file: nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        if report.file_problem:
            message = f"Nothing was imported: {report.file_problem}"
        else:
            message = (
                f"Nothing was imported: {report.refused_rows} of {report.rows} rows were "
                "refused (listed below). Correct them and import the whole file again."
            )
        super().__init__(message, field="file")
        self.report = report


# --- reading a file ------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    if len(raw) > MAX_BYTES:
        raise _FileRefused(f"the file is larger than {MAX_BYTES // 1000:,} KB: split it.")
    if not raw.strip():
        raise _FileRefused("the file is empty.")
    if b"\x00" in raw:
        raise _FileRefused(
            "the file holds NUL bytes: it is not a CSV text file (save it from the "
            "spreadsheet as “CSV UTF-8”)."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _FileRefused(
            "the file is not UTF-8 text (save it from the spreadsheet as “CSV UTF-8”)."
        ) from None


class _FileRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _header(cells: list[str]) -> list[str]:
    names = [c.strip().lower().replace(" ", "_").replace("-", "_") for c in cells]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        shown = ", ".join(f"“{n[:40]}”" for n in unknown[:5])
        raise _FileRefused(
            f"the header row names columns this directory does not have ({shown}). "
            f"The columns are: {', '.join(COLUMNS)}."
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _FileRefused(f"the header row names a column twice ({', '.join(repeated)}).")
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        raise _FileRefused(
            f"the header row has no {' and no '.join(missing)} column (the first row must "
            "name the columns)."
        )
    return names


def _unescape(cell: str) -> str:
    """A cell our export escaped ("'=...") reads back as it was stored."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell


class _CellProblem(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _choice(enum: type, column: str, text: str, aliases: dict[str, str] | None = None):
    if not text:
        return None
    key = text.strip().lower()
    for member in enum:
        if key in (member.value.lower(), member.label.lower()):
            return member
    if aliases and key in aliases:
        return enum(aliases[key])
    allowed = ", ".join(m.value for m in enum)
    raise _CellProblem(column, f"“{text[:40]}” is not one of: {allowed}.")


_TRISTATE_ALIASES = {"y": "yes", "n": "no", "true": "yes", "false": "no", "not known": "unknown"}
_NARR_ALIASES = {"1": "I", "2": "II", "3": "III", "4": "IV"}
_YES = {"yes", "y", "true", "1", "active"}
_NO = {"no", "n", "false", "0", "inactive"}


def _whole_number(column: str, text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise _CellProblem(column, f"“{text[:40]}” is not a whole number of beds.")
    if len(text) > 6:
        return directory.BEDS_MAX + 1  # the service's message names the range
    return int(text)


def _date(column: str, text: str) -> dt.date | None:
    if not text:
        return None
    try:
        if match := _US_DATE.fullmatch(text):
            month, day, year = (int(g) for g in match.groups())
            return dt.date(year, month, day)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _CellProblem(column, f"“{text[:40]}” is not a date (YYYY-MM-DD).") from None


def _row_data(cells: dict[str, str], sites: dict[str, int]) -> tuple[directory.ResourceData, bool]:
    for column, text in cells.items():
        multi_line = column in ("notes", "meeting_times")
        if has_control_characters(text, multi_line=multi_line):
            raise _CellProblem(column, "Remove the control or invisible characters.")
        if len(text) > _MAX_CELL:
            raise _CellProblem(column, "This cell is far too long.")
    site_code = cells.get("site_area", "")
    site_id = None
    if site_code:
        site_id = sites.get(site_code.upper())
        if site_id is None:
            raise _CellProblem("site_area", f"No site has the code “{site_code[:20]}”.")
    active_text = cells.get("active", "").lower()
    if active_text and active_text not in _YES | _NO:
        raise _CellProblem("active", "Write yes or no.")
    data = directory.ResourceData(
        name=cells.get("name", ""),
        kind=_choice(ResourceKind, "kind", cells.get("kind", "")) or "",
        narr_level=_choice(NarrLevel, "narr_level", cells.get("narr_level", ""), _NARR_ALIASES),
        support_group_type=_choice(
            SupportGroupType, "support_group_type", cells.get("support_group_type", "")
        ),
        street=cells.get("street") or None,
        city=cells.get("city") or None,
        state=cells.get("state") or None,
        postal_code=cells.get("zip") or None,
        phone=cells.get("phone") or None,
        email=cells.get("email") or None,
        contact_name=cells.get("contact_person") or None,
        accepts_moud=_choice(
            Tristate, "accepts_moud", cells.get("accepts_moud", ""), _TRISTATE_ALIASES
        )
        or Tristate.UNKNOWN,
        accepts_methadone=_choice(
            Tristate, "accepts_methadone", cells.get("accepts_methadone", ""), _TRISTATE_ALIASES
        )
        or Tristate.UNKNOWN,
        beds_total=_whole_number("beds_total", cells.get("beds_total", "")),
        beds_available=_whole_number("beds_available", cells.get("beds_available", "")),
        beds_confirmed_on=_date("beds_confirmed_on", cells.get("beds_confirmed_on", "")),
        meeting_times=cells.get("meeting_times") or None,
        gender_served=_choice(GenderServed, "gender_served", cells.get("gender_served", ""))
        or GenderServed.ALL,
        notes=cells.get("notes") or None,
        site_id=site_id,
    )
    return data, active_text not in _NO


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of each record; the number is the record's first line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as error:
        raise _FileRefused(
            f"the file is not valid CSV near row {reader.line_num or start} ({error})."
        ) from None


def read_directory(
    raw: bytes, *, today: dt.date | None = None
) -> tuple[list[tuple[directory.ResourceData, bool]], ImportReport]:
    """Every row of the file checked: the resources to create (with whether each is
    active) and the report. Writes nothing."""
    report = ImportReport()
    checked: list[tuple[directory.ResourceData, bool]] = []
    try:
        records = _records(_decode(raw))
        header_row = next(records, None)
        if header_row is None:
            raise _FileRefused("the file is empty.")
        columns = _header(header_row[1])
        sites = {
            code.upper(): id_ for id_, code in db.session.execute(sa.select(Site.id, Site.code))
        }
        for number, cells in records:
            if not any(c.strip() for c in cells):
                continue  # a blank line
            report.rows += 1
            if report.rows > MAX_ROWS:
                raise _FileRefused(f"the file has more than {MAX_ROWS} rows; split it.")
            if len(cells) > len(columns):
                report.problems.append(
                    RowProblem(
                        number,
                        None,
                        f"This row has {len(cells)} cells, the header names {len(columns)} "
                        "columns.",
                    )
                )
                continue
            values = {c: _unescape(v.strip()) for c, v in zip(columns, cells, strict=False)}
            try:
                data, active = _row_data(values, sites)
                checked.append((directory.check_resource(data, today=today), active))
            except _CellProblem as problem:
                report.problems.append(RowProblem(number, problem.column, problem.message))
            except DomainError as error:
                column = COLUMN_OF_FIELD.get(error.field or "", error.field)
                report.problems.append(RowProblem(number, column, error.message))
    except _FileRefused as refused:
        report.file_problem = refused.message
        return [], report
    if report.rows == 0 and report.file_problem is None:
        report.file_problem = "the file has a header row but no resources."
    return checked, report


def import_directory(
    raw: bytes, *, actor: User, today: dt.date | None = None, check_only: bool = False
) -> ImportReport:
    """Import a directory file: every row, or none (``ImportRefused`` carries the report of
    refused rows; the caller rolls back). ``check_only``: the report alone (a preview),
    nothing created. Each resource created is audited (``source``: the import)."""
    rows, report = read_directory(raw, today=today)
    report.checked_only = check_only
    if not report.ok:
        raise ImportRefused(report)
    if check_only:
        return report
    for data, active in rows:
        resource = directory.create_resource(actor=actor, data=data, source="csv import")
        if not active:
            resource.active = False
        report.imported += 1
    db.session.flush()
    return report


# --- export --------------------------------------------------------------------------------


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def export_row(resource: AftercareResource) -> list:
    def value(enum_value) -> str:
        return enum_value.value if enum_value is not None else ""

    return [
        resource.name,
        value(resource.kind),
        value(resource.narr_level),
        value(resource.support_group_type),
        resource.street or "",
        resource.city or "",
        resource.state or "",
        resource.postal_code or "",
        format_phone(resource.phone),
        resource.email or "",
        resource.contact_name or "",
        value(resource.accepts_moud),
        value(resource.accepts_methadone),
        "" if resource.beds_total is None else resource.beds_total,
        "" if resource.beds_available is None else resource.beds_available,
        resource.beds_confirmed_on or "",
        resource.meeting_times or "",
        value(resource.gender_served),
        resource.notes or "",
        _yes_no(resource.active),
        resource.site.code if resource.site is not None else "",
    ]


def export_lines(rows: list[list]) -> Iterator[str]:
    """The CSV text of ``rows`` (``export_row``) under the import's header, every cell
    escaped against formula injection."""
    return csv_lines(COLUMNS, rows)

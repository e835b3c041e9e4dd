"""The filters every report reads: site, program, medication and a period (or one date).

The form is a GET form (it changes nothing). Its choices are only what the signed-in user
may see: their own sites and those sites' programs, so a report never counts a site the
user has no access to, whatever the query string says (an unknown or foreign id is an
error next to the field, not a wider report). Dates are site-local days; a period
includes both ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from werkzeug.datastructures import MultiDict
from wtforms import DateField, SelectChoice, SelectField
from wtforms.validators import Optional, ValidationError

from clinic.extensions import db
from clinic.forms import ClinicForm
from clinic.medications.models import Medication
from clinic.patients.models import Program
from clinic.reports.core import FilterName, Report
from clinic.sites.models import Site
from clinic.sites.time import site_today, user_today

EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)
DATE_MESSAGE = f"Enter a date from {EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}."
DATE_FORMAT = "Enter a valid date."
REVERSED_MESSAGE = "The To date is before the From date: enter a To date on or after it."
# A period longer than this is refused: a report is for a window, not all of history.
MAX_PERIOD_YEARS = 5
LONG_PERIOD_MESSAGE = "Choose a period of at most 5 years."
FILTER_PARAMS = ("site", "program", "medication", "date_from", "date_to", "on")
# The query-string names of each filter a report may declare.
PARAMS_OF = {
    FilterName.SITE: ("site",),
    FilterName.PROGRAM: ("program",),
    FilterName.MEDICATION: ("medication",),
    FilterName.PERIOD: ("date_from", "date_to"),
    FilterName.ON: ("on",),
}


class MedicationGroup:
    """The medication filter: the three MOUD substances, each with all of its products."""

    METHADONE = "methadone"
    BUPRENORPHINE = "buprenorphine"
    NALTREXONE = "naltrexone"
    LABELS = {
        METHADONE: "Methadone",
        BUPRENORPHINE: "Buprenorphine (all products)",
        NALTREXONE: "Naltrexone (oral and injection)",
    }

    @staticmethod
    def members(group: str) -> tuple[Medication, ...]:
        return tuple(m for m in Medication if m.substance == group)


def longest_period_end(start: dt.date) -> dt.date:
    """The last day of a period of at most ``MAX_PERIOD_YEARS`` years from ``start``: the
    day before the same date that many years later (2026-01-01 -> 2030-12-31; a period
    from 29 February ends on 28 February)."""
    year = start.year + MAX_PERIOD_YEARS
    same_day = (
        dt.date(year, 3, 1) if (start.month, start.day) == (2, 29) else start.replace(year=year)
    )
    return same_day - dt.timedelta(days=1)


def quarter_to_date(today: dt.date) -> tuple[dt.date, dt.date]:
    """This quarter so far: its first day to ``today``."""
    return dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today


def last_twelve_months(today: dt.date) -> tuple[dt.date, dt.date]:
    """The twelve whole months before this one."""
    first_of_month = today.replace(day=1)
    return first_of_month.replace(year=first_of_month.year - 1), first_of_month - dt.timedelta(
        days=1
    )


def last_thirty_days(today: dt.date) -> tuple[dt.date, dt.date]:
    return today - dt.timedelta(days=29), today


@dataclass(frozen=True)
class ReportFilters:
    """What a report counts.

    ``site_ids``: the sites counted (the chosen site, else every site of the user: all
    sites for an organisation-wide administrator; empty for a user of no site);
    ``program_id``: one program or None for all; ``medications``: the chosen medication
    group's products, or None for all; ``date_from``/``date_to``: the period (site-local
    dates, both included); ``on``: the reference date; ``today``: the chosen site's today
    (one site), else the user's.
    """

    site_ids: tuple[int, ...]
    program_id: int | None
    medications: tuple[Medication, ...] | None
    date_from: dt.date
    date_to: dt.date
    on: dt.date
    today: dt.date
    single_site: bool

    @property
    def medication_values(self) -> tuple[str, ...] | None:
        return None if self.medications is None else tuple(m.value for m in self.medications)


def _date_in_range(form: ClinicForm, field: DateField) -> None:
    if field.data is not None and not EARLIEST_DATE <= field.data <= LATEST_DATE:
        raise ValidationError(DATE_MESSAGE)


class ReportFilterForm(ClinicForm):
    class Meta:
        csrf = False  # a GET form: it changes nothing

    site = SelectField("Site", validators=[Optional()], validate_choice=True)
    program = SelectField("Program", validators=[Optional()], validate_choice=True)
    medication = SelectField(
        "Medication",
        choices=[SelectChoice("", "All medications")]
        + [SelectChoice(k, v) for k, v in MedicationGroup.LABELS.items()],
        validators=[Optional()],
        validate_choice=True,
    )
    date_from = DateField(
        "From", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )
    date_to = DateField(
        "To", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )
    on = DateField("On", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT)

    def __init__(self, formdata, *, sites: list[Site], programs: list[Program]) -> None:
        super().__init__(formdata)
        self.site.choices = [SelectChoice("", "All my sites")] + [
            SelectChoice(str(s.id), f"{s.name} ({s.code})") for s in sites
        ]
        self.program.choices = [SelectChoice("", "All programs")] + [
            SelectChoice(str(p.id), f"{p.name} — {p.site.code}" if len(sites) > 1 else p.name)
            for p in programs
        ]

    def validate_date_to(self, field: DateField) -> None:
        start = self.date_from.data
        if field.data is None or start is None:
            return
        if field.data < start:
            raise ValidationError(REVERSED_MESSAGE)
        if field.data > longest_period_end(start):
            raise ValidationError(LONG_PERIOD_MESSAGE)

    def validate_program(self, field: SelectField) -> None:
        # A program of another site than the chosen one counts nothing: say so. Only a
        # program among the choices is looked up (not "abc" or an id past the integer range).
        if field.errors or self.site.errors:
            return
        if field.data and self.site.data:
            program = db.session.get(Program, int(field.data))
            if program is not None and str(program.site_id) != self.site.data:
                raise ValidationError("This program is not at the chosen site.")

    def submitted(self) -> dict[str, str]:
        """The filters the user gave, as query-string values (for the CSV and print links):
        only this form's own fields."""
        return {
            name: self[name].raw_data[0]
            for name in FILTER_PARAMS
            if self[name].raw_data and self[name].raw_data[0]
        }


def own_args(report: Report, args: MultiDict) -> MultiDict:
    """The query string without the filters ``report`` does not read (its form does not
    show them: an error there would be a refusal with no message on the page). Like any
    unknown parameter, they are ignored; the site is always read."""
    own = {"site"} | {name for f in report.filters for name in PARAMS_OF.get(f, ())}
    return MultiDict(
        [(k, v) for k, v in args.items(multi=True) if k not in FILTER_PARAMS or k in own]
    )


def user_sites(user) -> list[Site]:
    """The sites a user's reports count: every site for an organisation-wide
    administrator (``all_sites``), else the user's own sites; by name."""
    if user.all_sites:
        return list(db.session.scalars(sa.select(Site).order_by(Site.name, Site.id)))
    return sorted(user.sites, key=lambda s: (s.name, s.id))


def form_for(user, formdata) -> ReportFilterForm:
    """The filter form with the user's sites and their programs as its choices."""
    sites = user_sites(user)
    site_ids = [s.id for s in sites]
    programs = (
        list(
            db.session.scalars(
                sa.select(Program)
                .where(Program.site_id.in_(site_ids))
                .options(sa.orm.joinedload(Program.site))
                .order_by(Program.name, Program.id)
            )
        )
        if site_ids
        else []
    )
    return ReportFilterForm(formdata, sites=sites, programs=programs)


def resolve(form: ReportFilterForm, report: Report, user) -> ReportFilters:
    """The filters of a validated form, with the report's defaults for what is missing."""
    sites = user_sites(user)
    today = user_today(user)
    site_ids = tuple(sorted(s.id for s in sites))
    single = len(site_ids) == 1
    if form.site.data:
        site_ids = (int(form.site.data),)
        single = True
    if single and site_ids:
        # One site: its own day (an organisation-wide administrator has no site of their own).
        today = site_today(next(s for s in sites if s.id == site_ids[0]))
    elif sites and not user.sites:
        # No site of their own (UTC): the earliest of the counted sites' days, so the
        # evening in America is not counted as tomorrow.
        today = min(site_today(s) for s in sites)
    default_from, default_to = (
        report.default_period(today) if report.default_period else last_thirty_days(today)
    )
    date_from = form.date_from.data or default_from
    date_to = form.date_to.data or default_to
    if form.date_from.data and not form.date_to.data and date_to < date_from:
        date_to = date_from
    if form.date_to.data and not form.date_from.data and date_from > date_to:
        date_from = date_to
    medications = (
        MedicationGroup.members(form.medication.data)
        if FilterName.MEDICATION in report.filters and form.medication.data
        else None
    )
    program_id = (
        int(form.program.data)
        if FilterName.PROGRAM in report.filters and form.program.data
        else None
    )
    return ReportFilters(
        site_ids=site_ids,
        program_id=program_id,
        medications=medications,
        date_from=date_from,
        date_to=date_to,
        on=form.on.data or today,
        today=today,
        single_site=single,
    )


def period_too_long(form: ReportFilterForm, report: Report, filters: ReportFilters) -> bool:
    """True (and the message next to the date the user gave) when the period, with the
    report's default for the end left empty, is longer than ``MAX_PERIOD_YEARS``: "From
    2000-01-01" alone would otherwise count 26 years up to today."""
    if FilterName.PERIOD not in report.filters:
        return False
    if filters.date_to <= longest_period_end(filters.date_from):
        return False
    field = form.date_to if form.date_to.data else form.date_from
    field.errors = [*field.errors, LONG_PERIOD_MESSAGE]
    return True


def describe(form: ReportFilterForm, report: Report, filters: ReportFilters) -> str:
    """The filters in words, for the page and its print layout, e.g.
    "2026-07-01 to 2026-09-30 · Main (MAIN) · Methadone"."""

    def chosen(field: SelectField) -> str | None:
        return next((c.label for c in field.choices if c.value == field.data), None)

    parts = []
    if FilterName.ON in report.filters:
        parts.append(f"On {filters.on.isoformat()}")
    if FilterName.PERIOD in report.filters:
        parts.append(f"{filters.date_from.isoformat()} to {filters.date_to.isoformat()}")
    if form.site.data:
        parts.append(chosen(form.site) or "")
    else:
        parts.append(f"all my sites ({len(filters.site_ids)})")
    if filters.program_id:
        parts.append(chosen(form.program) or "")
    if filters.medications:
        parts.append(chosen(form.medication) or "")
    return " · ".join(p for p in parts if p)

"""Patient search, registration, chart, demographics and break-glass pages, and the
``patients`` blueprint (the enrollment and deadline pages add their routes to it in
``clinic.patients.enrollment_views``).

Every page that shows a patient loads it through ``clinic.patients.access``
(``patient_or_404`` / ``enrollment_or_404``): site scoping (404 outside the user's sites,
unless break-glass), an ``access_denied`` event on refusal and one ``view`` event per page
shown. The chart shows every domain's registered section (``clinic.charts``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic import charts, web
from clinic.audit import AuditAction, AuditOutcome, record
from clinic.errors import DomainError, record_denied
from clinic.pagination import SortSpec, paginate_sorted
from clinic.patients import (
    access,
    admissions,
    common,
    emergency,
    milestones,
    registry,
    search,
)
from clinic.patients.contact import format_phone
from clinic.patients.forms import (
    BreakGlassForm,
    EditPatientForm,
    EmergencyLookupForm,
    EnteredInErrorForm,
    PatientFields,
    PatientForm,
)
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import site_today, user_today
from clinic.web import RECHECK, Once, put_error_on_form, save
from clinic.web import conflict_rows as _conflict  # shared by patients, programs, users

bp = Blueprint("patients", __name__, url_prefix="/patients")

PATIENT_SORTS = SortSpec(
    {
        "name": Patient.last_key,
        "mrn": Patient.mrn,
        "dob": Patient.date_of_birth,
        "intake": Patient.intake_date,
    },
    default="name",
    params=("q",),  # the search: kept in the sort and pager links
)


@bp.app_template_filter("day")
def _day(value: dt.date | None) -> str:
    """A date as the patients pages show it: "26 Jan 2026" (``common.format_day``)."""
    return common.format_day(value) if value is not None else "—"


_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


@bp.app_template_filter("days_in")
def _days_in(text: str | None) -> str | None:
    """A stored text's ISO dates as people read them (a correction's "2026-01-05:
    Completed" -> "5 Jan 2026: Completed"); the stored value stays ISO."""
    if not text:
        return text

    def shown(match: re.Match) -> str:
        try:
            return common.format_day(dt.date(*(int(part) for part in match.groups())))
        except ValueError:
            return match.group(0)

    return _ISO_DAY.sub(shown, text)


@bp.app_template_filter("phone")
def _phone(value: str | None) -> str:
    """A stored phone number as people read it (``clinic.patients.contact``)."""
    return format_phone(value) or "—"


@bp.app_template_filter("site_time")
def _site_time(value: dt.datetime, site: Site) -> str:
    """An instant in the site's time zone: "26 Jan 2026 14:05 CST"."""
    local = value.astimezone(ZoneInfo(site.timezone))
    return f"{common.format_day(local.date())} {local:%H:%M} {local.tzname()}"


# --- search and registration -------------------------------------------------------------


@dataclass
class SearchRow:
    """One search result as the front desk tells people apart: age and date of birth,
    sex, site, programs and their status, the phone's last four digits."""

    patient: Patient
    age: int
    phone_last_four: str | None
    active: list[Enrollment]
    last_ended: Enrollment | None


def _search_row(patient: Patient) -> SearchRow:
    enrollments = patient.enrollments  # loaded with the page (search.search_result_options)
    active = [e for e in enrollments if e.active]
    ended = [e for e in enrollments if not e.active]
    return SearchRow(
        patient=patient,
        age=patient.age_on(site_today(patient.site)),
        phone_last_four=search.phone_last_four(patient.phone),
        active=active,
        last_ended=max(ended, key=lambda e: e.discharged_on) if ended else None,
    )


@bp.get("/")
@require_permission(Permission.PATIENTS_READ)
def index():
    text = request.args.get("q", "").strip()
    query = search.search_patients(current_user, text)  # empty text: every patient
    # Keyset pages (clinic.pagination): each sort is served by an index ending in the id.
    page = paginate_sorted(
        query, PATIENT_SORTS, tiebreak=Patient.id, options=search.search_result_options()
    )
    # The list shows names and dates of birth: the search is an access, without its terms.
    # "results": the patients shown on this page; "more": whether a next page follows.
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="patient_list",
        details={"searched": bool(text), "results": len(page.items), "more": page.has_next},
    )
    if text and page.complete and len(page.items) == 1:
        # A typed search that found one person: their chart (the chart records its view).
        return redirect(url_for("patients.chart", patient_id=page.items[0].id))
    rows = [_search_row(p) for p in page.items]
    return render_template("patients/index.html", page=page, rows=rows, q=text)


def _site_choices(form: PatientForm) -> list[Site]:
    """The user's sites; with several, the list starts on "Choose…" (a patient registered
    at the wrong site is a privacy fault), with one it is that site."""
    sites = common.sites_for(current_user)
    choices = [SelectChoice(s.id, f"{s.code} — {s.name}") for s in sites]
    if len(sites) > 1:
        choices.insert(0, SelectChoice(0, "Choose…"))
    form.site_id.choices = choices
    return sites


SITE_REFUSED_MESSAGE = "The site of this form is not one of yours; choose the site again."
CHOOSE_SITE_MESSAGE = "Choose one of your sites."


def _site_refused(form: PatientForm, sites: list[Site]) -> None:
    """A site the form's own choices do not hold (a tampered hidden value, a form kept
    across a sign-in): said in plain words, not WTForms' "Not a valid choice". With one
    site the field is hidden, so the message goes on top of the form and the field is
    set back to the user's site (sending again then works)."""
    if not form.site_id.errors:
        return
    raw = (form.site_id.raw_data or [""])[0]
    if len(sites) > 1:
        form.site_id.errors = [CHOOSE_SITE_MESSAGE if raw in ("", "0") else SITE_REFUSED_MESSAGE]
        return
    form.site_id.errors = []
    if sites:
        site = sites[0]
        form.site_id.data = site.id
        message = (
            "The site of this form is not one of yours; it is set to your site, "
            f"{site.code} — {site.name}, now: check the form and send it again."
        )
    else:
        message = SITE_REFUSED_MESSAGE
    if message not in form.form_errors:
        form.form_errors.append(message)


def _demographics(form: PatientFields) -> registry.Demographics:
    return registry.Demographics.from_mapping(form.data)


@dataclass
class DuplicateShown:
    """A possible duplicate as the warning shows it: the record itself for a patient of
    the user's sites; site and MRN only for a patient elsewhere (minimum necessary)."""

    patient: Patient
    visible: bool


def _duplicates_shown(error: DomainError | None) -> list[DuplicateShown]:
    if not isinstance(error, registry.PossibleDuplicate):
        return []
    sites = common.visible_site_ids(current_user)
    shown = []
    for match in error.matches:
        visible = sites is None or match.site_id in sites
        shown.append(DuplicateShown(match, visible))
        if not visible:
            # Telling this user that a person with this name and date of birth is a
            # patient at another site is a disclosure (42 CFR Part 2): recorded.
            record(
                AuditAction.VIEW,
                actor=current_user,
                entity_type="duplicate_warning",
                entity_id=match.id,
                patient_id=match.id,
                site_id=match.site_id,
                details={"page": request.endpoint, "shown": ["site", "mrn"]},
            )
    return shown


def create_once(form, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=result_url,
    )


def edit_once(form, kind: str, result_url: str) -> Once:
    """An edit's idempotency key: a double click shows the first post's result, not a
    conflict with itself (``clinic.web.save``)."""
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=lambda _result: result_url,
        required=False,
    )


ALREADY_SENT_MESSAGE = "This form had already been sent: it was saved once."


def already_saved(outcome) -> Any:
    flash(ALREADY_SENT_MESSAGE, "info")
    return redirect(outcome.repeated_url)


def sent_before(kind: str) -> Any:
    """For a page that would refuse a repeated post before saving (the record is now
    marked entered in error, the discharge is now undone): the first post's result."""
    if request.method != "POST":
        return None
    token = request.form.get("submission_token", "")[:64]
    once = Once(token or None, current_user.id, kind, lambda _result: "", required=False)
    first = web.already_sent(once)
    if first is None:
        return None
    flash(ALREADY_SENT_MESSAGE, "info")
    return redirect(first)


@bp.route("/new", methods=["GET", "POST"])
@require_permission(Permission.PATIENTS_REGISTER)
def register():
    form = PatientForm()
    sites = _site_choices(form)
    if request.method == "GET" and not form.restored:
        form.intake_date.data = site_today(sites[0]) if sites else user_today(current_user)
        if len(sites) == 1:
            form.site_id.data = sites[0].id
        # From "No patient matches ... Register": what was searched for, in its fields.
        prefill = search.registration_prefill(request.args.get("q", ""))
        form.first_name.data = prefill.first_name
        form.last_name.data = prefill.last_name
        form.date_of_birth.data = prefill.date_of_birth
    duplicates: list[DuplicateShown] = []
    age_warning = False
    if form.validate_on_submit():
        data = _demographics(form)

        def register_patient() -> Patient:
            site = common.chosen(sites, form.site_id.data)
            if site is None:
                raise DomainError(CHOOSE_SITE_MESSAGE, field="site_id")
            return registry.register_patient(
                actor=current_user,
                site=site,
                data=data,
                confirm_duplicate=form.confirm_duplicate.data,
                confirm_age=form.confirm_age.data,
            )

        outcome = save(
            form,
            register_patient,
            refusals={
                "uq_patient_unconfirmed_identity": lambda: registry.duplicate_warning(data),
                **common.DATABASE_REFUSALS,
            },
            once=create_once(form, "patient", lambda p: url_for("patients.chart", patient_id=p.id)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
        if outcome.saved:
            patient = outcome.result
            flash(
                f"Registered {patient.first_name} {patient.last_name}, MRN {patient.mrn}.",
                "success",
            )
            return redirect(url_for("patients.chart", patient_id=patient.id))
        duplicates = _duplicates_shown(outcome.error)
        age_warning = isinstance(outcome.error, registry.ImplausibleAge)
    _site_refused(form, sites)
    return render_template(
        "patients/form.html",
        form=form,
        patient=None,
        duplicates=duplicates,
        age_warning=age_warning,
        show_site=len(sites) > 1,
    )


# --- the chart ---------------------------------------------------------------------------


@bp.get("/<int:patient_id>")
@require_permission(Permission.PATIENTS_READ)
def chart(patient_id: int):
    patient = access.patient_or_404(patient_id)
    today = site_today(patient.site)
    enrollments = admissions.chart_enrollments(patient)
    deadlines = {e.id: milestones.deadlines(e, today) for e in enrollments if e.active}
    alerts = [
        (e, d) for e in enrollments if e.active for d in deadlines[e.id] if d.status == "overdue"
    ]
    return render_template(
        "patients/chart.html",
        patient=patient,
        today=today,
        enrollments=enrollments,
        deadlines=deadlines,
        alerts=alerts,
        active=[e for e in enrollments if e.active],
        via_break_glass=access.via_break_glass(patient),
        sections=charts.sections_for(patient),
    )


def entered_in_error_page(patient: Patient, title: str):
    """What a page that would change a record entered in error shows instead of a form."""
    return render_template(
        "patients/read_only.html",
        patient=patient,
        title=title,
        message=common.ENTERED_IN_ERROR_MESSAGE,
    )


@bp.route("/<int:patient_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.PATIENTS_REGISTER)
def edit(patient_id: int):
    patient = access.patient_or_404(patient_id)
    if patient.entered_in_error:
        return entered_in_error_page(patient, "Edit demographics")
    form = EditPatientForm(obj=patient) if request.method == "GET" else EditPatientForm()
    form.site_id.choices = [SelectChoice(patient.site_id, patient.site.name)]
    form.site_id.data = patient.site_id
    form.kept_state = patient.state
    if request.method == "GET" and not form.restored:
        form.version.data = patient.version
        # Stored in E.164; shown (and sent back) as people write them.
        form.phone.data = format_phone(patient.phone) or None
        form.emergency_contact_phone.data = format_phone(patient.emergency_contact_phone) or None
    duplicates: list[DuplicateShown] = []
    age_warning = False
    conflict = None
    if form.validate_on_submit():
        data = _demographics(form)
        outcome = save(
            form,
            lambda: registry.update_demographics(
                patient,
                actor=current_user,
                data=data,
                expected_version=form.version_number,
                confirm_duplicate=form.confirm_duplicate.data,
                confirm_age=form.confirm_age.data,
            ),
            refusals={
                "uq_patient_unconfirmed_identity": lambda: registry.duplicate_warning(
                    data, exclude_id=patient_id
                ),
                "patient_intake_before_admissions": RECHECK,
                "ck_patient_born_before_intake": RECHECK,
                **common.DATABASE_REFUSALS,
            },
            once=edit_once(form, "patient_edit", url_for("patients.chart", patient_id=patient_id)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
        if outcome.saved:
            flash("Saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("patients.chart", patient_id=patient_id))
        duplicates = _duplicates_shown(outcome.error)
        age_warning = isinstance(outcome.error, registry.ImplausibleAge)
        conflict = _conflict(outcome, form, patient, _demographic_values)
    return render_template(
        "patients/form.html",
        form=form,
        patient=patient,
        duplicates=duplicates,
        age_warning=age_warning,
        show_site=False,
        conflict=conflict,
    )


def _demographic_values(patient: Patient) -> dict[str, str]:
    """The demographics as the edit form shows them, for a conflict's comparison."""
    values = {}
    for name in registry.Demographics.field_names():
        value = getattr(patient, name)
        if name.endswith("phone"):
            value = format_phone(value)
        elif isinstance(value, dt.date):
            value = common.format_day(value)
        elif hasattr(value, "label"):
            value = value.label
        values[name] = str(value) if value not in (None, "") else "—"
    return values


@bp.route("/<int:patient_id>/entered-in-error", methods=["GET", "POST"])
@require_permission(Permission.PATIENTS_MARK_ERROR)
def entered_in_error(patient_id: int):
    patient = access.patient_or_404(patient_id)
    if (repeated := sent_before("entered_in_error")) is not None:
        return repeated
    if patient.entered_in_error:
        return entered_in_error_page(patient, "Mark this record as entered in error")
    form = EnteredInErrorForm()
    if request.method == "GET":
        form.version.data = patient.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: registry.mark_entered_in_error(
                patient,
                actor=current_user,
                reason=form.reason.data,
                expected_version=form.version_number,
            ),
            refusals=common.DATABASE_REFUSALS,
            once=edit_once(
                form, "entered_in_error", url_for("patients.chart", patient_id=patient_id)
            ),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
        if outcome.saved:
            flash(
                "The record is marked as entered in error. It stays in the audit trail.", "success"
            )
            return redirect(url_for("patients.chart", patient_id=patient_id))
        # Someone changed the record meanwhile: the form carries its new version (the
        # chart header above shows its values now).
        conflict = _conflict(outcome, form, patient, lambda p: {})
    return render_template(
        "patients/entered_in_error.html", form=form, patient=patient, conflict=conflict
    )


# --- break-glass -------------------------------------------------------------------------


@bp.route("/break-glass", methods=["GET", "POST"])
@require_permission(Permission.BREAK_GLASS)
def break_glass():
    form = BreakGlassForm()
    if request.method == "GET" and not form.restored and request.args.get("mrn"):
        # From the emergency lookup's "Request emergency access": the MRN chosen there.
        form.mrn.data = request.args.get("mrn", "")[:24]
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: emergency.grant_break_glass(
                actor=current_user, mrn=form.mrn.data, reason=form.reason.data
            ),
            refusals=common.DATABASE_REFUSALS,
            once=create_once(
                form,
                "break_glass_grant",
                lambda access: url_for("patients.chart", patient_id=access.patient.id),
            ),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
        if outcome.saved:
            granted = outcome.result
            until = _site_time(granted.grant.expires_at, granted.patient.site)
            if granted.repeated:
                flash(
                    f"You already have emergency access to this record until {until}: "
                    "it was not extended. This request is recorded too.",
                    "warning",
                )
            else:
                flash(
                    f"Emergency access granted for {emergency.BREAK_GLASS_MINUTES} minutes "
                    f"(until {until}). It is recorded and will be reviewed.",
                    "warning",
                )
            return redirect(url_for("patients.chart", patient_id=granted.patient.id))
        if isinstance(outcome.error, emergency.PatientNotFound):
            record_denied("patient")  # a refused lookup (the MRN is not recorded)
    return render_template(
        "patients/break_glass.html", form=form, minutes=emergency.BREAK_GLASS_MINUTES
    )


@bp.route("/break-glass/find", methods=["GET", "POST"])
@require_permission(Permission.BREAK_GLASS)
def emergency_lookup():
    """Find a patient of another site for emergency access by last name (or "last, first")
    and date of birth. A POST (the name and date of birth stay out of URLs and browser
    history); the results show site and MRN only (``emergency.emergency_lookup``)."""
    form = EmergencyLookupForm()
    lookup = None
    if form.validate_on_submit():
        try:
            lookup = emergency.emergency_lookup(
                actor=current_user, name=form.name.data, date_of_birth=form.date_of_birth.data
            )
        except DomainError as error:
            put_error_on_form(form, error)
    if form.is_submitted() and lookup is None:
        # A refused lookup is recorded too (without what was typed).
        record(
            AuditAction.VIEW,
            actor=current_user,
            outcome=AuditOutcome.FAILURE,
            entity_type="break_glass_lookup",
            details={"refused": True},
        )
    return render_template(
        "patients/emergency_lookup.html",
        form=form,
        lookup=lookup,
        limit=emergency.EMERGENCY_LOOKUP_LIMIT,
        minutes=emergency.BREAK_GLASS_MINUTES,
    )

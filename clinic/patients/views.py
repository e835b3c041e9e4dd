"""Patient registry, chart, enrollment and deadline pages.

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
from clinic.extensions import db
from clinic.pagination import SortSpec, paginate_sorted
from clinic.patients import access, services
from clinic.patients.contact import format_phone
from clinic.patients.forms import (
    AdmitForm,
    BreakGlassForm,
    CorrectEnrollmentForm,
    DischargeForm,
    EditPatientForm,
    EmergencyLookupForm,
    EnteredInErrorForm,
    MilestonesForm,
    PatientFields,
    PatientForm,
    ReviewForm,
    TransferForm,
    UndoDischargeForm,
    split_level_of_care,
)
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import site_today
from clinic.web import RECHECK, ConflictRow, Once, put_error_on_form, save
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
    """A date as the patients pages show it: "26 Jan 2026" (``services.format_day``)."""
    return services.format_day(value) if value is not None else "—"


_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


@bp.app_template_filter("days_in")
def _days_in(text: str | None) -> str | None:
    """A stored text's ISO dates as people read them (a correction's "2026-01-05:
    Completed" -> "5 Jan 2026: Completed"); the stored value stays ISO."""
    if not text:
        return text

    def shown(match: re.Match) -> str:
        try:
            return services.format_day(dt.date(*(int(part) for part in match.groups())))
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
    return f"{services.format_day(local.date())} {local:%H:%M} {local.tzname()}"


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
    enrollments = patient.enrollments  # loaded with the page (services.search_result_options)
    active = [e for e in enrollments if e.active]
    ended = [e for e in enrollments if not e.active]
    return SearchRow(
        patient=patient,
        age=patient.age_on(site_today(patient.site)),
        phone_last_four=services.phone_last_four(patient.phone),
        active=active,
        last_ended=max(ended, key=lambda e: e.discharged_on) if ended else None,
    )


@bp.get("/")
@require_permission(Permission.PATIENTS_READ)
def index():
    text = request.args.get("q", "").strip()
    query = services.search_patients(current_user, text)  # empty text: every patient
    page = paginate_sorted(
        query.options(*services.search_result_options()), PATIENT_SORTS, tiebreak=Patient.id
    )
    # The list shows names and dates of birth: the search is an access, without its terms.
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="patient_list",
        details={"searched": bool(text), "results": page.total, "page": page.page},
    )
    if text and page.total == 1 and page.page == 1:
        # A typed search that found one person: their chart (the chart records its view).
        return redirect(url_for("patients.chart", patient_id=page.items[0].id))
    rows = [_search_row(p) for p in page.items]
    return render_template("patients/index.html", page=page, rows=rows, q=text)


def _site_choices(form: PatientForm) -> list[Site]:
    """The user's sites; with several, the list starts on "Choose…" (a patient registered
    at the wrong site is a privacy fault), with one it is that site."""
    sites = services.sites_for(current_user)
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


def _demographics(form: PatientFields) -> services.Demographics:
    return services.Demographics.from_mapping(form.data)


@dataclass
class DuplicateShown:
    """A possible duplicate as the warning shows it: the record itself for a patient of
    the user's sites; site and MRN only for a patient elsewhere (minimum necessary)."""

    patient: Patient
    visible: bool


def _duplicates_shown(error: DomainError | None) -> list[DuplicateShown]:
    if not isinstance(error, services.PossibleDuplicate):
        return []
    sites = services.visible_site_ids(current_user)
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


def _once(form, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=result_url,
    )


def _edit_once(form, kind: str, result_url: str) -> Once:
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


def _already_saved(outcome) -> Any:
    flash(ALREADY_SENT_MESSAGE, "info")
    return redirect(outcome.repeated_url)


def _sent_before(kind: str) -> Any:
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
        form.intake_date.data = site_today(sites[0]) if sites else dt.date.today()
        if len(sites) == 1:
            form.site_id.data = sites[0].id
        # From "No patient matches ... Register": what was searched for, in its fields.
        prefill = services.registration_prefill(request.args.get("q", ""))
        form.first_name.data = prefill.first_name
        form.last_name.data = prefill.last_name
        form.date_of_birth.data = prefill.date_of_birth
    duplicates: list[DuplicateShown] = []
    age_warning = False
    if form.validate_on_submit():
        data = _demographics(form)

        def register_patient() -> Patient:
            site = services.chosen(sites, form.site_id.data)
            if site is None:
                raise DomainError(CHOOSE_SITE_MESSAGE, field="site_id")
            return services.register_patient(
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
                "uq_patient_unconfirmed_identity": lambda: services.duplicate_warning(data),
                **services.DATABASE_REFUSALS,
            },
            once=_once(form, "patient", lambda p: url_for("patients.chart", patient_id=p.id)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            patient = outcome.result
            flash(
                f"Registered {patient.first_name} {patient.last_name}, MRN {patient.mrn}.",
                "success",
            )
            return redirect(url_for("patients.chart", patient_id=patient.id))
        duplicates = _duplicates_shown(outcome.error)
        age_warning = isinstance(outcome.error, services.ImplausibleAge)
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
    enrollments = services.chart_enrollments(patient)
    deadlines = {e.id: services.deadlines(e, today) for e in enrollments if e.active}
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


def _entered_in_error_page(patient: Patient, title: str):
    """What a page that would change a record entered in error shows instead of a form."""
    return render_template(
        "patients/read_only.html",
        patient=patient,
        title=title,
        message=services.ENTERED_IN_ERROR_MESSAGE,
    )


@bp.route("/<int:patient_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.PATIENTS_REGISTER)
def edit(patient_id: int):
    patient = access.patient_or_404(patient_id)
    if patient.entered_in_error:
        return _entered_in_error_page(patient, "Edit demographics")
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
            lambda: services.update_demographics(
                patient,
                actor=current_user,
                data=data,
                expected_version=form.version_number,
                confirm_duplicate=form.confirm_duplicate.data,
                confirm_age=form.confirm_age.data,
            ),
            refusals={
                "uq_patient_unconfirmed_identity": lambda: services.duplicate_warning(
                    data, exclude_id=patient_id
                ),
                "patient_intake_before_admissions": RECHECK,
                "ck_patient_born_before_intake": RECHECK,
                **services.DATABASE_REFUSALS,
            },
            once=_edit_once(form, "patient_edit", url_for("patients.chart", patient_id=patient_id)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("patients.chart", patient_id=patient_id))
        duplicates = _duplicates_shown(outcome.error)
        age_warning = isinstance(outcome.error, services.ImplausibleAge)
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
    for name in services.Demographics.field_names():
        value = getattr(patient, name)
        if name.endswith("phone"):
            value = format_phone(value)
        elif isinstance(value, dt.date):
            value = services.format_day(value)
        elif hasattr(value, "label"):
            value = value.label
        values[name] = str(value) if value not in (None, "") else "—"
    return values


@bp.route("/<int:patient_id>/entered-in-error", methods=["GET", "POST"])
@require_permission(Permission.PATIENTS_MARK_ERROR)
def entered_in_error(patient_id: int):
    patient = access.patient_or_404(patient_id)
    if (repeated := _sent_before("entered_in_error")) is not None:
        return repeated
    if patient.entered_in_error:
        return _entered_in_error_page(patient, "Mark this record as entered in error")
    form = EnteredInErrorForm()
    if request.method == "GET":
        form.version.data = patient.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: services.mark_entered_in_error(
                patient,
                actor=current_user,
                reason=form.reason.data,
                expected_version=form.version_number,
            ),
            refusals=services.DATABASE_REFUSALS,
            once=_edit_once(
                form, "entered_in_error", url_for("patients.chart", patient_id=patient_id)
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
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


# --- enrollment --------------------------------------------------------------------------

ENROLLMENT_REFUSALS: dict = {
    **services.DATABASE_REFUSALS,
    **dict.fromkeys(services.DATE_RULES, RECHECK),
}


def _enrollment_choices(
    form: AdmitForm, patient: Patient, *, exclude_program: int | None = None
) -> tuple[list, list]:
    programs = [p for p in services.programs_at(patient.site_id) if p.id != exclude_program]
    counselors = services.counselors_for(patient.site_id)
    form.program_id.choices = [SelectChoice(0, "Choose…")] + [
        SelectChoice(p.id, f"{p.name} ({p.kind.label})") for p in programs
    ]
    form.primary_counselor_id.choices = [SelectChoice(0, "None yet")] + [
        SelectChoice(u.id, u.full_name) for u in counselors
    ]
    return programs, counselors


def _on_level_of_care(action):
    """The service names the ASAM edition or level; the form has one field for both."""

    def run():
        try:
            return action()
        except DomainError as error:
            if error.field in ("asam_edition", "asam_level"):
                error.field = "level_of_care"
            raise

    return run


def _chart_url(enrollment: Enrollment) -> str:
    return url_for("patients.chart", patient_id=enrollment.patient_id)


@bp.route("/<int:patient_id>/admit", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def admit(patient_id: int):
    patient = access.patient_or_404(patient_id)
    if patient.entered_in_error:
        return _entered_in_error_page(patient, "Admit to a program")
    form = AdmitForm()
    programs, counselors = _enrollment_choices(form, patient)
    if request.method == "GET" and not form.restored:
        form.admitted_on.data = site_today(patient.site)
    if form.validate_on_submit():
        edition, level = split_level_of_care(form.level_of_care.data)
        program = services.chosen(programs, form.program_id.data)

        def admit_patient() -> Enrollment:
            if program is None:
                raise DomainError("Choose a program.", field="program_id")
            return services.admit(
                patient,
                program,
                actor=current_user,
                admitted_on=form.admitted_on.data,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=services.chosen(counselors, form.primary_counselor_id.data),
            )

        outcome = save(
            form,
            _on_level_of_care(admit_patient),
            refusals=ENROLLMENT_REFUSALS,
            once=_once(form, "enrollment", _chart_url),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash(f"Admitted to {program.name}.", "success")
            return redirect(url_for("patients.chart", patient_id=patient_id))
    return render_template("patients/admit.html", form=form, patient=patient)


def _ended_page(enrollment: Enrollment, title: str):
    """What a page that would change an ended enrollment shows instead of a form (on a
    GET, and for a form sent from a page opened before the discharge: 409, nothing
    changed). It points to undoing the discharge, the one change left."""
    page = render_template(
        "patients/read_only.html",
        patient=enrollment.patient,
        title=title,
        message=(
            f"This enrollment in {enrollment.program.name} ended on "
            f"{services.format_day(enrollment.discharged_on)} "
            f"({enrollment.discharge_reason_label}): there is nothing left to change here."
        ),
        undo_url=url_for("patients.correct", enrollment_id=enrollment.id),
    )
    return (page, 409) if request.method == "POST" else page


@bp.route("/enrollments/<int:enrollment_id>/discharge", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def discharge(enrollment_id: int):
    enrollment = access.enrollment_or_404(enrollment_id)
    if enrollment.patient.entered_in_error:
        return _entered_in_error_page(enrollment.patient, "Discharge")
    if not enrollment.active and request.method == "GET":
        return _ended_page(enrollment, f"Discharge from {enrollment.program.name}")
    form = DischargeForm()
    if request.method == "GET" and not form.restored:
        form.discharged_on.data = site_today(enrollment.patient.site)
        form.version.data = enrollment.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: services.discharge(
                enrollment,
                actor=current_user,
                discharged_on=form.discharged_on.data,
                reason=_int(form.reason.data),
                expected_version=form.version_number,
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=_edit_once(form, "discharge", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash(f"Discharged from {enrollment.program.name}.", "success")
            return redirect(url_for("patients.chart", patient_id=enrollment.patient_id))
        conflict = _conflict(outcome, form, enrollment, _enrollment_values)
        if _ended(outcome, enrollment):
            return _ended_page(enrollment, f"Discharge from {enrollment.program.name}")
    return render_template(
        "patients/discharge.html",
        form=form,
        enrollment=enrollment,
        patient=enrollment.patient,
        conflict=conflict,
    )


def _ended(outcome, enrollment: Enrollment) -> bool:
    """The form was refused because the enrollment has ended (before the page was opened,
    or meanwhile): the page then says so instead of showing inputs refused again."""
    if outcome.saved or outcome.error is None:
        return False
    db.session.refresh(enrollment)
    return not enrollment.active


def _enrollment_values(enrollment: Enrollment) -> dict[str, str]:
    """An enrollment as the discharge, transfer and deadlines forms show it."""
    return {
        "program_id": enrollment.program.name,
        "admitted_on": services.format_day(enrollment.admitted_on),
        "level_of_care": enrollment.level_label,
        "primary_counselor_id": _counselor_label(enrollment.primary_counselor),
        **{
            name: services.format_day(getattr(enrollment, name))
            if getattr(enrollment, name)
            else "—"
            for name in services.MILESTONES
        },
    }


@bp.route("/enrollments/<int:enrollment_id>/transfer", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def transfer(enrollment_id: int):
    enrollment = access.enrollment_or_404(enrollment_id)
    patient = enrollment.patient
    if patient.entered_in_error:
        return _entered_in_error_page(patient, "Transfer")
    if not enrollment.active and request.method == "GET":
        return _ended_page(enrollment, f"Transfer from {enrollment.program.name}")
    form = TransferForm()
    programs, counselors = _enrollment_choices(form, patient, exclude_program=enrollment.program_id)
    if request.method == "GET" and not form.restored:
        form.admitted_on.data = site_today(patient.site)
        form.version.data = enrollment.version
        form.level_of_care.data = f"{enrollment.asam_edition.value}:{enrollment.asam_level}"
        form.primary_counselor_id.data = enrollment.primary_counselor_id or 0
    conflict = None
    if form.validate_on_submit():
        edition, level = split_level_of_care(form.level_of_care.data)
        program = services.chosen(programs, form.program_id.data)

        def transfer_enrollment() -> Enrollment:
            if program is None:
                raise DomainError("Choose a program.", field="program_id")
            return services.transfer(
                enrollment,
                program,
                actor=current_user,
                on=form.admitted_on.data,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=services.chosen(counselors, form.primary_counselor_id.data),
                expected_version=form.version_number,
            )

        outcome = save(
            form,
            _on_level_of_care(transfer_enrollment),
            refusals=ENROLLMENT_REFUSALS,
            once=_once(form, "transfer", _chart_url),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash(f"Transferred to {program.name}.", "success")
            return redirect(url_for("patients.chart", patient_id=patient.id))
        conflict = _conflict(outcome, form, enrollment, _transfer_values)
        if _ended(outcome, enrollment):
            return _ended_page(enrollment, f"Transfer from {enrollment.program.name}")
    return render_template(
        "patients/transfer.html",
        form=form,
        enrollment=enrollment,
        patient=patient,
        conflict=conflict,
    )


def _transfer_values(enrollment: Enrollment) -> dict[str, str]:
    # The transfer form's program and date are the new enrollment's: only the level of
    # care and counselor are this enrollment's values.
    values = _enrollment_values(enrollment)
    return {name: values[name] for name in ("level_of_care", "primary_counselor_id")}


@bp.route("/enrollments/<int:enrollment_id>/correct", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def correct(enrollment_id: int):
    """Correct the counselor, level of care or admission date of an enrollment in
    progress (each change kept with its reason); an ended one offers undoing the
    discharge instead."""
    enrollment = access.enrollment_or_404(enrollment_id)
    patient = enrollment.patient
    title = f"Correct the enrollment in {enrollment.program.name}"
    if patient.entered_in_error:
        return _entered_in_error_page(patient, title)
    if not enrollment.active:
        # Ended: nothing left to correct but the discharge itself, if it was a mistake.
        form = UndoDischargeForm(formdata=None)
        form.version.data = enrollment.version
        return _undo_page(enrollment, form)
    form = CorrectEnrollmentForm()
    counselors = services.counselors_for(patient.site_id)
    current = enrollment.primary_counselor
    if current is not None and services.chosen(counselors, current.id) is None:
        counselors.append(current)  # named before; may stay, though no longer a choice
    form.primary_counselor_id.choices = [SelectChoice(0, "None")] + [
        SelectChoice(u.id, u.full_name) for u in counselors
    ]
    if request.method == "GET" and not form.restored:
        _fill_correction(form, enrollment)
    conflict = None
    if form.validate_on_submit():
        edition, level = split_level_of_care(form.level_of_care.data)
        outcome = save(
            form,
            _on_level_of_care(
                lambda: services.correct_enrollment(
                    enrollment,
                    actor=current_user,
                    reason=form.reason.data,
                    expected_version=form.version_number,
                    primary_counselor=services.chosen(counselors, form.primary_counselor_id.data),
                    asam_edition=edition,
                    asam_level=level,
                    admitted_on=form.admitted_on.data,
                )
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=_edit_once(form, "enrollment_correction", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Correction saved. The earlier values stay in the history.", "success")
            return redirect(_chart_url(enrollment))
        conflict = _conflict(outcome, form, enrollment, _correction_values)
    return render_template(
        "patients/correct.html",
        form=form,
        enrollment=enrollment,
        patient=patient,
        conflict=conflict,
    )


def _fill_correction(form: CorrectEnrollmentForm, enrollment: Enrollment) -> None:
    form.primary_counselor_id.data = enrollment.primary_counselor_id or 0
    form.level_of_care.data = f"{enrollment.asam_edition.value}:{enrollment.asam_level}"
    form.admitted_on.data = enrollment.admitted_on
    form.version.data = enrollment.version


def _correction_values(enrollment: Enrollment) -> dict[str, str]:
    return {
        "primary_counselor_id": _counselor_label(enrollment.primary_counselor),
        "level_of_care": enrollment.level_label,
        "admitted_on": services.format_day(enrollment.admitted_on),
    }


def _counselor_label(user) -> str:
    return user.full_name if user is not None else "None"


@bp.route("/enrollments/<int:enrollment_id>/undo-discharge", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def undo_discharge(enrollment_id: int):
    """Undo a mistaken discharge. The form is on the ended enrollment's correction page;
    a GET shows it here too: a form sent after the session ended comes back at its own
    address once its user signs in again (``clinic.accounts.drafts``)."""
    enrollment = access.enrollment_or_404(enrollment_id)
    patient = enrollment.patient
    if (repeated := _sent_before("undo_discharge")) is not None:
        return repeated
    if patient.entered_in_error:
        page = _entered_in_error_page(patient, "Undo a discharge")
        return (page, 409) if request.method == "POST" else page
    if enrollment.active:
        # Undone meanwhile (or never discharged): nothing to do, and nothing to fill in.
        return render_template(
            "patients/read_only.html",
            patient=patient,
            title="Undo a discharge",
            message=f"The enrollment in {enrollment.program.name} is active: it has no "
            "discharge to undo.",
        )
    form = UndoDischargeForm()
    if request.method == "GET" and not form.restored:
        form.version.data = enrollment.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: services.undo_discharge(
                enrollment,
                actor=current_user,
                reason=form.reason.data,
                expected_version=form.version_number,
            ),
            refusals={
                **ENROLLMENT_REFUSALS,
                "uq_enrollment_active_patient_program": DomainError(
                    services.UNDO_READMITTED_MESSAGE
                ),
            },
            once=_edit_once(form, "undo_discharge", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash(
                f"The discharge from {enrollment.program.name} is undone; it stays in the history.",
                "success",
            )
            return redirect(_chart_url(enrollment))
        conflict = _conflict(outcome, form, enrollment, _discharge_values)
    return _undo_page(enrollment, form, conflict)


def _undo_page(enrollment: Enrollment, form: UndoDischargeForm, conflict=None):
    return render_template(
        "patients/undo_discharge.html",
        form=form,
        enrollment=enrollment,
        patient=enrollment.patient,
        conflict=conflict,
    )


def _discharge_values(enrollment: Enrollment) -> dict[str, str]:
    if enrollment.active:
        return {"discharge": "none (active)"}
    return {
        "discharge": f"{services.format_day(enrollment.discharged_on)}: "
        f"{enrollment.discharge_reason_label}"
    }


@bp.route("/enrollments/<int:enrollment_id>/deadlines", methods=["GET", "POST"])
@require_permission(Permission.DEADLINES_RECORD)
def deadlines(enrollment_id: int):
    enrollment = access.enrollment_or_404(enrollment_id)
    if enrollment.patient.entered_in_error:
        return _entered_in_error_page(enrollment.patient, "Deadlines")
    form = MilestonesForm(obj=enrollment) if request.method == "GET" else MilestonesForm()
    review_form = ReviewForm(formdata=None)
    if request.method == "GET":
        review_form.reviewed_on.data = site_today(enrollment.patient.site)
        if not form.restored:
            form.version.data = enrollment.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: services.record_milestones(
                enrollment,
                actor=current_user,
                values={name: form[name].data for name in services.MILESTONES},
                expected_version=form.version_number,
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=_edit_once(form, "milestones", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Dates saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("patients.chart", patient_id=enrollment.patient_id))
        conflict = _conflict(
            outcome,
            form,
            enrollment,
            lambda e: {n: v for n, v in _enrollment_values(e).items() if n in services.MILESTONES},
        )
    page = _deadlines_page(enrollment, form, review_form, conflict)
    nothing = form.is_submitted() and services.NOTHING_TO_SAVE_MESSAGE in form.form_errors
    return (page, 400) if nothing else page


def _deadlines_page(
    enrollment: Enrollment,
    form: MilestonesForm,
    review_form: ReviewForm,
    conflict: list[ConflictRow] | None = None,
):
    return render_template(
        "patients/deadlines.html",
        enrollment=enrollment,
        patient=enrollment.patient,
        form=form,
        review_form=review_form,
        items=services.deadlines(enrollment),
        conflict=conflict,
    )


@bp.route("/enrollments/<int:enrollment_id>/reviews", methods=["GET", "POST"])
@require_permission(Permission.DEADLINES_RECORD)
def add_review(enrollment_id: int):
    """Record a care-plan review (the form is on the deadlines page). A GET shows that page
    here: a review form sent after the session ended comes back at its own address once
    its user signs in again (``clinic.accounts.drafts``)."""
    enrollment = access.enrollment_or_404(enrollment_id)
    status = 400 if request.method == "POST" else 200
    if enrollment.patient.entered_in_error:
        return _entered_in_error_page(enrollment.patient, "Care-plan reviews"), status
    review_form = ReviewForm()
    if request.method == "GET" and not review_form.restored:
        review_form.reviewed_on.data = site_today(enrollment.patient.site)
    if review_form.validate_on_submit():
        outcome = save(
            review_form,
            lambda: services.record_care_plan_review(
                enrollment, actor=current_user, reviewed_on=review_form.reviewed_on.data
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=_once(review_form, "care_plan_review", lambda r: _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Care-plan review recorded.", "success")
            return redirect(url_for("patients.chart", patient_id=enrollment.patient_id))
    form = MilestonesForm(obj=enrollment, formdata=None)
    form.version.data = enrollment.version
    return _deadlines_page(enrollment, form, review_form), status


@bp.get("/deadlines")
@require_permission(Permission.PATIENTS_READ)
def worklist():
    mine = request.args.get("mine") == "1"
    items = services.deadline_worklist(current_user, counselor_only=mine)
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="deadline_worklist",
        details={"results": len(items)},
    )
    return render_template("patients/worklist.html", items=items, mine=mine)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
            lambda: services.grant_break_glass(
                actor=current_user, mrn=form.mrn.data, reason=form.reason.data
            ),
            refusals=services.DATABASE_REFUSALS,
            once=_once(
                form,
                "break_glass_grant",
                lambda access: url_for("patients.chart", patient_id=access.patient.id),
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
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
                    f"Emergency access granted for {services.BREAK_GLASS_MINUTES} minutes "
                    f"(until {until}). It is recorded and will be reviewed.",
                    "warning",
                )
            return redirect(url_for("patients.chart", patient_id=granted.patient.id))
        if isinstance(outcome.error, services.PatientNotFound):
            record_denied("patient")  # a refused lookup (the MRN is not recorded)
    return render_template(
        "patients/break_glass.html", form=form, minutes=services.BREAK_GLASS_MINUTES
    )


@bp.route("/break-glass/find", methods=["GET", "POST"])
@require_permission(Permission.BREAK_GLASS)
def emergency_lookup():
    """Find a patient of another site for emergency access by last name (or "last, first")
    and date of birth. A POST (the name and date of birth stay out of URLs and browser
    history); the results show site and MRN only (``services.emergency_lookup``)."""
    form = EmergencyLookupForm()
    lookup = None
    if form.validate_on_submit():
        try:
            lookup = services.emergency_lookup(
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
        limit=services.EMERGENCY_LOOKUP_LIMIT,
        minutes=services.BREAK_GLASS_MINUTES,
    )

"""Enrollment pages of the patients blueprint: admit, discharge, transfer, correct and undo
a discharge, the 42 CFR 8.12(f) milestones and care-plan reviews of an enrollment, and the
deadline worklist.

The routes are added to ``clinic.patients.views.bp`` (one blueprint, ``patients.*``
endpoints); ``clinic.create_app`` imports this module before registering it.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.audit import AuditAction, record
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import (
    access,
    admissions,
    common,
    corrections,
    milestones,
    program_settings,
)
from clinic.patients.forms import (
    AdmitForm,
    CorrectEnrollmentForm,
    DischargeForm,
    MilestonesForm,
    ReviewForm,
    TransferForm,
    UndoDischargeForm,
    split_level_of_care,
)
from clinic.patients.models import Enrollment, Patient
from clinic.patients.views import (
    already_saved,
    bp,
    create_once,
    edit_once,
    entered_in_error_page,
    sent_before,
)
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today
from clinic.web import RECHECK, ConflictRow, save
from clinic.web import conflict_rows as _conflict  # shared by patients, programs, users

# --- enrollment --------------------------------------------------------------------------

ENROLLMENT_REFUSALS: dict = {
    **common.DATABASE_REFUSALS,
    **dict.fromkeys(common.DATE_RULES, RECHECK),
}


def _enrollment_choices(
    form: AdmitForm, patient: Patient, *, exclude_program: int | None = None
) -> tuple[list, list]:
    programs = [p for p in program_settings.programs_at(patient.site_id) if p.id != exclude_program]
    counselors = program_settings.counselors_for(patient.site_id)
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
        return entered_in_error_page(patient, "Admit to a program")
    form = AdmitForm()
    programs, counselors = _enrollment_choices(form, patient)
    if request.method == "GET" and not form.restored:
        form.admitted_on.data = site_today(patient.site)
    if form.validate_on_submit():
        edition, level = split_level_of_care(form.level_of_care.data)
        program = common.chosen(programs, form.program_id.data)

        def admit_patient() -> Enrollment:
            if program is None:
                raise DomainError("Choose a program.", field="program_id")
            return admissions.admit(
                patient,
                program,
                actor=current_user,
                admitted_on=form.admitted_on.data,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=common.chosen(counselors, form.primary_counselor_id.data),
            )

        outcome = save(
            form,
            _on_level_of_care(admit_patient),
            refusals=ENROLLMENT_REFUSALS,
            once=create_once(form, "enrollment", _chart_url),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
            f"{common.format_day(enrollment.discharged_on)} "
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
        return entered_in_error_page(enrollment.patient, "Discharge")
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
            lambda: admissions.discharge(
                enrollment,
                actor=current_user,
                discharged_on=form.discharged_on.data,
                reason=_int(form.reason.data),
                expected_version=form.version_number,
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=edit_once(form, "discharge", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
        "admitted_on": common.format_day(enrollment.admitted_on),
        "level_of_care": enrollment.level_label,
        "primary_counselor_id": _counselor_label(enrollment.primary_counselor),
        **{
            name: common.format_day(getattr(enrollment, name)) if getattr(enrollment, name) else "—"
            for name in milestones.MILESTONES
        },
    }


@bp.route("/enrollments/<int:enrollment_id>/transfer", methods=["GET", "POST"])
@require_permission(Permission.ENROLLMENT_MANAGE)
def transfer(enrollment_id: int):
    enrollment = access.enrollment_or_404(enrollment_id)
    patient = enrollment.patient
    if patient.entered_in_error:
        return entered_in_error_page(patient, "Transfer")
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
        program = common.chosen(programs, form.program_id.data)

        def transfer_enrollment() -> Enrollment:
            if program is None:
                raise DomainError("Choose a program.", field="program_id")
            return admissions.transfer(
                enrollment,
                program,
                actor=current_user,
                on=form.admitted_on.data,
                asam_edition=edition,
                asam_level=level,
                primary_counselor=common.chosen(counselors, form.primary_counselor_id.data),
                expected_version=form.version_number,
            )

        outcome = save(
            form,
            _on_level_of_care(transfer_enrollment),
            refusals=ENROLLMENT_REFUSALS,
            once=create_once(form, "transfer", _chart_url),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
        return entered_in_error_page(patient, title)
    if not enrollment.active:
        # Ended: nothing left to correct but the discharge itself, if it was a mistake.
        form = UndoDischargeForm(formdata=None)
        form.version.data = enrollment.version
        return _undo_page(enrollment, form)
    form = CorrectEnrollmentForm()
    counselors = program_settings.counselors_for(patient.site_id)
    current = enrollment.primary_counselor
    if current is not None and common.chosen(counselors, current.id) is None:
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
                lambda: corrections.correct_enrollment(
                    enrollment,
                    actor=current_user,
                    reason=form.reason.data,
                    expected_version=form.version_number,
                    primary_counselor=common.chosen(counselors, form.primary_counselor_id.data),
                    asam_edition=edition,
                    asam_level=level,
                    admitted_on=form.admitted_on.data,
                )
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=edit_once(form, "enrollment_correction", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
        "admitted_on": common.format_day(enrollment.admitted_on),
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
    if (repeated := sent_before("undo_discharge")) is not None:
        return repeated
    if patient.entered_in_error:
        page = entered_in_error_page(patient, "Undo a discharge")
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
            lambda: corrections.undo_discharge(
                enrollment,
                actor=current_user,
                reason=form.reason.data,
                expected_version=form.version_number,
            ),
            refusals={
                **ENROLLMENT_REFUSALS,
                "uq_enrollment_active_patient_program": DomainError(
                    corrections.UNDO_READMITTED_MESSAGE
                ),
            },
            once=edit_once(form, "undo_discharge", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
        "discharge": f"{common.format_day(enrollment.discharged_on)}: "
        f"{enrollment.discharge_reason_label}"
    }


@bp.route("/enrollments/<int:enrollment_id>/deadlines", methods=["GET", "POST"])
@require_permission(Permission.DEADLINES_RECORD)
def deadlines(enrollment_id: int):
    enrollment = access.enrollment_or_404(enrollment_id)
    if enrollment.patient.entered_in_error:
        return entered_in_error_page(enrollment.patient, "Deadlines")
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
            lambda: milestones.record_milestones(
                enrollment,
                actor=current_user,
                values={name: form[name].data for name in milestones.MILESTONES},
                expected_version=form.version_number,
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=edit_once(form, "milestones", _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
        if outcome.saved:
            flash("Dates saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("patients.chart", patient_id=enrollment.patient_id))
        conflict = _conflict(
            outcome,
            form,
            enrollment,
            lambda e: {
                n: v for n, v in _enrollment_values(e).items() if n in milestones.MILESTONES
            },
        )
    page = _deadlines_page(enrollment, form, review_form, conflict)
    nothing = form.is_submitted() and milestones.NOTHING_TO_SAVE_MESSAGE in form.form_errors
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
        items=milestones.deadlines(enrollment),
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
        return entered_in_error_page(enrollment.patient, "Care-plan reviews"), status
    review_form = ReviewForm()
    if request.method == "GET" and not review_form.restored:
        review_form.reviewed_on.data = site_today(enrollment.patient.site)
    if review_form.validate_on_submit():
        outcome = save(
            review_form,
            lambda: milestones.record_care_plan_review(
                enrollment, actor=current_user, reviewed_on=review_form.reviewed_on.data
            ),
            refusals=ENROLLMENT_REFUSALS,
            once=create_once(review_form, "care_plan_review", lambda r: _chart_url(enrollment)),
        )
        if outcome.repeated_url:
            return already_saved(outcome)
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
    items = milestones.deadline_worklist(current_user, counselor_only=mine)
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

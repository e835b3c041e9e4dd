"""Medication orders, stop-dose holds and flags: the patient's medication page, the order
forms (new, change dose, switch, end) and the hold and flag forms, and the chart's
medication section.

Patients are loaded through ``clinic.patients.access`` (site scoping → 404, break-glass
read-only → 403, one view event per page); an order, hold or flag loaded by id is looked up
within the user's reach, then its patient is ``opened``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.medications import holds, orders
from clinic.medications.forms import (
    ClearFlagForm,
    EndOrderForm,
    FlagForm,
    HoldForm,
    LiftHoldForm,
    OrderForm,
)
from clinic.medications.models import MedicationOrder
from clinic.patients import access, admissions, common
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today
from clinic.web import RECHECK, Once, save

bp = Blueprint("medications", __name__, url_prefix="/medications")

ORDER_REFUSALS = {"uq_medication_order_active_patient_medication": RECHECK}
HOLD_REFUSALS = {"uq_medication_hold_live_patient": DomainError(holds.HOLD_EXISTS_MESSAGE)}


def _page_url(patient_id: int) -> str:
    return url_for("medications.patient", patient_id=patient_id)


def _once(form, kind: str, patient_id: int) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=lambda _result: _page_url(patient_id),
    )


def _order_or_404(order_id: int) -> MedicationOrder:
    order = orders.order_for(current_user, order_id)
    if order is None:
        found = orders.order_for_any(order_id)
        record_denied("medication_order", order_id, found.patient_id if found else None)
        abort(404)
    access.opened(order.patient, "medication_order", order.id)
    return order


def _order_input(form: OrderForm) -> orders.OrderInput:
    return orders.OrderInput(
        medication=form.medication.data,
        product_form=form.product_form.data,
        strength=form.strength.data,
        dose_mg=form.dose_mg.data,
        schedule=form.schedule.data,
        start_on=form.start_on.data,
        split_first_mg=form.split_first_mg.data or None,
        split_second_mg=form.split_second_mg.data or None,
        reason=form.reason.data,
        justification=form.justification.data,
        last_opioid_use_on=form.last_opioid_use_on.data,
    )


def _refused_read_only(patient: Patient, title: str):
    if patient.entered_in_error:
        return render_template(
            "patients/read_only.html",
            patient=patient,
            title=title,
            message=common.ENTERED_IN_ERROR_MESSAGE,
        )
    return None


# --- the medication page -------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.MEDICATION_READ)
def patient(patient_id: int):
    """Current orders, the full order history (who ordered what, when, why), holds and
    flags: a constant number of statements whatever the number of rows."""
    shown = access.patient_or_404(patient_id, entity_type="medications")
    today = site_today(shown.site)
    history = orders.order_history(shown)
    hold_rows = holds.hold_history(shown)
    return render_template(
        "medications/patient.html",
        patient=shown,
        today=today,
        current=[o for o in history if o.active],
        history=history,
        holds=hold_rows,
        live_hold=next((h for h in hold_rows if h.in_force_on(today)), None),
        flags=holds.flag_history(shown),
    )


# --- orders ----------------------------------------------------------------------------------


def _enrollment_choices(form: OrderForm, patient: Patient) -> list:
    active = [e for e in admissions.chart_enrollments(patient) if e.active]
    form.enrollment_id.choices = [
        SelectChoice(e.id, f"{e.program.name} (admitted {common.format_day(e.admitted_on)})")
        for e in active
    ]
    return active


@bp.route("/patients/<int:patient_id>/orders/new", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_ORDER)
def new_order(patient_id: int):
    shown = access.patient_or_404(patient_id, entity_type="medications")
    if (page := _refused_read_only(shown, "New medication order")) is not None:
        return page
    form = OrderForm()
    enrollments = _enrollment_choices(form, shown)
    if request.method == "GET" and not form.restored:
        form.start_on.data = site_today(shown.site)
        if enrollments:
            form.enrollment_id.data = enrollments[0].id
    if form.validate_on_submit():

        def start():
            enrollment = common.chosen(enrollments, form.enrollment_id.data)
            if enrollment is None:
                raise DomainError(
                    "Choose the enrollment (admit the patient first).", field="enrollment_id"
                )
            return orders.start_order(enrollment, actor=current_user, data=_order_input(form))

        outcome = save(
            form, start, refusals=ORDER_REFUSALS, once=_once(form, "medication_order", shown.id)
        )
        if outcome.saved:
            flash(
                "Order saved." if not outcome.repeated_url else "This order was saved once.",
                "success",
            )
            return redirect(_page_url(shown.id))
    return render_template(
        "medications/order_form.html",
        form=form,
        patient=shown,
        title="New medication order",
        current=None,
        mode="new",
        strengths=orders.STRENGTHS,
    ), (400 if form.errors or form.form_errors else 200)


def _replacement(order_id: int, mode: str):
    order = _order_or_404(order_id)
    shown = order.patient
    title = "Change the dose" if mode == "change" else "Switch medication"
    if (page := _refused_read_only(shown, title)) is not None:
        return page
    if not order.active:
        flash(orders.ENDED_ORDER_MESSAGE, "warning")
        return redirect(_page_url(shown.id))
    form = OrderForm()
    form.enrollment_id.choices = [SelectChoice(order.enrollment_id, order.enrollment.program.name)]
    form.enrollment_id.data = order.enrollment_id
    if request.method == "GET" and not form.restored:
        form.start_on.data = site_today(shown.site)
        if mode == "change":
            form.medication.data = order.medication.value
            form.product_form.data = order.product_form.value
            form.strength.data = order.strength
            form.schedule.data = order.schedule.value
    if mode == "change":
        form.medication.data = order.medication.value  # a dose change keeps the medication
    if form.validate_on_submit():
        service = orders.change_dose if mode == "change" else orders.switch_medication
        outcome = save(
            form,
            lambda: service(order, actor=current_user, data=_order_input(form)),
            refusals=ORDER_REFUSALS,
            once=_once(form, "medication_order", shown.id),
        )
        if outcome.saved:
            flash("Dose changed." if mode == "change" else "Medication switched.", "success")
            return redirect(_page_url(shown.id))
    return render_template(
        "medications/order_form.html",
        form=form,
        patient=shown,
        title=title,
        current=order,
        mode=mode,
        strengths=orders.STRENGTHS,
    ), (400 if form.errors or form.form_errors else 200)


@bp.route("/orders/<int:order_id>/change", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_ORDER)
def change_dose(order_id: int):
    return _replacement(order_id, "change")


@bp.route("/orders/<int:order_id>/switch", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_ORDER)
def switch(order_id: int):
    return _replacement(order_id, "switch")


@bp.route("/orders/<int:order_id>/end", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_ORDER)
def end_order(order_id: int):
    """Confirmation page, then the order ends (with its last day and why)."""
    order = _order_or_404(order_id)
    shown = order.patient
    if (page := _refused_read_only(shown, "End the order")) is not None:
        return page
    if not order.active:
        flash(orders.ENDED_ORDER_MESSAGE, "warning")
        return redirect(_page_url(shown.id))
    form = EndOrderForm()
    if request.method == "GET" and not form.restored:
        form.end_on.data = site_today(shown.site)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: orders.end_order(
                order, actor=current_user, end_on=form.end_on.data, reason=form.reason.data
            ),
        )
        if outcome.saved:
            flash("Order ended.", "success")
            return redirect(_page_url(shown.id))
    return render_template("medications/end_order.html", form=form, patient=shown, order=order), (
        400 if form.errors or form.form_errors else 200
    )


# --- holds and flags -------------------------------------------------------------------------


@bp.route("/patients/<int:patient_id>/holds/new", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_HOLD)
def place_hold(patient_id: int):
    shown = access.patient_or_404(patient_id, entity_type="medications")
    if (page := _refused_read_only(shown, "Stop-dose hold")) is not None:
        return page
    form = HoldForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: holds.place_hold(
                shown, actor=current_user, reason=form.reason.data, until_on=form.until_on.data
            ),
            refusals=HOLD_REFUSALS,
            once=_once(form, "medication_hold", shown.id),
        )
        if outcome.saved:
            flash("Hold placed: the patient will not be dosed.", "success")
            return redirect(_page_url(shown.id))
    return render_template("medications/hold_form.html", form=form, patient=shown), (
        400 if form.errors or form.form_errors else 200
    )


@bp.route("/holds/<int:hold_id>/lift", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_HOLD)
def lift_hold(hold_id: int):
    """Confirmation page, then the hold is lifted (with why)."""
    hold = holds.hold_for(current_user, hold_id)
    if hold is None:
        found = holds.hold_for_any(hold_id)
        record_denied("medication_hold", hold_id, found.patient_id if found else None)
        abort(404)
    access.opened(hold.patient, "medication_hold", hold.id)
    shown = hold.patient
    if hold.lifted_at is not None:
        flash("This hold was already lifted.", "info")
        return redirect(_page_url(shown.id))
    form = LiftHoldForm()
    if form.validate_on_submit():
        outcome = save(
            form, lambda: holds.lift_hold(hold, actor=current_user, reason=form.reason.data)
        )
        if outcome.saved:
            flash("Hold lifted.", "success")
            return redirect(_page_url(shown.id))
    return render_template("medications/lift_hold.html", form=form, patient=shown, hold=hold), (
        400 if form.errors or form.form_errors else 200
    )


@bp.route("/patients/<int:patient_id>/flags/new", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_HOLD)
def add_flag(patient_id: int):
    shown = access.patient_or_404(patient_id, entity_type="medications")
    if (page := _refused_read_only(shown, "Add a flag")) is not None:
        return page
    form = FlagForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: holds.add_flag(
                shown, actor=current_user, category=form.category.data, text=form.text.data
            ),
            once=_once(form, "patient_flag", shown.id),
        )
        if outcome.saved:
            flash("Flag added.", "success")
            return redirect(_page_url(shown.id))
    return render_template("medications/flag_form.html", form=form, patient=shown), (
        400 if form.errors or form.form_errors else 200
    )


@bp.post("/flags/<int:flag_id>/clear")
@require_permission(Permission.MEDICATION_HOLD)
def clear_flag(flag_id: int):
    flag = holds.flag_for(current_user, flag_id)
    if flag is None:
        found = holds.flag_for_any(flag_id)
        record_denied("patient_flag", flag_id, found.patient_id if found else None)
        abort(404)
    access.opened(flag.patient, "patient_flag", flag.id)
    form = ClearFlagForm()
    if form.validate_on_submit():
        outcome = save(form, lambda: holds.clear_flag(flag, actor=current_user))
        flash(
            "Flag cleared." if outcome.saved else (outcome.error.message if outcome.error else ""),
            "success" if outcome.saved else "warning",
        )
    return redirect(_page_url(flag.patient_id))


# --- the chart's medication section ----------------------------------------------------------


def _chart_context(patient: Patient) -> dict | None:
    """Clinicians and administrators: current orders, the hold in force, live flags.
    Staff: only whether the patient is on MOUD and with what (never doses or holds)."""
    if not current_user.can(Permission.MEDICATION_READ):
        return {"summary_only": True, "medications": orders.moud_summary(patient)}
    today = site_today(patient.site)
    return {
        "summary_only": False,
        "orders": orders.current_orders(patient),
        "hold": holds.holds_in_force([patient.id], today).get(patient.id),
        "flags": holds.live_flags([patient.id]).get(patient.id, []),
        "today": today,
    }


def register_chart_sections(app: Flask) -> None:
    """Add the medication section to the patient chart, and end an enrollment's orders
    when it is discharged."""
    register_chart_section(
        app,
        ChartSection(
            key="medications",
            template="medications/_chart_section.html",
            context=_chart_context,
            order=20,
        ),
    )
    admissions.add_discharge_listener(orders.end_orders_of_enrollment)

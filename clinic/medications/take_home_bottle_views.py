"""Take-home bottles: dispensing (reached from the dose page), the printable label sheet,
the returns check at a later visit, the patient's bottles page and the chart section.

Patient pages load the patient through ``clinic.patients.access`` (site scoping, the
``access_denied`` event, one ``view`` event per page); a dispensing is looked up within the
user's sites first (another site's: 404).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.medications import bottle_returns, call_backs, take_home_bottles
from clinic.medications.take_home_bottle_forms import DispenseForm, returns_form
from clinic.medications.take_home_models import (
    BottleReturn,
    DiversionIncident,
    TakeHomeDispensing,
)
from clinic.patients import access, common
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today
from clinic.web import Once, save

bp = Blueprint("take_home_bottles", __name__, url_prefix="/take-homes/bottles")

DISPENSING_REFUSALS = {
    "uq_dose_entry_dispensing_bottle": DomainError(take_home_bottles.RACE_MESSAGE, field="take_on"),
}
RETURN_REFUSALS = {
    "uq_bottle_return_dose_entry_id": DomainError(bottle_returns.ALREADY_CHECKED_MESSAGE),
}
RECENT_SHOWN = 10


def _once(form: Any, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data, user_id=current_user.id, kind=kind, result_url=result_url
    )


def _already_saved(outcome) -> Any:
    flash("This form had already been sent: it was saved once.", "info")
    return redirect(outcome.repeated_url)


def _dispensing_or_404(dispensing_id: int) -> tuple[TakeHomeDispensing, Patient]:
    """The dispensing within the user's sites (else 404, recorded), its patient opened."""
    query = sa.select(TakeHomeDispensing).where(TakeHomeDispensing.id == dispensing_id)
    sites = common.visible_site_ids(current_user)
    if sites is not None:
        query = query.where(TakeHomeDispensing.site_id.in_(sites))
    dispensing = db.session.scalar(query)
    if dispensing is None:
        found = db.session.get(TakeHomeDispensing, dispensing_id)
        record_denied("take_home_dispensing", dispensing_id, found.patient_id if found else None)
        abort(404)
    access.opened(dispensing.patient, "take_home_dispensing", dispensing.id)
    return dispensing, dispensing.patient


# --- dispensing --------------------------------------------------------------------------


@bp.route("/patients/<int:patient_id>/dispense", methods=["GET", "POST"])
@require_permission(Permission.DOSE_RECORD)
def dispense(patient_id: int):
    """Choose the take-on days among those covered by the decisions in force (clinic-closed
    days marked), see the cap and the days counted, confirm, dispense; then the labels."""
    patient = access.patient_or_404(patient_id, entity_type="take_home_dispensing")
    plan = take_home_bottles.dispensing_plan(patient)
    form = DispenseForm()
    # Every covered day is a valid choice (a day already out is refused by the service
    # with its reason, and a resent form finds its first result).
    form.take_on.choices = [(d.day.isoformat(), d.day.isoformat()) for d in plan.days]
    if request.method == "GET":
        form.in_hands.data = str(len(plan.in_hands))
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: take_home_bottles.dispense_take_homes(
                patient,
                actor=current_user,
                take_on_dates=form.days,
                seen_in_hands=form.seen_in_hands,
            ),
            refusals=DISPENSING_REFUSALS,
            once=_once(
                form,
                "take_home_dispensing",
                lambda d: url_for("take_home_bottles.labels", dispensing_id=d.id),
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            count = outcome.result.bottle_count
            flash(
                f"Dispensed {count} take-home bottle{'' if count == 1 else 's'}: print the labels.",
                "success",
            )
            return redirect(url_for("take_home_bottles.labels", dispensing_id=outcome.result.id))
        plan = take_home_bottles.dispensing_plan(patient)  # what the refusal found
    chosen = set(form.take_on.data or [])
    return render_template(
        "medications/bottles/dispense.html",
        patient=patient,
        plan=plan,
        form=form,
        chosen=chosen,
        read_only=patient.entered_in_error_at is not None,
    )


@bp.get("/dispensings/<int:dispensing_id>/labels")
@require_permission(Permission.MEDICATION_READ)
def labels(dispensing_id: int):
    """The label sheet of a dispensing: one label per bottle, to print (no script)."""
    dispensing, patient = _dispensing_or_404(dispensing_id)
    order = dispensing.order
    return render_template(
        "medications/bottles/labels.html",
        patient=patient,
        site=patient.site,
        dispensing=dispensing,
        labels=take_home_bottles.labels(dispensing),
        order=order,
        warnings=take_home_bottles.warnings_for(order.medication),
    )


# --- returns -----------------------------------------------------------------------------


@bp.route("/patients/<int:patient_id>/returns", methods=["GET", "POST"])
@require_permission(Permission.TAKE_HOMES_DECIDE)
def returns(patient_id: int):
    """The bottles due back (take-on day passed, not yet checked), each recorded returned
    empty, not returned or tampered, all at once; a finding opens a diversion incident."""
    patient = access.patient_or_404(patient_id, entity_type="bottle_return")
    today = site_today(patient.site)
    due = bottle_returns.bottles_due_back(patient.id, today)
    form = returns_form([b.id for b in due])()
    if due and form.validate_on_submit():
        outcome = save(
            form,
            lambda: bottle_returns.record_returns(
                patient, actor=current_user, outcomes=form.outcomes(), note=form.note.data
            ),
            refusals=RETURN_REFUSALS,
            once=_once(
                form,
                "bottle_return",
                lambda rows: url_for("take_home_bottles.patient", patient_id=patient.id),
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            findings = sum(1 for r in outcome.result if r.outcome.finding)
            flash(
                "Returns recorded"
                + (
                    f": {findings} bottle{'' if findings == 1 else 's'} not returned or "
                    "tampered, a diversion incident is on the chart."
                    if findings
                    else "."
                ),
                "warning" if findings else "success",
            )
            return redirect(url_for("take_home_bottles.patient", patient_id=patient.id))
    return render_template(
        "medications/bottles/returns.html", patient=patient, due=due, form=form, today=today
    )


# --- the patient's bottles and the chart ----------------------------------------------------


def bottles_overview(patient: Patient) -> dict[str, Any]:
    """The bottles in the patient's hands, those due back, the last dispensings, returns,
    diversion incidents and call-backs (a fixed number of statements)."""
    today = site_today(patient.site)
    dispensings = db.session.scalars(
        sa.select(TakeHomeDispensing)
        .where(TakeHomeDispensing.patient_id == patient.id)
        .order_by(TakeHomeDispensing.dispensed_at.desc(), TakeHomeDispensing.id.desc())
        .limit(RECENT_SHOWN)
    ).all()
    checks = db.session.scalars(
        sa.select(BottleReturn)
        .where(BottleReturn.patient_id == patient.id)
        .order_by(BottleReturn.recorded_at.desc(), BottleReturn.id.desc())
        .limit(RECENT_SHOWN)
    ).all()
    incidents = db.session.scalars(
        sa.select(DiversionIncident)
        .where(DiversionIncident.patient_id == patient.id)
        .order_by(DiversionIncident.found_on.desc(), DiversionIncident.id.desc())
    ).all()
    return {
        "today": today,
        "in_hands": take_home_bottles.bottles_in_hands(patient.id, today),
        "due_back": bottle_returns.bottles_due_back(patient.id, today),
        "dispensings": dispensings,
        "checks": checks,
        "incidents": incidents,
        "call_backs": call_backs.patient_call_backs(patient.id)[:RECENT_SHOWN],
    }


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.TAKE_HOMES_READ)
def patient(patient_id: int):
    """The patient's take-home bottles: in hand, due back, dispensings (label sheets),
    returns, diversion incidents and call-backs."""
    found = access.patient_or_404(patient_id, entity_type="take_home_bottles")
    return render_template(
        "medications/bottles/patient.html", patient=found, **bottles_overview(found)
    )


def _chart_context(patient: Patient) -> dict[str, Any] | None:
    if not current_user.can(Permission.TAKE_HOMES_READ):
        return None  # staff: never bottles
    overview = bottles_overview(patient)
    if not (overview["dispensings"] or overview["incidents"] or overview["call_backs"]):
        return None
    return {
        **overview,
        "may_check": current_user.can(Permission.TAKE_HOMES_DECIDE),
        "may_dispense": current_user.can(Permission.DOSE_RECORD),
    }


def register_chart_sections(app: Flask) -> None:
    """Add the "Take-home bottles" section to the patient chart."""
    register_chart_section(
        app,
        ChartSection(
            key="take_home_bottles",
            template="medications/bottles/_chart_section.html",
            context=_chart_context,
            order=26,
        ),
    )

"""Take-home pages (issue 13): a patient's take-home review (the evidence beside the six
criteria, the decisions and the form to record one), a decision with its approval,
decline, ending and reviews, the site's review list, and the chart's "Take-homes" section.

Thin views: parse the form, call the service (``take_home_decisions``), commit once
through ``clinic.web.save``, redirect. A decision loaded by id is looked up within the
user's sites (``take_home_reading.decision_for``: else 404 with an access_denied event),
then its patient is ``opened`` (one view event per page).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, flash, g, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import contains_eager
from wtforms import SelectChoice

from clinic.audit import AuditAction, record
from clinic.charts import ChartSection, register_chart_section
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.medications import take_home_decisions as decisions
from clinic.medications import take_home_reading as reading
from clinic.medications.drug_test_reading import OWN_ANALYTE
from clinic.medications.models import MedicationOrder
from clinic.medications.take_home_forms import (
    ApproveForm,
    DecisionForm,
    DeclineForm,
    EndForm,
    ReviewForm,
)
from clinic.medications.take_home_models import CRITERIA, TakeHomeDecision
from clinic.patients import access
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today
from clinic.web import RECHECK, Once, save

bp = Blueprint("take_homes", __name__, url_prefix="/take-homes")

# Two prescribers acting at once: the second sees the first's answer on a re-check.
DECISION_REFUSALS = {
    "take_home_decision_approval_once": RECHECK,
    "take_home_decision_end_once": RECHECK,
}
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@bp.app_template_filter("iso_weekdays")
def _iso_weekdays(value: str | None) -> str:
    """ISO weekday digits as names: "67" → "Sat, Sun"."""
    return ", ".join(WEEKDAY_NAMES[int(c) - 1] for c in (value or "") if c in "1234567")


def _status(form) -> int:
    if g.get("csrf_refused"):
        return 200
    return 400 if form.errors or form.form_errors else 200


def _decision_or_404(decision_id: int) -> TakeHomeDecision:
    decision = reading.decision_for(current_user, decision_id)
    if decision is None:
        record_denied("take_home_decision", decision_id)
        abort(404)
    access.opened(decision.patient, "take_home_decision", decision.id)
    return decision


def _order_choices(patient: Patient) -> tuple[list[SelectChoice], dict[str, MedicationOrder]]:
    orders = decisions.take_home_orders(patient)
    by_id = {str(o.id): o for o in orders}
    choices = [SelectChoice("", "Choose…")] if len(orders) != 1 else []
    choices += [
        SelectChoice(str(o.id), f"{o.medication.label} {o.dose_label} (from {o.start_on:%d %b %Y})")
        for o in orders
    ]
    return choices, by_id


def _review_page(patient: Patient, form: DecisionForm | None, code: int = 200):
    today = site_today(patient.site)
    orders = decisions.take_home_orders(patient)
    if form is not None:
        form.order_id.choices, _ = _order_choices(patient)
    # A positive result for the patient's own medication is expected: not shown as a risk.
    own = {OWN_ANALYTE[o.medication].value for o in orders if o.medication in OWN_ANALYTE}
    return render_template(
        "medications/take_homes/patient.html",
        patient=patient,
        own_analytes=own,
        evidence=reading.evidence(patient, today),
        form=form,
        may_approve=current_user.can(Permission.TAKE_HOMES_APPROVE),
        today=today,
    ), code


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.TAKE_HOMES_READ)
def patient(patient_id: int):
    """The take-home review: the latest drug tests (effective results), attendance over 90
    days, bottle findings, safe-storage education, the decisions and their caps, and — for
    a clinician — the form to record a decision."""
    found = access.patient_or_404(patient_id, entity_type="take_home_review")
    form = DecisionForm() if current_user.can(Permission.TAKE_HOMES_DECIDE) else None
    return _review_page(found, form)


@bp.post("/patients/<int:patient_id>")
@require_permission(Permission.TAKE_HOMES_DECIDE)
def record_decision(patient_id: int):
    """Record a decision (approved at once when a prescriber ticks "approve")."""
    found = access.patient_or_404(patient_id, entity_type="take_home_review")
    form = DecisionForm()
    form.order_id.choices, orders = _order_choices(found)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: decisions.record_decision(
                found,
                actor=current_user,
                order=orders.get(form.order_id.data or ""),
                schedule_kind=form.schedule_kind.data,
                start_on=form.start_on.data,
                days=form.days.data,
                weekdays="".join(form.weekdays.data or []),
                end_on=form.end_on.data,
                criteria=form.criteria(),
                storage_education_on=form.storage_education_on.data,
                approve=bool(form.approve.data),
            ),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="take_home_decision",
                result_url=lambda d: url_for("take_homes.decision", decision_id=d.id),
            ),
        )
        if outcome.saved:
            if outcome.repeated_url:
                flash("This decision was recorded once.", "success")
                return redirect(outcome.repeated_url)
            made = outcome.result
            flash(
                "Take-home decision recorded and approved."
                if made.approved_at is not None
                else "Take-home decision recorded: it awaits a prescriber's approval.",
                "success",
            )
            return redirect(url_for("take_homes.decision", decision_id=made.id))
    return _review_page(found, form, _status(form))


# --- a decision --------------------------------------------------------------------------


def _decision_page(decision: TakeHomeDecision, code: int = 200, **forms: Any):
    patient = decision.patient
    today = site_today(patient.site)
    statuses = {s.decision.id: s for s in reading.patient_statuses(patient, today)}
    return render_template(
        "medications/take_homes/decision.html",
        patient=patient,
        decision=decision,
        status=statuses[decision.id],
        reviews=reading.decision_reviews(decision),
        approve_form=forms.get("approve_form") or ApproveForm(formdata=None),
        decline_form=forms.get("decline_form") or DeclineForm(formdata=None),
        end_form=forms.get("end_form") or EndForm(formdata=None, ended_on=today),
        review_form=forms.get("review_form") or ReviewForm(formdata=None),
        criteria=CRITERIA,
        may_approve=current_user.can(Permission.TAKE_HOMES_APPROVE),
        may_decide=current_user.can(Permission.TAKE_HOMES_DECIDE),
        today=today,
    ), code


@bp.get("/decisions/<int:decision_id>")
@require_permission(Permission.TAKE_HOMES_READ)
def decision(decision_id: int):
    """A decision: its schedule, cap, criteria with notes, who recorded and approved it,
    its reviews, and the actions the user may take."""
    return _decision_page(_decision_or_404(decision_id))


def _act(decision: TakeHomeDecision, form, name: str, action, message: str):
    if form.validate_on_submit():
        outcome = save(
            form,
            action,
            refusals=DECISION_REFUSALS,
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind=f"take_home_{name}",
                result_url=lambda _r: url_for("take_homes.decision", decision_id=decision.id),
            ),
        )
        if outcome.saved:
            flash(message, "success")
            return redirect(
                outcome.repeated_url or url_for("take_homes.decision", decision_id=decision.id)
            )
        db.session.refresh(decision)
    return _decision_page(decision, _status(form), **{f"{name}_form": form})


@bp.post("/decisions/<int:decision_id>/approve")
@require_permission(Permission.TAKE_HOMES_APPROVE)
def approve(decision_id: int):
    found = _decision_or_404(decision_id)
    form = ApproveForm()
    return _act(
        found,
        form,
        "approve",
        lambda: decisions.approve(found, actor=current_user),
        "Decision approved.",
    )


@bp.post("/decisions/<int:decision_id>/decline")
@require_permission(Permission.TAKE_HOMES_APPROVE)
def decline(decision_id: int):
    found = _decision_or_404(decision_id)
    form = DeclineForm()
    return _act(
        found,
        form,
        "decline",
        lambda: decisions.decline(found, actor=current_user, reason=form.reason.data),
        "Decision declined.",
    )


@bp.post("/decisions/<int:decision_id>/end")
@require_permission(Permission.TAKE_HOMES_DECIDE)
def end(decision_id: int):
    found = _decision_or_404(decision_id)
    form = EndForm()
    return _act(
        found,
        form,
        "end",
        lambda: decisions.end_decision(
            found, actor=current_user, reason=form.reason.data, ended_on=form.ended_on.data
        ),
        "Decision ended.",
    )


@bp.post("/decisions/<int:decision_id>/review")
@require_permission(Permission.TAKE_HOMES_DECIDE)
def review(decision_id: int):
    found = _decision_or_404(decision_id)
    form = ReviewForm()
    return _act(
        found,
        form,
        "review",
        lambda: decisions.review_decision(
            found, actor=current_user, outcome=form.outcome.data, note=form.note.data
        ),
        "Review recorded.",
    )


# --- the review list -----------------------------------------------------------------------


@bp.get("/review-list")
@require_permission(Permission.TAKE_HOMES_READ)
def review_list():
    """Decisions in force at the user's sites that are due for review, or have a positive
    test or a bottle finding since their approval or last review: a fixed number of
    statements, one view event for the list (the dosing review list's pattern)."""
    listed = reading.review_list(current_user)
    pending = _awaiting_approval()
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="take_home_review_list",
        details={"results": len(listed), "awaiting_approval": len(pending)},
    )
    return render_template(
        "medications/take_homes/review_list.html",
        listed=listed,
        pending=pending,
        may_approve=current_user.can(Permission.TAKE_HOMES_APPROVE),
    )


PENDING_SHOWN = 200


def _awaiting_approval() -> list[TakeHomeDecision]:
    """The prescribers' worklist at the user's sites (``take_home_reading.awaiting_approval``),
    its first ``PENDING_SHOWN``: one statement."""
    query = (
        reading.awaiting_approval(current_user)
        .options(contains_eager(TakeHomeDecision.patient))
        .limit(PENDING_SHOWN)
    )
    return list(db.session.scalars(query))


# --- the chart -------------------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict[str, Any] | None:
    if not current_user.can(Permission.TAKE_HOMES_READ):
        return None  # staff: never take-home decisions
    statuses = reading.patient_statuses(patient)
    return {
        "in_force": [s for s in statuses if s.in_force],
        "pending": [s for s in statuses if s.state == "Awaiting approval"],
        "review_due": [s for s in statuses if s.on_review_list],
    }


def register_chart_sections(app: Flask) -> None:
    """Add the "Take-homes" section to the patient chart."""
    register_chart_section(
        app,
        ChartSection(
            key="take_homes",
            template="medications/take_homes/_chart_section.html",
            context=_chart_context,
            order=23,
        ),
    )

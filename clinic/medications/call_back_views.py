"""Call-backs: the worklist of patients due one (every role: names and due status only),
starting a call-back and recording its outcome (clinicians who record take-home
decisions).

The worklist is scoped to the user's sites in its query and records one ``view`` event
without patient data; patient pages go through ``clinic.patients.access``; a call-back is
looked up within the user's sites first (another site's: 404).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from clinic.audit import AuditAction, record
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.medications import call_backs, take_home_bottles
from clinic.medications.take_home_bottle_forms import CallBackOutcomeForm, StartCallBackForm
from clinic.medications.take_home_models import CallBack
from clinic.patients import access, common
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today, user_today
from clinic.web import Once, save

bp = Blueprint("call_backs", __name__, url_prefix="/call-backs")

START_REFUSALS = {"uq_call_back_open_patient": DomainError(call_backs.ALREADY_OPEN_MESSAGE)}
OUTCOME_REFUSALS = {"call_back_outcome_once": DomainError(call_backs.ALREADY_RECORDED_MESSAGE)}


def _once(form: Any, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data, user_id=current_user.id, kind=kind, result_url=result_url
    )


def _already_saved(outcome) -> Any:
    flash("This form had already been sent: it was saved once.", "info")
    return redirect(outcome.repeated_url)


@bp.get("/")
@require_permission(Permission.TESTS_DUE)
def worklist():
    """Patients due a call-back (3+ take-home days, fewer than 2 call-backs in 12 months,
    pro-rated) and call-backs awaiting their outcome. Two statements whatever the size."""
    sites = common.visible_site_ids(current_user)
    today = user_today(current_user)
    rows = call_backs.call_backs_due(sites, today)
    open_rows = call_backs.open_call_backs(sites)
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="call_back_worklist",
        details={"due": len(rows), "open": len(open_rows)},
    )
    return render_template(
        "medications/call_backs/worklist.html",
        rows=rows,
        open_rows=open_rows,
        today=today,
        may_record=current_user.can(Permission.TAKE_HOMES_DECIDE),
    )


@bp.route("/patients/<int:patient_id>/start", methods=["GET", "POST"])
@require_permission(Permission.TAKE_HOMES_DECIDE)
def start(patient_id: int):
    """Record that the patient was called: every remaining bottle to be brought within 24
    hours (the bottles expected are those in the patient's hands now)."""
    patient = access.patient_or_404(patient_id, entity_type="call_back")
    form = StartCallBackForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: call_backs.start_call_back(patient, actor=current_user),
            refusals=START_REFUSALS,
            once=_once(
                form, "call_back", lambda c: url_for("call_backs.outcome", call_back_id=c.id)
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Call-back started: record the count when the patient comes in.", "success")
            return redirect(url_for("call_backs.outcome", call_back_id=outcome.result.id))
    in_hands = take_home_bottles.bottles_in_hands(patient.id, site_today(patient.site))
    return render_template(
        "medications/call_backs/start.html", patient=patient, form=form, in_hands=in_hands
    )


def _call_back_or_404(call_back_id: int) -> CallBack:
    query = sa.select(CallBack).where(CallBack.id == call_back_id)
    sites = common.visible_site_ids(current_user)
    if sites is not None:
        query = query.where(CallBack.site_id.in_(sites))
    call_back = db.session.scalar(query)
    if call_back is None:
        found = db.session.get(CallBack, call_back_id)
        record_denied("call_back", call_back_id, found.patient_id if found else None)
        abort(404)
    access.opened(call_back.patient, "call_back", call_back.id)
    return call_back


@bp.route("/<int:call_back_id>/outcome", methods=["GET", "POST"])
@require_permission(Permission.TAKE_HOMES_DECIDE)
def outcome(call_back_id: int):
    """Record the call-back's outcome once: the count against the bottles expected; a
    short count, a tampered bottle or no show opens a diversion incident."""
    call_back = _call_back_or_404(call_back_id)
    patient = call_back.patient
    form = CallBackOutcomeForm()
    if form.validate_on_submit():
        saved = save(
            form,
            lambda: call_backs.record_outcome(
                call_back,
                actor=current_user,
                bottles_counted=form.bottles_counted.data,
                outcome=form.outcome.data,
                note=form.note.data,
            ),
            refusals=OUTCOME_REFUSALS,
            once=_once(
                form,
                "call_back_outcome",
                lambda c: url_for("take_home_bottles.patient", patient_id=patient.id),
            ),
        )
        if saved.repeated_url:
            return _already_saved(saved)
        if saved.saved:
            finding = saved.result.outcome.finding
            flash(
                "Call-back recorded"
                + (": a finding, a diversion incident is on the chart." if finding else "."),
                "warning" if finding else "success",
            )
            return redirect(url_for("take_home_bottles.patient", patient_id=patient.id))
        db.session.refresh(call_back)
    return render_template(
        "medications/call_backs/outcome.html", patient=patient, call_back=call_back, form=form
    )

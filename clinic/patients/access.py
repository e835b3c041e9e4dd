"""Loading a patient for a page: the one way every domain's views open a patient record.

``patient_or_404`` / ``enrollment_or_404`` apply, in order:

1. site scoping — a patient outside the user's sites is a 404 (existence is not
   disclosed) unless the user holds a live break-glass grant for that patient;
2. the ``access_denied`` audit event on every refusal (attributed to the patient when the
   record exists);
3. emergency access is read-only (HIPAA 164.312(a)(2)(ii) covers reading what an
   emergency needs): under a break-glass grant only the endpoints in
   ``BREAK_GLASS_PAGES`` open; any other page is a 403 recorded against the patient;
4. one ``view`` audit event per page shown — a GET records it at once; a POST records it
   only when the page is shown again (bad input, a refused rule), not when it redirects.

Domain packages (medications, therapy, aftercare, …) import this module, never another
domain's views.
"""

from __future__ import annotations

from flask import Flask, abort, g, request
from flask_login import current_user

from clinic.audit import AuditAction, record
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient

# Endpoints that open under a break-glass grant. The chart is the emergency view: it shows
# every domain's section (current medication included), read-only.
BREAK_GLASS_PAGES = frozenset({"patients.chart"})


def via_break_glass(patient: Patient) -> bool:
    """True when the signed-in user reaches ``patient`` only through emergency access."""
    sites = common.visible_site_ids(current_user)
    return sites is not None and patient.site_id not in sites


def patient_or_404(patient_id: int, *, entity_type: str = "patient") -> Patient:
    """The patient for this request's page, or abort.

    ``patient_id`` is a bounded id from the URL. Raises ``NotFound`` (404) when the patient
    does not exist or is outside the user's sites without a live grant, ``Forbidden`` (403)
    for a page other than the chart under emergency access. ``entity_type`` names what the
    view event records (default ``"patient"``)."""
    patient = common.patient_for(current_user, patient_id)
    if patient is None:
        exists = db.session.get(Patient, patient_id) is not None
        record_denied(entity_type, patient_id, patient_id if exists else None)
        abort(404)
    opened(patient, entity_type, patient.id)
    return patient


def enrollment_or_404(enrollment_id: int) -> Enrollment:
    """The enrollment for this request's page (its patient's access rules), or abort
    (404 / 403 as ``patient_or_404``)."""
    enrollment = common.enrollment_for(current_user, enrollment_id)
    if enrollment is None:
        found = db.session.get(Enrollment, enrollment_id)
        record_denied("enrollment", enrollment_id, found.patient_id if found else None)
        abort(404)
    opened(enrollment.patient, "enrollment", enrollment.id)
    return enrollment


def opened(patient: Patient, entity_type: str, entity_id: int) -> None:
    """A record of ``patient`` (already found within the user's reach) is opened by this
    request: refuse it under emergency access unless the page is a break-glass page, and
    record the view (GET now; POST when the page is shown again).

    For a domain's own records (an order, a dose, a session) loaded by id: look the record
    up site-scoped, then call this with its patient. Raises ``Forbidden`` (403)."""
    if via_break_glass(patient) and request.endpoint not in BREAK_GLASS_PAGES:
        record_denied(entity_type, entity_id, patient.id)
        abort(403)
    if request.method == "GET":
        record_view(patient, entity_type, entity_id)
    else:
        # A POST that fails shows the patient's page again: that is an access too,
        # recorded after the response unless the POST redirected.
        g.patient_shown = (patient, entity_type, entity_id)


def record_view(patient: Patient, entity_type: str, entity_id: int | None) -> None:
    """One ``view`` audit event for a page showing ``patient`` (the page's endpoint and
    whether it was reached through emergency access go in the details; no PHI)."""
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details={"page": request.endpoint, "break_glass": via_break_glass(patient)},
    )


def _record_page_shown_again(response):
    shown = g.pop("patient_shown", None)
    if shown is not None and (200 <= response.status_code < 300 or response.status_code == 400):
        record_view(*shown)
    return response


def register(app: Flask) -> None:
    """Install the after-request hook that records a POST's page shown again. Register it
    after ``clinic.audit.services.register`` so it runs before pending events commit."""
    app.after_request(_record_page_shown_again)

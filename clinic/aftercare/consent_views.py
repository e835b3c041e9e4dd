"""Consent and restriction-request pages of the aftercare blueprint (issue 12), the
loaders they share with the support-network pages (``support_views``), and the chart's
"Consents and support network" section.

Patients are loaded through ``clinic.patients.access`` (site scoping → 404, break-glass
read-only → 403, one view event per page); a support person, consent or restriction
loaded by id is looked up within the user's reach, then its patient is ``opened``.
Clinicians read (``AFTERCARE_READ``); staff and administrators keep the support network
(``REFERRALS_MANAGE``) and record consents, revocations and restrictions
(``CONSENTS_RECORD``).
"""

from __future__ import annotations

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.aftercare import consents, restrictions, support
from clinic.aftercare.consent_forms import (
    ConsentForm,
    LiftRestrictionForm,
    RestrictionForm,
    RevokeConsentForm,
    optional_int,
)
from clinic.aftercare.consent_models import (
    PART2_NOTICE,
    ConsentKind,
    ConsentPurpose,
    ExpiryKind,
    RecipientClass,
    SignatureMethod,
)
from clinic.aftercare.views import bp
from clinic.audit import AuditAction, record
from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.patients import access
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today
from clinic.web import Once, save

REVOKE_REFUSALS = {"part2_consent_immutable": DomainError(consents.ALREADY_REVOKED_MESSAGE)}
LIFT_REFUSALS = {
    "disclosure_restriction_immutable": DomainError(restrictions.ALREADY_LIFTED_MESSAGE)
}


def _status(form) -> int:
    return 400 if form.errors or form.form_errors else 200


def _once(form, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=result_url,
    )


def _network_url(patient_id: int) -> str:
    return url_for("aftercare.support_network", patient_id=patient_id)


def _consents_url(patient_id: int) -> str:
    return url_for("aftercare.consents", patient_id=patient_id)


def _loaded(found, entity_type: str, entity_id: int, lookup_any):
    """A record found within the user's reach, its patient opened; else 404 (recorded)."""
    if found is None:
        other = lookup_any(entity_id)
        record_denied(entity_type, entity_id, other.patient_id if other else None)
        abort(404)
    access.opened(found.patient, entity_type, found.id)
    return found


def _person_or_404(person_id: int):
    from clinic.aftercare.consent_models import SupportPerson

    return _loaded(
        support.support_person_for(current_user, person_id),
        "support_person",
        person_id,
        lambda i: db.session.get(SupportPerson, i),
    )


def _consent_or_404(consent_id: int):
    from clinic.aftercare.consent_models import Consent

    return _loaded(
        consents.consent_for(current_user, consent_id),
        "part2_consent",
        consent_id,
        lambda i: db.session.get(Consent, i),
    )


def _restriction_or_404(restriction_id: int):
    from clinic.aftercare.consent_models import RestrictionRequest

    return _loaded(
        restrictions.restriction_for(current_user, restriction_id),
        "disclosure_restriction",
        restriction_id,
        lambda i: db.session.get(RestrictionRequest, i),
    )


# --- consents ----------------------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>/consents", endpoint="consents")
@require_permission(Permission.AFTERCARE_READ)
def consents_page(patient_id: int):
    """The patient's consents with their state today, and their restriction requests."""
    shown = access.patient_or_404(patient_id, entity_type="part2_consents")
    today = site_today(shown.site)
    return render_template(
        "aftercare/consent_list.html",
        patient=shown,
        today=today,
        consents=consents.patient_consents(shown, today),
        restrictions=restrictions.patient_restrictions(shown),
    )


def _recipient_choices(form, patient: Patient) -> None:
    if "program_id" in form:
        form.program_id.choices = [SelectChoice("", "Choose…")] + [
            SelectChoice(p.id, p.name + ("" if p.active else " (inactive)"))
            for p in consents.site_programs(patient)
        ]
    form.resource_id.choices = [SelectChoice("", "Choose…")] + [
        SelectChoice(r.id, f"{r.name} ({r.kind.label})") for r in consents.active_resources()
    ]
    form.support_person_id.choices = [SelectChoice("", "Choose…")] + [
        SelectChoice(p.id, f"{p.name} ({p.relationship_kind.label})")
        for p in support.support_people(patient, archived=False)
    ]


def _consent_input(form) -> consents.ConsentInput:
    return consents.ConsentInput(
        kind=form.kind.data,
        program_id=form.program_id.data,
        information_description=form.information_description.data,
        recipient_type=form.recipient_type.data,
        resource_id=form.resource_id.data,
        support_person_id=form.support_person_id.data,
        recipient_class=form.recipient_class.data,
        purpose=form.purpose.data,
        purpose_text=form.purpose_text.data,
        right_to_revoke=form.right_to_revoke.data,
        expiry_kind=form.expiry_kind.data,
        expires_on=form.expires_on.data,
        expiry_event=form.expiry_event.data,
        signature_method=form.signature_method.data,
        paper_scan_reference=form.paper_scan_reference.data,
        electronic_signature_name=form.electronic_signature_name.data,
        signed_on=form.signed_on.data,
        redisclosure_statement=form.redisclosure_statement.data,
        based_on_id=optional_int(form.based_on_id.data),
    )


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# The §2.31 elements a consent cannot be recorded without, with the service's messages
# (consents.record_consent), so a blank form lists every missing element at once instead
# of one per submission.
ALWAYS_REQUIRED = {
    "kind": "Choose the kind of consent.",
    "program_id": "Choose the program that may disclose.",
    "information_description": (
        "Describe the information that may be disclosed (how much and what kind)."
    ),
    "recipient_type": "Choose who may receive the information.",
    "purpose": "Choose the purpose.",
    "purpose_text": "Write the purpose of the disclosure.",
    "right_to_revoke": "State the patient's right to revoke the consent and how.",
    "expiry_kind": "Choose when it expires.",
    "signature_method": "Choose how it was signed.",
    "signed_on": "Enter the date the patient signed.",
}
REQUIRED_WHEN = {
    ("recipient_type", "resource"): ("resource_id", "Choose the resource that may receive it."),
    ("recipient_type", "support_person"): (
        "support_person_id",
        "Choose a person of the patient's support network.",
    ),
    ("recipient_type", "class"): ("recipient_class", "Choose the class."),
    ("expiry_kind", "date"): ("expires_on", "Enter the expiration date."),
    ("signature_method", "paper"): (
        "paper_scan_reference",
        "Enter the reference of the signed paper's scan.",
    ),
    ("signature_method", "electronic"): (
        "electronic_signature_name",
        "Enter the name the patient typed to sign.",
    ),
    ("kind", "tpo"): (
        "redisclosure_statement",
        "A TPO consent carries its redisclosure statement.",
    ),
}


def _flag_blank_elements(form) -> bool:
    """Mark every blank required element by its field (one not already refused for its
    shape); True when any is blank. The service checks them again, with the rules between
    them."""
    blank = dict(ALWAYS_REQUIRED)
    for (name, value), (needed, message) in REQUIRED_WHEN.items():
        if form[name].data == value:
            blank[needed] = message
    flagged = False
    for name, message in blank.items():
        field = form[name]
        if _blank(field.data) and not field.errors:
            field.errors = [*field.errors, message]
            flagged = True
    return flagged


def _new_consent_page(form, patient: Patient, based_on, status: int):
    return render_template(
        "aftercare/consent_new.html", form=form, patient=patient, based_on=based_on
    ), status


@bp.route("/patients/<int:patient_id>/consents/new", methods=["GET", "POST"])
@require_permission(Permission.CONSENTS_RECORD)
def new_consent(patient_id: int):
    """Record a signed consent. ``?based_on=<id>``: a new consent prefilled with an earlier
    one's elements (a signed consent is never edited; a changed consent is a new one)."""
    shown = access.patient_or_404(patient_id, entity_type="part2_consents")
    based_on = None
    based_on_id = optional_int(request.args.get("based_on"))
    if based_on_id is not None:
        based_on = consents.consent_for(current_user, based_on_id)
        if based_on is None or based_on.patient_id != shown.id:
            based_on = None
    form = ConsentForm()
    _recipient_choices(form, shown)
    if request.method == "GET" and not form.restored:
        for name, value in consents.prefill_from(based_on, shown).items():
            form[name].data = value
        form.signed_on.data = site_today(shown.site)
    valid = form.validate_on_submit()
    if form.is_submitted() and _flag_blank_elements(form):
        valid = False
    if valid:
        outcome = save(
            form,
            lambda: consents.record_consent(shown, actor=current_user, data=_consent_input(form)),
            once=_once(
                form, "part2_consent", lambda c: url_for("aftercare.consent", consent_id=c.id)
            ),
        )
        if outcome.saved:
            flash("Consent recorded.", "success")
            return redirect(
                outcome.repeated_url or url_for("aftercare.consent", consent_id=outcome.result.id)  # type: ignore[union-attr]
            )
    return _new_consent_page(form, shown, based_on, _status(form))


@bp.route("/patients/<int:patient_id>/consents/print", methods=["GET", "POST"])
@require_permission(Permission.CONSENTS_RECORD)
def consent_form(patient_id: int):
    """The consent form to print and sign on paper, pre-filled with the elements entered
    on the new-consent form (POST, nothing saved) or with the program's defaults (GET).
    Printing is audited as a print of the patient's record."""
    shown = access.patient_or_404(patient_id, entity_type="part2_consents")
    form = ConsentForm()
    _recipient_choices(form, shown)
    if request.method == "GET":
        for name, value in consents.prefill_from(None, shown).items():
            form[name].data = value
    elif not form.validate():
        return _new_consent_page(form, shown, None, 400)
    record(
        AuditAction.PRINT,
        actor=current_user,
        entity_type="part2_consent_form",
        patient_id=shown.id,
        site_id=shown.site_id,
    )
    return render_template(
        "aftercare/consent_print.html",
        patient=shown,
        form=form,
        values=_print_values(form),
        notice=PART2_NOTICE,
    )


def _label(enum, value) -> str:
    try:
        return enum(value).label
    except ValueError:
        return ""


def _chosen_label(field) -> str:
    for choice in field.choices or []:
        if choice.value not in ("", None) and choice.value == field.data:
            return choice.label
    return ""


def _print_values(form) -> dict:
    kind = form.recipient_type.data
    if kind == "resource":
        recipient = _chosen_label(form.resource_id)
    elif kind == "support_person":
        recipient = _chosen_label(form.support_person_id)
    elif kind == "class":
        recipient = _label(RecipientClass, form.recipient_class.data)
    else:
        recipient = ""
    expiry = form.expiry_kind.data
    expires = form.expires_on.data if expiry == ExpiryKind.DATE else None
    return {
        "kind": _label(ConsentKind, form.kind.data),
        "tpo": form.kind.data == ConsentKind.TPO,
        "program": _chosen_label(form.program_id),
        "information": form.information_description.data or "",
        "recipient": recipient,
        "purpose": form.purpose_text.data or _label(ConsentPurpose, form.purpose.data),
        "right_to_revoke": form.right_to_revoke.data or "",
        "expiry_kind": expiry,
        "expires_on": expires,
        "expiry_event": form.expiry_event.data or "",
        "redisclosure": form.redisclosure_statement.data or "",
        "electronic": form.signature_method.data == SignatureMethod.ELECTRONIC,
    }


@bp.get("/consents/<int:consent_id>")
@require_permission(Permission.AFTERCARE_READ)
def consent(consent_id: int):
    """A consent as signed, its state today, and its revocation."""
    shown = _consent_or_404(consent_id)
    patient = shown.patient
    today = site_today(patient.site)
    return render_template(
        "aftercare/consent_detail.html",
        patient=patient,
        consent=shown,
        state=consents.consent_state(shown, today),
        summary=consents.consent_scope_summary(shown),
        notice=PART2_NOTICE,
    )


@bp.route("/consents/<int:consent_id>/revoke", methods=["GET", "POST"])
@require_permission(Permission.CONSENTS_RECORD)
def revoke_consent(consent_id: int):
    """Confirmation, then the revocation is recorded (once): no new disclosure from then."""
    shown = _consent_or_404(consent_id)
    patient = shown.patient
    if shown.revoked:
        flash(consents.ALREADY_REVOKED_MESSAGE, "info")
        return redirect(url_for("aftercare.consent", consent_id=shown.id))
    form = RevokeConsentForm()
    if request.method == "GET" and not form.restored:
        form.revoked_on.data = site_today(patient.site)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: consents.revoke_consent(
                shown,
                actor=current_user,
                revoked_on=form.revoked_on.data,
                method=form.revocation_method.data,
            ),
            refusals=REVOKE_REFUSALS,
        )
        if outcome.saved:
            flash("Consent revoked: it allows no new disclosure.", "success")
            return redirect(url_for("aftercare.consent", consent_id=shown.id))
    return render_template(
        "aftercare/consent_revoke.html", form=form, patient=patient, consent=shown
    ), _status(form)


# --- restriction requests (§2.26) ---------------------------------------------------------------


@bp.route("/patients/<int:patient_id>/restrictions/new", methods=["GET", "POST"])
@require_permission(Permission.CONSENTS_RECORD)
def new_restriction(patient_id: int):
    shown = access.patient_or_404(patient_id, entity_type="part2_consents")
    form = RestrictionForm()
    _recipient_choices(form, shown)
    if request.method == "GET" and not form.restored:
        form.requested_on.data = site_today(shown.site)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: restrictions.record_restriction(
                shown,
                actor=current_user,
                purpose=form.purpose.data or None,
                recipient_type=form.recipient_type.data,
                resource_id=form.resource_id.data,
                support_person_id=form.support_person_id.data,
                recipient_class=form.recipient_class.data,
                details=form.details.data,
                requested_on=form.requested_on.data,
            ),
            once=_once(form, "disclosure_restriction", lambda _r: _consents_url(shown.id)),
        )
        if outcome.saved:
            flash("Restriction recorded: disclosures it covers are refused.", "success")
            return redirect(outcome.repeated_url or _consents_url(shown.id))
    return render_template(
        "aftercare/consent_restriction_new.html", form=form, patient=shown
    ), _status(form)


@bp.route("/restrictions/<int:restriction_id>/lift", methods=["GET", "POST"])
@require_permission(Permission.CONSENTS_RECORD)
def lift_restriction(restriction_id: int):
    """Confirmation, then the restriction ends (once)."""
    restriction = _restriction_or_404(restriction_id)
    patient = restriction.patient
    if restriction.lifted:
        flash(restrictions.ALREADY_LIFTED_MESSAGE, "info")
        return redirect(_consents_url(patient.id))
    form = LiftRestrictionForm()
    if request.method == "GET" and not form.restored:
        form.lifted_on.data = site_today(patient.site)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: restrictions.lift_restriction(
                restriction,
                actor=current_user,
                lifted_on=form.lifted_on.data,
                reason=form.reason.data,
            ),
            refusals=LIFT_REFUSALS,
        )
        if outcome.saved:
            flash("Restriction lifted.", "success")
            return redirect(_consents_url(patient.id))
    return render_template(
        "aftercare/consent_restriction_lift.html",
        form=form,
        patient=patient,
        restriction=restriction,
    ), _status(form)


# --- the chart section -------------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict | None:
    """Support network, consents (state today) and restrictions in force; a constant
    number of statements. Clinicians read; staff and administrators get the links."""
    if not current_user.can(Permission.AFTERCARE_READ):
        return None
    today = site_today(patient.site)
    return {
        "people": support.support_people(patient, archived=False),
        "consents": consents.patient_consents(patient, today),
        "restrictions": [
            r for r in restrictions.patient_restrictions(patient) if r.in_force_on(today)
        ],
        "today": today,
        "manages": current_user.can(Permission.CONSENTS_RECORD),
    }


def register_chart_sections(app: Flask) -> None:
    register_chart_section(
        app,
        ChartSection(
            key="consents",
            template="aftercare/_chart_consents.html",
            context=_chart_context,
            order=40,
        ),
    )

"""Support-network pages of the aftercare blueprint (issue 12): a patient's support people
(list, add, edit with its conflict page, remove with a confirmation). Shared loaders and
helpers are ``consent_views``'; ``clinic.aftercare.register`` imports this module before
registering ``bp``.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request
from flask_login import current_user

from clinic.aftercare import support
from clinic.aftercare.consent_forms import (
    ArchiveSupportPersonForm,
    SupportPersonEditForm,
    SupportPersonForm,
)
from clinic.aftercare.consent_views import _network_url, _once, _person_or_404, _status
from clinic.aftercare.views import bp
from clinic.extensions import db
from clinic.patients import access
from clinic.security import Permission, require_permission
from clinic.web import Once, conflict_rows, save


@bp.get("/patients/<int:patient_id>/support-network")
@require_permission(Permission.AFTERCARE_READ)
def support_network(patient_id: int):
    """The patient's support network: current people first, then those removed."""
    shown = access.patient_or_404(patient_id, entity_type="support_network")
    return render_template(
        "aftercare/support_network.html", patient=shown, people=support.support_people(shown)
    )


def _person_input(form) -> support.SupportPersonInput:
    return support.SupportPersonInput(
        name=form.name.data,
        relationship=form.relationship.data,
        phone=form.phone.data,
        email=form.email.data,
        can_offer_housing=bool(form.can_offer_housing.data),
        notes=form.notes.data,
    )


@bp.route("/patients/<int:patient_id>/support-network/new", methods=["GET", "POST"])
@require_permission(Permission.REFERRALS_MANAGE)
def new_support_person(patient_id: int):
    shown = access.patient_or_404(patient_id, entity_type="support_network")
    form = SupportPersonForm()
    valid = form.validate_on_submit()
    if form.is_submitted() and not form.relationship.data and not form.relationship.errors:
        # With the other fields' errors, not on a second submission (support._values).
        form.relationship.errors = [*form.relationship.errors, "Choose the relationship."]
        valid = False
    if valid:
        outcome = save(
            form,
            lambda: support.add_support_person(shown, actor=current_user, data=_person_input(form)),
            once=_once(form, "support_person", lambda _r: _network_url(shown.id)),
        )
        if outcome.saved:
            flash("Added to the support network.", "success")
            return redirect(outcome.repeated_url or _network_url(shown.id))
    return render_template(
        "aftercare/support_form.html", form=form, patient=shown, person=None, conflict=None
    ), _status(form)


@bp.route("/support-people/<int:support_person_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.REFERRALS_MANAGE)
def edit_support_person(support_person_id: int):
    """Edit a support person: someone else's change meanwhile shows both, never lost."""
    person = _person_or_404(support_person_id)
    shown = person.patient
    if person.archived:
        flash(support.ARCHIVED_MESSAGE, "warning")
        return redirect(_network_url(shown.id))
    form = SupportPersonEditForm()
    if request.method == "GET" and not form.restored:
        form.name.data = person.name
        form.relationship.data = person.relationship_kind.value
        form.phone.data = person.phone
        form.email.data = person.email
        form.can_offer_housing.data = person.can_offer_housing
        form.notes.data = person.notes
        form.version.data = person.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: support.edit_support_person(
                person, actor=current_user, data=_person_input(form), version=form.version_number
            ),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="support_person_edit",
                result_url=lambda _r: _network_url(shown.id),
                required=False,
            ),
        )
        if outcome.saved:
            flash("Changes saved.", "success")
            return redirect(outcome.repeated_url or _network_url(shown.id))
        conflict = conflict_rows(
            outcome,
            form,
            person,
            lambda p: {
                "name": p.name,
                "relationship": p.relationship_kind.label,
                "phone": p.phone or "",
                "email": p.email or "",
                "can_offer_housing": "yes" if p.can_offer_housing else "no",
                "notes": p.notes or "",
            },
        )
        status = 409 if conflict else 400
        return render_template(
            "aftercare/support_form.html",
            form=form,
            patient=shown,
            person=person,
            conflict=conflict,
        ), status
    return render_template(
        "aftercare/support_form.html", form=form, patient=shown, person=person, conflict=None
    ), _status(form)


@bp.route("/support-people/<int:support_person_id>/archive", methods=["GET", "POST"])
@require_permission(Permission.REFERRALS_MANAGE)
def archive_support_person(support_person_id: int):
    """Confirmation, then the person is removed from the network (kept, marked archived)."""
    person = _person_or_404(support_person_id)
    shown = person.patient
    if person.archived:
        flash("This person was already removed from the support network.", "info")
        return redirect(_network_url(shown.id))
    form = ArchiveSupportPersonForm()
    if request.method == "GET":
        form.version.data = person.version
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: support.archive_support_person(
                person, actor=current_user, version=form.version_number
            ),
        )
        if outcome.saved:
            flash("Removed from the support network.", "success")
            return redirect(_network_url(shown.id))
        db.session.refresh(person)
        form.version.data = person.version
    return render_template(
        "aftercare/support_archive.html", form=form, patient=shown, person=person
    ), _status(form)

"""Referral pages (issue 12): a patient's referrals, a new referral (a resource picked from
the directory with its filters, or a support person), a referral with its history, status
changes and follow-up, sending (the disclosure, with the consent that covers it or the
reason it is refused), the printable referral packet, the printable accounting of
disclosures, the staff dashboard and the chart's "Referrals" section.

Thin views: parse the form, call the service (referrals.py, disclosures.py), commit once
through ``clinic.web.save``, redirect. A referral loaded by id is looked up within the
user's sites (``referrals.referral_for``: else 404 with an access_denied event), then its
patient is ``opened`` (one view event per page).
"""

from __future__ import annotations

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.aftercare import consents, directory, disclosures, referrals
from clinic.aftercare.consent_models import PART2_NOTICE, ConsentPurpose
from clinic.aftercare.referral_forms import (
    FollowUpForm,
    NewReferralForm,
    ResourceFilterForm,
    SendForm,
    StatusForm,
)
from clinic.aftercare.referral_models import Referral, ReferralStatus
from clinic.aftercare.views import bp
from clinic.audit import AuditAction, record
from clinic.charts import ChartSection, register_chart_section
from clinic.converters import DATABASE_INT_MAX
from clinic.errors import DomainError, record_denied
from clinic.patients import access
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.time import site_today, user_today
from clinic.web import RECHECK, Once, already_sent, conflict_rows, save, shown_day

# Two staff sending at once: the one who lost sees why (already sent) on a re-check.
# A second disclosure of the referral (two senders), or none the database finds consented
# (the consent revoked, the recipient changed meanwhile): the re-check says why.
SEND_REFUSALS = {"uq_part2_disclosure_referral": RECHECK, "part2_disclosure_consented": RECHECK}
# "Sent" is said on the packet's screen only: a flashed message would print on the paper
# that goes to the recipient (base.html prints flashed alerts).
JUST_SENT = "aftercare_just_sent"
RECIPIENT_FIELD = "recipient"


@bp.app_template_filter("referral_status")
def _referral_status(value) -> str:
    """A stored referral status as people read it."""
    try:
        return ReferralStatus(value).label
    except ValueError:
        return str(value)


@bp.app_template_filter("referral_purpose")
def _referral_purpose(value) -> str:
    try:
        return ConsentPurpose(value).label
    except ValueError:
        return str(value)


def _status(form) -> int:
    """400 for a form shown with its errors; 200 for a fresh form, and for a form the
    CSRF handler shows again (it answers 400 itself)."""
    if g.get("csrf_refused"):
        return 200
    return 400 if form.errors or form.form_errors else 200


def _referral_or_404(referral_id: int) -> Referral:
    referral = referrals.referral_for(current_user, referral_id)
    if referral is None:
        record_denied("referral", referral_id)
        abort(404)
    access.opened(referral.patient, "referral", referral.id)
    return referral


def _status_choices(referral: Referral) -> list[SelectChoice]:
    return [SelectChoice("", "Choose…")] + [
        SelectChoice(s.value, s.label) for s in referral.next_statuses
    ]


# --- the staff dashboard ---------------------------------------------------------------------


@bp.get("/dashboard")
@require_permission(Permission.REFERRALS_MANAGE)
def dashboard():
    """Referrals by status, follow-ups due, consents expiring within 30 days, residences
    with a free bed that accept MOUD: a constant number of queries, one view event per
    patient shown."""
    today = user_today(current_user)
    counts = referrals.counts_by_status(current_user)
    due = referrals.follow_ups_due(current_user, today)
    expiring = referrals.consents_expiring(current_user, today)
    beds = referrals.residences_with_beds()
    shown = {r.patient.id: r.patient for r in due} | {c.patient.id: c.patient for c in expiring}
    for patient in shown.values():
        access.record_view(patient, "aftercare_dashboard", None)
    return render_template(
        "aftercare/dashboard.html",
        counts=counts,
        due=due,
        expiring=expiring,
        beds=beds,
        stale={r.id for r in beds if directory.beds_stale(r, today)},
        today=today,
        statuses=list(ReferralStatus),
    )


# --- a patient's referrals -------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>/referrals")
@require_permission(Permission.AFTERCARE_READ)
def patient_referrals(patient_id: int):
    patient = access.patient_or_404(patient_id, entity_type="referrals")
    return render_template(
        "aftercare/referral_list.html",
        patient=patient,
        page=referrals.patient_referrals_page(patient),
        today=site_today(patient.site),
    )


def _filters(form: ResourceFilterForm) -> referrals.ResourceFilter:
    valid = form.validate()
    return referrals.ResourceFilter(
        kind=form.kind.data if valid and form.kind.data else None,
        accepts_moud=bool(form.moud.data),
        accepts_methadone=bool(form.methadone.data),
        beds=bool(form.beds.data),
        text=form.q.data if valid else None,
    )


def _recipient_ids(value: str | None) -> tuple[int | None, int | None]:
    """``resource-<id>`` or ``person-<id>`` from the radio group (ids the service checks)."""
    kind, _, number = (value or "").partition("-")
    if not number.isascii() or not number.isdigit() or int(number) > DATABASE_INT_MAX:
        return None, None
    if kind == "resource":
        return int(number), None
    if kind == "person":
        return None, int(number)
    return None, None


@bp.route("/patients/<int:patient_id>/referrals/new", methods=["GET", "POST"])
@require_permission(Permission.REFERRALS_MANAGE)
def new_referral(patient_id: int):
    """A draft referral: a resource from the directory (filtered by kind, MOUD, methadone,
    free beds, text) or one of the patient's support people. A residence that does not
    accept the patient's medication is a warning to confirm, not a refusal."""
    patient = access.patient_or_404(patient_id, entity_type="referral")
    # The filters sit in the referral's own form, so filtering after typing the reason
    # keeps it (and the reason, clinical text, never goes into a URL); a link may still
    # filter with the query string.
    posted_filters = request.method == "POST" and "kind" in request.form
    filter_form = ResourceFilterForm(formdata=request.form if posted_filters else request.args)
    filtering = posted_filters and "apply_filter" in request.form
    filters = _filters(filter_form)
    resources = referrals.resource_choices(filters)
    people = referrals.support_people_of(patient)
    form = NewReferralForm()
    choices = [SelectChoice(f"resource-{r.id}", r.name) for r in resources]
    choices += [SelectChoice(f"person-{p.id}", p.name) for p in people]
    chosen = form.recipient.data
    if chosen and chosen not in {c.value for c in choices}:
        # Chosen before the filters changed: still offered, so the choice is not lost.
        resource_id, person_id = _recipient_ids(chosen)
        extra = referrals.resource_for_choice(resource_id) if resource_id else None
        if extra is not None:
            resources.append(extra)
            choices.append(SelectChoice(chosen, extra.name))
    form.recipient.choices = choices
    warnings: list[str] = []
    if not filtering and form.validate_on_submit():
        resource_id, person_id = _recipient_ids(form.recipient.data)
        resource = next((r for r in resources if r.id == resource_id), None)
        warnings = referrals.moud_warnings(patient, resource)
        if warnings and not form.confirm_moud.data:
            form.confirm_moud.errors = [
                *form.confirm_moud.errors,
                "Tick this box to refer the patient to this residence anyway.",
            ]
        else:
            outcome = save(
                form,
                lambda: referrals.create_referral(
                    patient,
                    actor=current_user,
                    resource_id=resource_id,
                    support_person_id=person_id,
                    reason=form.reason.data,
                    purpose=form.purpose.data,
                    follow_up_on=form.follow_up_on.data,
                ),
                once=Once(
                    token=form.submission_token.data,
                    user_id=current_user.id,
                    kind="referral",
                    result_url=lambda r: url_for("aftercare.referral", referral_id=r.id),
                ),
            )
            if outcome.saved:
                flash(
                    "This referral was created once."
                    if outcome.repeated_url
                    else "Referral created as a draft: send it once consent is on file.",
                    "success",
                )
                return redirect(
                    outcome.repeated_url
                    or url_for("aftercare.referral", referral_id=outcome.result.id)
                )
            _move_error(form, outcome.error)
    return render_template(
        "aftercare/referral_new.html",
        patient=patient,
        form=form,
        filter_form=filter_form,
        resources={f"resource-{r.id}": r for r in resources},
        stale={r.id for r in resources if directory.beds_stale(r, site_today(patient.site))},
        people={f"person-{p.id}": p for p in people},
        warnings=warnings,
    ), (400 if warnings else _status(form))


def _move_error(form: NewReferralForm, error: DomainError | None) -> None:
    """The service names the resource or the support person; the page has one radio."""
    if error is None or error.field not in ("resource_id", "support_person_id"):
        return
    if error.message in form.form_errors:
        form.form_errors.remove(error.message)
    if error.message not in form.recipient.errors:
        form.recipient.errors = [*form.recipient.errors, error.message]


# --- a referral ------------------------------------------------------------------------------


def _detail(referral: Referral, *, status_form=None, follow_up_form=None, conflict=None, code=200):
    status_form = status_form or StatusForm(formdata=None, version=referral.version)
    status_form.status.choices = _status_choices(referral)
    follow_up_form = follow_up_form or FollowUpForm(
        formdata=None, version=referral.version, follow_up_on=referral.follow_up_on
    )
    return render_template(
        "aftercare/referral_detail.html",
        referral=referral,
        patient=referral.patient,
        events=referrals.history(referral),
        disclosure=disclosures.disclosure_of(referral),
        status_form=status_form,
        follow_up_form=follow_up_form,
        conflict=conflict,
        today=site_today(referral.patient.site),
    ), code


@bp.get("/referrals/<int:referral_id>")
@require_permission(Permission.AFTERCARE_READ)
def referral(referral_id: int):
    """The referral with its history and, for staff, its status and follow-up forms."""
    return _detail(_referral_or_404(referral_id))


def _saved_values(referral: Referral) -> dict[str, str]:
    return {
        "status": ReferralStatus(referral.status).label,
        "follow_up_on": shown_day(referral.follow_up_on) if referral.follow_up_on else "—",
    }


@bp.post("/referrals/<int:referral_id>/status")
@require_permission(Permission.REFERRALS_MANAGE)
def referral_status(referral_id: int):
    """Move the referral along its path, with a note (never to "sent": that is sending)."""
    referral = _referral_or_404(referral_id)
    form = StatusForm()
    form.status.choices = _status_choices(referral)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: referrals.change_status(
                referral,
                actor=current_user,
                to_status=form.status.data,
                note=form.note.data,
                version=form.version_number,
            ),
        )
        if outcome.saved:
            flash(f"Referral {ReferralStatus(referral.status).label.lower()}.", "success")
            return redirect(url_for("aftercare.referral", referral_id=referral.id))
        conflict = conflict_rows(outcome, form, referral, _saved_values)
        form.status.choices = _status_choices(referral)
        return _detail(referral, status_form=form, conflict=conflict, code=400)
    return _detail(referral, status_form=form, code=_status(form))


@bp.post("/referrals/<int:referral_id>/follow-up")
@require_permission(Permission.REFERRALS_MANAGE)
def referral_follow_up(referral_id: int):
    """Set or clear the day staff follow the referral up."""
    referral = _referral_or_404(referral_id)
    form = FollowUpForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: referrals.set_follow_up(
                referral,
                actor=current_user,
                follow_up_on=form.follow_up_on.data,
                version=form.version_number,
            ),
        )
        if outcome.saved:
            flash("Follow-up saved.", "success")
            return redirect(url_for("aftercare.referral", referral_id=referral.id))
        conflict = conflict_rows(outcome, form, referral, _saved_values)
        return _detail(referral, follow_up_form=form, conflict=conflict, code=400)
    return _detail(referral, follow_up_form=form, code=_status(form))


# --- sending: the disclosure -----------------------------------------------------------------


@bp.route("/referrals/<int:referral_id>/send", methods=["GET", "POST"])
@require_permission(Permission.REFERRALS_MANAGE)
def send_referral(referral_id: int):
    """Confirm and send a draft referral: the page shows the consent that covers it (or
    why none does, and sending is refused); sending records the disclosure."""
    referral = _referral_or_404(referral_id)
    form = SendForm()
    once = Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind="referral_send",
        result_url=lambda _d: url_for("aftercare.referral_packet", referral_id=referral.id),
    )
    if ReferralStatus(referral.status) is not ReferralStatus.DRAFT:
        first = already_sent(once) if request.method == "POST" else None
        if first:  # a double click: the first post sent it
            flash("This referral was sent once.", "info")
            return redirect(first)
        flash(
            "This referral is closed: it cannot be sent."
            if referral.status == ReferralStatus.CLOSED
            else disclosures.ALREADY_SENT,
            "info",
        )
        return redirect(url_for("aftercare.referral", referral_id=referral.id))
    consent = refusal = None
    try:
        consent = disclosures.covering_consent(referral)
    except consents.DisclosureRefused as refused:
        refusal = refused.message
    if request.method == "GET" and not form.restored:
        form.version.data = referral.version
        form.description.data = disclosures.default_description(consent) if consent else ""
    code = _status(form)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: disclosures.send(
                referral,
                actor=current_user,
                version=form.version_number,
                description=form.description.data,
                note=form.note.data,
            ),
            refusals=SEND_REFUSALS,
            once=once,
        )
        if outcome.saved:
            session[JUST_SENT] = [
                referral.id,
                "This referral was sent once."
                if outcome.repeated_url
                else "Referral sent; the disclosure is recorded. Print the packet to go with it.",
            ]
            return redirect(
                outcome.repeated_url
                or url_for("aftercare.referral_packet", referral_id=referral.id)
            )
        code = 400
        if isinstance(outcome.error, consents.DisclosureRefused):
            refusal, consent = outcome.error.message, None
    return render_template(
        "aftercare/referral_send.html",
        referral=referral,
        patient=referral.patient,
        form=form,
        consent=consent,
        scope=consents.consent_scope_summary(consent) if consent is not None else None,
        refusal=refusal,
    ), code


@bp.get("/referrals/<int:referral_id>/packet")
@require_permission(Permission.REFERRALS_MANAGE)
def referral_packet(referral_id: int):
    """The printable packet that goes with the disclosure: the §2.32 notice, the consent's
    scope and the referral. Only for a sent referral (its disclosure names the consent);
    each printing is audited."""
    referral = _referral_or_404(referral_id)
    disclosure = disclosures.disclosure_of(referral)
    if disclosure is None:
        flash(
            "A referral's packet is printed once it is sent (with the patient's consent).", "info"
        )
        return redirect(url_for("aftercare.referral", referral_id=referral.id))
    record(
        AuditAction.PRINT,
        actor=current_user,
        entity_type="referral_packet",
        entity_id=referral.id,
        patient_id=referral.patient_id,
        site_id=referral.patient.site_id,
        details={"disclosure_id": disclosure.id, "consent_id": disclosure.consent_id},
    )
    just_sent = session.pop(JUST_SENT, None)
    return render_template(
        "aftercare/referral_packet.html",
        sent_message=just_sent[1] if just_sent and just_sent[0] == referral.id else None,
        referral=referral,
        patient=referral.patient,
        disclosure=disclosure,
        scope=consents.consent_scope_summary(disclosure.consent),
        notice=PART2_NOTICE,
    )


# --- the accounting of disclosures -----------------------------------------------------------


@bp.get("/patients/<int:patient_id>/disclosures")
@require_permission(Permission.REFERRALS_MANAGE)
def accounting(patient_id: int):
    """The patient's disclosures of the past 3 years (42 CFR 2.25), printable; each
    showing is recorded as an export of the accounting besides the page's view event."""
    patient = access.patient_or_404(patient_id, entity_type="disclosure_accounting")
    today = site_today(patient.site)
    since = disclosures.accounting_since(today)
    rows = disclosures.accounting(patient, since=since, on=today)
    record(
        AuditAction.EXPORT,
        actor=current_user,
        entity_type="disclosure_accounting",
        entity_id=patient.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details={"since": since.isoformat(), "rows": len(rows)},
    )
    return render_template(
        "aftercare/accounting.html", patient=patient, rows=rows, since=since, today=today
    )


# --- the chart's "Referrals" section ---------------------------------------------------------


def _chart_context(patient: Patient) -> dict | None:
    """The patient's 10 latest referrals (read-only for clinicians; staff get the links)."""
    if not current_user.can(Permission.AFTERCARE_READ):
        return None
    rows = referrals.patient_referrals(patient, limit=11)
    return {
        "rows": rows[:10],
        "more": len(rows) > 10,
        "manage": current_user.can(Permission.REFERRALS_MANAGE),
    }


def register_chart_sections(app: Flask) -> None:
    register_chart_section(
        app,
        ChartSection(
            key="referrals",
            template="aftercare/_chart_referrals.html",
            context=_chart_context,
            order=45,
        ),
    )

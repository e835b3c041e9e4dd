"""The dosing window, the dose ledger pages and the daily dispensing log.

Patient pages load the patient through ``clinic.patients.access`` (site scoping, the
``access_denied`` event, read-only emergency access, one ``view`` event per page). List
pages (the dosing screen, the review list, the injection list, the daily log) are scoped to
the user's sites in their queries and record one ``view`` event each, without patient data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from wtforms import SelectChoice

from clinic.audit import AuditAction, record
from clinic.audit.services import recently_recorded
from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.forms import has_control_characters
from clinic.medications import (
    dose_day,
    dose_records,
    holds,
    ledger,
    reviews,
    take_home_bottles,
    worklists,
)
from clinic.medications.dosing_forms import (
    AcknowledgeForm,
    DoseForm,
    HeldForm,
    InjectionForm,
    MissedReviewForm,
    ReverseForm,
)
from clinic.medications.missed import patient_missed_days
from clinic.medications.models import ReviewDecision, format_mg
from clinic.pagination import SortedPage, requested_cursor
from clinic.patients import access, common, search
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import site_today
from clinic.web import Once, save

bp = Blueprint("dosing", __name__, url_prefix="/dosing")

RACE_MESSAGE = ledger.RACE_MESSAGE
LEDGER_REFUSALS = {
    "uq_dose_entry_patient_day_slot": DomainError(RACE_MESSAGE, field="amount_mg"),
    "uq_dose_entry_reverses_id": DomainError(ledger.ALREADY_REVERSED_MESSAGE),
}
STATION_KEY = "dosing_station"
# The dosing screen may show past days (read-only), up to the ledger's retention (1304.04).
PAST_DAYS_SHOWN = 2 * 366


# --- helpers ---------------------------------------------------------------------------


@bp.app_template_filter("dose_mg")
def _dose_mg(value) -> str:
    """An amount in mg as the dosing pages write it: 62.50 -> "62.5" (``format_mg``)."""
    return format_mg(value) if value is not None else "—"


def _site_from_args() -> Site | None:
    """The site named by ``?site=CODE`` among the user's sites (organisation-wide
    administrators: any); without it, the user's only site, or None when there are several
    (the page then asks which). A code outside the user's sites is a 404, recorded as a
    refused access."""
    sites = common.sites_for(current_user)
    code = request.args.get("site", "").strip().upper()[:16]
    if not code:
        return sites[0] if len(sites) == 1 else None
    for site in sites:
        if site.code == code:
            return site
    record_denied("site", None)
    abort(404)


def _choose_site(endpoint: str):
    return render_template(
        "medications/dosing/index.html",
        sites=common.sites_for(current_user),
        endpoint=endpoint,
    )


def _day(site: Site) -> tuple[dt.date, dt.date]:
    """(today at the site, the day asked for with ``?day=YYYY-MM-DD``): today when absent,
    malformed, in the future or older than the ledger's retention."""
    today = site_today(site)
    raw = request.args.get("day", "")
    try:
        day = dt.date.fromisoformat(raw) if raw.isascii() and len(raw) == 10 else today
    except ValueError:
        day = today
    if day > today or day < today - dt.timedelta(days=PAST_DAYS_SHOWN):
        day = today
    return today, day


def _filter_text() -> str:
    text = request.args.get("q", "").strip()[:80]
    return "" if has_control_characters(text) else text


def _once(form: Any, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=result_url,
    )


def _already_saved(outcome) -> Any:
    flash("This form had already been sent: it was saved once.", "info")
    return redirect(outcome.repeated_url)


def _screen_url(patient: Patient) -> str:
    return url_for("dosing.screen", site=patient.site.code)


def _read_only(patient: Patient) -> bool:
    return patient.entered_in_error_at is not None


# --- the dosing screen -----------------------------------------------------------------


class ScreenLinks(SortedPage):
    """The pager of the dosing screen (the ``pager`` macro): its links open the full
    screen (``dosing.screen``), also from the list fetched alone (``dosing.screen_list``),
    and keep ``site``, ``day`` and ``q`` only."""

    def url(self, **changes: Any) -> str:
        args = {k: v for k, v in {**self.link_params, **changes}.items() if v is not None}
        return url_for("dosing.screen", **args)


def _screen_page(site: Site, day: dt.date, text: str) -> worklists.ScreenPage:
    matching = search.search_patients(current_user, text) if text else None
    return worklists.dosing_screen_page(site, day, matching=matching, cursor=requested_cursor())


def _screen_links(site: Site, day: dt.date, today: dt.date, text: str, page) -> ScreenLinks:
    params = {"site": site.code}
    if day != today:
        params["day"] = day.isoformat()
    if text:
        params["q"] = text
    return ScreenLinks(page.keyset, sort_key="", sort_desc=False, link_params=params)


# How long a recorded dosing screen covers its automatic refreshes (dosing.js: every 45 s).
SCREEN_REFRESH_RECORDED = dt.timedelta(minutes=10)


def _record_screen_view(site: Site, day: dt.date, text: str, page: worklists.ScreenPage) -> None:
    # The list shows names and dates of birth: an access, recorded without its terms,
    # with the rows shown and which page ("first", or "after"/"before" a cursor; never
    # the cursor's patient id).
    cursor = requested_cursor()
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="dosing_screen",
        site_id=site.id,
        details={
            "day": day.isoformat(),
            "searched": bool(text),
            "results": len(page.rows),
            "page": "first" if cursor is None else cursor.way,
        },
    )


def _screen_context(site: Site, day: dt.date, today: dt.date, text: str, page) -> dict:
    return {
        "site": site,
        "day": day,
        "today": today,
        "rows": page.rows,
        "page": page,
        "pager": _screen_links(site, day, today, text, page),
        "q": text,
        "may_dose": current_user.can(Permission.DOSE_RECORD) and day == today,
    }


@bp.get("/")
@require_permission(Permission.MEDICATION_READ)
def screen():
    """The patients due today (active daily and split orders), found by name starts or
    MRN (the patient search), each recorded with one action from the keyboard; a page at
    a time (``worklists.SCREEN_PAGE_SIZE``, ``?after=`` / ``?before=`` a patient id).
    ``?site=CODE`` (a user of several sites chooses first), ``?day=``, ``?q=``."""
    site = _site_from_args()
    if site is None:
        return _choose_site("dosing.screen")
    today, day = _day(site)
    text = _filter_text()
    page = _screen_page(site, day, text)
    _record_screen_view(site, day, text, page)
    context = _screen_context(site, day, today, text, page)
    one_found = text and page.total == 1 and len(page.rows) == 1
    if one_found and context["may_dose"] and request.args.get("go") == "1":
        # Enter in the filter with one patient found: their dose page (which records
        # the view of the patient).
        return redirect(url_for("dosing.dose", patient_id=page.rows[0].patient.id))
    return render_template("medications/dosing/screen.html", **context)


@bp.get("/list")
@require_permission(Permission.MEDICATION_READ)
def screen_list():
    """The screen's list alone (the page asked for, with its pager), fetched by dosing.js
    as the filter is typed (from the first page) and every 45 seconds (``auto=1``: a
    refresh of the page already shown and recorded)."""
    site = _site_from_args()
    if site is None:
        return _choose_site("dosing.screen")
    today, day = _day(site)
    text = _filter_text()
    page = _screen_page(site, day, text)
    # An automatic refresh (``auto=1``) of a screen this user opened in the last minutes
    # is not recorded again; the flag alone never skips the record.
    if request.args.get("auto") != "1" or not recently_recorded(
        current_user, AuditAction.VIEW, "dosing_screen", site.id, SCREEN_REFRESH_RECORDED
    ):
        _record_screen_view(site, day, text, page)
    return render_template(
        "medications/dosing/_list.html", **_screen_context(site, day, today, text, page)
    )


# --- recording -------------------------------------------------------------------------


def _dose_page(
    patient: Patient,
    *,
    form: DoseForm | None = None,
    held_form: HeldForm | None = None,
    status: int = 200,
):
    today = site_today(patient.site)
    due = dose_day.dose_due(patient, today)
    missed = patient_missed_days(patient, due.order, today) if due else None
    prefill = form is None or request.method == "GET"
    form = form or DoseForm(formdata=None)
    if due is not None and prefill:
        form.amount_mg.data = format_mg(due.expected_mg) if not due.done else ""
        form.station.data = session.get(STATION_KEY, "")
    # What this page shows as given: a dose saved by someone else before the form is sent
    # makes the service refuse it as a race (``ledger.RACE_MESSAGE``).
    form.given_count.data = str(len(due.given)) if due is not None else "0"
    return (
        render_template(
            "medications/dosing/dose.html",
            patient=patient,
            today=today,
            due=due,
            missed=missed,
            hold=dose_day.hold_in_force(patient.id, today),
            flags=holds.live_flags([patient.id]).get(patient.id, []),
            warnings=dose_day.unacknowledged_warnings(patient.id, today),
            refusal=ledger.dose_refusal(patient, today, due, missed),
            discharged_message=ledger.DISCHARGED_MESSAGE,
            injection=dose_day.injection_order(patient, today),
            take_homes=take_home_bottles.has_decision_in_force(patient, today),
            form=form,
            held_form=held_form or HeldForm(formdata=None),
            ack_form=AcknowledgeForm(formdata=None),
            read_only=_read_only(patient),
        ),
        status,
    )


@bp.route("/patients/<int:patient_id>/dose", methods=["GET", "POST"])
@require_permission(Permission.DOSE_RECORD)
def dose(patient_id: int):
    """Record today's observed dose: date of birth confirmed, amount prefilled from the
    order, one action (Enter)."""
    patient = access.patient_or_404(patient_id, entity_type="dose")
    form = DoseForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: ledger.record_dose(
                patient,
                actor=current_user,
                amount_mg=form.amount_mg.data,
                reason=form.reason.data,
                station=form.station.data,
                seen_given=form.seen_given,
            ),
            refusals=LEDGER_REFUSALS,
            once=_once(form, "dose", lambda entry: _screen_url(patient)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            session[STATION_KEY] = (form.station.data or "").strip()
            entry = outcome.result
            flash(
                f"Recorded {format_mg(entry.amount_mg)} mg observed for "
                f"{patient.last_name}, {patient.first_name}.",
                "success",
            )
            return redirect(_screen_url(patient))
        if outcome.error is not None and outcome.error.message == RACE_MESSAGE:
            # Another nurse's dose won: a conflict, nothing saved.
            return _dose_page(patient, form=form, status=409)
    return _dose_page(patient, form=form)


@bp.post("/patients/<int:patient_id>/held")
@require_permission(Permission.DOSE_RECORD)
def held(patient_id: int):
    """Record today's dose as held (not given), with the reason."""
    patient = access.patient_or_404(patient_id, entity_type="dose")
    form = HeldForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: ledger.record_held(patient, actor=current_user, reason=form.held_reason.data),
            once=_once(form, "dose_held", lambda entry: _screen_url(patient)),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash(f"Recorded today's dose as held for {patient.last_name}.", "success")
            return redirect(_screen_url(patient))
    return _dose_page(patient, held_form=form)


@bp.post("/patients/<int:patient_id>/acknowledge")
@require_permission(Permission.DOSE_RECORD)
def acknowledge(patient_id: int):
    """Acknowledge one of the patient's warning flags for today."""
    patient = access.patient_or_404(patient_id, entity_type="dose")
    form = AcknowledgeForm()
    if form.validate_on_submit() and form.flag_number is not None:
        flag = holds.flag_for_any(form.flag_number)
        if flag is None or flag.patient_id != patient.id:
            abort(404)
        outcome = save(
            form,
            lambda: ledger.acknowledge_flag(flag, actor=current_user),
            refusals={"uq_flag_acknowledgement_flag_id_acknowledged_on": "recheck"},
        )
        if outcome.saved:
            flash("Warning acknowledged for today.", "success")
        else:
            flash(outcome.error.message if outcome.error else "Nothing was saved.", "error")
    elif form.is_submitted():
        flash("Choose the flag to acknowledge.", "error")
    return redirect(url_for("dosing.dose", patient_id=patient.id))


@bp.route("/patients/<int:patient_id>/reverse", methods=["GET", "POST"])
@require_permission(Permission.DOSE_RECORD)
def reverse(patient_id: int):
    """Correct a mistaken dose with a reversal row (the original row stays)."""
    patient = access.patient_or_404(patient_id, entity_type="dose")
    doses = ledger.reversible_doses(patient)
    form = ReverseForm()
    form.dose_id.choices = [
        SelectChoice(
            d.id,
            f"{common.format_day(d.dispensed_on)} — {d.kind_label} {format_mg(d.amount_mg)} mg"
            + (f" for {common.format_day(d.take_on)}" if d.take_on else ""),
        )
        for d in doses
    ]
    if form.validate_on_submit():
        entry = next((d for d in doses if d.id == form.dose_id.data), None)
        if entry is None:
            form.dose_id.errors = [*form.dose_id.errors, "Choose one of the doses listed."]
        else:
            outcome = save(
                form,
                lambda: ledger.record_reversal(entry, actor=current_user, reason=form.reason.data),
                refusals=LEDGER_REFUSALS,
                once=_once(
                    form,
                    "dose_reversal",
                    lambda r: url_for("dosing.history", patient_id=patient.id),
                ),
            )
            if outcome.repeated_url:
                return _already_saved(outcome)
            if outcome.saved:
                flash("The dose was reversed; the original row stays in the ledger.", "success")
                return redirect(url_for("dosing.history", patient_id=patient.id))
    return render_template(
        "medications/dosing/reverse.html", patient=patient, form=form, doses=doses
    )


@bp.route("/patients/<int:patient_id>/injection", methods=["GET", "POST"])
@require_permission(Permission.DOSE_RECORD)
def injection(patient_id: int):
    """Record an extended-release injection (lot, site of injection)."""
    patient = access.patient_or_404(patient_id, entity_type="dose")
    today = site_today(patient.site)
    order = dose_day.injection_order(patient, today)
    form = InjectionForm()
    if request.method == "GET" and order is not None:
        form.amount_mg.data = format_mg(order.dose_mg)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: ledger.record_injection(
                patient,
                actor=current_user,
                amount_mg=form.amount_mg.data,
                lot=form.lot.data,
                injection_site=form.injection_site.data,
                reason=form.reason.data,
            ),
            refusals=LEDGER_REFUSALS,
            once=_once(
                form, "injection", lambda e: url_for("dosing.history", patient_id=patient.id)
            ),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            entry = outcome.result
            next_due = dose_day.next_injection_due(order, entry.dispensed_on) if order else None
            flash(
                "Injection recorded."
                + (f" Next due {common.format_day(next_due)}." if next_due else ""),
                "success",
            )
            return redirect(url_for("dosing.history", patient_id=patient.id))
    last = dose_records.chart_doses(patient).next_injection if order else None
    return render_template(
        "medications/dosing/injection.html",
        patient=patient,
        form=form,
        order=order,
        next_due=last,
        today=today,
        hold=dose_day.hold_in_force(patient.id, today),
        warnings=dose_day.unacknowledged_warnings(patient.id, today),
        ack_form=AcknowledgeForm(formdata=None),
    )


# --- missed doses and injections -------------------------------------------------------


@bp.get("/review")
@require_permission(Permission.MEDICATION_READ)
def review_list():
    """Patients with 3 or more missed days to review, and injections overdue."""
    sites = common.visible_site_ids(current_user)
    rows = reviews.review_list(sites)
    injections = [r for r in worklists.injections_due(sites, within_days=0) if r.overdue]
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="dosing_review_list",
        details={"results": len(rows), "injections_overdue": len(injections)},
    )
    return render_template("medications/dosing/review_list.html", rows=rows, injections=injections)


@bp.route("/patients/<int:patient_id>/review", methods=["GET", "POST"])
@require_permission(Permission.MEDICATION_HOLD)
def review(patient_id: int):
    """A clinician records the review of a patient's missed days: continue, hold (a
    stop-dose hold) or a new order (the order form follows)."""
    patient = access.patient_or_404(patient_id, entity_type="missed_dose_review")
    today = site_today(patient.site)
    order = dose_day.daily_order(patient, today)
    missed = patient_missed_days(patient, order, today) if order else None
    form = MissedReviewForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: reviews.record_review(
                patient, actor=current_user, decision=form.decision.data, note=form.note.data
            ),
            once=_once(form, "missed_dose_review", lambda r: url_for("dosing.review_list")),
        )
        if outcome.repeated_url:
            return _already_saved(outcome)
        if outcome.saved:
            flash("Review recorded.", "success")
            if outcome.result.decision == ReviewDecision.NEW_ORDER:
                return redirect(url_for("medications.new_order", patient_id=patient.id))
            return redirect(url_for("dosing.review_list"))
    return render_template(
        "medications/dosing/review.html",
        patient=patient,
        form=form,
        order=order,
        missed=missed,
        today=today,
    )


@bp.get("/injections")
@require_permission(Permission.MEDICATION_READ)
def injections():
    """Injections overdue or due within a week, at the user's sites."""
    rows = worklists.injections_due(common.visible_site_ids(current_user))
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="injection_list",
        details={"results": len(rows)},
    )
    return render_template("medications/dosing/injections.html", rows=rows)


# --- history and the daily log ---------------------------------------------------------


@bp.get("/patients/<int:patient_id>/history")
@require_permission(Permission.MEDICATION_READ)
def history(patient_id: int):
    """The patient's ledger, newest first, by keyset pages (``?before=<row id>``)."""
    patient = access.patient_or_404(patient_id, entity_type="dose_history")
    raw = request.args.get("before", "")
    before = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
    page = dose_records.dose_history(patient, before=before)
    return render_template(
        "medications/dosing/history.html",
        patient=patient,
        page=page,
        first_page=before is None,
        injection_sites=ledger.INJECTION_SITE_LABELS,
    )


@bp.get("/log")
@require_permission(Permission.MEDICATION_READ)
def log():
    """The daily dispensing log of a site: every ledger row of the day, grouped by
    dispenser, with a line for the dispenser's initials; printable."""
    site = _site_from_args()
    if site is None:
        return _choose_site("dosing.log")
    today, day = _day(site)
    groups = dose_records.dispensing_log(site, day)
    record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="dispensing_log",
        site_id=site.id,
        details={"day": day.isoformat(), "rows": sum(len(g.entries) for g in groups)},
    )
    return render_template(
        "medications/dosing/log.html",
        site=site,
        day=day,
        today=today,
        groups=groups,
        injection_sites=ledger.INJECTION_SITE_LABELS,
    )


# --- the chart -------------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict[str, Any] | None:
    if not current_user.can(Permission.MEDICATION_READ):
        return None  # staff: never doses
    return {
        "doses": dose_records.chart_doses(patient),
        "may_dose": current_user.can(Permission.DOSE_RECORD),
    }


def register_chart_sections(app: Flask) -> None:
    """Add the recent-doses section to the patient chart."""
    register_chart_section(
        app,
        ChartSection(
            key="doses",
            template="medications/dosing/_chart_section.html",
            context=_chart_context,
            order=21,
        ),
    )

"""Drug test pages (issue 13): a patient's test history (printable), recording a
collection (``?selection=<id>`` from the day's random draw), a test's page with its
results, entering results (presumptive, later definitive), marking a test entered in
error, and the chart's "Drug tests" section.

Results are for clinicians and administrators (``DRUG_TESTS_READ``); clinicians record
(``DRUG_TESTS_RECORD``). Staff see that a test is due (the schedule's worklist), never a
result: every page here needs one of the two permissions, and the chart section is not
shown to them. Patient pages go through ``clinic.patients.access``; a test loaded by id is
looked up within the user's reach (``drug_tests.test_for``: else 404 with an
access_denied event), then its patient's record is ``opened``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from clinic.charts import ChartSection, register_chart_section
from clinic.db import utcnow
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.medications import drug_test_reading, drug_tests
from clinic.medications.drug_test_forms import (
    CollectionForm,
    ResultsForm,
    TestInErrorForm,
    yes_no,
)
from clinic.medications.drug_test_models import (
    Analyte,
    DrugTest,
    RandomTestDraw,
    RandomTestSelection,
    ResultMethod,
    ResultValue,
    Specimen,
    TestReason,
)
from clinic.patients import access, common
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.web import RECHECK, Once, already_sent, save

bp = Blueprint("drug_tests", __name__, url_prefix="/drug-tests")

RESULT_REFUSALS = {
    "uq_drug_test_result_test_analyte_method": RECHECK,
    "drug_test_result_order": RECHECK,
}
COLLECTION_REFUSALS = {"drug_test_selection_once": RECHECK}
IN_ERROR_REFUSALS = {"drug_test_in_error_once": DomainError(drug_tests.ALREADY_IN_ERROR_MESSAGE)}
OTHER_ROWS = 2


@bp.app_template_filter("drug_test_label")
def _label(value, kind: str) -> str:
    """A stored specimen, reason, result or method as people read it."""
    enum = {
        "specimen": Specimen,
        "reason": TestReason,
        "result": ResultValue,
        "method": ResultMethod,
        "analyte": Analyte,
    }[kind]
    try:
        return enum(value).label
    except ValueError:
        return str(value)


def _digits(raw: str | None) -> int | None:
    raw = raw or ""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def _status(form) -> int:
    if g.get("csrf_refused"):
        return 200
    return 400 if form.errors or form.form_errors else 200


def _test_or_404(test_id: int) -> DrugTest:
    test = drug_tests.test_for(current_user, test_id)
    if test is None:
        found = db.session.get(DrugTest, test_id)
        record_denied("drug_test", test_id, found.patient_id if found else None)
        abort(404)
    access.opened(test.patient, "drug_test", test.id)
    return test


def _read_only(patient: Patient, title: str):
    if patient.entered_in_error:
        return render_template(
            "patients/read_only.html",
            patient=patient,
            title=title,
            message=common.ENTERED_IN_ERROR_MESSAGE,
        )
    return None


def _own_medication(tests: list[DrugTest]) -> dict[int, set[str]]:
    """Per test id, the analytes of the patient's own MOUD medication on its collection day
    (``drug_tests.own_analytes``: the order in force, else the latest): a positive for it
    is expected and a negative is the finding, so the pages show them so, never as an
    illicit substance's positive or a reassuring negative. One statement (the patients'
    orders) whatever the number of tests; none without tests."""
    if not tests:
        return {}
    # The findings' own lookup (drug_test_reading), so both always agree.
    orders = drug_test_reading._orders_of(
        {t.patient_id for t in tests}, max(t.collected_on for t in tests)
    )
    return {
        t.id: drug_tests.own_analytes(orders.get(t.patient_id, []), t.collected_on) for t in tests
    }


def _once(form, kind: str, result_url) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=result_url,
    )


# --- history ---------------------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.DRUG_TESTS_READ)
def history(patient_id: int):
    """The patient's tests, newest first, by keyset pages (``?before=<test id>``): each
    with its effective results (definitive over presumptive) and findings flagged.
    Printable."""
    patient = access.patient_or_404(patient_id, entity_type="drug_tests")
    before = _digits(request.args.get("before"))
    page = drug_tests.test_history(patient, before=before)
    return render_template(
        "medications/drug_tests/history.html",
        patient=patient,
        page=page,
        own=_own_medication(page.tests),
        first_page=before is None,
    )


# --- recording a collection ---------------------------------------------------------------


def _selection_for(patient: Patient, selection_id: int | None) -> tuple[int, dt.date] | None:
    """(selection id, draw day) when ``selection_id`` is a selection of this patient."""
    if selection_id is None:
        return None
    row = db.session.execute(
        sa.select(RandomTestSelection.id, RandomTestDraw.draw_on)
        .join(RandomTestDraw, RandomTestDraw.id == RandomTestSelection.draw_id)
        .where(RandomTestSelection.id == selection_id, RandomTestSelection.patient_id == patient.id)
    ).first()
    return (row.id, row.draw_on) if row is not None else None


@bp.route("/patients/<int:patient_id>/new", methods=["GET", "POST"])
@require_permission(Permission.DRUG_TESTS_RECORD)
def record(patient_id: int):
    """Record a collection; then the results page. ``?selection=<id>``: the day's random
    draw picked this patient (the form is marked random and linked to the selection)."""
    patient = access.patient_or_404(patient_id, entity_type="drug_tests")
    if (page := _read_only(patient, "Record a drug test")) is not None:
        return page
    form = CollectionForm()
    zone = ZoneInfo(patient.site.timezone)
    now = utcnow().astimezone(zone)
    form.collected_time.description = f"In the site's time zone ({now.tzname()})."
    selection = None
    refused = False
    if request.method == "GET" and not form.restored:
        raw = request.args.get("selection")
        selection = _selection_for(patient, _digits(raw))
        if raw and selection is None:
            flash(
                "That random selection is not this patient's: record the test without it.",
                "warning",
            )
        form.collected_on.data = now.date()
        form.collected_time.data = now.time().replace(second=0, microsecond=0)
        form.specimen.data = Specimen.URINE.value
        if selection is not None:
            form.selection_id.data = str(selection[0])
            form.reason.data = TestReason.RANDOM.value
    elif form.selection_number is not None:
        selection = _selection_for(patient, form.selection_number)
    if form.validate_on_submit():
        collected = drug_tests.CollectedLocal(form.collected_on.data, form.collected_time.data)
        outcome = save(
            form,
            lambda: drug_tests.record_test(
                patient,
                actor=current_user,
                collected_at=collected,
                specimen=form.specimen.data,
                observed=form.observed.data == "yes",
                reason=form.reason.data,
                temperature_in_range=yes_no(form.temperature_in_range.data),
                adulteration_suspected=form.adulteration_suspected.data,
                selection_id=form.selection_number,
            ),
            refusals=COLLECTION_REFUSALS,
            once=_once(
                form, "drug_test", lambda test: url_for("drug_tests.results", test_id=test.id)
            ),
        )
        if outcome.saved:
            if outcome.repeated_url:
                flash("This form had already been sent: the test was recorded once.", "info")
                return redirect(outcome.repeated_url)
            flash("Collection recorded: enter the results.", "success")
            return redirect(url_for("drug_tests.results", test_id=outcome.result.id))
        refused = True
    return render_template(
        "medications/drug_tests/record.html",
        patient=patient,
        form=form,
        selection=selection,
    ), (400 if refused else _status(form))


# --- a test and its results -------------------------------------------------------------------


def _test_context(test: DrugTest) -> dict[str, Any]:
    return {
        "test": test,
        "patient": test.patient,
        "effective": drug_tests.effective_results([test])[test.id],
        "own": _own_medication([test])[test.id],
        "findings": drug_tests.findings([test]).get(test.id, []),
        "results": list(test.results),
    }


@bp.get("/<int:test_id>")
@require_permission(Permission.DRUG_TESTS_READ)
def detail(test_id: int):
    """A test: the collection, the results that count and every result entered (a
    superseded presumptive one shown as such), findings flagged. Printable."""
    test = _test_or_404(test_id)
    return render_template("medications/drug_tests/test.html", **_test_context(test))


def _prefill(form: ResultsForm, test: DrugTest) -> None:
    """The standard panel's rows, then two for other substances. An analyte with a
    presumptive result is offered for its definitive one; one with a definitive result
    is not offered again."""
    methods: dict[str, set[str]] = {}
    for r in test.results:
        if r.analyte != Analyte.OTHER:
            methods.setdefault(str(r.analyte), set()).add(str(r.method))
    rows = []
    for analyte in drug_tests.PANEL:
        done = methods.get(analyte.value, set())
        if ResultMethod.DEFINITIVE.value in done:
            continue
        method = ResultMethod.DEFINITIVE if done else ResultMethod.PRESUMPTIVE
        rows.append((analyte, method))
    rows.extend([(Analyte.OTHER, ResultMethod.PRESUMPTIVE)] * OTHER_ROWS)
    while len(form.rows) < len(rows):
        form.rows.append_entry()
    for row, (analyte, method) in zip(form.rows, rows, strict=False):
        row.form.analyte.data = analyte.value
        row.form.method.data = method.value


def _row_error(form: ResultsForm, error: DomainError | None, indices: list[int]) -> None:
    """A refusal naming a row of the rows sent (``rows-<i>-result``): next to the field
    of that row of the form."""
    if error is None or not error.field or not error.field.startswith("rows-"):
        return
    parts = error.field.split("-")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(indices):
        return
    sub = form.rows[indices[int(parts[1])]].form._fields.get(parts[2])
    if sub is None:
        return
    if error.message in form.form_errors:
        form.form_errors.remove(error.message)
    sub.errors = [*sub.errors, error.message]


@bp.route("/<int:test_id>/results", methods=["GET", "POST"])
@require_permission(Permission.DRUG_TESTS_RECORD)
def results(test_id: int):
    """Enter results: a row per analyte, each positive / negative / not tested, by a
    method. Rows left empty are not entered. A definitive result follows a presumptive
    one and supersedes it; nothing entered is ever changed."""
    test = _test_or_404(test_id)
    if (page := _read_only(test.patient, "Drug test results")) is not None:
        return page
    form = ResultsForm()
    done_url = url_for("drug_tests.detail", test_id=test.id)
    if test.entered_in_error_at is not None:
        if (first := already_sent(_once(form, "drug_test_results", None))) is not None:
            return redirect(first)
        flash(drug_tests.TEST_IN_ERROR_MESSAGE, "info")
        return redirect(done_url)
    if request.method == "GET" and not form.restored:
        _prefill(form, test)
    if form.validate_on_submit():
        entered = form.entered_rows()
        rows = [
            drug_tests.ResultRow(
                analyte=row.analyte.data,
                result=row.result.data or None,
                method=row.method.data,
                other_name=row.other_name.data or "",
            )
            for _index, row in entered
        ]
        outcome = save(
            form,
            lambda: drug_tests.record_results(test, rows, actor=current_user),
            refusals=RESULT_REFUSALS,
            once=_once(form, "drug_test_results", lambda _r: done_url),
        )
        if outcome.saved:
            flash(
                "This form had already been sent: the results were saved once."
                if outcome.repeated_url
                else "Results saved.",
                "success",
            )
            return redirect(outcome.repeated_url or done_url)
        _row_error(form, outcome.error, [index for index, _row in entered])
        return render_template(
            "medications/drug_tests/results.html", form=form, **_test_context(test)
        ), 400
    return render_template(
        "medications/drug_tests/results.html", form=form, **_test_context(test)
    ), _status(form)


@bp.route("/<int:test_id>/entered-in-error", methods=["GET", "POST"])
@require_permission(Permission.DRUG_TESTS_RECORD)
def entered_in_error(test_id: int):
    """Confirmation with a reason, then the test is marked entered in error (never
    deleted; struck through with the reason; it no longer counts anywhere)."""
    test = _test_or_404(test_id)
    done_url = url_for("drug_tests.detail", test_id=test.id)
    form = TestInErrorForm()
    refused = False
    if test.entered_in_error_at is not None:
        if (first := already_sent(_once(form, "drug_test_in_error", None))) is not None:
            return redirect(first)
        flash(drug_tests.ALREADY_IN_ERROR_MESSAGE, "info")
        return redirect(done_url)
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: drug_tests.mark_entered_in_error(
                test, actor=current_user, reason=form.reason.data
            ),
            refusals=IN_ERROR_REFUSALS,
            once=_once(form, "drug_test_in_error", lambda _r: done_url),
        )
        if outcome.saved:
            flash("Test marked entered in error.", "success")
            return redirect(outcome.repeated_url or done_url)
        refused = True
    return render_template(
        "medications/drug_tests/in_error.html", form=form, **_test_context(test)
    ), (400 if refused else _status(form))


# --- the chart ---------------------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict[str, Any] | None:
    """The last few tests with their effective results and findings: clinicians and
    administrators only (staff never see a result). Five statements."""
    if not current_user.can(Permission.DRUG_TESTS_READ):
        return None
    page = drug_tests.test_history(patient, limit=drug_tests.CHART_TESTS)
    return {
        "page": page,
        "own": _own_medication(page.tests),
        "may_record": current_user.can(Permission.DRUG_TESTS_RECORD),
    }


def register_chart_sections(app: Flask) -> None:
    register_chart_section(
        app,
        ChartSection(
            key="drug_tests",
            template="medications/drug_tests/_chart_section.html",
            context=_chart_context,
            order=23,
        ),
    )

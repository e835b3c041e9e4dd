"""The dosing screen a page at a time (issue 15): keyset pages on (done today, names,
patient id) walk every patient due exactly once, in the order of the whole list (still to
dose first, dosed last); "done" in SQL means what ``DoseDue.done`` means (a split with one
portion given is not done); the statements are the same for 5 and 60 patients due; a
cursor is untrusted input (garbage is the first page, never an error); the pager keeps
``site``, ``day`` and ``q``; the audit record has the rows shown and the page, no PHI."""

# ruff: noqa: F811 (the fixtures imported from the dosing views' tests are arguments here)
from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from html import unescape

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.medications import worklists
from clinic.medications.models import DoseEntry, DoseKind, MedicationOrder
from clinic.pagination import Cursor
from clinic.patients.models import Patient, PatientNameToken
from clinic.patients.names import name_tokens
from clinic.sites.models import Site
from tests.test_medications_dosing_views import (  # noqa: F401 (fixtures)
    _bulk_due_patients,
    _statements,
    nurse,
    patient_on,
    prescriber,
    site_noon,
    today,
)

ROW_RE = re.compile(r'<tr data-patient-id="(\d+)"')
NEXT_RE = re.compile(r'<a class="page-link" href="([^"]+)" rel="next">')
PREV_RE = re.compile(r'<a class="page-link" href="([^"]+)" rel="prev">')


def _give(app, patient_id: int, day: dt.date, amount: str, slot: int) -> int:
    """A dose given to the patient on ``day`` (straight into the ledger); its id."""
    with app.app_context():
        order = db.session.scalar(
            sa.select(MedicationOrder).where(MedicationOrder.patient_id == patient_id)
        )
        entry = DoseEntry(
            kind=DoseKind.OBSERVED,
            patient_id=patient_id,
            site_id=order.patient.site_id,
            order_id=order.id,
            medication=order.medication,
            substance="methadone",
            strength=order.strength,
            dosage_form=order.product_form,
            dispensed_on=day,
            amount_mg=Decimal(amount),
            slot=slot,
            dispenser_id=order.prescriber_id,
        )
        db.session.add(entry)
        db.session.commit()
        return entry.id


def _reverse(app, entry_id: int) -> None:
    with app.app_context():
        given = db.session.get(DoseEntry, entry_id)
        db.session.add(
            DoseEntry(
                kind=DoseKind.REVERSAL,
                patient_id=given.patient_id,
                site_id=given.site_id,
                order_id=given.order_id,
                medication=given.medication,
                substance=given.substance,
                strength=given.strength,
                dosage_form=given.dosage_form,
                dispensed_on=given.dispensed_on,
                reverses_id=given.id,
                reason="Entered in error.",
                dispenser_id=given.dispenser_id,
            )
        )
        db.session.commit()


def _index_names(app) -> None:
    """The name tokens the patient search reads, for patients inserted without them
    (``_bulk_due_patients``), so that ``?q=bulk`` finds them."""
    with app.app_context():
        indexed = sa.select(PatientNameToken.patient_id)
        for patient in db.session.scalars(sa.select(Patient).where(Patient.id.not_in(indexed))):
            for token in name_tokens(patient.first_name, patient.last_name):
                db.session.add(PatientNameToken(patient_id=patient.id, token=token))
        db.session.commit()


def _whole_list(app, site_id: int, day: dt.date) -> list[tuple[int, bool]]:
    """The whole list, as the unpaged ``dosing_screen`` sorts it in Python (the oracle)."""
    with app.app_context():
        site = db.session.get(Site, site_id)
        return [(r.patient.id, r.due.done) for r in worklists.dosing_screen(site, day)]


def _walk(app, site_id: int, day: dt.date, per_page: int, way: str = "after"):
    """Every page of the screen from the first, by Next (``after``); the pages' rows."""
    pages = []
    with app.app_context():
        site = db.session.get(Site, site_id)
        cursor = None
        while True:
            page = worklists.dosing_screen_page(site, day, cursor=cursor, per_page=per_page)
            pages.append([(r.patient.id, r.due.done) for r in page.rows])
            assert len(page.rows) <= per_page
            if not page.keyset.has_next:
                break
            cursor = Cursor("after", page.keyset.last_id)
            assert len(pages) < 100, "the walk does not end"
    return pages


def _due_with_some_dosed(app, site, prescriber, patient_on, today, count: int) -> None:
    patient_on()  # the program the bulk patients join
    _bulk_due_patients(app, site, prescriber, count, today)
    with app.app_context():
        ids = list(db.session.scalars(sa.select(MedicationOrder.patient_id)))
    for n, patient_id in enumerate(sorted(ids)):
        if n % 3 == 0:
            _give(app, patient_id, today, "60", 1)


@pytest.mark.parametrize("per_page", [1, 4, 7])
def test_paging_walks_every_due_patient_once_in_order_dosed_last(
    app, site, prescriber, patient_on, today, per_page
):
    _due_with_some_dosed(app, site, prescriber, patient_on, today, 17)
    whole = _whole_list(app, site, today)
    assert len(whole) == 18 and any(done for _, done in whole)
    assert [done for _, done in whole] == sorted(done for _, done in whole)
    pages = _walk(app, site, today, per_page)
    walked = [row for page in pages for row in page]
    assert walked == whole
    assert all(len(page) == per_page for page in pages[:-1])
    with app.app_context():
        first = worklists.dosing_screen_page(db.session.get(Site, site), today, per_page=per_page)
    assert (first.to_dose, first.dosed) == (
        sum(not d for _, d in whole),
        sum(d for _, d in whole),
    )


def test_previous_walks_back_the_same_pages(app, site, prescriber, patient_on, today):
    _due_with_some_dosed(app, site, prescriber, patient_on, today, 11)
    pages = _walk(app, site, today, 5)
    assert len(pages) == 3
    with app.app_context():
        s = db.session.get(Site, site)
        back = worklists.dosing_screen_page(
            s, today, cursor=Cursor("before", pages[2][0][0]), per_page=5
        )
        assert [(r.patient.id, r.due.done) for r in back.rows] == pages[1]
        assert back.keyset.has_prev and back.keyset.has_next


def test_the_screen_pages_through_the_views_keeping_site_day_and_q(
    app, nurse, site, prescriber, patient_on, today
):
    _due_with_some_dosed(app, site, prescriber, patient_on, today, 59)
    _index_names(app)
    whole = [pid for pid, _ in _whole_list(app, site, today)]
    assert len(whole) == 60
    url = "/dosing/?site=MAIN"
    seen: list[int] = []
    while url:
        html = nurse.get(url).get_data(as_text=True)
        rows = [int(i) for i in ROW_RE.findall(html)]
        assert 0 < len(rows) <= worklists.SCREEN_PAGE_SIZE
        assert 'data-count="60"' in html and 'nav aria-label="Pages of the dosing list"' in html
        seen.extend(rows)
        found = NEXT_RE.search(html)
        url = unescape(found.group(1)) if found else None
        if url:
            assert url.startswith("/dosing/?") and "site=MAIN" in url and "after=" in url
    assert seen == whole
    # The list fetched alone (dosing.js) links to the whole screen, with the filter.
    html = nurse.get("/dosing/list?site=MAIN&q=bulk").get_data(as_text=True)
    link = unescape(NEXT_RE.search(html).group(1))
    assert link.startswith("/dosing/?") and "q=bulk" in link and "site=MAIN" in link
    html = nurse.get(link).get_data(as_text=True)
    assert PREV_RE.search(html) and "First" in html
    # A past day is kept by the pager.
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    html = nurse.get(f"/dosing/?site=MAIN&day={yesterday}").get_data(as_text=True)
    assert f"day={yesterday}" in unescape(NEXT_RE.search(html).group(1))


def test_a_split_patient_with_one_portion_given_is_not_done(
    app, site, patient_on, today, prescriber
):
    split = {
        "dose_mg": "80",
        "schedule": "split",
        "split_first_mg": "50",
        "split_second_mg": "30",
        "justification": "Rapid metaboliser, documented.",
    }
    one_portion = patient_on("Ann", "Alpha", **split)
    two_portions = patient_on("Bob", "Beta", **split)
    whole_dose = patient_on("Cy", "Gamma", **split)
    reversed_daily = patient_on("Di", "Delta")
    daily = patient_on("Ed", "Epsilon")
    untouched = patient_on("Flo", "Zeta")
    _give(app, one_portion, today, "50", 1)
    _give(app, two_portions, today, "40", 1)
    _give(app, two_portions, today, "10", 2)
    _give(app, whole_dose, today, "80", 1)
    _reverse(app, _give(app, reversed_daily, today, "40", 1))
    _give(app, daily, today, "40", 1)
    # Yesterday's dose is not today's.
    _give(app, untouched, today - dt.timedelta(days=1), "40", 1)
    with app.app_context():
        page = worklists.dosing_screen_page(db.session.get(Site, site), today)
        shown = [(r.patient.id, r.due.done) for r in page.rows]
    assert shown == [
        (one_portion, False),
        (reversed_daily, False),
        (untouched, False),
        (two_portions, True),
        (daily, True),
        (whole_dose, True),
    ]
    assert (page.to_dose, page.dosed) == (3, 3)
    # The SQL order agrees with DoseDue.done, row by row (the Python oracle).
    assert shown == _whole_list(app, site, today)


def test_one_row_per_patient_the_newest_order_in_force(app, site, patient_on, today):
    patient = patient_on("Ann", "Alpha")
    with app.app_context():
        enrollment_id = db.session.scalar(
            sa.select(MedicationOrder.enrollment_id).where(MedicationOrder.patient_id == patient)
        )
    # A second daily order in force, newer (straight into the table: the service allows
    # one daily medication; the screen's rule still takes the newest, by start then id).
    with app.app_context():
        first = db.session.scalar(
            sa.select(MedicationOrder).where(MedicationOrder.patient_id == patient)
        )
        db.session.add(
            MedicationOrder(
                patient_id=patient,
                enrollment_id=enrollment_id,
                medication="buprenorphine",
                product_form="sublingual_tablet",
                strength="8 mg",
                dose_mg=Decimal("16"),
                schedule="daily",
                status=first.status,
                start_on=today,
                prescriber_id=first.prescriber_id,
            )
        )
        db.session.commit()
    with app.app_context():
        page = worklists.dosing_screen_page(db.session.get(Site, site), today)
        assert [r.patient.id for r in page.rows] == [patient]
        assert page.rows[0].due.order.medication == "buprenorphine"
        assert page.total == 1
        whole = worklists.dosing_screen(db.session.get(Site, site), today)
        assert whole[0].due.order.id == page.rows[0].due.order.id


def test_the_statements_are_the_same_for_5_and_60_patients_due(
    app, nurse, site, prescriber, patient_on, today
):
    patient_on()
    _bulk_due_patients(app, site, prescriber, 4, today)
    nurse.get("/dosing/?site=MAIN")  # warm up (session, user)
    small = _statements(app, nurse, "/dosing/?site=MAIN")
    small_list = _statements(app, nurse, "/dosing/list?site=MAIN")
    _bulk_due_patients(app, site, prescriber, 55, today)
    html = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert 'data-count="60"' in html
    assert len(ROW_RE.findall(html)) == worklists.SCREEN_PAGE_SIZE
    large = _statements(app, nurse, "/dosing/?site=MAIN")
    large_list = _statements(app, nurse, "/dosing/list?site=MAIN")
    assert (small, small_list) == (large, large_list)
    after = ROW_RE.findall(html)[-1]
    assert _statements(app, nurse, f"/dosing/?site=MAIN&after={after}") == large


@pytest.mark.parametrize(
    "cursor",
    [
        "after=abc",
        "after=-5",
        "after=0",
        "after=1e3",
        "before=" + "9" * 400,
        "after=99999999999999999999",
        "after=2147483647",
        "before=%D9%A3",
        "after=&before=",
    ],
)
def test_a_bad_cursor_is_the_first_page(app, nurse, patient_on, cursor):
    patient_on("Ann", "Alpha")
    patient_on("Bob", "Beta")
    first = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    for path in ("/dosing/", "/dosing/list"):
        response = nurse.get(f"{path}?site=MAIN&{cursor}")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert ROW_RE.findall(html) == ROW_RE.findall(first)


@pytest.mark.parametrize("cursor", ["after=%00", "after=12%0034", "before=%00%00"])
def test_a_cursor_with_a_nul_byte_is_refused_at_the_edge(app, nurse, patient_on, cursor):
    """``clinic.edge`` answers 400 to a query string with a control character, before any
    view: never a 500."""
    patient_on("Ann", "Alpha")
    for path in ("/dosing/", "/dosing/list"):
        assert nurse.get(f"{path}?site=MAIN&{cursor}").status_code == 400


def test_another_sites_patient_as_cursor_is_the_first_page(app, nurse, patient_on, make_site, site):
    mine = patient_on("Ann", "Alpha")
    other_site = make_site("OTHR")
    theirs = patient_on("Zed", "Other", site_id=other_site)
    html = nurse.get(f"/dosing/?site=MAIN&after={theirs}").get_data(as_text=True)
    assert ROW_RE.findall(html) == [str(mine)]
    html = nurse.get(f"/dosing/?site=MAIN&before={theirs}").get_data(as_text=True)
    assert ROW_RE.findall(html) == [str(mine)]


def test_the_audit_record_has_the_rows_shown_and_the_page(
    app, nurse, site, prescriber, patient_on, today
):
    patient_on()
    _bulk_due_patients(app, site, prescriber, 54, today)
    _index_names(app)
    html = nurse.get("/dosing/?site=MAIN&q=bulk").get_data(as_text=True)
    after = ROW_RE.findall(html)[-1]
    nurse.get(f"/dosing/?site=MAIN&after={after}")
    with app.app_context():
        details = [
            json.loads(e.details)
            for e in db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.entity_type == "dosing_screen")
                .order_by(AuditEvent.id)
            )
        ]
    assert details[-2]["results"] == worklists.SCREEN_PAGE_SIZE
    assert details[-2]["page"] == "first" and details[-2]["searched"] is True
    assert details[-1] == {
        "day": today.isoformat(),
        "searched": False,
        "results": 5,
        "page": "after",
    }
    # Neither the search's terms nor the cursor's patient id.
    assert "bulk" not in json.dumps(details).lower()
    # (By keys: a patient id may equal a row count by chance.)
    assert all(set(d) == {"day", "searched", "results", "page"} for d in details)


def test_enter_with_one_patient_found_opens_their_dose_page(app, nurse, patient_on):
    patient = patient_on("Ann", "Alpha")
    patient_on("Bob", "Beta")
    response = nurse.get("/dosing/?site=MAIN&q=alpha&go=1")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/dosing/patients/{patient}/dose")
    # No filter (two due): the screen, no redirect.
    assert nurse.get("/dosing/?site=MAIN&go=1").status_code == 200

"""The 8-random-tests-a-year rule (42 CFR 8.12(f)(6)): who it covers, what counts, the
pro-rating in the first year, and the worklist of patients falling behind."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import drug_test_schedule as schedule_service
from clinic.medications.drug_test_schedule import compliance, days_for, required_on, worklist
from clinic.pagination import Cursor
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from tests.test_drug_test_schedule_helpers import (
    admitted_fixture,  # noqa: F401
    insert_patients,
    schedule_fixture,  # noqa: F401
)
from tests.test_therapy_helpers import count_statements

D = dt.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("days", "required"),
    [(0, 0), (1, 0), (45, 0), (46, 1), (91, 1), (92, 2), (364, 7), (365, 8), (366, 8), (900, 8)],
)
def test_required_so_far_is_one_test_each_eighth_of_a_year(days, required):
    assert required_on(D - dt.timedelta(days=days), D) == required


def test_the_days_each_test_falls_due():
    assert [days_for(k) for k in range(9)] == [0, 46, 92, 137, 183, 229, 274, 320, 365]
    for k in range(1, 9):
        day = D + dt.timedelta(days=days_for(k))
        assert required_on(D, day) == k
        assert required_on(D, day - dt.timedelta(days=1)) == k - 1


def test_nothing_is_required_before_the_admission():
    assert required_on(D, D - dt.timedelta(days=30)) == 0


@pytest.mark.parametrize(
    ("days", "required"), [(0, 0), (45, 0), (46, 1), (364, 7), (365, 8), (366, 8)]
)
def test_compliance_at_the_edges_of_the_first_year(app_ctx, schedule, admitted, days, required):
    patient = admitted(days)
    found = compliance([patient], schedule.today)[patient]
    assert (found.done, found.required, found.last_on) == (0, required, None)
    assert found.due == (required > 0)
    assert found.admitted_on == schedule.days_ago(days)


def test_only_random_tests_of_the_last_twelve_months_not_in_error_count(
    app_ctx, schedule, admitted
):
    patient = admitted(500)
    for days in (0, 10, 364):
        schedule.add_test(patient, schedule.days_ago(days))
    schedule.add_test(patient, schedule.days_ago(365))  # one day too old
    schedule.add_test(patient, schedule.days_ago(20), reason="scheduled")
    schedule.add_test(patient, schedule.days_ago(30), in_error=True)
    found = compliance([patient], schedule.today)[patient]
    assert (found.done, found.required, found.behind) == (3, 8, 5)
    assert found.last_on == schedule.today


def test_a_test_on_the_admission_day_counts_until_it_leaves_the_twelve_months(
    app_ctx, schedule, admitted
):
    for days, counted in ((364, 1), (365, 0), (366, 0)):
        patient = admitted(days)
        schedule.add_test(patient, schedule.days_ago(days))
        assert compliance([patient], schedule.today)[patient].done == counted


def test_a_readmitted_patient_counts_from_the_current_admission(
    app_ctx, schedule, admitted, make_enrollment
):
    from clinic.patients import admissions

    patient = admitted(300)
    schedule.add_test(patient, schedule.days_ago(250))
    schedule.add_test(patient, schedule.days_ago(200))
    enrollment = db.session.get(Patient, patient).enrollments[0]
    admissions.discharge(
        enrollment,
        actor=User(id=None, username="setup", all_sites=True),
        discharged_on=schedule.days_ago(100),
        reason=2,
        expected_version=enrollment.version,
    )
    db.session.commit()
    assert compliance([patient], schedule.today) == {}  # discharged: no longer in treatment
    make_enrollment(patient, schedule.otp, admitted_on=schedule.days_ago(50))
    schedule.add_test(patient, schedule.days_ago(10))
    found = compliance([patient], schedule.today)[patient]
    # The earlier episode's tests do not count; 50 days in treatment: 1 required.
    assert (found.admitted_on, found.done, found.required) == (schedule.days_ago(50), 1, 1)


def test_maintenance_is_methadone_otp_and_office_buprenorphine(app_ctx, schedule, admitted):
    otp, bupe = admitted(100, schedule.otp), admitted(100, schedule.bupe)
    naltrexone = admitted(100, schedule.naltrexone)
    outpatient = admitted(100, schedule.outpatient)
    found = compliance([otp, bupe, naltrexone, outpatient], schedule.today)
    assert set(found) == {otp, bupe}


def test_a_patient_entered_in_error_or_admitted_in_the_future_is_not_counted(
    app_ctx, schedule, admitted
):
    patient = admitted(100)
    assert compliance([patient], schedule.days_ago(101)) == {}
    row = db.session.get(Patient, patient)
    row.entered_in_error_at = dt.datetime.now(dt.UTC)
    row.entered_in_error_reason = "duplicate"
    db.session.commit()
    assert compliance([patient], schedule.today) == {}


def test_two_maintenance_enrollments_count_from_the_earlier(
    app_ctx, schedule, admitted, make_enrollment
):
    patient = admitted(200)
    make_enrollment(patient, schedule.bupe, admitted_on=schedule.days_ago(20))
    assert compliance([patient], schedule.today)[patient].required == 4


def test_compliance_of_a_site_is_its_maintenance_patients(app_ctx, schedule, admitted):
    here = admitted(50)
    admitted(50, schedule.other_otp, site_id=schedule.other_site)
    admitted(50, schedule.naltrexone)
    found = compliance(db.session.get(Site, schedule.site), schedule.today)
    assert set(found) == {here}


# --- the worklist -----------------------------------------------------------------------------


def test_the_worklist_lists_patients_behind_most_behind_first(app_ctx, schedule, admitted):
    on_track = admitted(50)
    schedule.add_test(on_track, schedule.days_ago(3))
    new = admitted(10)  # nothing required yet
    one = admitted(50)
    three = admitted(150)
    eight = admitted(400)
    admitted(400, schedule.other_otp, site_id=schedule.other_site)
    page = worklist([schedule.site], schedule.today)
    assert [r.patient.id for r in page.items] == [eight, three, one]
    assert [(r.compliance.done, r.compliance.required) for r in page.items] == [
        (0, 8),
        (0, 3),
        (0, 1),
    ]
    assert not page.keyset.has_next and not page.keyset.has_prev
    assert on_track not in {r.patient.id for r in page.items}
    assert new not in {r.patient.id for r in page.items}
    everywhere = worklist(None, schedule.today)
    assert len(everywhere.items) == 4


def test_the_worklist_sorts_and_pages(app_ctx, schedule, admitted):
    patients = [admitted(60 + i * 50) for i in range(5)]
    schedule.add_test(patients[4], schedule.days_ago(7))
    by_name = worklist([schedule.site], schedule.today, sort="name", descending=False)
    assert [r.patient.id for r in by_name.items] == patients  # Person0001 ... in order
    by_last = worklist([schedule.site], schedule.today, sort="last", descending=True)
    assert by_last.items[0].patient.id == patients[4]  # tests first, none last
    by_admission = worklist([schedule.site], schedule.today, sort="admitted", descending=False)
    assert [r.patient.id for r in by_admission.items] == patients[::-1]
    unknown = worklist([schedule.site], schedule.today, sort="drop table")
    assert unknown.sort_key == "behind"
    by_name_pages = []
    cursor = None
    while True:
        page = worklist(
            [schedule.site],
            schedule.today,
            sort="name",
            descending=False,
            per_page=2,
            cursor=cursor,
        )
        by_name_pages.append([r.patient.id for r in page.items])
        if not page.keyset.has_next:
            break
        cursor = Cursor("after", page.keyset.last_id)
    assert by_name_pages == [patients[:2], patients[2:4], patients[4:]]
    back = worklist(
        [schedule.site],
        schedule.today,
        sort="name",
        descending=False,
        per_page=2,
        cursor=Cursor("before", patients[4]),
    )
    assert [r.patient.id for r in back.items] == patients[2:4] and back.keyset.has_prev
    # Most behind first (ties by name), walked a page at a time: every patient once.
    walked, cursor = [], None
    while True:
        page = worklist([schedule.site], schedule.today, per_page=2, cursor=cursor)
        walked += [r.patient.id for r in page.items]
        if not page.keyset.has_next:
            break
        cursor = Cursor("after", page.keyset.last_id)
    assert walked == [r.patient.id for r in worklist([schedule.site], schedule.today).items]
    beyond = worklist([schedule.site], schedule.today, per_page=2, cursor=Cursor("after", 99999))
    assert [r.patient.id for r in beyond.items] == walked[:2]


def test_no_site_is_an_empty_worklist(app_ctx, schedule, admitted):
    admitted(400)
    assert worklist([], schedule.today).items == []


def test_the_worklist_and_compliance_run_a_constant_number_of_statements(
    app_ctx, schedule, admitted
):
    def statements() -> tuple[int, int]:
        db.session.expire_all()
        with count_statements() as seen:
            page = worklist([schedule.site], schedule.today)
            rows = [(r.patient.display_name, r.compliance.behind) for r in page.items]
        with count_statements() as seen_compliance:
            compliance(db.session.get(Site, schedule.site), schedule.today)
        assert rows
        return len(seen), len(seen_compliance) - 1  # the site's own load

    a = admitted(400)
    schedule.add_test(a, schedule.days_ago(3))
    few = statements()
    admissions = [schedule.days_ago(30 + i % 500) for i in range(1000)]
    ids = insert_patients(schedule.site, schedule.otp, admissions)
    for pid in ids[::7]:
        schedule.add_test(pid, schedule.days_ago(2))
    many = statements()
    assert few == many == (1, 1)  # the page (no count: keyset), and the compliance
    everyone = worklist([schedule.site], schedule.today, per_page=2000).items
    assert 800 < len(everyone) <= 1001


def test_a_patients_enrollments_do_not_multiply_their_rows(app_ctx, schedule, admitted):
    patient = admitted(200)
    count = sa.select(sa.func.count()).where(Enrollment.patient_id == patient)
    assert db.session.scalar(count) == 1
    assert len(schedule_service.worklist([schedule.site], schedule.today).items) == 1

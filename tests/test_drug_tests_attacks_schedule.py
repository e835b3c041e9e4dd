"""Attacks on the random-testing side of drug tests (issue 13): a random selection of
another day or patient, one selection recorded twice (two nurses at once), the draw on a
closed day and by two colleagues at once, a patient discharged yesterday or entered in
error on today's lists, the worklist of a clinician of sites on either side of the date
line (Pacific/Honolulu, Pacific/Kiritimati), a collection after the discharge."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import drug_test_draw, drug_test_schedule, drug_tests
from clinic.medications.drug_test_models import DrugTest, RandomTestDraw
from clinic.patients.models import Enrollment
from clinic.sites.models import Site, SiteClosure
from tests.test_drug_tests_helpers import (
    at,
    lab_fixture,  # noqa: F401
    selection,
    signed_in,
)
from tests.test_drug_tests_views import CSRF, collection, tokens


@pytest.fixture
def as_user(app, username_of):
    return lambda user_id: signed_in(app, username_of, user_id)


# --- random selections ---------------------------------------------------------------------------


def _record(lab, patient_id, when, selection_id, actor=None):
    return drug_tests.record_test(
        lab.patient(patient_id),
        actor=lab.user(actor or lab.clinician),
        collected_at=when,
        specimen="urine",
        observed=True,
        reason="scheduled",
        temperature_in_range=True,
        adulteration_suspected=False,
        selection_id=selection_id,
    )


def test_a_selection_of_another_day_or_patient_is_refused(app, lab):
    with lab.ctx():
        chosen = selection(lab, lab.methadone, dt.date(2026, 3, 2))
        with pytest.raises(DomainError):
            _record(lab, lab.methadone, at(dt.date(2026, 3, 3)), chosen)
        with pytest.raises(DomainError):
            _record(lab, lab.buprenorphine, at(dt.date(2026, 3, 2)), chosen)
        with pytest.raises(DomainError):
            _record(lab, lab.methadone, at(dt.date(2026, 3, 2)), 2**31 - 1)


def test_one_selection_answers_one_test(app, lab):
    """Two nurses recording the same random selection would count one random test twice
    towards the 8 a year."""
    with lab.ctx():
        chosen = selection(lab, lab.methadone, dt.date(2026, 3, 2))
        first = _record(lab, lab.methadone, at(dt.date(2026, 3, 2), 9), chosen)
        assert first.reason == "random"
        db.session.commit()
        with pytest.raises(DomainError) as refused:
            _record(lab, lab.methadone, at(dt.date(2026, 3, 2), 10), chosen, lab.prescriber)
        assert refused.value.field == "collected_on"
        db.session.rollback()
        # once the first is entered in error, the selection can be recorded again
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, first.id), actor=lab.user(lab.clinician), reason="wrong cup"
        )
        db.session.commit()
        _record(lab, lab.methadone, at(dt.date(2026, 3, 2), 10), chosen, lab.prescriber)
        db.session.commit()


def test_the_database_refuses_a_second_live_test_for_a_selection(app, lab):
    with lab.ctx():
        chosen = selection(lab, lab.methadone, dt.date(2026, 3, 2))
        _record(lab, lab.methadone, at(dt.date(2026, 3, 2), 9), chosen)
        db.session.commit()
        second = DrugTest(
            patient_id=lab.methadone,
            site_id=lab.site,
            collected_at=at(dt.date(2026, 3, 2), 10),
            collected_on=dt.date(2026, 3, 2),
            specimen="urine",
            observed=True,
            reason="random",
            collected_by_id=lab.clinician,
            temperature_in_range=True,
            selection_id=chosen,
            recorded_by_id=lab.clinician,
        )
        db.session.add(second)
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_no_draw_on_a_closed_day(app, lab):
    with lab.ctx():
        site = db.session.get(Site, lab.site)
        db.session.add(
            SiteClosure(
                site_id=site.id,
                closed_on=drug_test_draw.site_today(site),
                name="Holiday",
                created_by_id=lab.admin,
            )
        )
        db.session.commit()
        with pytest.raises(DomainError):
            drug_test_draw.draw_for_today(site, actor=lab.user(lab.clinician))
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RandomTestDraw)) == 0


def test_discharged_yesterday_and_entered_in_error_are_off_todays_lists(app, lab):
    from clinic.patients import admissions

    with lab.ctx():
        site = db.session.get(Site, lab.site)
        site.closed_weekdays = ""
        db.session.commit()
        today = drug_test_draw.site_today(site)
        assert set(drug_test_schedule.compliance(site, today)) >= {lab.methadone, lab.buprenorphine}
        enrollment = db.session.scalar(
            sa.select(Enrollment).where(Enrollment.patient_id == lab.buprenorphine)
        )
        admissions.discharge(
            enrollment,
            actor=lab.user(lab.clinician),
            discharged_on=today - dt.timedelta(days=1),
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()
        patient = lab.patient(lab.methadone)  # (the service wants a discharge first)
        patient.entered_in_error_at = utcnow()
        patient.entered_in_error_by_id = lab.admin
        patient.entered_in_error_reason = "duplicate registration"
        db.session.commit()
        listed = drug_test_schedule.compliance(site, today)
        assert lab.buprenorphine not in listed and lab.methadone not in listed
        page = drug_test_schedule.worklist([lab.site], today)
        assert {row.patient.id for row in page.items}.isdisjoint({lab.methadone, lab.buprenorphine})
        draw = drug_test_draw.draw_for_today(site, actor=lab.user(lab.clinician))
        db.session.commit()
        assert draw.eligible_count == 0
        with pytest.raises(DomainError):
            _record(lab, lab.methadone, at(dt.date(2026, 3, 2)), None)


# --- the worklist across the date line ---------------------------------------------------


def test_the_worklist_counts_each_patient_on_their_sites_day(
    app, make_site, make_user, make_program, make_patient, make_enrollment, as_user
):
    """A clinician of Honolulu (first) and Kiritimati: Kiritimati is always a day ahead.
    A Kiritimati patient tested today (Kiritimati's day) has all 8 tests: not behind."""
    honolulu = make_site("HNL", timezone="Pacific/Honolulu")
    kiritimati = make_site("CXI", timezone="Pacific/Kiritimati")
    user = make_user("clinician", site_ids=[honolulu, kiritimati])
    program = make_program("Methadone", site_id=kiritimati)
    with app.app_context():
        kiri_today = drug_test_draw.site_today(db.session.get(Site, kiritimati))
    patient = make_patient("Kiri", "Timati", site_id=kiritimati, intake_date=dt.date(2024, 1, 2))
    make_enrollment(patient, program, admitted_on=kiri_today - dt.timedelta(days=400))
    with app.app_context():
        for n in range(8):
            on = kiri_today - dt.timedelta(days=40 * n)
            db.session.add(
                DrugTest(
                    patient_id=patient,
                    site_id=kiritimati,
                    collected_at=dt.datetime.combine(
                        on, dt.time(8), tzinfo=ZoneInfo("Pacific/Kiritimati")
                    ),
                    collected_on=on,
                    specimen="urine",
                    observed=True,
                    reason="random",
                    collected_by_id=user,
                    temperature_in_range=True,
                    recorded_by_id=user,
                )
            )
        db.session.commit()
        site = db.session.get(Site, kiritimati)
        assert drug_test_schedule.compliance(site, kiri_today)[patient].due is False
    # and a Honolulu patient admitted 45 Honolulu days ago owes no test yet (46 days would)
    hnl_program = make_program("Methadone", site_id=honolulu)
    with app.app_context():
        hnl_today = drug_test_draw.site_today(db.session.get(Site, honolulu))
    newcomer = make_patient("Nalu", "Newcomer", site_id=honolulu, intake_date=dt.date(2024, 1, 2))
    make_enrollment(newcomer, hnl_program, admitted_on=hnl_today - dt.timedelta(days=45))
    page = as_user(user).get("/drug-tests/schedule/").get_data(as_text=True)
    assert "Timati" not in page
    assert "Newcomer" not in page


def test_a_collection_after_the_discharge_is_refused(app, lab):
    """DOMAIN.md: a drug test is recorded in treatment — not on a day after the
    patient's discharge (nor for a later episode's gap)."""
    from clinic.patients import admissions

    with lab.ctx():
        enrollment = db.session.scalar(
            sa.select(Enrollment).where(Enrollment.patient_id == lab.buprenorphine)
        )
        admissions.discharge(
            enrollment,
            actor=lab.user(lab.clinician),
            discharged_on=dt.date(2026, 3, 1),
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()
        _record(lab, lab.buprenorphine, at(dt.date(2026, 3, 1), 9), None)  # the last day
        db.session.commit()
        with pytest.raises(DomainError) as refused:
            _record(lab, lab.buprenorphine, at(dt.date(2026, 3, 2), 9), None)
        assert refused.value.field == "collected_on"


def test_another_patients_selection_posted_in_the_hidden_field(app, lab, as_user):
    with lab.ctx():
        chosen = selection(lab, lab.buprenorphine, dt.date(2026, 3, 2))
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    response = client.post(url, data={**tokens(client, url), **collection(selection_id=chosen)})
    assert response.status_code == 400
    assert "not this patient" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTest)) == 0


def test_two_colleagues_drawing_at_once_get_one_draw(app, lab, as_user):
    with lab.ctx():
        site = db.session.get(Site, lab.site)
        site.closed_weekdays = ""
        db.session.commit()
        first = drug_test_draw.draw_for_today(site, actor=lab.user(lab.clinician))
        db.session.commit()
        second = drug_test_draw.draw_for_today(site, actor=lab.user(lab.prescriber))
        assert second.id == first.id
        with pytest.raises(DomainError):  # a day ahead, by the caller's clock
            drug_test_draw.draw_for_today(site, now=utcnow() + dt.timedelta(days=1))
    client = as_user(lab.prescriber)
    page = client.get("/drug-tests/schedule/today").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    for _ in range(2):
        response = client.post(
            f"/drug-tests/schedule/sites/{lab.site}/draw", data={"csrf_token": token}
        )
        assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RandomTestDraw)) == 1

"""Attacks on the counseling, drug-testing and referrals reports (issue 14): sites in
three time zones (Honolulu, Los Angeles across the spring clock change, Chicago), a
clinician who works at two of them, an administrator of one site, group sessions with
mixed attendance and a patient entered in error among the attendees, a readmission and a
transfer on the worklist, referrals and consents at the edges of the period, and the
small cells a rate per patient-year could give back."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest

from clinic.aftercare.models import AftercareResource
from clinic.extensions import db
from clinic.patients.models import Patient, Program
from clinic.reports import counseling, drug_testing, referrals
from clinic.therapy.models import SessionAttendee, TherapySession
from tests.statements import statement_count
from tests.test_reports_counseling import NOT_OTP, counts, enroll, filters, table
from tests.test_reports_referrals import consent, referral

D = dt.date
HONOLULU = ZoneInfo("Pacific/Honolulu")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
MARCH = (D(2026, 3, 1), D(2026, 3, 31))
QUARTER = (D(2026, 1, 1), D(2026, 3, 31))
PERIOD = "date_from=2026-03-01&date_to=2026-03-31"


def local(day: dt.date, hour: int, minute: int, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), zone)


def held(clinician, site, starts, attendees, *, kind="individual", modality="cbt"):
    """A recorded session at the instant ``starts``; ``attendees``: (patient, enrollment,
    attendance)."""
    row = TherapySession(
        clinician_id=clinician,
        site_id=site,
        starts_at=starts.astimezone(dt.UTC),
        duration_minutes=60,
        kind=kind,
        modality=modality,
        setting="in_person",
        group_name="Evening group" if kind == "group" else None,
        status="recorded",
        recorded_at=starts.astimezone(dt.UTC) + dt.timedelta(hours=1),
        recorded_by_id=clinician,
        created_by_id=clinician,
    )
    db.session.add(row)
    db.session.flush()
    for position, (patient, enrollment, attendance) in enumerate(attendees, start=1):
        present = attendance in ("attended", "late", "left_early")
        db.session.add(
            SessionAttendee(
                session_id=row.id,
                patient_id=patient,
                enrollment_id=enrollment,
                position=position,
                attendance=attendance,
                minutes_attended=45 if present else 0,
            )
        )
    db.session.flush()
    return row.id


@pytest.fixture
def islands(app, make_site, make_program, make_patient, make_user):
    """HNL (Honolulu) and LAX (Los Angeles); Zed counsels at both. In March 2026:

    HNL, Zed: 03-01 00:30 Hana no-show (in March); 03-31 23:30 Hana attended (04-01 in
    UTC: March at HNL); 04-01 00:30 Hana no-show (April). A relapse-prevention group on
    03-10: Hana attended, Ike no-show, Err (entered in error) attended. A group on 03-11
    with Err alone (not a session held: nobody left to count).
    LAX, Zed: 02-28 23:30 Lou attended (03-01 in UTC: February at LAX); 03-01 00:30 Lou
    late; 03-31 23:30 (after the clock change) Lou cancelled.
    Ike (HNL) was discharged on 03-05 and readmitted on 03-06: one row on the worklist.
    Tia (HNL) moved from the OTP to intensive outpatient on 03-15: one row."""
    hnl = make_site("HNL", timezone="Pacific/Honolulu")
    lax = make_site("LAX", timezone="America/Los_Angeles")
    otp = make_program("Honolulu methadone", site_id=hnl)
    iop = make_program("Honolulu intensive", "intensive_outpatient", site_id=hnl, **NOT_OTP)
    lax_otp = make_program("LA methadone", site_id=lax)
    zed = make_user("clinician", full_name="Zed Twosites", site_ids=[hnl, lax])
    people = {n: make_patient(n, "Island", site_id=hnl) for n in ("Hana", "Ike", "Err", "Tia")}
    people["Lou"] = make_patient("Lou", "Coast", site_id=lax)
    with app.app_context():
        e = {
            "Hana": enroll(people["Hana"], otp, counselor=zed),
            "Err": enroll(people["Err"], otp, counselor=zed),
            "Lou": enroll(people["Lou"], lax_otp, counselor=zed),
        }
        enroll(people["Ike"], otp, D(2026, 1, 5), D(2026, 3, 5), counselor=zed)
        e["Ike"] = enroll(people["Ike"], otp, D(2026, 3, 6), counselor=zed)
        tia_otp = enroll(people["Tia"], otp, D(2026, 1, 5), D(2026, 3, 15), counselor=zed)
        tia_iop = enroll(people["Tia"], iop, D(2026, 3, 15), counselor=zed)
        db.session.flush()

        def who(name, attendance):
            return (people[name], e[name], attendance)

        held(zed, hnl, local(D(2026, 3, 1), 0, 30, HONOLULU), [who("Hana", "no_show")])
        held(zed, hnl, local(D(2026, 3, 31), 23, 30, HONOLULU), [who("Hana", "attended")])
        held(zed, hnl, local(D(2026, 4, 1), 0, 30, HONOLULU), [who("Hana", "no_show")])
        held(
            zed,
            hnl,
            local(D(2026, 3, 10), 17, 0, HONOLULU),
            [who("Hana", "attended"), who("Ike", "no_show"), who("Err", "attended")],
            kind="group",
            modality="relapse_prevention",
        )
        held(
            zed,
            hnl,
            local(D(2026, 3, 11), 17, 0, HONOLULU),
            [who("Err", "attended")],
            kind="group",
            modality="relapse_prevention",
        )
        held(zed, lax, local(D(2026, 2, 28), 23, 30, LOS_ANGELES), [who("Lou", "attended")])
        held(zed, lax, local(D(2026, 3, 1), 0, 30, LOS_ANGELES), [who("Lou", "late")])
        held(
            zed,
            lax,
            local(D(2026, 3, 31), 23, 30, LOS_ANGELES),
            [who("Lou", "cancelled_by_patient")],
        )
        err = db.session.get(Patient, people["Err"])
        err.entered_in_error_at = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
        err.entered_in_error_reason = "registered twice"
        db.session.commit()
    return {
        "hnl": hnl,
        "lax": lax,
        "otp": otp,
        "iop": iop,
        "zed": zed,
        "people": people,
        "e": e,
        "tia": (tia_otp, tia_iop),
    }


def test_each_site_counts_its_own_local_days(app, islands):
    with app.app_context():
        hnl = counseling.compute(filters([islands["hnl"]]))
        lax = counseling.compute(filters([islands["lax"]]))
        both = counseling.compute(filters([islands["hnl"], islands["lax"]]))
    # HNL: 03-01 00:30 and 03-31 23:30, the group of 03-10 (Err left out); not 04-01,
    # not the group of Err alone.
    assert [counts(r) for r in table(hnl, "by_clinician").rows] == [(3, 2, 2, 0, 0, 4, 50.0, 50.0)]
    # LAX: 03-01 00:30 and 03-31 23:30; not 02-28 23:30.
    assert [counts(r) for r in table(lax, "by_clinician").rows] == [(2, 1, 0, 1, 0, 2, 50.0, 0.0)]
    # The clinician of two sites: one row, both sites' sessions.
    assert [(r["clinician"], *counts(r)) for r in table(both, "by_clinician").rows] == [
        ("Zed Twosites", 5, 3, 2, 1, 0, 6, 50.0, 33.3)
    ]
    modality = {r["modality"]: counts(r) for r in table(hnl, "by_modality").rows}
    assert modality["Relapse prevention"] == (1, 1, 1, 0, 0, 2, 50.0, 50.0)


def test_the_worklist_in_another_time_zone(app, islands):
    """As of 03-31 at HNL: Hana attended that evening (April in UTC); Ike's readmission
    and Tia's transfer give one row each; Err is entered in error; Lou is at LAX."""
    with app.app_context():
        result = counseling.compute(filters([islands["hnl"]]))
    rows = [
        (r["patient"], r["program"], r["last_attended"])
        for r in table(result, "no_recent_session").rows
    ]
    assert sorted(rows) == [
        ("Island, Ike", "Honolulu methadone", "Never"),
        ("Island, Tia", "Honolulu intensive", "Never"),
    ]


def test_the_program_filter_follows_the_enrollment_of_each_attendance(app, islands):
    """Tia: a session under the OTP on 03-02 and one under intensive outpatient on 03-20."""
    with app.app_context():
        tia = islands["people"]["Tia"]
        tia_otp, tia_iop = islands["tia"]
        zed, hnl = islands["zed"], islands["hnl"]
        held(zed, hnl, local(D(2026, 3, 2), 9, 0, HONOLULU), [(tia, tia_otp, "attended")])
        held(zed, hnl, local(D(2026, 3, 20), 9, 0, HONOLULU), [(tia, tia_iop, "no_show")])
        db.session.commit()
        iop = counseling.compute(filters([hnl], program_id=islands["iop"]))
        otp = counseling.compute(filters([hnl], program_id=islands["otp"]))
    assert [counts(r) for r in table(iop, "by_clinician").rows] == [(1, 0, 1, 0, 0, 1, 0.0, 100.0)]
    assert [counts(r) for r in table(otp, "by_clinician").rows] == [(4, 3, 2, 0, 0, 5, 60.0, 40.0)]
    # Tia attended on 03-02 (under the OTP): 29 days before 03-31, not on the worklist.
    assert [r["patient"] for r in table(iop, "no_recent_session").rows] == []


def _csv(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_an_administrator_of_one_site_never_sees_the_other(app, islands, client_as):
    hnl_admin = client_as("admin", site_ids=[islands["hnl"]])
    page = hnl_admin.get(f"/reports/counseling?{PERIOD}").get_data(as_text=True)
    assert "Coast, Lou" not in page and "Island, Ike" in page
    by_clinician = _csv(
        hnl_admin.get(f"/reports/counseling/export.csv?table=by_clinician&{PERIOD}")
    )
    assert by_clinician[1][:3] == ["Zed Twosites", "3", "2"]
    worklist = _csv(
        hnl_admin.get(f"/reports/counseling/export.csv?table=no_recent_session&{PERIOD}")
    )
    assert "Coast, Lou" not in [row[0] for row in worklist]
    assert hnl_admin.get(f"/reports/counseling?site={islands['lax']}").status_code == 400
    network = client_as("admin", site_ids=[], all_sites=True)
    both = _csv(network.get(f"/reports/counseling/export.csv?table=by_clinician&{PERIOD}"))
    assert [row[:3] for row in both[1:]] == [["Zed Twosites", "5", "3"], ["All", "5", "3"]]


@pytest.mark.parametrize(
    "bad",
    [
        "date_from=2026-02-30",
        "date_to=9999-01-01",
        "date_from=2026-03-01&date_to=2020-01-01",
        "site=abc",
        "program=-1",
        "program=99999999999999999999",
        "date_from=%00",
        "table=nope",
    ],
)
@pytest.mark.parametrize("slug", ["counseling", "drug-testing", "referrals"])
def test_bad_filters_never_give_a_server_error(app, islands, client_as, slug, bad):
    admin = client_as("admin", site_ids=[islands["hnl"]])
    for path in (f"/reports/{slug}?{bad}", f"/reports/{slug}/export.csv?{bad}"):
        assert admin.get(path).status_code in (200, 400, 404), path


# --- referrals and consents ---------------------------------------------------------------


def test_referrals_and_consents_in_honolulu(app, make_site, make_program, make_patient, make_user):
    """HNL, Q1 2026: referrals created 01-01 00:30 and 03-31 23:30 (04-01 in UTC) count;
    12-31 23:30 (01-01 in UTC) and 04-01 00:30 do not. Consents on 03-31: one expiring
    that day (active), one revoked that day (not), one signed that day (active), one of a
    patient entered in error (not)."""
    hnl = make_site("HNL", timezone="Pacific/Honolulu")
    otp = make_program("Honolulu methadone", site_id=hnl)
    staff = make_user("staff", site_ids=[hnl])
    kai = make_patient("Kai", "Island", site_id=hnl, intake_date=D(2025, 1, 1))
    err = make_patient("Err", "Island", site_id=hnl, intake_date=D(2025, 1, 1))
    with app.app_context():
        resource = AftercareResource(
            name="Harbor House", kind="recovery_residence", gender_served="all"
        )
        db.session.add(resource)
        db.session.flush()
        enroll(kai, otp, D(2025, 11, 1))
        enroll(err, otp, D(2025, 11, 1))
        for day, hour, minute in (
            (D(2026, 1, 1), 0, 30),
            (D(2026, 3, 31), 23, 30),
            (D(2025, 12, 31), 23, 30),
            (D(2026, 4, 1), 0, 30),
        ):
            referral(kai, staff, local(day, hour, minute, HONOLULU), resource=resource.id)
        consent(kai, staff, otp, expires_on=D(2026, 3, 31))
        consent(kai, staff, otp, revoked_on=D(2026, 3, 31))
        consent(kai, staff, otp, signed=D(2026, 3, 31), expires_on=D(2026, 3, 31))
        consent(err, staff, otp)
        patient = db.session.get(Patient, err)
        patient.entered_in_error_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        patient.entered_in_error_reason = "registered twice"
        db.session.commit()
        result = referrals.compute(filters([hnl], period=QUARTER))
    (row,) = table(result, "by_kind").rows
    assert (row["referrals"], row["draft"]) == (2, 2)
    consents = table(result, "consents")
    assert (consents.total["consents"], consents.total["patients"]) == (2, 1)


# --- own medication: the SQL against the take-home review's rule ----------------------------


def test_own_medication_in_sql_matches_the_review_rule(
    app, site, make_program, make_patient, make_user
):
    """Orders started, ended, cancelled and replaced at random (methadone, buprenorphine
    products, naltrexone); a test every five days of 2025: the report's own-medication
    flags are ``drug_test_reading.own_analytes`` on each test's day."""
    import random

    import sqlalchemy as sa

    from clinic.medications.drug_test_reading import _orders_of, own_analytes
    from clinic.reports.drug_testing_sql import own_medication, tests_in_period
    from tests.test_reports_drug_testing import FORMS, order, test_of

    FORMS.setdefault("naltrexone", ("tablet", "50 mg", "daily"))
    rng = random.Random(14)
    otp = make_program("Methadone maintenance")
    prescriber = make_user("clinician", is_prescriber=True)
    patients = [make_patient(f"R{i}", "Random", intake_date=D(2024, 1, 1)) for i in range(10)]
    year = (D(2025, 1, 1), D(2025, 12, 31))
    with app.app_context():
        for patient in patients:
            enrollment = enroll(patient, otp, D(2024, 12, 1))
            made: list[int] = []
            for _ in range(rng.randint(2, 6)):
                start = D(2025, 1, 1) + dt.timedelta(days=rng.randint(-20, 330))
                end = rng.choice(
                    [
                        None,
                        None,
                        start + dt.timedelta(days=rng.randint(0, 90)),
                        start - dt.timedelta(days=1),
                    ]
                )
                medication = rng.choice(
                    ["methadone", "buprenorphine", "buprenorphine_naloxone", "naltrexone"]
                )
                replaces = rng.choice([None, *made]) if made else None
                try:
                    with db.session.begin_nested():
                        made.append(order(enrollment, prescriber, medication, start, end, replaces))
                except sa.exc.IntegrityError:
                    continue  # a combination the schema refuses
            for day in range(0, 365, 5):
                test_of(patient, site, D(2025, 1, 1) + dt.timedelta(days=day), prescriber)
        db.session.commit()
        tests = tests_in_period(filters([site], period=year, today=D(2026, 2, 1)))
        own = own_medication(tests)
        flags = {
            row.test_id: (row.own_methadone, row.own_buprenorphine)
            for row in db.session.execute(sa.select(own))
        }
        days = {
            row.test_id: (row.patient_id, row.collected_on)
            for row in db.session.execute(sa.select(tests))
        }
        orders = _orders_of(patients, D(2025, 12, 31))
    assert len(days) == 10 * 73
    made_orders = [o for rows in orders.values() for o in rows]
    assert len(made_orders) >= 12
    assert any(o.replaces_id for o in made_orders)
    mismatches = []
    for test_id, (patient, day) in days.items():
        expected = own_analytes(orders.get(patient, []), day)
        got = flags.get(test_id, (0, 0))
        wanted = (int("methadone" in expected), int("buprenorphine" in expected))
        if got != wanted:
            mismatches.append((patient, day, got, wanted))
    assert mismatches == []


def test_patient_years_and_tests_match_a_day_by_day_count(
    app, site, make_program, make_patient, make_user
):
    """Random admissions, discharges, readmissions and overlapping enrollments in two
    programs; a test every four days: each program's days and tests (with and without the
    program filter) and the total are the day-by-day count — a day covered by two
    enrollments belongs to the one that comes first (first day in the period, then id)."""
    import random

    import sqlalchemy as sa

    from clinic.patients.models import Enrollment
    from tests.test_reports_drug_testing import test_of

    rng = random.Random(8)
    programs = [
        make_program("Methadone maintenance"),
        make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP),
    ]
    tester = make_user("clinician")
    patients = [make_patient(f"Y{i}", "Random", intake_date=D(2024, 1, 1)) for i in range(12)]
    first, last = D(2025, 1, 1), D(2025, 12, 31)
    with app.app_context():
        for patient in patients:
            for _ in range(rng.randint(2, 5)):
                admitted = D(2024, 10, 1) + dt.timedelta(days=rng.randint(0, 450))
                discharged = rng.choice([None, admitted + dt.timedelta(days=rng.randint(0, 200))])
                try:
                    with db.session.begin_nested():
                        enroll(patient, rng.choice(programs), admitted, discharged)
                except sa.exc.IntegrityError:
                    continue
            for day in range(0, 365, 4):
                test_of(patient, site, first + dt.timedelta(days=day), tester)
        db.session.commit()
        rows = db.session.execute(
            sa.select(
                Enrollment.id,
                Enrollment.patient_id,
                Enrollment.program_id,
                Enrollment.admitted_on,
                Enrollment.discharged_on,
            )
        ).all()
        period = {"period": (first, last), "today": D(2026, 2, 1)}
        everything = drug_testing.compute(filters([site], **period))
        chosen = {
            p: drug_testing.compute(filters([site], program_id=p, **period)) for p in programs
        }
        names = {p: db.session.get(Program, p).name for p in programs}
    assert len(rows) >= 20
    covered = [(r.patient_id, max(r.admitted_on, first)) for r in rows]
    assert len(covered) > len(set(covered)) or any(  # some days are covered twice
        a.patient_id == b.patient_id
        and a.id < b.id
        and a.admitted_on <= (b.discharged_on or last)
        and b.admitted_on <= (a.discharged_on or last)
        for a in rows
        for b in rows
    )
    owner: dict[tuple[int, dt.date], int] = {}  # (patient, day) -> program
    ordered = sorted(rows, key=lambda r: (r.patient_id, max(r.admitted_on, first), r.id))
    for row in ordered:
        day = max(row.admitted_on, first)
        end = min(row.discharged_on or last, last)
        while day <= end:
            owner.setdefault((row.patient_id, day), row.program_id)
            day += dt.timedelta(days=1)
    tested = {(p, first + dt.timedelta(days=d)) for p in patients for d in range(0, 365, 4)}
    by_row = {r["program"]: r for r in table(everything, "per_patient_year").rows}
    for program in programs:
        days = sum(1 for p in owner.values() if p == program)
        tests = sum(1 for key in tested if owner.get(key) == program)
        row = by_row.get(names[program], {"days": 0, "tests": 0})
        assert (row["days"], row["tests"]) == (days, tests)
        alone = table(chosen[program], "per_patient_year")
        if days:
            assert (alone.total["days"], alone.total["tests"]) == (days, tests)
            assert [r["days"] for r in alone.rows] == [days]
    total = table(everything, "per_patient_year").total
    assert (total["days"], total["tests"]) == (len(owner), len(tested & set(owner)))


def test_the_statement_counts_do_not_grow_with_patients_or_sites(
    app, islands, make_patient, make_program, make_user, make_site
):

    from tests.test_reports_drug_testing import test_of

    def statements(site_ids) -> dict[str, int]:
        counted = {}
        for name, module, period in (
            ("counseling", counseling, MARCH),
            ("drug-testing", drug_testing, QUARTER),
            ("referrals", referrals, QUARTER),
        ):
            counted[name] = statement_count(
                lambda module=module, period=period: module.compute(
                    filters(site_ids, period=period)
                )
            )
        return counted

    with app.app_context():
        small = statements([islands["hnl"]])
    chicago = make_site("ORD")
    ord_otp = make_program("Chicago methadone", site_id=chicago)
    staff = make_user("staff", site_ids=[islands["lax"], chicago])
    many = [make_patient(f"M{i:02d}", "Many", site_id=chicago) for i in range(50)]
    with app.app_context():
        resource = AftercareResource(name="Lake House", kind="halfway_house", gender_served="all")
        db.session.add(resource)
        db.session.flush()
        for index, patient in enumerate(many):
            enrollment = enroll(patient, ord_otp, D(2026, 1, 5 + index % 20))
            held(
                islands["zed"],
                chicago,
                local(D(2026, 3, 1 + index % 28), 9, index, ZoneInfo("America/Chicago")),
                [(patient, enrollment, "attended" if index % 2 else "no_show")],
            )
            test_of(
                patient,
                chicago,
                D(2026, 2, 1 + index % 28),
                staff,
                ("fentanyl", "positive", "presumptive"),
            )
            referral(
                patient,
                staff,
                local(D(2026, 2, 1 + index % 28), 10, 0, ZoneInfo("America/Chicago")),
                resource=resource.id,
            )
            consent(patient, staff, ord_otp)
        db.session.commit()
        large = statements([islands["hnl"], islands["lax"], chicago])
        result = counseling.compute(filters([chicago], period=MARCH))
    assert large == small == {"counseling": 4, "drug-testing": 3, "referrals": 6}
    assert table(result, "by_clinician").total["sessions"] == 50


@pytest.mark.parametrize("module", [counseling, drug_testing, referrals])
def test_no_site_in_scope_counts_nothing(app, islands, module):
    """Filters with no site (a user of no site) read no site's records."""
    with app.app_context():
        result = module.compute(filters([], period=QUARTER))
    assert all(t.rows == [] and t.total is None for t in result.tables)

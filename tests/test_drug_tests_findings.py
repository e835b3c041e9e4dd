"""Drug tests, what the results mean (issue 13): a negative result for the patient's own
medication is a finding (possible diversion); the positives other than the patient's own
medication, since a day or an instant, for the take-home review list — in a constant
number of statements."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.extensions import db
from clinic.medications import drug_tests, orders
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.medications.models import MedicationOrder
from clinic.patients.models import Patient
from tests.test_drug_tests_helpers import (
    ADMITTED,
    at,
    collect,
    count_statements,
    enter,
    lab_fixture,  # noqa: F401
)

MARCH_2 = dt.date(2026, 3, 2)


def findings_of(test_id: int) -> list[str]:
    test = db.session.get(DrugTest, test_id)
    return [f.analyte for f in drug_tests.findings([test]).get(test_id, [])]


def test_a_negative_result_for_the_own_medication_is_a_finding(lab):
    with lab.ctx():
        methadone_test = collect(lab)
        enter(lab, methadone_test, ("methadone", "negative", "presumptive"))
        assert findings_of(methadone_test) == ["methadone"]
        bupe_test = collect(lab, lab.buprenorphine)
        enter(
            lab,
            bupe_test,
            ("buprenorphine", "negative", "presumptive"),
            ("methadone", "negative", "presumptive"),
        )
        assert findings_of(bupe_test) == ["buprenorphine"]
        finding = drug_tests.findings([db.session.get(DrugTest, bupe_test)])[bupe_test][0]
        assert "possible diversion" in finding.message


def test_a_positive_own_medication_or_another_negative_is_no_finding(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(
            lab,
            test_id,
            ("methadone", "positive", "presumptive"),
            ("buprenorphine", "negative", "presumptive"),
        )
        assert findings_of(test_id) == []


def test_a_definitive_result_decides_the_finding(lab):
    with lab.ctx():
        confirmed = collect(lab)
        enter(lab, confirmed, ("methadone", "negative", "presumptive"))
        enter(lab, confirmed, ("methadone", "positive", "definitive"))
        assert findings_of(confirmed) == []
        overturned = collect(lab, when=at(MARCH_2, 10))
        enter(lab, overturned, ("methadone", "positive", "presumptive"))
        enter(lab, overturned, ("methadone", "negative", "definitive"))
        assert findings_of(overturned) == ["methadone"]


def test_a_test_on_the_orders_first_day_is_no_finding(lab):
    """The intake test of an induction is collected before the first dose."""
    with lab.ctx():
        test_id = collect(lab, when=at(ADMITTED, 8))
        enter(lab, test_id, ("methadone", "negative", "presumptive"))
        assert findings_of(test_id) == []


def test_a_test_entered_in_error_has_no_finding(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("methadone", "negative", "presumptive"))
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, test_id), actor=lab.user(lab.clinician), reason="Wrong cup"
        )
        db.session.commit()
        assert findings_of(test_id) == []


def test_the_own_medication_is_the_order_in_force_else_the_most_recent(lab):
    with lab.ctx():
        prescriber = db.session.get(User, lab.prescriber)
        order = db.session.get(MedicationOrder, lab.methadone_order)
        # Switched to buprenorphine from 1 March; the buprenorphine order ends on 10 March.
        switched = orders.switch_medication(
            order,
            actor=prescriber,
            data=orders.OrderInput(
                medication="buprenorphine",
                product_form="sublingual_tablet",
                strength="8 mg",
                dose_mg="8",
                schedule="daily",
                start_on=dt.date(2026, 3, 1),
                reason="Switch",
            ),
        )
        db.session.commit()
        before = collect(lab, when=at(dt.date(2026, 2, 20)))
        during = collect(lab, when=at(MARCH_2))
        for test_id in (before, during):
            enter(
                lab,
                test_id,
                ("methadone", "negative", "presumptive"),
                ("buprenorphine", "negative", "presumptive"),
            )
        assert findings_of(before) == ["methadone"]
        assert findings_of(during) == ["buprenorphine"]
        orders.end_order(
            db.session.get(MedicationOrder, switched.id),
            actor=prescriber,
            end_on=dt.date(2026, 3, 10),
            reason="Stopped",
        )
        db.session.commit()
        after = collect(lab, when=at(dt.date(2026, 3, 20)))
        enter(lab, after, ("buprenorphine", "negative", "presumptive"))
        assert findings_of(after) == ["buprenorphine"]


# --- unexpected positives ------------------------------------------------------------------


def test_positives_other_than_the_own_medication_since_a_day(lab):
    with lab.ctx():
        old = collect(lab, when=at(dt.date(2026, 2, 1)))
        enter(lab, old, ("cocaine", "positive", "presumptive"))
        recent = collect(lab, when=at(MARCH_2))
        enter(
            lab,
            recent,
            ("methadone", "positive", "presumptive"),
            ("fentanyl", "positive", "presumptive"),
            ("cannabis", "positive", "presumptive"),
            ("other", "positive", "presumptive", "Xylazine"),
        )
        enter(lab, recent, ("cannabis", "negative", "definitive"))
        found = drug_tests.unexpected_positives([lab.methadone, lab.buprenorphine], MARCH_2)
        assert list(found) == [lab.methadone]
        assert [(p.test_id, p.label) for p in found[lab.methadone]] == [
            (recent, "Fentanyl"),
            (recent, "Xylazine"),
        ]
        # A bound per patient; a datetime is strictly after it.
        since = {lab.methadone: at(MARCH_2, 9), lab.buprenorphine: MARCH_2}
        assert drug_tests.unexpected_positives([], since) == {}
        assert drug_tests.unexpected_positives(since, since) == {}
        since[lab.methadone] = at(MARCH_2, 8, 59)
        assert len(drug_tests.unexpected_positives(since, since)[lab.methadone]) == 2
        wide = drug_tests.unexpected_positives([lab.methadone], dt.date(2026, 1, 1))
        assert [p.test_id for p in wide[lab.methadone]] == [recent, recent, old]


def test_a_buprenorphine_patients_methadone_positive_is_unexpected(lab):
    with lab.ctx():
        test_id = collect(lab, lab.buprenorphine)
        enter(
            lab,
            test_id,
            ("buprenorphine", "positive", "presumptive"),
            ("methadone", "positive", "presumptive"),
        )
        found = drug_tests.unexpected_positives([lab.buprenorphine], MARCH_2)
        assert [p.analyte for p in found[lab.buprenorphine]] == ["methadone"]


def test_a_definitive_positive_counts_over_a_negative_presumptive_one(lab):
    """Only the results that can decide a positive are read: a definitive positive after a
    negative presumptive result counts; negatives alone, or a positive overturned by a
    definitive negative, do not; an other analyte keeps its first spelling."""
    with lab.ctx():
        test_id = collect(lab)
        enter(
            lab,
            test_id,
            ("cocaine", "negative", "presumptive"),
            ("fentanyl", "negative", "presumptive"),
            ("benzodiazepines", "positive", "presumptive"),
            ("other", "negative", "presumptive", "Kratom"),
        )
        enter(
            lab,
            test_id,
            ("cocaine", "positive", "definitive"),
            ("benzodiazepines", "negative", "definitive"),
            ("other", "positive", "definitive", "kratom"),
        )
        found = drug_tests.unexpected_positives([lab.methadone], MARCH_2)
        assert [(p.label, p.method) for p in found[lab.methadone]] == [
            ("Cocaine", "definitive"),
            ("Kratom", "definitive"),
        ]


def test_each_patient_from_its_own_bound(lab):
    """With one bound per patient, a test between two patients' bounds counts only for
    the patient whose bound is earlier."""
    with lab.ctx():
        early = collect(lab, lab.methadone, when=at(dt.date(2026, 2, 1)))
        enter(lab, early, ("cocaine", "positive", "presumptive"))
        late = collect(lab, lab.buprenorphine, when=at(dt.date(2026, 2, 1)))
        enter(lab, late, ("cocaine", "positive", "presumptive"))
        since = {lab.methadone: at(dt.date(2026, 1, 15)), lab.buprenorphine: at(MARCH_2)}
        found = drug_tests.unexpected_positives(since, since)
        assert list(found) == [lab.methadone]
        assert [p.test_id for p in found[lab.methadone]] == [early]


def test_tests_entered_in_error_give_no_positives(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("cocaine", "positive", "presumptive"))
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, test_id), actor=lab.user(lab.clinician), reason="Wrong cup"
        )
        db.session.commit()
        assert drug_tests.unexpected_positives([lab.methadone], MARCH_2) == {}


def test_positives_take_two_statements_for_a_thousand_patients(app, lab):
    """1,000 patients, each with a test and a positive: two statements."""
    with lab.ctx():
        patient = lab.patient(lab.methadone)
        now = utcnow()
        rows = [
            {
                "site_id": patient.site_id,
                "mrn": f"BULK{i:06d}",
                "first_name": "Bulk",
                "last_name": f"Patient{i}",
                "first_key": "bulk",
                "last_key": f"patient{i}",
                "date_of_birth": dt.date(1980, 1, 1),
                "sex_at_birth": "female",
                "primary_substance": "fentanyl",
                "intake_date": ADMITTED,
                "created_at": now,
            }
            for i in range(1000)
        ]
        db.session.execute(sa.insert(Patient), rows)
        ids = list(db.session.scalars(sa.select(Patient.id).where(Patient.mrn.like("BULK%"))))
        when = at(MARCH_2).astimezone(dt.UTC)
        db.session.execute(
            sa.insert(DrugTest),
            [
                {
                    "patient_id": pid,
                    "site_id": patient.site_id,
                    "collected_at": when,
                    "collected_on": MARCH_2,
                    "specimen": "urine",
                    "observed": True,
                    "reason": "random",
                    "collected_by_id": lab.clinician,
                    "temperature_in_range": True,
                    "adulteration_suspected": False,
                    "recorded_by_id": lab.clinician,
                    "recorded_at": now,
                }
                for pid in ids
            ],
        )
        tests = db.session.execute(sa.select(DrugTest.id, DrugTest.patient_id)).all()
        db.session.execute(
            sa.insert(DrugTestResult),
            [
                {
                    "test_id": tid,
                    "analyte": "cocaine",
                    "other_name": "",
                    "result": "positive",
                    "method": "presumptive",
                    "entered_by_id": lab.clinician,
                    "entered_at": now,
                }
                for tid, _pid in tests
            ],
        )
        db.session.commit()
        with count_statements(app) as statements:
            found = drug_tests.unexpected_positives(ids, MARCH_2)
        assert len(found) == 1000
        assert len(statements) == 2


# --- the demo ----------------------------------------------------------------------------------


def test_the_demo_tests_positives_and_finding(app, site, make_site, make_user):
    """A year of tests for Smith, Nguyen and Torres: a confirmed positive, an overturned
    one, a missing-own-medication finding; run twice, it adds nothing."""
    from clinic.medications import demo as medication_demo
    from clinic.medications import drug_test_demo
    from clinic.patients import demo as patient_demo
    from clinic.sites.models import Site

    east = make_site("EAST")
    ids = {
        "prescriber": make_user("clinician", is_prescriber=True),
        "nurse": make_user("clinician"),
        "admin": make_user("admin"),
    }
    with app.test_request_context():
        users = {k: db.session.get(User, v) for k, v in ids.items()}
        main = db.session.get(Site, site)
        users["admin"].all_sites = True
        patient_demo.seed(
            main, db.session.get(Site, east), counselors=[users["nurse"]], actor=users["admin"]
        )
        medication_demo.seed(main, prescriber=users["prescriber"], nurse=users["nurse"])
        assert drug_test_demo.seed(main, nurse=users["nurse"]) == 15
        db.session.commit()
        assert drug_test_demo.seed(main, nurse=users["nurse"]) == 0
        tests = list(db.session.scalars(sa.select(DrugTest).order_by(DrugTest.id)))
        per_patient = {}
        for test in tests:
            per_patient.setdefault(test.patient.last_name, []).append(test)
        assert {name: len(t) for name, t in per_patient.items()} == {
            "Smith": 9,
            "Nguyen": 4,
            "Torres": 2,
        }
        smith = per_patient["Smith"]
        assert (smith[-1].collected_on - smith[0].collected_on).days > 300
        found = drug_tests.findings(tests)
        assert [(db.session.get(DrugTest, t).patient.last_name) for t in found] == ["Torres"]
        positives = drug_tests.unexpected_positives(
            {t.patient_id for t in tests}, ADMITTED.replace(year=2000)
        )
        labels = {
            db.session.get(Patient, pid).last_name: [(p.label, p.method) for p in found_]
            for pid, found_ in positives.items()
        }
        assert labels["Smith"] == [("Cocaine", "definitive")]
        assert "Nguyen" not in labels  # the presumptive fentanyl was overturned

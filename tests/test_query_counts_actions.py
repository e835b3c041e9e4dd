"""Statement counts of what a user does to one patient (POST): the same for a long history
as for a short one (issue 15), and the exact number each runs today. The forms are filled
as a user would, from the page that shows them; each action saves (a redirect).

One test, in order: the nurse's dose first (the window's hot path) and its reversal, the
hold after them, the discharge last (it ends the orders and decisions the others use).
"""

from __future__ import annotations

import datetime as dt

from clinic.extensions import db
from tests.patient_history_records import CRITERIA_TEXT
from tests.query_counts import (
    Action,
    histories_database_uri,  # noqa: F401
    histories_fixture,  # noqa: F401
    measure_post,
)

CRITERIA = ("substance_use", "attendance", "behaviour", "diversion", "storage", "other")


def actions(today: dt.date) -> dict[str, Action]:
    day = today.isoformat
    return {
        # Record today's observed dose (the amount prefilled from the order).
        "dosing.dose": Action(fill={"dob_confirmed": "y"}, statements=29),
        # Reverse it (the newest row offered).
        "dosing.reverse": Action(
            fill=lambda _ids, choices: {"dose_id": choices["dose_id"][0], "reason": "Spilled"},
            statements=15,
        ),
        "drug_tests.record": Action(
            fill={"observed": "yes", "reason": "random", "temperature_in_range": "yes"},
            statements=15,
        ),
        "take_homes.record_decision": Action(
            fill=lambda ids, _choices: {
                "order_id": str(ids["order_id"]),
                "schedule_kind": "days",
                "start_on": (today + dt.timedelta(days=30)).isoformat(),
                "days": "2",
                "storage_education_on": day(),
                **{f"{name}_met": "y" for name in CRITERIA},
                **{f"{name}_note": CRITERIA_TEXT for name in CRITERIA},
            },
            statements=19,
        ),
        "medications.change_dose": Action(
            fill=lambda ids, _choices: {"dose_mg": str(ids["dose_mg"] + 5), "start_on": day()},
            statements=21,
        ),
        # Sending checks the consents and restriction requests on file (the large history
        # has more of both) and records the disclosure.
        "medications.place_hold": Action(fill={"reason": "Sedated at the window"}, statements=14),
        "call_backs.outcome": Action(
            fill={"outcome": "no_show", "note": "Did not come back within 24 hours."},
            statements=17,
        ),
        "therapy.session_entered_in_error": Action(fill={"reason": "Wrong patient"}, statements=12),
        "aftercare.send_referral": Action(
            "staff", ids={"referral_id": "draft_referral_id"}, statements=19
        ),
        # Discharging ends the enrollment's orders and take-home decisions.
        "patients.discharge": Action(fill={"discharged_on": day(), "reason": "1"}, statements=19),
    }


def test_the_actions_on_a_patient_run_as_many_statements_for_a_long_history(app, histories):
    from clinic.sites.models import Site
    from clinic.sites.time import site_today

    with app.app_context():
        today = site_today(db.session.get(Site, histories.team.site))
    found = []
    for endpoint, case in actions(today).items():
        found.extend(measure_post(app, histories, endpoint, case))
    assert found == [], "\n".join(found)
    for ids in (histories.small, histories.large):
        assert _saved(app, ids) == SAVED


SAVED = {
    "reversed today": 1,
    "tests today": 1,
    "holds in force": 1,
    "call-back no-show": 1,
    "session in error": True,
    "disclosures": 1,
    "discharged": True,
}


def _saved(app, ids: dict[str, int]) -> dict[str, object]:
    """What the actions left in the patient's record (each one saved, not refused)."""
    import sqlalchemy as sa

    from clinic.aftercare.referral_models import Disclosure
    from clinic.medications.drug_test_models import DrugTest
    from clinic.medications.models import DoseEntry, MedicationHold
    from clinic.medications.take_home_models import CallBack
    from clinic.patients.models import Enrollment
    from clinic.therapy.models import TherapySession

    def count(model, *where) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))

    patient = ids["patient_id"]
    with app.app_context():
        today_dose = db.session.scalar(
            sa.select(sa.func.max(DoseEntry.id)).where(
                DoseEntry.patient_id == patient, DoseEntry.kind == "observed"
            )
        )
        return {
            "reversed today": count(DoseEntry, DoseEntry.reverses_id == today_dose),
            "tests today": count(
                DrugTest, DrugTest.patient_id == patient, DrugTest.reason == "random"
            ),
            "holds in force": count(
                MedicationHold,
                MedicationHold.patient_id == patient,
                MedicationHold.lifted_at.is_(None),
            ),
            "call-back no-show": count(
                CallBack, CallBack.patient_id == patient, CallBack.outcome == "no_show"
            ),
            "session in error": db.session.get(TherapySession, ids["session_id"]).entered_in_error,
            "disclosures": count(Disclosure, Disclosure.referral_id == ids["draft_referral_id"]),
            "discharged": not db.session.get(Enrollment, ids["enrollment_id"]).active,
        }

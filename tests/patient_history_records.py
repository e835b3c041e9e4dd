"""The therapy, drug-test, take-home and aftercare rows of a patient's history
(tests/patient_history.py builds the rest and calls these, in a request context; each
flushes, none commits). ``n``: how many of each kind."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from clinic.extensions import db

if TYPE_CHECKING:
    from tests.patient_history import Team

ANALYTES = (
    "opioids",
    "fentanyl",
    "methadone",
    "cocaine",
    "amphetamines",
    "benzodiazepines",
    "cannabis",
    "alcohol",
)
CRITERIA_TEXT = "Documented."


def therapy(patient, users, n: int) -> dict[str, int]:
    """``n`` individual sessions of the past days, attended, with a signed note and a
    counseling note each, ``n`` addenda on the last one's note; ``n`` group sessions with
    their group note; a session planned for tomorrow with a draft note."""
    from clinic.db import utcnow
    from clinic.therapy import counseling, notes, sessions

    clinician = users["clinician"]
    # Offset by the history's size: the small and the large history share the team's
    # clinicians, and built within the same second they would book the same start times.
    now = utcnow().replace(microsecond=0) - dt.timedelta(minutes=n)

    def plan(starts_at: dt.datetime, kind: str = "individual", actor=clinician):
        return sessions.plan_session(
            actor=actor,
            plan=sessions.SessionPlan(
                site_id=patient.site_id,
                starts_at=starts_at,
                duration_minutes=60,
                kind=kind,
                modality="cbt",
                group_name="Evening group" if kind == "group" else None,
                setting="in_person",
                patient_ids=[patient.id],
            ),
        )

    session = None
    # Each by another clinician; the last (whose ids are returned) by the team's own.
    for k in range(n):
        counselor = users["pools"]["counselors"][n - 1 - k]
        session = plan(now - dt.timedelta(days=k + 1, hours=2), actor=counselor)
        sessions.record_session(
            session,
            actor=counselor,
            attendees=[sessions.AttendeeRecord(patient.id, "attended", 60, f"Progress {k}.")],
            sign=True,
        )
        db.session.flush()
        counseling.add_counseling_note(
            session.attendees[0], actor=counselor, text=f"Counseling analysis {k}."
        )
    for k in range(n):
        counselor = users["pools"]["counselors"][k]
        group = plan(now - dt.timedelta(days=k + 1, hours=5), kind="group", actor=counselor)
        sessions.record_session(
            group,
            actor=counselor,
            attendees=[sessions.AttendeeRecord(patient.id, "attended", 60, f"Group part {k}.")],
            group_note=f"Group topic {k}.",
            sign=True,
        )
    db.session.flush()
    note = notes.live_notes_of(session)[0]
    for k in range(n):
        notes.add_addendum(note, actor=clinician, text=f"Addendum {k}.")
    counseling_note = counseling.add_counseling_note(
        session.attendees[0], actor=clinician, text="Counseling analysis, last."
    )
    planned = plan(now + dt.timedelta(days=1))
    draft = notes.save_draft(planned, actor=clinician, text="Draft.", attendee=planned.attendees[0])
    db.session.flush()
    return {
        "session_id": session.id,
        "attendee_id": session.attendees[0].id,
        "note_id": note.id,
        "counseling_note_id": counseling_note.id,
        "planned_session_id": planned.id,
        "draft_note_id": draft.id,
    }


def drug_tests(patient, users, n: int) -> dict[str, int]:
    """``n`` urine tests of the past days, each with ``n`` presumptive results; the
    newest ``n // 2`` entered in error, the others confirmed (a definitive result)
    (``test_id``: the oldest, ``newest_test_id``: yesterday's)."""
    from clinic.db import utcnow
    from clinic.medications import drug_tests

    tests = []
    for k in range(n):
        test = drug_tests.record_test(
            patient,
            actor=users["pools"]["testers"][k],
            collected_at=utcnow() - dt.timedelta(days=k + 1, hours=1),
            specimen="urine",
            observed=True,
            reason="scheduled",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test,
            [drug_tests.ResultRow(a, "negative", "presumptive") for a in ANALYTES[:n]],
            actor=users["pools"]["testers"][k],
        )
        tests.append(test)
    db.session.flush()
    for k, test in enumerate(tests):
        actor = users["pools"]["testers"][k]
        if k < n // 2:
            drug_tests.mark_entered_in_error(test, actor=actor, reason="Wrong patient's cup")
        else:
            drug_tests.record_results(
                test, [drug_tests.ResultRow("opioids", "negative", "definitive")], actor=actor
            )
    db.session.flush()
    return {"test_id": tests[-1].id, "newest_test_id": tests[0].id}


def take_homes(patient, users, n: int, today: dt.date, ids) -> dict[str, int]:
    """``n // 2`` declined take-home decisions, ``n - 1`` ended; one of ten days ago for
    ``n`` days, its ``n`` bottles dispensed then, ``n // 2`` of them returned; one in force
    from tomorrow for ``n`` days, its ``n`` bottles dispensed; ``n`` call-backs, all but the
    last closed short (each a diversion incident)."""
    from clinic.db import utcnow
    from clinic.medications import bottle_returns, call_backs, take_home_bottles
    from clinic.medications import take_home_decisions as decisions
    from clinic.medications.models import MedicationOrder
    from clinic.medications.take_home_models import CRITERIA

    clinician = users["clinician"]
    order = db.session.get(MedicationOrder, ids["order_id"])
    criteria = {name: decisions.Criterion(True, CRITERIA_TEXT) for name, _label in CRITERIA}

    def decide(start_on: dt.date, days: int, actor=clinician):
        return decisions.record_decision(
            patient,
            actor=actor,
            order=order,
            schedule_kind="days",
            start_on=start_on,
            days=days,
            criteria=criteria,
            storage_education_on=today,
            approve=True,
        )

    for k in range(n // 2):
        declined = decisions.record_decision(
            patient,
            actor=clinician,
            order=order,
            schedule_kind="days",
            start_on=today + dt.timedelta(days=70 + 2 * k),
            days=1,
            criteria=criteria,
            storage_education_on=today,
        )
        db.session.flush()
        decisions.decline(declined, actor=users["pools"]["deciders"][k], reason="Not yet")
    for k in range(n - 1):
        past = decide(today + dt.timedelta(days=40 + 3 * k), 1, users["pools"]["deciders"][k])
        db.session.flush()
        decisions.end_decision(past, actor=clinician, reason="Superseded", ended_on=past.start_on)
        db.session.flush()
    # Ten days ago: a decision for the next n days and its bottles, now due back.
    then = utcnow() - dt.timedelta(days=10)
    decisions.record_decision(
        patient,
        actor=clinician,
        order=order,
        schedule_kind="days",
        start_on=today - dt.timedelta(days=9),
        days=n,
        criteria=criteria,
        storage_education_on=today - dt.timedelta(days=10),
        approve=True,
        now=then,
    )
    db.session.flush()
    earlier_bottles = take_home_bottles.dispensing_bottles(
        take_home_bottles.dispense_take_homes(patient, actor=clinician, count=n, now=then)
    )
    db.session.flush()
    # The first n // 2 bottles came back (the rest are due back).
    bottle_returns.record_returns(
        patient,
        actor=clinician,
        outcomes={b.id: "returned" for b in earlier_bottles[: n // 2]},
    )
    db.session.flush()
    decision = decide(today + dt.timedelta(days=1), n)
    db.session.flush()
    dispensing = take_home_bottles.dispense_take_homes(patient, actor=clinician, count=n)
    db.session.flush()
    call_back = None
    for k in range(n):
        call_back = call_backs.start_call_back(patient, actor=users["pools"]["deciders"][k])
        db.session.flush()
        if k < n - 1:
            call_backs.record_outcome(
                call_back,
                actor=clinician,
                bottles_counted=0,
                outcome="short",
                note="None of the bottles brought.",
            )
            db.session.flush()
    return {
        "decision_id": decision.id,
        "dispensing_id": dispensing.id,
        "call_back_id": call_back.id,
    }


def aftercare(team: Team, patient, users, n: int, today: dt.date) -> dict[str, int]:
    """``n`` support people, ``n`` consents to the residence (all but the last revoked),
    a consent to the outpatient program, ``n`` restriction requests, ``n`` referrals to
    the outpatient program sent and moved along (sent, waitlisted, accepted)."""
    from clinic.aftercare import consents, disclosures, referrals, restrictions, support
    from clinic.aftercare.consents import ConsentInput

    staff = users["staff"]
    people = [
        support.add_support_person(
            patient,
            actor=users["pools"]["supporters"][k],
            data=support.SupportPersonInput(name=f"Sponsor {k}", relationship="sponsor"),
        )
        for k in range(n)
    ]

    def consent_to(resource_id: int, actor=staff):
        return consents.record_consent(
            patient,
            actor=actor,
            data=ConsentInput(
                kind="specific_disclosure",
                program_id=team.program,
                information_description="Enrollment in treatment and current medication",
                recipient_type="resource",
                resource_id=resource_id,
                support_person_id=None,
                recipient_class=None,
                purpose="aftercare_referral",
                purpose_text="Continuing care after discharge",
                right_to_revoke="In writing, at the front desk.",
                expiry_kind="date",
                expires_on=today + dt.timedelta(days=90),
                expiry_event=None,
                signature_method="paper",
                paper_scan_reference="SCAN-1",
                electronic_signature_name=None,
                signed_on=today,
                redisclosure_statement=None,
            ),
        )

    consent = None
    for k in range(n):
        consent = consent_to(team.residence, users["pools"]["supporters"][k])
        db.session.flush()
        if k < n - 1:
            consents.revoke_consent(consent, actor=staff, revoked_on=today, method="in_writing")
    consent_to(team.outpatient)
    restriction = None
    for k in range(n):
        restriction = restrictions.record_restriction(
            patient,
            actor=users["pools"]["referrers"][k],
            purpose=None,
            recipient_type="support_person",
            resource_id=None,
            support_person_id=people[k].id,
            recipient_class=None,
            details=f"Restriction {k}",
            requested_on=today,
        )
    db.session.flush()
    referral = None
    for k in range(n):
        referral = referrals.create_referral(
            patient,
            actor=users["pools"]["referrers"][k],
            resource_id=team.outpatient,
            reason=f"Referral {k}",
            follow_up_on=today + dt.timedelta(days=7),
        )
        db.session.flush()
        disclosures.send(referral, actor=users["pools"]["referrers"][k], version=referral.version)
        db.session.flush()
        for status in ("waitlisted", "accepted"):
            referrals.change_status(
                referral,
                actor=users["pools"]["referrers"][k],
                to_status=status,
                note=f"Now {status}.",
                version=referral.version,
            )
            db.session.flush()
    draft = referrals.create_referral(
        patient, actor=staff, resource_id=team.residence, reason="Sober living"
    )
    db.session.flush()
    return {
        "draft_referral_id": draft.id,
        "support_person_id": people[-1].id,
        "consent_id": consent.id,
        "restriction_id": restriction.id,
        "referral_id": referral.id,
    }

"""Patients with a history of every kind, built through the services (no tests here): the
records the statement-count tests (tests/test_query_counts_*.py) open their pages with.

``build_team`` makes the people and places once; ``build_history(..., n)`` registers one
patient with ``n`` of every related row a per-patient page shows: enrollments (``n - 1``
discharged, one in treatment), orders (a dose change each), holds and flags (lifted and
cleared), observed doses (some reversed); and (tests/patient_history_records.py)
individual and group sessions with signed notes, addenda and counseling notes, drug tests
with ``n`` results each, take-home decisions, dispensings of ``n`` bottles (some
returned), call-backs closed short, support people, consents, restriction requests,
referrals sent under a consent and moved along; break-glass grants, and the audit events
all of these record.

The returned ids are keyed by the URL rules' variable names (``patient_id``, ``order_id``,
...) plus the few variants a page needs (``draft_note_id``: a draft, where ``note_id`` is
signed), so a page's URL is built from its rule (tests/query_counts.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from clinic.extensions import db

SMALL, LARGE = 2, 7
FLAGS = {"is_prescriber": True, "may_dispense": True}
# Who writes each kind of row (``Team.pools``).
CLINICIAN_POOLS = ("prescribers", "holders", "dispensers", "counselors", "testers", "deciders")
STAFF_POOLS = ("supporters", "referrers", "grantees")


@dataclass(frozen=True)
class Team:
    """Who builds the histories (and opens the pages): a clinician with every flag
    (prescriber, may dispense) who also counsels, staff, an administrator; the program
    and the directory's resources. ``pools``: for each kind of row, ``LARGE`` users of
    its own; the k-th row of the kind is the k-th user's, so a page that loads each row's
    author one by one runs more statements for the large history. (One author for all
    would be found in the session after the first; one pool for every kind would be loaded
    by one list and found there by the others.)"""

    site: int
    program: int
    clinician: int
    staff: int
    admin: int
    residence: int
    outpatient: int
    pools: dict[str, tuple[int, ...]]


def build_team(app, site: int, make_user, make_program) -> Team:
    from clinic.accounts.models import User
    from clinic.aftercare import directory
    from clinic.sites.models import Site
    from clinic.therapy import counseling

    clinician = make_user("clinician", "nora.nurse", full_name="Nora Nurse", **FLAGS)
    staff = make_user("staff", "sam.staff", full_name="Sam Staff")
    admin = make_user("admin", "ada.admin", full_name="Ada Admin")
    pools = {
        name: tuple(
            make_user("clinician", full_name=f"{name.title()} {k}", **FLAGS) for k in range(LARGE)
        )
        for name in CLINICIAN_POOLS
    }
    pools.update(
        (name, tuple(make_user("staff", full_name=f"{name.title()} {k}") for k in range(LARGE)))
        for name in STAFF_POOLS
    )
    # The team's clinician counsels the last session of each history (its notes' pages).
    pools["counselors"] = (clinician, *pools["counselors"][1:])
    program = make_program()
    with app.test_request_context():
        residence = directory.create_resource(
            actor=None,
            data=directory.ResourceData(name="Harbor House", kind="halfway_house"),
        )
        outpatient = directory.create_resource(
            actor=None,
            data=directory.ResourceData(name="Lakeside Outpatient", kind="outpatient_care"),
        )
        counseling.grant_reader(
            db.session.get(Site, site),
            db.session.get(User, clinician),
            actor=db.session.get(User, admin),
        )
        db.session.commit()
        return Team(
            site,
            program,
            clinician,
            staff,
            admin,
            residence.id,
            outpatient.id,
            pools,
        )


def build_history(app, team: Team, make_patient, n: int, last_name: str) -> dict[str, int]:
    """A patient of the team's site with ``n`` of every kind of row (module docstring);
    the ids of its records, by URL variable name."""
    from clinic.accounts.models import User
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today
    from tests import patient_history_records as records

    with app.app_context():
        today = site_today(_site(team.site))
    patient_id = make_patient(
        "Ines",
        last_name,
        intake_date=today - dt.timedelta(days=400),
        date_of_birth=dt.date(1979, 3, 4),
    )
    ids: dict[str, int] = {"patient_id": patient_id}
    with app.test_request_context():
        users = {
            name: db.session.get(User, getattr(team, name))
            for name in ("clinician", "staff", "admin")
        }
        users["pools"] = {
            name: [db.session.get(User, i) for i in ids] for name, ids in team.pools.items()
        }
        patient = db.session.get(Patient, patient_id)
        ids.update(_enrollments(team, patient, users, n, today))
        ids.update(_medications(team, patient, users, n, today, ids))
        db.session.commit()
        ids.update(records.therapy(patient, users, n))
        db.session.commit()
        ids.update(records.drug_tests(patient, users, n))
        ids.update(records.take_homes(patient, users, n, today, ids))
        db.session.commit()
        ids.update(records.aftercare(team, patient, users, n, today))
        ids.update(_grants(patient, users, n))
        db.session.commit()
    return ids


def _site(site_id: int):
    from clinic.sites.models import Site

    return db.session.get(Site, site_id)


def _enrollments(team: Team, patient, users, n: int, today: dt.date) -> dict[str, int]:
    """``n - 1`` past stays of ten days (discharged, completed), then the current one,
    admitted 60 days ago with its milestones and ``n`` care-plan reviews."""
    from clinic.patients import admissions, milestones
    from clinic.patients.models import Program

    program = db.session.get(Program, team.program)
    admin = users["admin"]
    first = today - dt.timedelta(days=380)
    for k in range(n - 1):
        admitted = first + dt.timedelta(days=20 * k)
        past = admissions.admit(
            patient,
            program,
            actor=admin,
            admitted_on=admitted,
            asam_edition="3",
            asam_level="OTP",
            primary_counselor=users["pools"]["counselors"][k],
        )
        db.session.flush()
        admissions.discharge(
            past,
            actor=admin,
            discharged_on=admitted + dt.timedelta(days=10),
            reason=1,
            expected_version=past.version,
        )
    admitted = today - dt.timedelta(days=60)
    current = admissions.admit(
        patient,
        program,
        actor=admin,
        admitted_on=admitted,
        asam_edition="3",
        asam_level="OTP",
        primary_counselor=users["clinician"],
    )
    db.session.flush()
    milestones.record_milestones(
        current,
        actor=admin,
        values={name: admitted + dt.timedelta(days=2) for name in milestones.MILESTONES},
        expected_version=current.version,
    )
    for k in range(n):
        milestones.record_care_plan_review(
            current, actor=admin, reviewed_on=admitted + dt.timedelta(days=3 + k)
        )
    db.session.flush()
    return {"enrollment_id": current.id}


def _medications(team, patient, users, n: int, today: dt.date, ids) -> dict[str, int]:
    """An order started at admission and changed ``n - 1`` times by 5 mg; ``n`` holds
    placed and lifted, ``n`` flags added and cleared, one live information flag; ``n``
    observed doses, one a day back from yesterday, the oldest ``n // 2`` reversed."""
    from clinic.medications import holds, ledger, orders
    from clinic.medications.models import DoseEntry, DoseKind
    from clinic.patients.models import Enrollment

    clinician = users["clinician"]
    enrollment = db.session.get(Enrollment, ids["enrollment_id"])
    start = enrollment.admitted_on

    def data(dose: int, on: dt.date):
        return orders.OrderInput(
            medication="methadone",
            product_form="oral_liquid",
            strength="10 mg/mL",
            dose_mg=Decimal(dose),
            schedule="daily",
            start_on=on,
        )

    prescribers, holders = users["pools"]["prescribers"], users["pools"]["holders"]
    order = orders.start_order(enrollment, actor=clinician, data=data(40, start))
    for k in range(1, n):
        db.session.flush()
        order = orders.change_dose(
            order, actor=prescribers[k], data=data(40 + 5 * k, start + dt.timedelta(days=2 * k))
        )
    db.session.flush()
    hold = None
    for k in range(n):
        hold = holds.place_hold(patient, actor=holders[k], reason=f"Hold {k}", until_on=None)
        db.session.flush()
        holds.lift_hold(hold, actor=holders[k], reason="Reviewed")
        flag = holds.add_flag(patient, actor=holders[k], category="info", text=f"Flag {k}")
        db.session.flush()
        holds.clear_flag(flag, actor=holders[k])
    flag = holds.add_flag(patient, actor=clinician, category="info", text="Prefers mornings")
    db.session.add_all(
        DoseEntry(
            kind=DoseKind.OBSERVED,
            patient_id=patient.id,
            site_id=patient.site_id,
            order_id=order.id,
            medication=order.medication,
            substance="methadone",
            strength=order.strength,
            dosage_form=order.product_form,
            dispensed_on=today - dt.timedelta(days=k + 1),
            dispensed_at=dt.datetime.combine(today - dt.timedelta(days=k + 1), dt.time(14), dt.UTC),
            amount_mg=order.dose_mg,
            slot=1,
            dispenser_id=users["pools"]["dispensers"][k].id,
        )
        for k in range(n)
    )
    db.session.flush()
    # The oldest n // 2 doses reversed (the last days stay dosed: no missed-dose review).
    doses = db.session.scalars(
        sa.select(DoseEntry)
        .where(DoseEntry.patient_id == patient.id)
        .order_by(DoseEntry.dispensed_on)
        .limit(n // 2)
    ).all()
    for dose in doses:
        ledger.record_reversal(dose, actor=clinician, reason="Wrong patient")
    db.session.flush()
    newest = db.session.scalar(
        sa.select(sa.func.max(DoseEntry.id)).where(DoseEntry.patient_id == patient.id)
    )
    return {
        "newest_dose_id": newest,
        "order_id": order.id,
        "dose_mg": int(order.dose_mg),
        "hold_id": hold.id,
        "flag_id": flag.id,
    }


def _grants(patient, users, n: int) -> dict[str, int]:
    """``n`` break-glass grants of the patient to the staff member, the last one live."""
    from clinic.audit.models import BreakGlassGrant

    now = dt.datetime.now(dt.UTC)
    grants = [
        BreakGlassGrant(
            user_id=users["pools"]["grantees"][k].id,
            patient_id=patient.id,
            reason=f"Emergency {k}",
            granted_at=now - dt.timedelta(hours=n - k),
            expires_at=now - dt.timedelta(hours=n - k) + dt.timedelta(minutes=30),
        )
        for k in range(n)
    ]
    db.session.add_all(grants)
    db.session.flush()
    return {"grant_id": grants[-1].id}

"""The referrals report (clinic/reports/referrals.py): referrals by resource kind and
outcome, the median days from sent to placed, and the active consents on file, on a
hand-built clinic with known answers (a referral created at 23:30 on the period's edges,
a support-network referral, an even number of placements for the median, a consent
revoked before and after the day, one expired by date, one by the end of treatment and
one kept by a transfer, a patient entered in error, a second site), and its pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest

from clinic.aftercare.consent_models import Consent, SupportPerson
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import Disclosure, Referral, ReferralEvent
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.reports import referrals
from clinic.reports.core import SMALL_CELL_TEXT
from clinic.reports.filters import REVERSED_MESSAGE, ReportFilters
from tests.statements import statement_count

D = dt.date
CHICAGO = ZoneInfo("America/Chicago")
QUARTER = (D(2026, 1, 1), D(2026, 3, 31))
PERIOD = "date_from=2026-01-01&date_to=2026-03-31"
STATUSES = ("draft", "sent", "accepted", "waitlisted", "declined", "placed", "closed")
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}


def at(day: dt.date, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), CHICAGO)


SIGNED = D(2025, 12, 1)


def consent(patient, staff, program, *, signed=SIGNED, **values):
    """A specific-disclosure consent for aftercare referrals to the whole directory,
    expiring at the end of 2026 (column values override)."""
    row = {
        "patient_id": patient,
        "patient_name": "As signed",
        "kind": "specific_disclosure",
        "program_id": program,
        "program_name": "Methadone maintenance",
        "information_description": "That I am in treatment",
        "recipient_class": "aftercare_directory",
        "recipient_name": "The program's aftercare directory",
        "purpose": "aftercare_referral",
        "purpose_text": "Placement",
        "right_to_revoke": "In writing",
        "expiry_kind": "date",
        "expires_on": D(2026, 12, 31),
        "signature_method": "electronic",
        "electronic_signature_name": "As signed",
        "signed_on": signed,
        "recorded_by_id": staff,
    } | values
    if row.get("revoked_on"):
        row |= {
            "revocation_method": "In writing",
            "revoked_by_id": staff,
            "revoked_at": at(row["revoked_on"]),
        }
    item = Consent(**row)
    db.session.add(item)
    db.session.flush()
    return item.id


def referral(patient, staff, created, steps=(), *, resource=None, person=None, consent_id=None):
    """A referral created at ``created``, moved along ``steps``: (status, instant). A move
    to "sent" records its disclosure under ``consent_id`` first (as the app does)."""
    item = Referral(
        patient_id=patient,
        resource_id=resource,
        support_person_id=person,
        reason="Housing after discharge",
        status="draft",
        created_by_id=staff,
        created_at=created,
        status_changed_at=created,
    )
    db.session.add(item)
    db.session.flush()
    db.session.add(
        ReferralEvent(
            referral_id=item.id,
            from_status=None,
            to_status="draft",
            actor_id=staff,
            occurred_at=created,
        )
    )
    db.session.flush()
    for status, when in steps:
        if status == "sent":
            db.session.add(
                Disclosure(
                    patient_id=patient,
                    referral_id=item.id,
                    resource_id=resource,
                    support_person_id=person,
                    recipient_name="Recipient",
                    description="That the patient is in treatment",
                    purpose="aftercare_referral",
                    consent_id=consent_id,
                    disclosed_by_id=staff,
                    disclosed_at=when,
                    disclosed_on=when.astimezone(CHICAGO).date(),
                )
            )
            db.session.flush()
        db.session.add(
            ReferralEvent(
                referral_id=item.id,
                from_status=item.status,
                to_status=status,
                actor_id=staff,
                occurred_at=when,
            )
        )
        db.session.flush()
        item.status = status
        item.status_changed_at = when
        db.session.flush()
    return item.id


def filters(site_ids, period=QUARTER, **kwargs) -> ReportFilters:
    values = {
        "site_ids": tuple(site_ids),
        "program_id": None,
        "medications": None,
        "date_from": period[0],
        "date_to": period[1],
        "on": period[1],
        "today": D(2026, 4, 15),
        "single_site": len(site_ids) == 1,
    }
    values.update(kwargs)
    return ReportFilters(**values)


def table(result, key):
    return next(t for t in result.tables if t.key == key)


def outcome(row):
    return (
        row["referrals"],
        *(row[s] for s in STATUSES),
        row["placed_share"],
        row["median_days"],
    )


def enroll(patient, program, admitted, discharged=None, reason=None, came=None):
    enrollment = Enrollment(
        patient_id=patient,
        program_id=program,
        admitted_on=admitted,
        asam_edition="3",
        asam_level="OTP",
        discharged_on=discharged,
        discharge_reason=reason,
        transferred_from_id=came,
    )
    db.session.add(enrollment)
    db.session.flush()
    return enrollment.id


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient, make_user):
    """MAIN (Chicago), Q1 2026. Referrals (days sent → placed):

    - Harbor House (recovery residence): A 10.0, B 3.5 (via the waitlist), C 20.0 — placed.
    - Abstinence Lodge (halfway house): A declined, B draft.
    - A's sister (support network): placed in 2.5 days.
    - Tuesday NA (support group): B sent then closed.
    - Outpatient clinic: C's draft created at 23:30 on 03-31 (04-01 in UTC): in Q1.
    - Not counted: A's draft at 23:30 on 2025-12-31 (2026-01-01 in UTC); D's (entered in
      error); E's (EAST).

    Consents on 03-31: A's directory consent and A's support-network consent (revoked on
    04-10, after the day); B's directory consent (B's TPO consent revoked on 03-15); F's
    end-of-treatment consent (F transferred on 03-10: not an end). Not active: C's
    (expired 03-30) and C's end-of-treatment one (discharged 02-28); G's (signed 04-05);
    D's and E's."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    staff = make_user("staff", site_ids=[site, east])
    people = {
        n: make_patient(n, "Referred", intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1))
        for n in "ABCDFG"
    }
    people["E"] = make_patient(
        "E", "East", site_id=east, intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        resources = {}
        for name, kind, extra in (
            ("Harbor House", "recovery_residence", {}),
            ("Abstinence Lodge", "halfway_house", {}),
            ("Tuesday NA", "support_group", {"support_group_type": "na"}),
            ("Outpatient clinic", "outpatient_care", {}),
        ):
            resource = AftercareResource(name=name, kind=kind, gender_served="all", **extra)
            db.session.add(resource)
            db.session.flush()
            resources[kind] = resource.id
        sister = SupportPerson(
            patient_id=people["A"],
            name="Rita Sister",
            relationship_kind="family",
            created_by_id=staff,
        )
        db.session.add(sister)
        db.session.flush()
        for name in "ABDG":
            enroll(people[name], otp, D(2025, 11, 1))
        enroll(people["C"], otp, D(2025, 11, 1), D(2026, 2, 28), 1)
        f_otp = enroll(people["F"], otp, D(2025, 11, 1), D(2026, 3, 10), 4)
        enroll(people["F"], iop, D(2026, 3, 10), came=f_otp)
        enroll(people["E"], east_otp, D(2025, 11, 1))
        c = {
            "A": consent(people["A"], staff, otp),
            "A2": consent(
                people["A"],
                staff,
                otp,
                recipient_class="support_network",
                revoked_on=D(2026, 4, 10),
            ),
            "B": consent(people["B"], staff, otp),
            "C": consent(people["C"], staff, otp, expires_on=D(2026, 3, 30)),
            "D": consent(people["D"], staff, otp),
            "E": consent(people["E"], staff, east_otp),
        }
        consent(
            people["B"],
            staff,
            otp,
            kind="tpo",
            purpose="tpo",
            expiry_kind="none",
            expires_on=None,
            redisclosure_statement="42 CFR part 2 prohibits redisclosure.",
            revoked_on=D(2026, 3, 15),
        )
        event = {"expiry_kind": "event", "expires_on": None, "expiry_event": "End of treatment"}
        consent(people["C"], staff, otp, kind="counseling_notes", purpose="other", **event)
        consent(people["F"], staff, otp, purpose="care_coordination", **event)
        consent(people["G"], staff, otp, signed=D(2026, 4, 5))
        home, lodge = resources["recovery_residence"], resources["halfway_house"]
        referral(
            people["A"],
            staff,
            at(D(2026, 1, 5)),
            [
                ("sent", at(D(2026, 1, 6))),
                ("accepted", at(D(2026, 1, 8))),
                ("placed", at(D(2026, 1, 16))),
            ],
            resource=home,
            consent_id=c["A"],
        )
        referral(
            people["B"],
            staff,
            at(D(2026, 1, 10)),
            [
                ("sent", at(D(2026, 1, 10), 12)),
                ("waitlisted", at(D(2026, 1, 12))),
                ("placed", at(D(2026, 1, 14), 0)),
            ],
            resource=home,
            consent_id=c["B"],
        )
        referral(
            people["C"],
            staff,
            at(D(2026, 1, 20)),
            [
                ("sent", at(D(2026, 1, 20))),
                ("accepted", at(D(2026, 1, 21))),
                ("placed", at(D(2026, 2, 9))),
            ],
            resource=home,
            consent_id=c["C"],
        )
        referral(
            people["A"],
            staff,
            at(D(2026, 2, 1)),
            [("sent", at(D(2026, 2, 1), 11)), ("declined", at(D(2026, 2, 3)))],
            resource=lodge,
            consent_id=c["A"],
        )
        referral(people["B"], staff, at(D(2026, 2, 2)), resource=lodge)
        referral(
            people["A"],
            staff,
            at(D(2026, 3, 1), 8),
            [
                ("sent", at(D(2026, 3, 1), 8)),
                ("accepted", at(D(2026, 3, 2))),
                ("placed", at(D(2026, 3, 3), 20)),
            ],
            person=sister.id,
            consent_id=c["A2"],
        )
        referral(
            people["B"],
            staff,
            at(D(2026, 3, 5)),
            [("sent", at(D(2026, 3, 5), 11)), ("closed", at(D(2026, 3, 20)))],
            resource=resources["support_group"],
            consent_id=c["B"],
        )
        referral(
            people["C"], staff, at(D(2026, 3, 31), 23, 30), resource=resources["outpatient_care"]
        )
        referral(people["A"], staff, at(D(2025, 12, 31), 23, 30), resource=home)
        referral(people["D"], staff, at(D(2026, 1, 15)), resource=home)
        referral(people["E"], staff, at(D(2026, 1, 15)), resource=home)
        error = db.session.get(Patient, people["D"])
        error.entered_in_error_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "registered twice"
        db.session.commit()
    return {"main": site, "east": east, "otp": otp, "staff": staff, "people": people, "home": home}


def test_referrals_by_kind_and_outcome(app, clinic):
    with app.app_context():
        result = referrals.compute(filters([clinic["main"]]))
    by_kind = table(result, "by_kind")
    #                                      referrals, draft .. closed, placed %, median
    assert [(r["kind"], *outcome(r)) for r in by_kind.rows] == [
        ("Halfway house", 2, 1, 0, 0, 0, 1, 0, 0, 0.0, None),
        ("Sober living / recovery residence", 3, 0, 0, 0, 0, 0, 3, 0, 100.0, 10.0),
        ("Support group", 1, 0, 0, 0, 0, 0, 0, 1, 0.0, None),
        ("Continuing outpatient care", 1, 1, 0, 0, 0, 0, 0, 0, 0.0, None),
        ("Support network", 1, 0, 0, 0, 0, 0, 1, 0, 100.0, 2.5),
    ]
    # The median of 2.5, 3.5, 10 and 20 days: (3.5 + 10) / 2.
    assert outcome(by_kind.total) == (8, 2, 0, 0, 0, 1, 4, 1, 50.0, 6.8)
    assert result.chart.categories == [r["kind"] for r in by_kind.rows]
    series = dict(result.chart.series)
    assert series["Placed"] == [0, 3, 0, 0, 1]
    assert series["Draft"] == [1, 0, 0, 1, 0]
    assert list(series) == ["Draft", "Declined", "Placed", "Closed"]  # those that occur


def test_consents_on_file_at_the_end_of_the_period(app, clinic):
    with app.app_context():
        result = referrals.compute(filters([clinic["main"]]))
    consents = table(result, "consents")
    assert [(r["kind"], r["purpose"], r["consents"], r["patients"]) for r in consents.rows] == [
        ("Specific disclosure", "Aftercare referral and placement", 3, 2),
        ("Specific disclosure", "Care coordination", 1, 1),
    ]
    assert (consents.total["consents"], consents.total["patients"]) == (4, 3)
    assert "2026-03-31" in consents.title


def test_consents_on_another_day(app, clinic):
    """On 03-14 B's TPO consent is not yet revoked; on 04-12 (today, the period running
    on) A's support-network consent is revoked and G's is signed."""
    with app.app_context():
        march = referrals.compute(filters([clinic["main"]], period=(D(2026, 3, 1), D(2026, 3, 14))))
        april = referrals.compute(
            filters([clinic["main"]], period=(D(2026, 4, 1), D(2026, 4, 30)), today=D(2026, 4, 12))
        )
    assert {(r["kind"], r["purpose"]): r["consents"] for r in table(march, "consents").rows} == {
        ("Specific disclosure", "Aftercare referral and placement"): 4,  # C's expires 03-30
        ("Specific disclosure", "Care coordination"): 1,
        (
            "Treatment, payment and health care operations (TPO)",
            "Treatment, payment and health care operations",
        ): 1,
    }
    assert table(march, "consents").total["patients"] == 4
    assert {(r["kind"], r["purpose"]): r["consents"] for r in table(april, "consents").rows} == {
        ("Specific disclosure", "Aftercare referral and placement"): 3,  # A, B, G
        ("Specific disclosure", "Care coordination"): 1,
    }
    assert table(april, "by_kind").rows == []
    assert "2026-04-12" in table(april, "consents").title


def test_another_site_counts_only_when_chosen(app, clinic):
    with app.app_context():
        east = referrals.compute(filters([clinic["east"]]))
        both = referrals.compute(filters([clinic["main"], clinic["east"]]))
    assert [(r["kind"], r["referrals"]) for r in table(east, "by_kind").rows] == [
        ("Sober living / recovery residence", 1)
    ]
    assert table(east, "consents").total["consents"] == 1
    assert table(both, "by_kind").total["referrals"] == 9
    assert table(both, "consents").total["patients"] == 4


def test_an_empty_period_shows_the_empty_states(app, clinic):
    with app.app_context():
        result = referrals.compute(
            filters([clinic["main"]], period=(D(2025, 1, 1), D(2025, 3, 31)))
        )
    assert table(result, "by_kind").rows == []
    assert table(result, "by_kind").total is None
    assert table(result, "consents").rows == []
    assert result.chart.categories == []


def test_the_statement_count_does_not_grow_with_the_data(app, clinic, make_patient):
    def statements() -> int:
        return statement_count(lambda: referrals.compute(filters([clinic["main"], clinic["east"]])))

    with app.app_context():
        small = statements()
    more = [
        make_patient(f"P{i:02d}", "Many", intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1))
        for i in range(30)
    ]
    with app.app_context():
        for index, patient in enumerate(more):
            enroll(patient, clinic["otp"], D(2025, 11, 1))
            consent_id = consent(patient, clinic["staff"], clinic["otp"])
            day = D(2026, 1, 1 + index)
            referral(
                patient,
                clinic["staff"],
                at(day),
                [("sent", at(day, 11)), ("accepted", at(day, 12)), ("placed", at(day, 22))],
                resource=clinic["home"],
                consent_id=consent_id,
            )
        db.session.commit()
        large = statements()
        result = referrals.compute(filters([clinic["main"]]))
    assert large == small == 6
    assert table(result, "by_kind").total["referrals"] == 38


# --- pages ---------------------------------------------------------------------------------


def _csv(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_the_administrator_sees_the_report_with_its_chart(app, clinic, client_as):
    admin = client_as("admin")
    page = admin.get(f"/reports/referrals?{PERIOD}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert "Stacked bar chart: Referrals by kind and outcome. Draft: Halfway house 1" in html
    assert 'data-testid="report-table-by_kind"' in html
    assert 'data-testid="report-table-consents"' in html
    printed = admin.get(f"/reports/referrals/print?{PERIOD}")
    assert printed.status_code == 200
    assert "data-print" in printed.get_data(as_text=True)


def test_csv_downloads_and_small_cell_suppression(app, clinic, client_as):
    admin = client_as("admin")
    rows = _csv(admin.get(f"/reports/referrals/export.csv?table=by_kind&{PERIOD}"))
    assert rows[0] == [
        "Resource kind",
        "Referrals",
        "Draft",
        "Sent",
        "Accepted",
        "Waitlisted",
        "Declined",
        "Placed",
        "Closed",
        "Share placed",
        "Median days sent → placed",
    ]
    assert rows[2] == [
        "Sober living / recovery residence",
        "3",
        "0",
        "0",
        "0",
        "0",
        "0",
        "3",
        "0",
        "100.0",
        "10.0",
    ]
    assert rows[-1] == ["All referrals", "8", "2", "0", "0", "0", "1", "4", "1", "50.0", "6.8"]
    consents = _csv(admin.get(f"/reports/referrals/export.csv?table=consents&{PERIOD}"))
    assert consents[0] == ["Consent kind", "Purpose", "Active consents", "Patients"]
    assert consents[-1] == ["All consents", "", "4", "3"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = _csv(admin.get(f"/reports/referrals/export.csv?table=by_kind&{PERIOD}"))
    s = SMALL_CELL_TEXT
    # Over 4 (or fewer) placed referrals, the median is suppressed with the count.
    assert rows[-1] == ["All referrals", s, s, "0", "0", "0", s, s, s, s, s]


def test_a_median_over_one_placed_referral_is_suppressed_with_it(app, clinic, client_as):
    """A's sister: the one support-network referral, placed in 2.5 days. "Placed" is "<11";
    the median over it is that referral's own days, so it is "<11" too."""
    admin = client_as("admin")
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = _csv(admin.get(f"/reports/referrals/export.csv?table=by_kind&{PERIOD}"))
    network = dict(zip(rows[0], next(r for r in rows if r[0] == "Support network"), strict=True))
    assert network["Placed"] == SMALL_CELL_TEXT
    assert network["Median days sent → placed"] == SMALL_CELL_TEXT
    app.config["SUPPRESS_SMALL_CELLS"] = False
    rows = _csv(admin.get(f"/reports/referrals/export.csv?table=by_kind&{PERIOD}"))
    network = dict(zip(rows[0], next(r for r in rows if r[0] == "Support network"), strict=True))
    assert network["Median days sent → placed"] == "2.5"


def test_bad_filters_are_refused_next_to_the_field(app, clinic, client_as):
    admin = client_as("admin")
    response = admin.get("/reports/referrals?date_from=2026-03-31&date_to=2026-01-01")
    assert response.status_code == 400
    assert REVERSED_MESSAGE in response.get_data(as_text=True)
    assert admin.get("/reports/referrals/export.csv?date_to=2026-02-30").status_code == 400


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_it(client_as, role):
    assert client_as(role).get("/reports/referrals").status_code == 403

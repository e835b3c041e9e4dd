"""The patient access report as a clinic hands it to the patient (45 CFR 164.528,
42 CFR 2.24): who (full name and role), when in the site's time, what in plain words,
and the reason given for emergency access; printable, with no ids, hashes, IPs or JSON."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.display import describe, moment, role_label
from clinic.audit.forms import DATE_FORMAT, REVERSED_RANGE_MESSAGE
from clinic.audit.models import AuditEvent, BreakGlassGrant
from clinic.extensions import db
from clinic.patients.common import format_day
from clinic.patients.models import Patient

REASON = "Arrived unconscious at the EAST emergency room"


@contextmanager
def count_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def report_url(patient_id, **query) -> str:
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/admin/audit/patients/{patient_id}" + (f"?{tail}" if tail else "")


def act(app, user_id, action, patient_id, *, entity_type="patient", **details) -> None:
    with app.app_context():
        patient = db.session.get(Patient, patient_id)
        record(
            action,
            actor=db.session.get(User, user_id),
            entity_type=entity_type,
            entity_id=patient_id,
            patient_id=patient_id,
            site_id=patient.site_id,
            details=details,
        )
        db.session.commit()


@pytest.fixture
def world(app, site, make_site, make_user, make_patient):
    east = make_site("EAST", "Eastside Recovery Center", timezone="America/New_York")
    return {
        "east": east,
        "patient": make_patient("Ana", "Torres"),
        "nurse": make_user("clinician", username="mkeller", full_name="Maria Keller"),
        "desk": make_user("staff", username="jfront", full_name="Jamie Front"),
        "visitor": make_user(
            "clinician", username="erivera", full_name="Eli Rivera", site_ids=[east]
        ),
    }


def rows_of(page: str) -> list[list[str]]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_report_says_who_when_what_and_why_in_plain_words(app, client_as, world):
    p = world["patient"]
    act(app, world["desk"], AuditAction.UPDATE, p, fields=["phone"])
    act(app, world["nurse"], AuditAction.VIEW, p, page="patients.chart", break_glass=False)
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        db.session.add(
            BreakGlassGrant(
                user_id=world["visitor"],
                patient_id=p,
                reason=REASON,
                granted_at=now - dt.timedelta(minutes=1),
                expires_at=now + dt.timedelta(minutes=59),
            )
        )
        db.session.commit()
    act(app, world["visitor"], AuditAction.VIEW, p, page="patients.chart", break_glass=True)
    admin = client_as("admin", full_name="Pat Admin")
    response = admin.get(report_url(p))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    rows = rows_of(page)
    assert [row[1:] for row in rows[:3]] == [
        ["Eli Rivera", "Clinician", "Viewed the chart (emergency access)", REASON],
        ["Maria Keller", "Clinician", "Viewed the chart", ""],
        ["Jamie Front", "Staff", "Changed demographics", ""],
    ]
    # Times in the site's own zone (Chicago: CST in winter, CDT in summer).
    assert re.fullmatch(r"\d\d \w{3} \d{4} \d\d:\d\d C[SD]T", rows[0][0])
    assert "Main Street Clinic" in page and "Torres, Ana" in page and "data-print" in page
    # Nothing a patient cannot read: no usernames, ids, hashes, addresses or JSON.
    for raw in ("mkeller", "jfront", "erivera", "127.0.0.1", "{", "patients.chart", "break_glass"):
        assert raw not in page.split("<main", 1)[1], raw


def test_the_report_leaves_out_refused_attempts(app, client_as, world):
    p = world["patient"]
    with app.app_context():
        record(
            AuditAction.ACCESS_DENIED,
            actor=db.session.get(User, world["visitor"]),
            entity_type="patient",
            entity_id=p,
            patient_id=p,
            outcome="denied",
        )
        db.session.commit()
    page = client_as("admin").get(report_url(p)).get_data(as_text=True)
    assert "Eli Rivera" not in page


def test_the_report_lists_its_own_earlier_viewing(client_as, world):
    admin = client_as("admin", full_name="Pat Admin")
    admin.get(report_url(world["patient"]))
    page = admin.get(report_url(world["patient"])).get_data(as_text=True)
    assert ["Pat Admin", "Administrator", "Viewed this access report", ""] in [
        row[1:] for row in rows_of(page)
    ]


def test_the_period_is_in_site_days_both_included(app, client_as, world):
    p = world["patient"]
    act(app, world["nurse"], AuditAction.VIEW, p, page="patients.chart")
    admin = client_as("admin")
    with app.app_context():
        occurred = db.session.scalar(
            sa.select(AuditEvent.occurred_at).where(AuditEvent.user_id == world["nurse"])
        )
    day = occurred.astimezone(ZoneInfo("America/Chicago")).date()
    for start, end, shown in [
        (day, day, True),
        (day - dt.timedelta(days=1), day - dt.timedelta(days=1), False),
        (day + dt.timedelta(days=1), day + dt.timedelta(days=1), False),
    ]:
        page = admin.get(report_url(p, date_from=start, date_to=end)).get_data(as_text=True)
        assert ("Maria Keller" in page) is shown, (start, end)
        # The page's day format ("1 Dec 2026", never "01 Dec"): failed on 30 Nov, when the
        # day after was the 1st.
        assert "Period:" in page and format_day(start) in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"date_from": "2026-02-02", "date_to": "2026-02-01"}, REVERSED_RANGE_MESSAGE),
        ({"date_from": "02/30/2026"}, DATE_FORMAT),
        ({"date_to": "3000-01-01"}, "Enter a date from 2000-01-01 to 2999-12-31."),
    ],
)
def test_an_invalid_period_says_why_and_lists_nothing(app, client_as, world, query, message):
    act(app, world["nurse"], AuditAction.VIEW, world["patient"], page="patients.chart")
    response = client_as("admin").get(report_url(world["patient"], **query))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page and "Maria Keller" not in page
    assert 'value="' + next(iter(query.values())) + '"' in page  # the input is kept


def test_the_report_takes_the_same_statements_for_few_or_many_accesses(
    app, client_as, make_user, world
):
    p = world["patient"]
    admin = client_as("admin")
    act(app, world["nurse"], AuditAction.VIEW, p, page="patients.chart")
    admin.get(report_url(p))  # warm up
    with count_statements(app) as few:
        assert admin.get(report_url(p)).status_code == 200
    for i in range(6):
        user = make_user("clinician", full_name=f"Clinician {i}")
        act(app, user, AuditAction.VIEW, p, page="patients.chart")
    with count_statements(app) as many:
        page = admin.get(report_url(p)).get_data(as_text=True)
    assert "Clinician 5" in page
    assert len(many) == len(few)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_the_report(client_as, world, role):
    assert client_as(role).get(report_url(world["patient"])).status_code == 403


def test_a_site_administrator_reads_reports_of_their_sites_patients_only(
    app, client_as, make_patient, world
):
    east_patient = make_patient("Ed", "Ng", site_id=world["east"])
    admin = client_as("admin")  # MAIN only
    assert admin.get(report_url(world["patient"])).status_code == 200
    assert admin.get(report_url(east_patient)).status_code == 404
    with app.app_context():
        denied = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == AuditAction.ACCESS_DENIED)
        ).all()
        assert [(e.entity_type, e.patient_id) for e in denied] == [("patient", east_patient)]


# --- plain words ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "entity_type", "details", "words"),
    [
        ("view", "patient", {"page": "patients.chart"}, "Viewed the chart"),
        ("view", "patient", {"page": "patients.edit"}, "Opened the demographics form"),
        ("view", "patient", {"page": "patients.unknown"}, "Viewed the record"),
        ("view", "enrollment", {}, "Viewed a program enrollment"),
        ("create", "patient", {}, "Registered the patient"),
        ("update", "patient", {"fields": ["phone"]}, "Changed demographics"),
        (
            "update",
            "patient",
            {"fields": ["entered_in_error"]},
            "Marked the record as entered in error",
        ),
        ("create", "enrollment", {"transfer": False}, "Admitted to a program"),
        ("create", "enrollment", {"transfer": True}, "Transferred to another program"),
        ("update", "enrollment", {"fields": ["discharged_on"]}, "Discharged from a program"),
        ("update", "enrollment", {"fields": ["care_plan_on"]}, "Recorded program milestones"),
        ("update", "enrollment", {"fields": ["asam_level"]}, "Changed a program enrollment"),
        ("break_glass", "break_glass_grant", {}, "Used emergency access to open the record"),
        ("acknowledge", "break_glass_grant", {}, "Reviewed an emergency access to the record"),
        (
            "view",
            "patient",
            {"page": "patients.chart", "break_glass": True},
            "Viewed the chart (emergency access)",
        ),
        ("disclose", "something_new", {}, "Disclosed the record"),
        ("brand_new_action", "something_new", {}, "Accessed the record"),
    ],
)
def test_each_kind_of_access_reads_as_a_sentence(action, entity_type, details, words):
    assert describe(action, entity_type, details) == words


@pytest.mark.parametrize(
    ("role", "label"), [("admin", "Administrator"), ("staff", "Staff"), (None, "Unknown role")]
)
def test_roles_read_as_words(role, label):
    assert role_label(role) == label


def test_a_moment_reads_in_the_site_zone_beside_utc():
    at = dt.datetime(2026, 7, 1, 2, 5, tzinfo=dt.UTC)
    shown = moment(at, "America/Chicago")
    assert (shown.local, shown.utc) == ("30 Jun 2026 21:05 CDT", "2026-07-01 02:05 UTC")
    assert moment(at, None).local is None

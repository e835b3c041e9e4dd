"""Rules that fit the program: 42 CFR 8.12 deadlines and take-home caps belong to opioid
treatment programs (OTP) only; deadline wording people read ("overdue since 26 Jan 2026
(307 days)", "due today"), and milestones recorded after their deadline marked late."""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients import milestones, program_settings
from clinic.patients.common import format_day
from clinic.patients.forms import TAKE_HOME_CAPS_NOT_OTP_MESSAGE
from clinic.patients.milestones import deadline_wording
from clinic.patients.models import Enrollment, Program
from tests.test_patients_registry import field_error, send

CHICAGO = ZoneInfo("America/Chicago")
SETUP = {"id": None, "username": "setup", "all_sites": True}
D = dt.date
CAPS = ("take_home_cap_days_0_14", "take_home_cap_days_15_30", "take_home_cap_days_31_plus")


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def days_ago(n: int) -> dt.date:
    return today() - dt.timedelta(days=n)


# --- wording, at the exact edges -------------------------------------------------------------

DUE = D(2026, 1, 26)


@pytest.mark.parametrize(
    ("today_", "done_on", "expected"),
    [
        (D(2026, 1, 24), None, "due in 2 days (26 Jan 2026)"),
        (D(2026, 1, 25), None, "due tomorrow (26 Jan 2026)"),
        (D(2026, 1, 26), None, "due today"),
        (D(2026, 1, 27), None, "overdue since 26 Jan 2026 (1 day)"),
        (D(2026, 1, 28), None, "overdue since 26 Jan 2026 (2 days)"),
        (D(2026, 11, 29), None, "overdue since 26 Jan 2026 (307 days)"),
        (D(2026, 11, 29), D(2026, 1, 25), "done 25 Jan 2026"),
        (D(2026, 11, 29), D(2026, 1, 26), "done 26 Jan 2026"),
        (D(2026, 11, 29), D(2026, 1, 27), "done 27 Jan 2026, late (due 26 Jan 2026)"),
    ],
)
def test_deadline_wording(today_, done_on, expected):
    assert deadline_wording(DUE, today_, done_on) == expected


def test_dates_read_the_same_in_every_month():
    assert [format_day(D(2026, m, 1)) for m in (1, 6, 12)] == [
        "1 Jan 2026",
        "1 Jun 2026",
        "1 Dec 2026",
    ]


def _enrollment(kind: str, admitted_on: dt.date, **done) -> Enrollment:
    from clinic.patients.models import ProgramKind

    return Enrollment(
        admitted_on=admitted_on,
        program=Program(care_plan_review_days=90, kind=ProgramKind(kind)),
        reviews=[],
        **done,
    )


@pytest.mark.parametrize(
    ("done_on", "late"), [(D(2026, 1, 18), False), (D(2026, 1, 19), False), (D(2026, 1, 20), True)]
)
def test_a_milestone_recorded_after_its_deadline_is_late(done_on, late):
    items = milestones.deadlines(
        _enrollment("methadone_otp", D(2026, 1, 5), medical_exam_on=done_on), D(2026, 3, 1)
    )
    [exam] = [d for d in items if d.name == "Medical examination"]
    assert exam.due_on == D(2026, 1, 19)
    assert exam.status == "done"
    assert exam.late is late
    assert ("late (due 19 Jan 2026)" in exam.wording) is late


# --- deadlines by kind -----------------------------------------------------------------------

NOT_OTP = ["office_buprenorphine", "xr_naltrexone", "intensive_outpatient", "outpatient"]


@pytest.mark.parametrize("kind", NOT_OTP)
def test_programs_other_than_otp_have_no_8_12_deadlines(kind):
    items = milestones.deadlines(_enrollment(kind, D(2026, 1, 5)), D(2026, 11, 29))
    assert items == []
    # Their care-plan reviews still follow the program's interval.
    items = milestones.deadlines(
        _enrollment(kind, D(2026, 1, 5), care_plan_on=D(2026, 2, 1)), D(2026, 3, 1)
    )
    assert [(d.name, d.due_on) for d in items] == [("Care-plan review", D(2026, 5, 2))]


def test_an_otp_has_the_8_12_deadlines():
    items = milestones.deadlines(_enrollment("methadone_otp", D(2026, 1, 5)), D(2026, 1, 5))
    assert [(d.name, d.due_on) for d in items] == [
        ("Medical examination", D(2026, 1, 19)),
        ("Psychosocial assessment", D(2026, 1, 19)),
        ("Initial care plan", D(2026, 1, 19)),
    ]


def test_office_buprenorphine_patient_is_not_overdue_for_the_8_12_examination(
    client_as, make_patient, make_program, make_enrollment
):
    bup = make_program("Office-based buprenorphine", "office_buprenorphine")
    otp = make_program("Methadone maintenance")
    bup_patient = make_patient("Ana", "Torres")
    otp_patient = make_patient("Jo", "Smith")
    make_enrollment(bup_patient, bup, admitted_on=days_ago(30))
    make_enrollment(otp_patient, otp, admitted_on=days_ago(30))
    clinician = client_as("clinician")

    chart = clinician.get(f"/patients/{bup_patient}").get_data(as_text=True)
    assert 'data-testid="alerts"' not in chart
    assert "Medical examination" not in chart
    assert "No deadlines for this kind of program" in chart

    chart = clinician.get(f"/patients/{otp_patient}").get_data(as_text=True)
    alert = chart.split('data-testid="alerts"', 1)[1].split("</div>", 1)[0]
    due = format_day(days_ago(16))
    assert f"Medical examination (Methadone maintenance, overdue since {due} (16 days))" in alert

    worklist = clinician.get("/patients/deadlines").get_data(as_text=True)
    assert "Smith, Jo" in worklist
    assert "Torres, Ana" not in worklist
    # The status word is a badge, the rest follows it: the sentence reads once.
    assert f"overdue since {due} (16 days)" in re.sub(r"<[^>]+>", "", worklist)
    assert "overdue</span> overdue" not in worklist


def test_the_deadlines_page_of_a_program_other_than_otp_says_why_none(
    client_as, make_patient, make_program, make_enrollment
):
    enrollment = make_enrollment(
        make_patient(), make_program("Naltrexone", "xr_naltrexone"), admitted_on=days_ago(30)
    )
    html = client_as("clinician").get(f"/patients/enrollments/{enrollment}/deadlines")
    text = html.get_data(as_text=True)
    assert 'data-testid="not-otp"' in text
    assert "Extended-release naltrexone is not an opioid treatment program" in text
    assert '<th scope="col">Due</th>' not in text


# --- take-home caps: OTP only ----------------------------------------------------------------


def program_form(site_id: int, **overrides) -> dict:
    data = {
        "site_id": str(site_id),
        "name": "Naltrexone clinic",
        "kind": "xr_naltrexone",
        "active": "y",
        "care_plan_review_days": "90",
    }
    data.update(overrides)
    return data


def programs(app) -> list[Program]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Program).order_by(Program.id)))
        db.session.expunge_all()
        return found


@pytest.mark.parametrize("kind", NOT_OTP)
def test_a_program_other_than_otp_is_created_without_caps(app, client_as, site, kind):
    admin = client_as("admin")
    form = admin.get("/admin/programs/new").get_data(as_text=True)
    assert 'name="take_home_cap_days_0_14" type="number" value=""' in form  # no default
    assert send(admin, "/admin/programs/new", program_form(site, kind=kind)).status_code == 302
    [program] = programs(app)
    assert [getattr(program, c) for c in CAPS] == [None, None, None]
    listing = admin.get("/admin/programs/").get_data(as_text=True)
    assert "not applicable (not an OTP)" in listing
    edit = admin.get(f"/admin/programs/{program.id}/edit").get_data(as_text=True)
    assert 'data-testid="no-take-home-caps"' in edit
    assert 'name="take_home_cap_days_0_14"' not in edit


@pytest.mark.parametrize("cap", CAPS)
def test_caps_typed_for_naltrexone_are_refused_next_to_the_field(app, client_as, site, cap):
    admin = client_as("admin")
    response = send(admin, "/admin/programs/new", program_form(site, **{cap: "7"}))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert field_error(html, cap) == TAKE_HOME_CAPS_NOT_OTP_MESSAGE
    assert 'value="Naltrexone clinic"' in html  # the input is kept
    assert programs(app) == []


def test_an_otp_without_caps_typed_gets_the_federal_caps(app, client_as, site):
    admin = client_as("admin")
    form = program_form(
        site, name="Methadone", kind="methadone_otp", take_home_cap_days_31_plus="21"
    )
    assert send(admin, "/admin/programs/new", form).status_code == 302
    [program] = programs(app)
    assert [getattr(program, c) for c in CAPS] == [7, 14, 21]
    listing = admin.get("/admin/programs/").get_data(as_text=True)
    assert "7 / 14 / 21" in listing


def test_an_otp_changed_to_another_kind_loses_its_caps(app, client_as, site, make_program):
    program_id = make_program("Methadone maintenance")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    response = send(
        admin, url, program_form(site, name="Methadone maintenance", kind="office_buprenorphine")
    )
    assert response.status_code == 302
    [program] = programs(app)
    assert [getattr(program, c) for c in CAPS] == [None, None, None]


@pytest.mark.parametrize("role", ["clinician", "staff"])
def test_only_administrators_set_programs(app, client_as, site, role):
    client = client_as(role)
    # A valid CSRF token (from a page the user may open): the permission is what refuses.
    response = client.submit("/admin/programs/new", program_form(site), form_url="/patients/")
    assert response.status_code == 403
    assert programs(app) == []


def test_the_service_drops_caps_given_for_another_kind(app, site):
    from clinic.sites.models import Site

    with app.app_context():
        program = program_settings.create_program(
            actor=User(**SETUP),
            site=db.session.get(Site, site),
            settings=program_settings.ProgramSettings(
                name="IOP",
                kind="intensive_outpatient",
                active=True,
                care_plan_review_days=90,
                take_home_cap_days_0_14=7,
                take_home_cap_days_15_30=14,
                take_home_cap_days_31_plus=28,
            ),
        )
        assert [getattr(program, c) for c in CAPS] == [None, None, None]
        with pytest.raises(DomainError, match="Choose the kind") as error:
            program_settings.create_program(
                actor=User(**SETUP),
                site=db.session.get(Site, site),
                settings=program_settings.ProgramSettings(
                    name="X", kind="detox", active=True, care_plan_review_days=90
                ),
            )
        assert error.value.field == "kind"


@pytest.mark.parametrize(
    ("kind", "caps"),
    [
        ("xr_naltrexone", (7, 14, 28)),
        ("office_buprenorphine", (None, None, 1)),
        ("methadone_otp", (None, None, None)),
        ("methadone_otp", (7, 14, None)),
    ],
)
def test_the_database_keeps_caps_to_otps(app, site, kind, caps):
    with app.app_context(), pytest.raises(sa.exc.IntegrityError) as error:
        db.session.execute(
            sa.insert(Program.__table__).values(
                site_id=site, name="X", kind=kind, **dict(zip(CAPS, caps, strict=True))
            )
        )
    assert "take_home_caps_otp_only" in str(error.value)


def test_the_migration_drops_the_caps_of_existing_programs_other_than_otp(app, site):
    with app.app_context():
        downgrade(revision="e1f2a3b4c5d6")
        program = sa.table(
            "program",
            sa.column("site_id"),
            sa.column("name"),
            sa.column("kind"),
            sa.column("care_plan_review_days"),
        )
        with db.engine.begin() as conn:
            conn.execute(
                program.insert(),
                [
                    {"site_id": site, "name": n, "kind": k, "care_plan_review_days": 90}
                    for n, k in [("OTP", "methadone_otp"), ("Bup", "office_buprenorphine")]
                ],
            )
        upgrade()
        rows = {
            row.name: tuple(getattr(row, c) for c in CAPS)
            for row in db.session.execute(sa.select(Program.__table__))
        }
    assert rows == {"OTP": (7, 14, 28), "Bup": (None, None, None)}


def test_chart_milestone_recorded_late_shows_late(
    app, client_as, make_patient, make_program, make_enrollment
):
    patient = make_patient()
    enrollment_id = make_enrollment(patient, make_program(), admitted_on=days_ago(30))
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        milestones.record_milestones(
            enrollment,
            actor=User(**SETUP),
            values={"medical_exam_on": days_ago(10)},
            expected_version=enrollment.version,
        )
        db.session.commit()
    html = client_as("clinician").get(f"/patients/{patient}").get_data(as_text=True)
    due = format_day(days_ago(16))
    # "late" once, as a badge inside the sentence.
    assert re.search(
        rf"Medical examination: done {format_day(days_ago(10))}, "
        rf'<span class="badge text-bg-warning"[^>]*>late</span> \(due {due}\)</li>',
        html,
    )


# --- dose steps (issue 10) ---------------------------------------------------------------------
# A change of a patient's dose larger than the program's step needs a reason. The methadone
# step is an OTP's; the buprenorphine step an OTP's or an office-based practice's. Any other
# kind keeps the defaults (10 mg, 4 mg).

STEPS = ("methadone_step_mg", "buprenorphine_step_mg")
WHOLE_MG = "Use whole milligrams"


def steps_of(program: Program) -> tuple[int, int]:
    return (program.methadone_step_mg, program.buprenorphine_step_mg)


def otp_form(site_id: int, **overrides) -> dict:
    return program_form(site_id, name="Methadone", kind="methadone_otp", **overrides)


def program_updates(app, program_id: int) -> list[dict]:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return [
            json.loads(event.details) if isinstance(event.details, str) else event.details
            for event in db.session.scalars(
                sa.select(AuditEvent)
                .where(
                    AuditEvent.entity_type == "program",
                    AuditEvent.entity_id == str(program_id),
                    AuditEvent.action == "update",
                )
                .order_by(AuditEvent.id)
            )
        ]


def test_an_otp_is_created_with_its_dose_steps(app, client_as, site):
    admin = client_as("admin")
    page = admin.get("/admin/programs/new").get_data(as_text=True)
    assert 'name="methadone_step_mg"' in page and 'name="buprenorphine_step_mg"' in page
    form = otp_form(site, methadone_step_mg="15", buprenorphine_step_mg="6")
    assert send(admin, "/admin/programs/new", form).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (15, 6)
    listing = admin.get("/admin/programs/").get_data(as_text=True)
    assert "methadone 15 mg, buprenorphine 6 mg" in listing


def test_an_otp_without_steps_typed_gets_the_defaults(app, client_as, site):
    admin = client_as("admin")
    assert send(admin, "/admin/programs/new", otp_form(site)).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (10, 4)


@pytest.mark.parametrize(
    ("typed", "stored"), [("10.0", 10), (" 12 ", 12), ("20.000", 20), ("1", 1), ("100", 100)]
)
def test_a_step_is_read_as_an_exact_amount(app, client_as, site, typed, stored):
    admin = client_as("admin")
    response = send(admin, "/admin/programs/new", otp_form(site, methadone_step_mg=typed))
    assert response.status_code == 302
    [program] = programs(app)
    assert program.methadone_step_mg == stored


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("methadone_step_mg", "ten", "Enter the methadone step as a number of mg, e.g. 10."),
        ("methadone_step_mg", "10 mg", "Enter the methadone step as a number of mg, e.g. 10."),
        ("methadone_step_mg", "NaN", "Enter the methadone step as a number of mg, e.g. 10."),
        ("methadone_step_mg", "Infinity", "Enter the methadone step as a number of mg, e.g. 10."),
        ("methadone_step_mg", "0", "Use 1 to 100 mg."),
        ("methadone_step_mg", "-5", "Use 1 to 100 mg."),
        ("methadone_step_mg", "100.5", "Use 1 to 100 mg."),
        ("methadone_step_mg", "1e9", "Use 1 to 100 mg."),
        ("methadone_step_mg", "7.5", "Use whole milligrams (1 to 100 mg), e.g. 10."),
        ("buprenorphine_step_mg", "33", "Use 1 to 32 mg."),
        ("buprenorphine_step_mg", "0.5", "Use 1 to 32 mg."),
        ("buprenorphine_step_mg", "2.5", "Use whole milligrams (1 to 32 mg), e.g. 4."),
        (
            "buprenorphine_step_mg",
            "four",
            "Enter the buprenorphine step as a number of mg, e.g. 4.",
        ),
    ],
)
def test_a_step_out_of_range_or_not_a_number_is_refused_next_to_the_field(
    app, client_as, site, field, typed, message
):
    admin = client_as("admin")
    response = send(admin, "/admin/programs/new", otp_form(site, **{field: typed}))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert field_error(html, field) == message
    assert 'value="Methadone"' in html  # the other input is kept
    assert programs(app) == []


def test_a_step_is_refused_on_the_edit_page_too_and_nothing_is_saved(
    app, client_as, site, make_program
):
    program_id = make_program("Methadone")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    response = send(
        admin, url, otp_form(site, care_plan_review_days="60", buprenorphine_step_mg="40")
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert field_error(html, "buprenorphine_step_mg") == "Use 1 to 32 mg."
    [program] = programs(app)
    assert (program.care_plan_review_days, *steps_of(program)) == (90, 10, 4)
    assert program_updates(app, program_id) == []


def test_the_service_refuses_a_step_the_database_would(app, site):
    from clinic.sites.models import Site

    with app.app_context():
        for field, value in [("methadone_step_mg", 101), ("buprenorphine_step_mg", "2.5")]:
            with pytest.raises(DomainError) as error:
                program_settings.create_program(
                    actor=User(**SETUP),
                    site=db.session.get(Site, site),
                    settings=program_settings.ProgramSettings(
                        name="Methadone",
                        kind="methadone_otp",
                        active=True,
                        care_plan_review_days=90,
                        **{field: value},
                    ),
                )
            assert error.value.field == field
        from decimal import Decimal

        program = program_settings.create_program(
            actor=User(**SETUP),
            site=db.session.get(Site, site),
            settings=program_settings.ProgramSettings(
                name="Methadone",
                kind="methadone_otp",
                active=True,
                care_plan_review_days=90,
                methadone_step_mg=Decimal("20.00"),
                buprenorphine_step_mg=8,
            ),
        )
        assert steps_of(program) == (20, 8)


def test_editing_the_steps_of_an_otp_is_saved_and_audited(app, client_as, site, make_program):
    program_id = make_program("Methadone")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    page = admin.get(url).get_data(as_text=True)
    assert 'name="methadone_step_mg" type="text" value="10"' in page
    assert 'name="buprenorphine_step_mg" type="text" value="4"' in page
    form = otp_form(site, methadone_step_mg="5", buprenorphine_step_mg="4", **dict.fromkeys(CAPS))
    assert send(admin, url, form).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (5, 4)
    [event] = program_updates(app, program_id)
    assert event == {"fields": ["methadone_step_mg"]}  # names only, as for every field


def test_office_buprenorphine_sets_only_the_buprenorphine_step(app, client_as, site, make_program):
    program_id = make_program("Suboxone clinic", kind="office_buprenorphine", **dict.fromkeys(CAPS))
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    page = admin.get(url).get_data(as_text=True)
    assert 'name="buprenorphine_step_mg"' in page
    assert 'name="methadone_step_mg"' not in page
    form = program_form(
        site, name="Suboxone clinic", kind="office_buprenorphine", buprenorphine_step_mg="2"
    )
    assert send(admin, url, form).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (10, 2)
    listing = admin.get("/admin/programs/").get_data(as_text=True)
    assert "buprenorphine 2 mg" in listing and "methadone 10 mg" not in listing


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("office_buprenorphine", "methadone_step_mg"),
        ("xr_naltrexone", "methadone_step_mg"),
        ("xr_naltrexone", "buprenorphine_step_mg"),
        ("outpatient", "buprenorphine_step_mg"),
    ],
)
def test_a_step_typed_for_a_kind_it_does_not_apply_to_is_refused(app, client_as, site, kind, field):
    from clinic.patients.forms import DOSE_STEP_NOT_APPLICABLE_MESSAGES

    admin = client_as("admin")
    response = send(admin, "/admin/programs/new", program_form(site, kind=kind, **{field: "8"}))
    assert response.status_code == 200
    assert (
        field_error(response.get_data(as_text=True), field)
        == (DOSE_STEP_NOT_APPLICABLE_MESSAGES[field])
    )
    assert programs(app) == []


@pytest.mark.parametrize("kind", ["xr_naltrexone", "intensive_outpatient", "outpatient"])
def test_a_program_ordering_neither_keeps_the_default_steps(app, client_as, site, kind):
    admin = client_as("admin")
    assert send(admin, "/admin/programs/new", program_form(site, kind=kind)).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (10, 4)
    edit = admin.get(f"/admin/programs/{program.id}/edit").get_data(as_text=True)
    assert 'data-testid="no-dose-steps"' in edit
    assert not any(f'name="{step}"' in edit for step in STEPS)
    listing = admin.get("/admin/programs/").get_data(as_text=True)
    assert "methadone 10 mg" not in listing and "buprenorphine 4 mg" not in listing


def test_an_otp_changed_to_another_kind_goes_back_to_the_default_steps(
    app, client_as, site, make_program
):
    program_id = make_program("Methadone", methadone_step_mg=20, buprenorphine_step_mg=2)
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    form = program_form(site, name="Methadone", kind="outpatient")
    assert send(admin, url, form).status_code == 302
    [program] = programs(app)
    assert steps_of(program) == (10, 4)
    [event] = program_updates(app, program_id)
    assert set(STEPS) <= set(event["fields"])


def test_the_service_keeps_the_default_steps_for_other_kinds(app, site):
    from clinic.sites.models import Site

    with app.app_context():
        program = program_settings.create_program(
            actor=User(**SETUP),
            site=db.session.get(Site, site),
            settings=program_settings.ProgramSettings(
                name="IOP",
                kind="intensive_outpatient",
                active=True,
                care_plan_review_days=90,
                methadone_step_mg="50",
                buprenorphine_step_mg="abc",  # not read: the kind has no step
            ),
        )
        assert steps_of(program) == (10, 4)


@pytest.mark.parametrize("role", ["clinician", "staff"])
def test_only_administrators_set_dose_steps(app, client_as, site, make_program, role):
    program_id = make_program("Methadone")
    client = client_as(role)
    response = client.submit(
        f"/admin/programs/{program_id}/edit",
        otp_form(site, methadone_step_mg="50"),
        form_url="/patients/",
    )
    assert response.status_code == 403
    [program] = programs(app)
    assert steps_of(program) == (10, 4)


def test_the_step_set_by_the_administrator_is_the_one_orders_check(
    app, client_as, site, make_program, make_user, make_patient, make_enrollment
):
    from clinic.accounts.models import User as Account
    from clinic.medications import orders
    from clinic.medications.models import MedicationOrder

    program_id = make_program("Methadone")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    assert send(admin, url, otp_form(site, methadone_step_mg="20")).status_code == 302
    prescriber = make_user("clinician", is_prescriber=True, full_name="Dr Prescriber")
    start = dt.date(2026, 1, 5)
    enrollment_id = make_enrollment(make_patient(), program_id, admitted_on=start)

    def order(dose: str, on: dt.date, previous: int | None = None) -> int:
        data = orders.OrderInput(
            medication="methadone",
            product_form="oral_liquid",
            strength="10 mg/mL",
            dose_mg=dose,
            schedule="daily",
            start_on=on,
        )
        with app.test_request_context():
            actor = db.session.get(Account, prescriber)
            if previous is None:
                made = orders.start_order(
                    db.session.get(Enrollment, enrollment_id), actor=actor, data=data
                )
            else:
                made = orders.change_dose(
                    db.session.get(MedicationOrder, previous), actor=actor, data=data
                )
            db.session.commit()
            return made.id

    first = order("40", start)
    later = start + dt.timedelta(days=3)
    with pytest.raises(DomainError, match=r"larger than the program's step \(20 mg\)") as caught:
        order("60.5", later, first)  # 20.5 mg: beyond the program's 20
    assert caught.value.field == "reason"
    assert order("60", later, first)  # 20 mg: within it, no reason asked (the default: 10)


# --- the take-home review interval (issue 13) ---------------------------------------------


def test_the_take_home_review_interval_is_set_on_the_program_form(
    app, client_as, site, make_program
):
    program_id = make_program("Methadone")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    page = admin.get(url).get_data(as_text=True)
    assert 'name="take_home_review_days"' in page
    assert 'for="take_home_review_days"' in page  # labelled
    form = otp_form(site, take_home_review_days="30", **dict.fromkeys(CAPS))
    assert send(admin, url, form).status_code == 302
    [program] = programs(app)
    assert program.take_home_review_days == 30
    [event] = program_updates(app, program_id)
    assert event == {"fields": ["take_home_review_days"]}


@pytest.mark.parametrize("value", ["0", "366", "-1", "99999999999999999999"])
def test_a_take_home_review_interval_out_of_range_is_refused_at_the_field(
    app, client_as, site, make_program, value
):
    program_id = make_program("Methadone")
    admin = client_as("admin")
    url = f"/admin/programs/{program_id}/edit"
    form = otp_form(site, take_home_review_days=value, **dict.fromkeys(CAPS))
    form["name"] = "Kept name"
    response = send(admin, url, form)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "take_home_review_days" in page and "is-invalid" in page
    assert 'value="Kept name"' in page  # the other input is kept
    [program] = programs(app)
    assert program.take_home_review_days == 90 and program.name == "Methadone"


def test_an_empty_take_home_review_interval_means_90_days(app, site):
    from clinic.patients import program_settings
    from clinic.sites.models import Site

    with app.test_request_context():
        settings = program_settings.ProgramSettings(
            name="Methadone",
            kind="methadone_otp",
            active=True,
            care_plan_review_days=90,
            take_home_review_days=None,
        )
        program = program_settings.create_program(
            actor=User(**SETUP), site=db.session.get(Site, site), settings=settings
        )
        assert program.take_home_review_days == 90

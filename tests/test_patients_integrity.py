"""Records that must agree with each other (issue 8): names in any script, creates safe
against a double click and a race (backed by the database), date rules held from both
sides in the services and the database, entered in error enforced on every write, and
conflicts turned into the form's message in one place (clinic.web.save)."""

from __future__ import annotations

import datetime as dt
import html as html_text
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from clinic.accounts.models import User
from clinic.audit.models import AuditEvent, BreakGlassGrant
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.patients import (
    admissions,
    common,
    emergency,
    milestones,
    program_settings,
    registry,
    search,
)
from clinic.patients.forms import RELOAD_MESSAGE
from clinic.patients.models import (
    CarePlanReview,
    Enrollment,
    Patient,
    PatientNameToken,
    Program,
)
from clinic.patients.names import search_key
from clinic.submissions import FormSubmission
from clinic.web import CONFLICT_MESSAGE
from tests.conftest import ON_POSTGRES
from tests.test_patients_registry import hidden_fields, search_names, send

CHICAGO = ZoneInfo("America/Chicago")
SETUP = {"id": None, "username": "setup", "all_sites": True}
D = dt.date


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def days_ago(n: int) -> dt.date:
    return today() - dt.timedelta(days=n)


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return html_text.unescape(match.group(1)) if match else ""


def form_error(html: str) -> str:
    match = re.search(r'<div class="alert alert-danger" role="alert"[^>]*>([^<]*)</div>', html)
    return html_text.unescape(match.group(1)) if match else ""


def rows(app, model, **where) -> list:
    with app.app_context():
        query = sa.select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        found = list(db.session.scalars(query.order_by(*model.__table__.primary_key.columns)))
        db.session.expunge_all()
        return found


def registration(site_id: int, **overrides) -> dict:
    data = {
        "site_id": str(site_id),
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1990-01-02",
        "sex_at_birth": "female",
        "primary_substance": "heroin",
        "intake_date": days_ago(30).isoformat(),
        "city": "Springfield",
    }
    data.update(overrides)
    return data


def names_listed(html: str) -> set[str]:
    return set(re.findall(r'href="/patients/\d+">([^<]+)</a>', html))


# --- committing a conflicting row between the service's check and its write ----------------


@pytest.fixture
def elsewhere(app) -> Callable[..., None]:
    """Run statements on a connection of their own and commit them: another request's
    work, landing while this request is inside the service."""

    def run(*statements) -> None:
        with app.app_context(), db.engine.connect() as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()

    return run


@pytest.fixture
def at_first_flush(monkeypatch):
    """``at_first_flush(services, "name", action)``: while ``services.name`` runs, call
    ``action`` once, just before its first flush (after its checks passed)."""

    def arm(module, name: str, action: Callable[[], None]) -> None:
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            fired = []

            def hook(session, flush_context, instances):
                if not fired:
                    fired.append(True)
                    action()

            sa.event.listen(Session, "before_flush", hook)
            try:
                return original(*args, **kwargs)
            finally:
                sa.event.remove(Session, "before_flush", hook)

        monkeypatch.setattr(module, name, wrapper)

    return arm


def patient_row(site_id: int, first: str, last: str, born: dt.date, mrn: str) -> sa.Insert:
    """A patient as another request would have inserted it (keys included)."""
    return sa.insert(Patient.__table__).values(
        site_id=site_id,
        mrn=mrn,
        first_name=first,
        last_name=last,
        first_key=search_key(first),
        last_key=search_key(last),
        date_of_birth=born,
        sex_at_birth="female",
        primary_substance="other",
        intake_date=days_ago(100),
        created_at=dt.datetime.now(dt.UTC),
        duplicate_confirmed=False,
        version=1,
    )


# --- names in any script ------------------------------------------------------------------


@pytest.fixture
def world(site, make_patient) -> dict[str, int]:
    return {
        "ivan": make_patient("Иван", "Петров", date_of_birth=D(1980, 4, 2)),
        "andreas": make_patient("Ανδρέας", "Παπαδόπουλος", date_of_birth=D(1975, 6, 7)),
        "nunez": make_patient("María", "Núñez", date_of_birth=D(1991, 3, 3)),
        "mj": make_patient("Mary-Jane", "Watson-Parker", date_of_birth=D(1985, 1, 1)),
        "li": make_patient("小明", "王", date_of_birth=D(1970, 1, 1)),
        "wang": make_patient("王小明", "李", date_of_birth=D(1972, 2, 2)),
        "mcdonald": make_patient("Ann", "McDonald", date_of_birth=D(1960, 5, 5)),
        "evangelos": make_patient("Ευάγγελος", "Κωνσταντίνου", date_of_birth=D(1960, 1, 1)),
        "yuriy": make_patient("Юрий", "Щукин", date_of_birth=D(1963, 1, 1)),
    }


NAME_SEARCHES = [
    ("Иван", {"Петров, Иван"}),
    ("ivan", {"Петров, Иван"}),
    ("Петров", {"Петров, Иван"}),
    ("petrov", {"Петров, Иван"}),
    ("пет ив", {"Петров, Иван"}),
    ("andreas", {"Παπαδόπουλος, Ανδρέας"}),
    ("Ανδρέας", {"Παπαδόπουλος, Ανδρέας"}),
    ("ΑΝΔΡΈΑΣ", {"Παπαδόπουλος, Ανδρέας"}),
    ("papad", {"Παπαδόπουλος, Ανδρέας"}),
    ("papadopoulos", {"Παπαδόπουλος, Ανδρέας"}),
    ("Παπαδόπουλος", {"Παπαδόπουλος, Ανδρέας"}),
    ("papadopoylos", {"Παπαδόπουλος, Ανδρέας"}),
    ("nunez", {"Núñez, María"}),
    ("Núñez", {"Núñez, María"}),
    ("NUÑ", {"Núñez, María"}),
    ("mary jane", {"Watson-Parker, Mary-Jane"}),
    ("watson parker", {"Watson-Parker, Mary-Jane"}),
    ("parker", {"Watson-Parker, Mary-Jane"}),
    ("jane w", {"Watson-Parker, Mary-Jane"}),
    ("mary-jane", {"Watson-Parker, Mary-Jane"}),
    ("watsonparker", {"Watson-Parker, Mary-Jane"}),
    ("wang", {"王, 小明", "李, 王小明"}),
    ("王", {"王, 小明", "李, 王小明"}),
    ("xiao", {"王, 小明", "李, 王小明"}),
    ("王小明", {"李, 王小明"}),
    ("xiaoming", {"王, 小明"}),
    ("evangelos", {"Κωνσταντίνου, Ευάγγελος"}),
    ("konstantinou", {"Κωνσταντίνου, Ευάγγελος"}),
    ("yuriy", {"Щукин, Юрий"}),
    ("shchukin", {"Щукин, Юрий"}),
    ("mcdonald", {"McDonald, Ann"}),
    ("SMITH", set()),
    ("ivan andreas", set()),
    ("petrova", set()),
]


@pytest.mark.parametrize(("text", "expected"), NAME_SEARCHES)
def test_names_in_any_script_are_found_by_any_of_their_words(client_as, world, text, expected):
    assert search_names(client_as("staff"), text) == expected


@pytest.mark.parametrize(
    ("first", "last"),
    [("Иван", "Петров"), ("Ανδρέας", "Παπαδόπουλος"), ("Nguyễn", "Thị"), ("小明", "王")],
)
def test_names_in_any_script_register(app, client_as, site, first, last):
    response = send(
        client_as("staff"), "/patients/new", registration(site, first_name=first, last_name=last)
    )
    assert response.status_code == 302, field_error(response.get_data(as_text=True), "first_name")
    [patient] = rows(app, Patient)
    assert (patient.first_name, patient.last_name) == (first, last)
    assert patient.first_key and patient.last_key


@pytest.mark.parametrize(
    ("first", "message_field"),
    [("123", "first_name"), ("!!!", "first_name"), ("-", "first_name")],
)
def test_a_name_without_any_letter_is_refused(app, client_as, site, first, message_field):
    response = send(client_as("staff"), "/patients/new", registration(site, first_name=first))
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), message_field) == (
        "Enter a first name with at least one letter."
    )
    assert rows(app, Patient) == []


def test_a_long_name_whose_transliteration_is_longer_than_its_key_registers(app, client_as, site):
    """80 Chinese characters transliterate to far more than 80 letters: the keys are cut
    to the column's length (PostgreSQL would refuse a longer value with a 500)."""
    name = "王" * 80
    response = send(client_as("staff"), "/patients/new", registration(site, last_name=name))
    assert response.status_code == 302
    [patient] = rows(app, Patient)
    assert len(patient.last_key) == 80


@pytest.mark.parametrize(
    ("existing", "typed"),
    [
        (("Ivan", "Petrov"), ("Иван", "Петров")),
        (("Иван", "Петров"), ("IVAN", "petrov")),
        (("José", "Núñez"), ("Jose", "Nunez")),
        (("Andreas", "Papadopoylos"), ("Ανδρέας", "Παπαδόπουλος")),
        (("Ανδρέας", "Παπαδόπουλος"), ("Andreas", "Papadopoulos")),
        (("Nikolaos", "Papadopoulos"), ("Νικόλαος", "Παπαδόπουλος")),
        (("Ευάγγελος", "Κωνσταντίνου"), ("Evangelos", "Konstantinou")),
        (("Γιώργος", "Αυγερινός"), ("Giorgos", "Avgerinos")),
        (("Юрий", "Щукин"), ("Yuriy", "Shchukin")),
        (("Mary Jane", "Watson Parker"), ("Mary-Jane", "Watson-Parker")),
    ],
)
def test_the_same_name_in_another_script_or_spelling_is_a_possible_duplicate(
    app, client_as, site, make_patient, existing, typed
):
    make_patient(*existing, date_of_birth=D(1980, 4, 2))
    data = registration(site, first_name=typed[0], last_name=typed[1], date_of_birth="1980-04-02")
    response = send(client_as("staff"), "/patients/new", data)
    assert response.status_code == 200
    assert 'data-testid="duplicates"' in response.get_data(as_text=True)
    assert len(rows(app, Patient)) == 1


@pytest.mark.parametrize(
    ("existing", "typed"),
    [
        (("Andreas", "Papadopoulos"), ("Andreas", "Papadakis")),
        (("Andreas", "Papadopoulos"), ("Nikolaos", "Papadopoulos")),
    ],
)
def test_a_different_name_born_the_same_day_is_not_a_duplicate(
    app, client_as, site, make_patient, existing, typed
):
    make_patient(*existing, date_of_birth=D(1980, 4, 2))
    data = registration(site, first_name=typed[0], last_name=typed[1], date_of_birth="1980-04-02")
    assert send(client_as("staff"), "/patients/new", data).status_code == 302
    assert len(rows(app, Patient)) == 2


def test_renaming_a_patient_updates_its_search_words(app, client_as, make_patient):
    patient_id = make_patient("Jo", "Smith")
    client = client_as("staff")
    response = send(
        client,
        f"/patients/{patient_id}/edit",
        {
            "first_name": "Jo",
            "last_name": "Смит-Jones",
            "date_of_birth": "1980-04-02",
            "sex_at_birth": "female",
            "primary_substance": "fentanyl",
            "intake_date": "2026-01-05",
        },
    )
    assert response.status_code == 302
    assert {t.token for t in rows(app, PatientNameToken)} == {"jo", "smit", "jones", "smitjones"}
    assert search_names(client, "smith") == set()
    assert search_names(client, "jones") == {"Смит-Jones, Jo"}


@pytest.mark.parametrize("text", ["Пет ив", "watson parker", "papad"])
def test_searches_in_other_scripts_use_the_token_index(app, world, text):
    with app.app_context():
        query = search.search_patients(User(id=None, all_sites=True), text)
        sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        if ON_POSTGRES:
            db.session.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(db.session.execute(sa.text(f"EXPLAIN {sql}")).scalars())
            assert "Seq Scan" not in plan, plan
        else:
            plan = "\n".join(
                row[-1] for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"))
            )
            assert not [line for line in plan.splitlines() if "SCAN" in line], plan
        db.session.rollback()
    assert "ix_patient_name_token_token" in plan, plan


def test_the_migration_recomputes_keys_of_existing_patients(app, site):
    """Rows registered before this change got empty keys for a Cyrillic name and no name
    words: upgrading recomputes them, and the later of two identical unconfirmed
    identities is marked confirmed so the new unique index can be built."""
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        downgrade(revision="a8d1f0c2b3e4")
        old = sa.table(
            "patient",
            *(
                sa.column(c)
                for c in [
                    "site_id",
                    "mrn",
                    "first_name",
                    "last_name",
                    "first_key",
                    "last_key",
                    "date_of_birth",
                    "sex_at_birth",
                    "primary_substance",
                    "intake_date",
                    "created_at",
                    "version",
                ]
            ),
        )
        values = {
            "site_id": site,
            "sex_at_birth": "male",
            "primary_substance": "other",
            "intake_date": D(2025, 1, 1),
            "created_at": dt.datetime(2025, 1, 1),
            "version": 1,
            "date_of_birth": D(1980, 4, 2),
        }
        with db.engine.begin() as conn:
            conn.execute(
                old.insert(),
                [
                    {
                        **values,
                        "mrn": "MAIN-1",
                        "first_name": "Иван",
                        "last_name": "Петров",
                        "first_key": "",
                        "last_key": "",
                    },
                    {
                        **values,
                        "mrn": "MAIN-2",
                        "first_name": "Ivan",
                        "last_name": "Petrov",
                        "first_key": "ivan",
                        "last_key": "petrov",
                    },
                ],
            )
        upgrade()
        found = {p.mrn: p for p in db.session.scalars(sa.select(Patient).order_by(Patient.id))}
        assert (found["MAIN-1"].first_key, found["MAIN-1"].last_key) == ("ivan", "petrov")
        assert [found["MAIN-1"].duplicate_confirmed, found["MAIN-2"].duplicate_confirmed] == [
            False,
            True,
        ]
        tokens = db.session.scalars(
            sa.select(PatientNameToken.token).where(
                PatientNameToken.patient_id == found["MAIN-1"].id
            )
        )
        assert set(tokens) == {"ivan", "petrov"}
        db.session.rollback()


# --- double submits and races --------------------------------------------------------------


def test_the_same_registration_posted_twice_registers_once(app, client_as, site):
    client = client_as("staff")
    page = client.get("/patients/new").get_data(as_text=True)
    fields = {**hidden_fields(page, "/patients/new", same_page=True), **registration(site)}
    first = client.post("/patients/new", data=fields)
    second = client.post("/patients/new", data=fields)
    assert first.status_code == second.status_code == 302
    [patient] = rows(app, Patient)
    assert first.headers["Location"] == second.headers["Location"] == f"/patients/{patient.id}"
    assert "already been sent" in client.get(second.headers["Location"]).get_data(as_text=True)
    # Another user cannot replay someone else's token: it is a fresh registration for them.
    other = client_as("admin")
    replay = other.post(
        "/patients/new",
        data={**fields, "csrf_token": other.csrf_token("/patients/new")},
    )
    assert replay.status_code == 200
    assert 'data-testid="duplicates"' in replay.get_data(as_text=True)


def test_a_registration_without_its_submission_token_is_refused(app, client_as, site):
    response = send(
        client_as("staff"), "/patients/new", {**registration(site), "submission_token": None}
    )
    assert response.status_code == 200
    assert RELOAD_MESSAGE in response.get_data(as_text=True)
    assert rows(app, Patient) == []


def test_two_registrations_of_one_person_racing_get_the_duplicate_warning(
    app, client_as, site, elsewhere, monkeypatch
):
    """The other registration commits after this one's duplicate check: the database's
    unique index refuses this one, and the user sees the same warning as the check's."""
    original = registry.possible_duplicates
    calls = []

    def racing(*args, **kwargs):
        found = original(*args, **kwargs)
        if not calls:
            calls.append(True)
            elsewhere(patient_row(site, "Ann", "Lee", D(1990, 1, 2), "MAIN-900001"))
        return found

    monkeypatch.setattr(registry, "possible_duplicates", racing)
    response = send(client_as("staff"), "/patients/new", registration(site))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "A patient with the same name and date of birth is already registered." in html
    box = html.split('data-testid="duplicates"', 1)[1].split("</div>", 1)[0]
    assert "MAIN-900001" in box
    assert 'value="Springfield"' in html
    assert [p.mrn for p in rows(app, Patient)] == ["MAIN-900001"]


def test_the_database_refuses_a_second_unconfirmed_identity(app, site, make_patient):
    make_patient("Ann", "Lee", date_of_birth=D(1990, 1, 2))
    with app.app_context():
        # make_patient confirms; an unconfirmed twin of an unconfirmed row is refused.
        db.session.execute(sa.update(Patient).values(duplicate_confirmed=False))
        db.session.commit()
    with app.app_context(), pytest.raises(sa.exc.IntegrityError) as refused:
        db.session.execute(patient_row(site, "ANN", "lee", D(1990, 1, 2), "MAIN-900002"))
    from clinic.web import constraint_name

    assert constraint_name(refused.value) == "uq_patient_unconfirmed_identity"


@pytest.fixture
def enrolled(make_patient, make_program, make_enrollment) -> dict[str, int]:
    patient_id = make_patient(intake_date=days_ago(60))
    program_id = make_program()
    enrollment_id = make_enrollment(patient_id, program_id, admitted_on=days_ago(20))
    return {"patient": patient_id, "program": program_id, "enrollment": enrollment_id}


def set_enrollment(app, enrollment_id: int, **values) -> None:
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrollment_id)
        for key, value in values.items():
            setattr(enrollment, key, value)
        db.session.commit()


def test_the_same_care_plan_review_posted_twice_is_stored_once(app, client_as, enrolled):
    set_enrollment(app, enrolled["enrollment"], care_plan_on=days_ago(15))
    client = client_as("clinician")
    deadlines = f"/patients/enrollments/{enrolled['enrollment']}/deadlines"
    reviews = f"/patients/enrollments/{enrolled['enrollment']}/reviews"
    page = client.get(deadlines).get_data(as_text=True)
    fields = {
        **hidden_fields(page, reviews, same_page=False),
        "reviewed_on": days_ago(2).isoformat(),
    }
    assert client.post(reviews, data=fields).status_code == 302
    assert client.post(reviews, data=fields).status_code == 302
    assert len(rows(app, CarePlanReview)) == 1

    # A second review of the same day from a new form: refused next to the date field.
    again = send(client, reviews, {"reviewed_on": days_ago(2).isoformat()}, form_url=deadlines)
    assert again.status_code == 400
    assert field_error(again.get_data(as_text=True), "reviewed_on") == (
        "A care-plan review on that date is already recorded."
    )
    assert len(rows(app, CarePlanReview)) == 1


def test_two_reviews_of_one_day_racing_get_the_services_message(
    app, client_as, enrolled, elsewhere, at_first_flush
):
    set_enrollment(app, enrolled["enrollment"], care_plan_on=days_ago(15))
    client = client_as("clinician")
    at_first_flush(
        milestones,
        "record_care_plan_review",
        lambda: elsewhere(
            sa.insert(CarePlanReview.__table__).values(
                enrollment_id=enrolled["enrollment"],
                reviewed_on=days_ago(2),
                recorded_by_id=client.user_id,
                recorded_at=dt.datetime.now(dt.UTC),
            )
        ),
    )
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/reviews",
        {"reviewed_on": days_ago(2).isoformat()},
        form_url=f"/patients/enrollments/{enrolled['enrollment']}/deadlines",
    )
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "reviewed_on") == (
        "A care-plan review on that date is already recorded."
    )
    assert len(rows(app, CarePlanReview)) == 1


def admit_data(program_id: int, **overrides) -> dict:
    data = {
        "program_id": str(program_id),
        "admitted_on": days_ago(3).isoformat(),
        "level_of_care": "3:OTP",
        "primary_counselor_id": "0",
    }
    data.update(overrides)
    return data


def test_the_services_already_enrolled_check_refuses_before_the_database(
    app, make_patient, make_program, make_enrollment
):
    """Without the service's check the database's index would answer (IntegrityError):
    this test fails if the check is removed."""
    patient_id = make_patient(intake_date=days_ago(60))
    program_id = make_program()
    make_enrollment(patient_id, program_id, admitted_on=days_ago(20))
    with app.app_context():
        with pytest.raises(DomainError) as refused:
            admissions.admit(
                db.session.get(Patient, patient_id),
                db.session.get(Program, program_id),
                actor=User(**SETUP),
                admitted_on=days_ago(1),
                asam_edition="3",
                asam_level="OTP",
                primary_counselor=None,
            )
        assert (refused.value.message, refused.value.field) == (
            "The patient is already enrolled in this program.",
            "program_id",
        )
        db.session.rollback()


def test_two_admissions_racing_get_the_already_enrolled_message(
    app, client_as, make_patient, make_program, elsewhere, at_first_flush
):
    patient_id = make_patient(intake_date=days_ago(60))
    program_id = make_program()
    client = client_as("clinician")
    at_first_flush(
        admissions,
        "admit",
        lambda: elsewhere(
            sa.insert(Enrollment.__table__).values(
                patient_id=patient_id,
                program_id=program_id,
                admitted_on=days_ago(5),
                asam_edition="3",
                asam_level="OTP",
                created_at=dt.datetime.now(dt.UTC),
                version=1,
            )
        ),
    )
    response = send(client, f"/patients/{patient_id}/admit", admit_data(program_id))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert field_error(html, "program_id") == "The patient is already enrolled in this program."
    assert CONFLICT_MESSAGE not in html
    assert [e.admitted_on for e in rows(app, Enrollment)] == [days_ago(5)]


def test_the_same_admission_posted_twice_admits_once(app, client_as, make_patient, make_program):
    patient_id = make_patient(intake_date=days_ago(60))
    program_id = make_program()
    client = client_as("clinician")
    url = f"/patients/{patient_id}/admit"
    fields = {
        **hidden_fields(client.get(url).get_data(as_text=True), url, same_page=True),
        **admit_data(program_id),
    }
    assert client.post(url, data=fields).status_code == 302
    second = client.post(url, data=fields)
    assert second.status_code == 302 and second.headers["Location"] == f"/patients/{patient_id}"
    assert len(rows(app, Enrollment)) == 1


def test_the_same_transfer_posted_twice_transfers_once(app, client_as, enrolled, make_program):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    client = client_as("clinician")
    url = f"/patients/enrollments/{enrolled['enrollment']}/transfer"
    fields = {
        **hidden_fields(client.get(url).get_data(as_text=True), url, same_page=True),
        **admit_data(iop),
    }
    assert client.post(url, data=fields).status_code == 302
    second = client.post(url, data=fields)
    assert second.status_code == 302
    assert second.headers["Location"] == f"/patients/{enrolled['patient']}"
    assert [(e.program_id, e.active) for e in rows(app, Enrollment)] == [
        (enrolled["program"], False),
        (iop, True),
    ]


def program_data(site_id: int, **overrides) -> dict:
    data = {
        "site_id": str(site_id),
        "name": "Methadone maintenance",
        "kind": "methadone_otp",
        "active": "y",
        "care_plan_review_days": "90",
        "take_home_cap_days_0_14": "7",
        "take_home_cap_days_15_30": "14",
        "take_home_cap_days_31_plus": "28",
    }
    data.update(overrides)
    return data


def test_the_same_program_posted_twice_is_created_once(app, client_as, site):
    admin = client_as("admin")
    url = "/admin/programs/new"
    fields = {
        **hidden_fields(admin.get(url).get_data(as_text=True), url, same_page=True),
        **program_data(site),
    }
    assert admin.post(url, data=fields).status_code == 302
    assert admin.post(url, data=fields).status_code == 302
    assert len(rows(app, Program)) == 1


def test_two_programs_of_one_name_racing_get_the_services_message(
    app, client_as, site, elsewhere, at_first_flush
):
    at_first_flush(
        program_settings,
        "create_program",
        lambda: elsewhere(
            sa.insert(Program.__table__).values(
                site_id=site,
                name="Methadone maintenance",
                kind="methadone_otp",
                take_home_cap_days_0_14=7,
                take_home_cap_days_15_30=14,
                take_home_cap_days_31_plus=28,
            )
        ),
    )
    response = send(client_as("admin"), "/admin/programs/new", program_data(site))
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "name") == (
        "This site already has a program with that name."
    )
    assert len(rows(app, Program)) == 1


def test_the_same_emergency_access_posted_twice_grants_once(
    app, client_as, make_site, make_patient
):
    patient_id = make_patient()
    with app.app_context():
        mrn = db.session.get(Patient, patient_id).mrn
    clinician = client_as("clinician", site_ids=[make_site("EAST")])
    url = "/patients/break-glass"
    fields = {
        **hidden_fields(clinician.get(url).get_data(as_text=True), url, same_page=True),
        "mrn": mrn,
        "reason": "Unconscious at the EAST emergency room",
    }
    assert clinician.post(url, data=fields).status_code == 302
    assert clinician.post(url, data=fields).status_code == 302
    assert len(rows(app, BreakGlassGrant)) == 1
    assert len(rows(app, FormSubmission)) == 1


def test_two_posts_of_one_emergency_access_form_racing_grant_once(
    app, client_as, make_site, make_patient, elsewhere, at_first_flush
):
    """The first post of the form commits while the second is inside the service: the
    second meets the submission token's unique constraint and shows the first result."""
    patient_id = make_patient()
    with app.app_context():
        mrn = db.session.get(Patient, patient_id).mrn
    clinician = client_as("clinician", site_ids=[make_site("EAST")])
    url = "/patients/break-glass"
    fields = {
        **hidden_fields(clinician.get(url).get_data(as_text=True), url, same_page=True),
        "mrn": mrn,
        "reason": "Unconscious at the EAST emergency room",
    }
    now = dt.datetime.now(dt.UTC)
    at_first_flush(
        emergency,
        "grant_break_glass",
        lambda: elsewhere(
            sa.insert(BreakGlassGrant.__table__).values(
                user_id=clinician.user_id,
                patient_id=patient_id,
                reason="Unconscious at the EAST emergency room",
                granted_at=now,
                expires_at=now + dt.timedelta(minutes=60),
            ),
            sa.insert(FormSubmission.__table__).values(
                token=fields["submission_token"],
                user_id=clinician.user_id,
                kind="break_glass_grant",
                result_url=f"/patients/{patient_id}",
                created_at=now,
            ),
        ),
    )
    response = clinician.post(url, data=fields)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/patients/{patient_id}"
    assert len(rows(app, BreakGlassGrant)) == 1
    assert len(rows(app, FormSubmission)) == 1


# --- dates hold from both sides --------------------------------------------------------------


def deadlines_url(enrollment_id: int) -> str:
    return f"/patients/enrollments/{enrollment_id}/deadlines"


@pytest.mark.parametrize(
    ("offset", "refused"), [(-1, False), (0, False), (1, True)], ids=["before", "on", "after"]
)
def test_a_milestone_after_the_discharge_is_refused(app, client_as, enrolled, offset, refused):
    discharged = days_ago(5)
    set_enrollment(app, enrolled["enrollment"], discharged_on=discharged, discharge_reason=1)
    client = client_as("clinician")
    day = discharged + dt.timedelta(days=offset)
    response = send(
        client, deadlines_url(enrolled["enrollment"]), {"medical_exam_on": day.isoformat()}
    )
    [enrollment] = rows(app, Enrollment)
    if refused:
        assert response.status_code == 200
        assert field_error(response.get_data(as_text=True), "medical_exam_on") == (
            f"That is after the discharge date ({common.format_day(discharged)})."
        )
        assert enrollment.medical_exam_on is None
    else:
        assert response.status_code == 302
        assert enrollment.medical_exam_on == day


@pytest.mark.parametrize(
    ("offset", "refused"), [(-1, True), (0, False), (1, False)], ids=["before", "on", "after"]
)
@pytest.mark.parametrize("what", ["milestone", "review"])
def test_a_discharge_before_what_was_recorded_is_refused(
    app, client_as, make_user, enrolled, what, offset, refused
):
    recorded = days_ago(8)
    set_enrollment(app, enrolled["enrollment"], care_plan_on=days_ago(10))
    if what == "milestone":
        set_enrollment(app, enrolled["enrollment"], assessment_on=recorded)
        label = "psychosocial assessment"
    else:
        with app.app_context():
            milestones.record_care_plan_review(
                db.session.get(Enrollment, enrolled["enrollment"]),
                actor=db.session.get(User, make_user("clinician")),
                reviewed_on=recorded,
            )
            db.session.commit()
        label = "care-plan review"
    client = client_as("clinician")
    day = recorded + dt.timedelta(days=offset)
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/discharge",
        {"discharged_on": day.isoformat(), "reason": "1"},
    )
    [enrollment] = rows(app, Enrollment)
    if refused:
        assert response.status_code == 200
        assert field_error(response.get_data(as_text=True), "discharged_on") == (
            f"The discharge date is before the {label} recorded on {common.format_day(recorded)}."
        )
        assert enrollment.active
    else:
        assert response.status_code == 302
        assert enrollment.discharged_on == day


@pytest.mark.parametrize(
    ("offset", "refused"), [(-1, False), (0, False), (1, True)], ids=["before", "on", "after"]
)
def test_a_review_after_the_discharge_is_refused(app, client_as, enrolled, offset, refused):
    discharged = days_ago(5)
    set_enrollment(
        app,
        enrolled["enrollment"],
        care_plan_on=days_ago(15),
        discharged_on=discharged,
        discharge_reason=1,
    )
    client = client_as("clinician")
    day = discharged + dt.timedelta(days=offset)
    response = send(
        client,
        f"/patients/enrollments/{enrolled['enrollment']}/reviews",
        {"reviewed_on": day.isoformat()},
        form_url=deadlines_url(enrolled["enrollment"]),
    )
    if refused:
        assert response.status_code == 400
        assert field_error(response.get_data(as_text=True), "reviewed_on") == (
            f"That is after the discharge date ({common.format_day(discharged)})."
        )
        assert rows(app, CarePlanReview) == []
    else:
        assert response.status_code == 302
        assert [r.reviewed_on for r in rows(app, CarePlanReview)] == [day]


def test_the_initial_care_plan_cannot_move_after_or_drop_its_reviews(app, client_as, enrolled):
    set_enrollment(app, enrolled["enrollment"], care_plan_on=days_ago(15))
    client = client_as("clinician")
    reviews = f"/patients/enrollments/{enrolled['enrollment']}/reviews"
    url = deadlines_url(enrolled["enrollment"])
    assert (
        send(client, reviews, {"reviewed_on": days_ago(10).isoformat()}, form_url=url).status_code
        == 302
    )
    later = send(client, url, {"care_plan_on": days_ago(9).isoformat()})
    assert field_error(later.get_data(as_text=True), "care_plan_on") == (
        f"That is after the first care-plan review ({common.format_day(days_ago(10))})."
    )
    cleared = send(client, url, {"care_plan_on": ""})
    assert field_error(cleared.get_data(as_text=True), "care_plan_on") == (
        "Care-plan reviews are recorded: the initial care plan date stays."
    )
    same_day = send(client, url, {"care_plan_on": days_ago(10).isoformat()})
    assert same_day.status_code == 302
    assert rows(app, Enrollment)[0].care_plan_on == days_ago(10)


def patient_edit(**overrides) -> dict:
    data = {
        "first_name": "Jo",
        "last_name": "Smith",
        "date_of_birth": "1980-04-02",
        "sex_at_birth": "female",
        "primary_substance": "fentanyl",
        "intake_date": days_ago(60).isoformat(),
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("offset", "refused"), [(-1, False), (0, False), (1, True)], ids=["before", "on", "after"]
)
@pytest.mark.parametrize("field", ["date_of_birth", "intake_date"])
def test_birth_and_intake_dates_cannot_move_after_an_admission(
    app, client_as, enrolled, field, offset, refused
):
    admitted = days_ago(20)
    day = admitted + dt.timedelta(days=offset)
    overrides = {field: day.isoformat()}
    if field == "date_of_birth":
        overrides["intake_date"] = admitted.isoformat()  # only the birth date is wrong
        overrides["confirm_age"] = "y"  # a newborn at intake: the age warning confirmed
    response = send(
        client_as("staff"), f"/patients/{enrolled['patient']}/edit", patient_edit(**overrides)
    )
    [patient] = rows(app, Patient)
    if refused:
        assert response.status_code == 200
        message = (
            "The date of birth is after the patient's first admission "
            f"({common.format_day(admitted)})."
            if field == "date_of_birth"
            else "The intake date is after the patient's first admission: the intake comes first."
        )
        assert field_error(response.get_data(as_text=True), field) == message
        assert patient.version == 1
    else:
        assert response.status_code == 302
        assert getattr(patient, field) == day


@pytest.mark.parametrize(
    ("offset", "refused"), [(-1, True), (0, False), (1, False)], ids=["before", "on", "after"]
)
def test_an_admission_before_the_intake_is_refused(
    app, client_as, make_patient, make_program, offset, refused
):
    """DOMAIN decision: the intake is the patient's first contact with the clinic, so an
    enrollment starts on or after it (and the intake cannot move after an admission; a
    transfer starts where an enrollment ended, so after the intake too)."""
    intake = days_ago(30)
    patient_id = make_patient(intake_date=intake)
    program_id = make_program()
    day = intake + dt.timedelta(days=offset)
    response = send(
        client_as("clinician"),
        f"/patients/{patient_id}/admit",
        admit_data(program_id, admitted_on=day.isoformat()),
    )
    if refused:
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        expected = (
            f"The admission date is before the patient's intake date ({common.format_day(intake)})."
        )
        assert field_error(html, "admitted_on") == expected
        assert html.count("before the patient&#39;s intake date") == 1
        assert rows(app, Enrollment) == []
    else:
        assert response.status_code == 302
        assert [e.admitted_on for e in rows(app, Enrollment)] == [day]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("same-program", "Not a valid choice."),  # the current program is not offered
        ("bad-level", "Not a valid choice."),  # 4th edition has no OTP level
        ("future", "The transfer date is in the future."),
        (
            "before-admission",
            "The transfer date is before the admission date ({admitted}).",  # filled in at run time
        ),
        ("before-milestone", "The transfer date is before the medical examination recorded on"),
        ("already-enrolled", "The patient is already enrolled in this program."),
    ],
)
def test_a_refused_transfer_says_which_rule_next_to_its_field(
    app, client_as, enrolled, make_program, make_enrollment, case, message
):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    data = admit_data(iop, admitted_on=days_ago(2).isoformat())
    field = "admitted_on"
    if case == "same-program":
        data["program_id"] = str(enrolled["program"])
        field = "program_id"
    elif case == "bad-level":
        data["level_of_care"] = "4:OTP"
        field = "level_of_care"
    elif case == "future":
        data["admitted_on"] = (today() + dt.timedelta(days=1)).isoformat()
    elif case == "before-admission":
        data["admitted_on"] = days_ago(21).isoformat()
    elif case == "before-milestone":
        set_enrollment(app, enrolled["enrollment"], medical_exam_on=days_ago(1))
    else:
        make_enrollment(enrolled["patient"], iop, admitted_on=days_ago(1))
        field = "program_id"
    before = [(e.id, e.active, e.version) for e in rows(app, Enrollment)]
    response = send(
        client_as("clinician"), f"/patients/enrollments/{enrolled['enrollment']}/transfer", data
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    message = message.format(admitted=common.format_day(days_ago(20)))
    shown = field_error(html, field)
    assert shown.startswith(message), shown
    assert html.count(message) == 1
    assert [(e.id, e.active, e.version) for e in rows(app, Enrollment)] == before


# --- the database holds the date rules when the service is bypassed --------------------------


def refused_by(app, statement, params: dict) -> str:
    from clinic.web import constraint_name

    with app.app_context():
        with pytest.raises(sa.exc.IntegrityError) as refused:
            db.session.execute(sa.text(statement), params)
            db.session.flush()
        db.session.rollback()
        return constraint_name(refused.value)


def test_the_database_refuses_dates_out_of_order(app, make_user, enrolled, make_program):
    enrollment, patient = enrolled["enrollment"], enrolled["patient"]
    set_enrollment(app, enrollment, care_plan_on=days_ago(15))
    actor = make_user("clinician")
    update = "UPDATE enrollment SET {} WHERE id = :i"
    cases = [
        (
            update.format("discharged_on = :d, discharge_reason = 1, medical_exam_on = :m"),
            {"d": days_ago(5), "m": days_ago(4)},
            "ck_enrollment_exam_before_discharge",
        ),
        (
            update.format("discharged_on = :d, discharge_reason = 1"),
            {"d": days_ago(16)},
            "ck_enrollment_care_plan_before_discharge",
        ),
        (
            "UPDATE patient SET intake_date = :d WHERE id = :p",
            {"d": days_ago(19)},
            "patient_intake_before_admissions",
        ),
        (
            "UPDATE patient SET date_of_birth = :d WHERE id = :p",
            {"d": days_ago(19)},
            "ck_patient_born_before_intake",
        ),
        (
            "INSERT INTO enrollment (patient_id, program_id, admitted_on, asam_edition, asam_level,"
            " created_at, version) VALUES (:p, :g, :d, '3', 'OTP', :t, 1)",
            {"d": days_ago(61), "g": make_program("Other"), "t": dt.datetime(2026, 1, 1)},
            "enrollment_after_intake",
        ),
        (
            "INSERT INTO care_plan_review (enrollment_id, reviewed_on, recorded_by_id, recorded_at)"
            " VALUES (:i, :d, :a, :t)",
            {"d": days_ago(16), "a": actor, "t": dt.datetime(2026, 1, 1)},
            "review_within_enrollment",
        ),
    ]
    for statement, params, name in cases:
        assert refused_by(app, statement, {"i": enrollment, "p": patient, **params}) == name, name

    # The other side of the review rule: a discharge or care plan that leaves a review out.
    with app.app_context():
        db.session.execute(
            sa.text(
                "INSERT INTO care_plan_review (enrollment_id, reviewed_on, recorded_by_id,"
                " recorded_at) VALUES (:i, :d, :a, :t)"
            ),
            {"i": enrollment, "d": days_ago(10), "a": actor, "t": dt.datetime(2026, 1, 1)},
        )
        db.session.commit()
    for values, params in [
        ("discharged_on = :d, discharge_reason = 1", {"d": days_ago(11)}),
        ("care_plan_on = :d", {"d": days_ago(9)}),
        ("care_plan_on = NULL", {}),
    ]:
        assert (
            refused_by(app, update.format(values), {"i": enrollment, **params})
            == "enrollment_dates_cover_reviews"
        )
    # On the edge, everything is allowed.
    with app.app_context():
        db.session.execute(
            sa.text(update.format("discharged_on = :d, discharge_reason = 1, care_plan_on = :c")),
            {"i": enrollment, "d": days_ago(10), "c": days_ago(10)},
        )
        db.session.commit()


def test_the_database_refuses_a_transfer_that_does_not_start_where_the_last_one_ended(
    app, client_as, enrolled, make_program
):
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    assert (
        send(
            client_as("clinician"),
            f"/patients/enrollments/{enrolled['enrollment']}/transfer",
            admit_data(iop, admitted_on=days_ago(3).isoformat()),
        ).status_code
        == 302
    )
    old, new = rows(app, Enrollment)
    update = "UPDATE enrollment SET {} WHERE id = :i"
    assert refused_by(app, update.format("admitted_on = :d"), {"i": new.id, "d": days_ago(2)}) == (
        "enrollment_transfer_matches"
    )
    assert (
        refused_by(app, update.format("discharge_reason = 1"), {"i": old.id})
        == "enrollment_transfer_matches"
    )


def test_a_discharge_racing_a_review_gets_the_services_message(
    app, client_as, enrolled, elsewhere, at_first_flush
):
    """The discharge commits after the review's checks: the trigger refuses the review
    and the user reads what the service says about it."""
    set_enrollment(app, enrolled["enrollment"], care_plan_on=days_ago(15))
    at_first_flush(
        milestones,
        "record_care_plan_review",
        lambda: elsewhere(
            sa.update(Enrollment.__table__)
            .where(Enrollment.__table__.c.id == enrolled["enrollment"])
            .values(discharged_on=days_ago(5), discharge_reason=1, version=2)
        ),
    )
    response = send(
        client_as("clinician"),
        f"/patients/enrollments/{enrolled['enrollment']}/reviews",
        {"reviewed_on": days_ago(2).isoformat()},
        form_url=deadlines_url(enrolled["enrollment"]),
    )
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "reviewed_on") == (
        f"That is after the discharge date ({common.format_day(days_ago(5))})."
    )
    assert rows(app, CarePlanReview) == []


# --- entered in error, everywhere --------------------------------------------------------


@pytest.fixture
def in_error(app, enrolled) -> dict[str, int]:
    """A patient with a discharged enrollment, then marked entered in error."""
    set_enrollment(
        app,
        enrolled["enrollment"],
        care_plan_on=days_ago(15),
        discharged_on=days_ago(3),
        discharge_reason=7,
    )
    with app.app_context():
        patient = db.session.get(Patient, enrolled["patient"])
        registry.mark_entered_in_error(
            patient, actor=User(**SETUP), reason="registered twice by mistake", expected_version=1
        )
        db.session.commit()
    return enrolled


def test_pages_that_would_change_a_record_entered_in_error_say_so(client_as, in_error):
    clinician = client_as("clinician")
    urls = [
        f"/patients/{in_error['patient']}/admit",
        deadlines_url(in_error["enrollment"]),
        f"/patients/enrollments/{in_error['enrollment']}/discharge",
        f"/patients/enrollments/{in_error['enrollment']}/transfer",
    ]
    for url in urls:
        html = clinician.get(url).get_data(as_text=True)
        assert "entered in error and can no longer be changed" in html, url
        assert '<form method="post" novalidate' not in html, url
    staff_html = (
        client_as("staff").get(f"/patients/{in_error['patient']}/edit").get_data(as_text=True)
    )
    assert "entered in error and can no longer be changed" in staff_html


def test_milestones_and_reviews_are_refused_on_a_record_entered_in_error(app, client_as, in_error):
    clinician = client_as("clinician")
    token = clinician.csrf_token(f"/patients/{in_error['patient']}")
    milestones = clinician.post(
        deadlines_url(in_error["enrollment"]),
        data={"medical_exam_on": days_ago(10).isoformat(), "version": "2", "csrf_token": token},
    )
    review = clinician.post(
        f"/patients/enrollments/{in_error['enrollment']}/reviews",
        data={"reviewed_on": days_ago(5).isoformat(), "csrf_token": token},
    )
    for response in (milestones, review):
        assert "This record was entered in error and can no longer be changed." in (
            response.get_data(as_text=True)
        )
    [enrollment] = rows(app, Enrollment)
    assert enrollment.medical_exam_on is None
    assert rows(app, CarePlanReview) == []


def test_every_service_that_writes_refuses_a_record_entered_in_error(app, in_error, make_program):
    other = make_program("Intensive outpatient", "intensive_outpatient")
    with app.app_context():
        actor = User(**SETUP)
        patient = db.session.get(Patient, in_error["patient"])
        enrollment = db.session.get(Enrollment, in_error["enrollment"])
        calls = {
            "milestones": lambda: milestones.record_milestones(
                enrollment, actor=actor, values={}, expected_version=enrollment.version
            ),
            "review": lambda: milestones.record_care_plan_review(
                enrollment, actor=actor, reviewed_on=days_ago(5)
            ),
            "demographics": lambda: registry.update_demographics(
                patient,
                actor=actor,
                data=registry.Demographics.from_mapping(patient_edit()),
                expected_version=patient.version,
            ),
            "discharge": lambda: admissions.discharge(
                enrollment,
                actor=actor,
                discharged_on=days_ago(1),
                reason=1,
                expected_version=enrollment.version,
            ),
            "transfer": lambda: admissions.transfer(
                enrollment,
                db.session.get(Program, other),
                actor=actor,
                on=days_ago(1),
                asam_edition="3",
                asam_level="OTP",
                primary_counselor=None,
                expected_version=enrollment.version,
            ),
        }
        for name, call in calls.items():
            with pytest.raises(DomainError, match="entered in error") as refused:
                call()
            assert refused.value.field is None, name
        db.session.rollback()


def test_the_database_refuses_writes_on_a_record_entered_in_error(
    app, make_user, in_error, make_program
):
    actor = make_user("clinician")
    cases = [
        ("UPDATE patient SET phone = '555' WHERE id = :p", {}),
        ("UPDATE enrollment SET medical_exam_on = :d WHERE id = :i", {"d": days_ago(4)}),
        (
            "INSERT INTO care_plan_review (enrollment_id, reviewed_on, recorded_by_id, recorded_at)"
            " VALUES (:i, :d, :a, :t)",
            {"d": days_ago(5), "a": actor, "t": dt.datetime(2026, 1, 1)},
        ),
        (
            "INSERT INTO enrollment (patient_id, program_id, admitted_on, asam_edition, asam_level,"
            " created_at, version) VALUES (:p, :g, :d, '3', 'OTP', :t, 1)",
            {"d": days_ago(1), "g": make_program("Other"), "t": dt.datetime(2026, 1, 1)},
        ),
    ]
    for statement, params in cases:
        name = refused_by(
            app, statement, {"p": in_error["patient"], "i": in_error["enrollment"], **params}
        )
        assert name == "patient_entered_in_error", statement


# --- conflicts, in one place ----------------------------------------------------------------


def test_an_edit_racing_entered_in_error_is_a_conflict_message_not_a_500(
    app, client_as, make_patient, elsewhere, at_first_flush
):
    patient_id = make_patient(intake_date=days_ago(60))
    at_first_flush(
        registry,
        "update_demographics",
        lambda: elsewhere(
            sa.update(Patient.__table__)
            .where(Patient.__table__.c.id == patient_id)
            .values(
                entered_in_error_at=dt.datetime.now(dt.UTC),
                entered_in_error_reason="registered twice by mistake",
                version=2,
            )
        ),
    )
    response = send(
        client_as("staff"), f"/patients/{patient_id}/edit", patient_edit(phone="312-555-7777")
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert form_error(html) == CONFLICT_MESSAGE
    assert 'value="312-555-7777"' in html
    [patient] = rows(app, Patient)
    assert patient.phone is None and patient.entered_in_error


def test_entered_in_error_racing_an_edit_is_a_conflict_message_not_a_500(
    app, client_as, make_patient, elsewhere, at_first_flush
):
    patient_id = make_patient()
    at_first_flush(
        registry,
        "mark_entered_in_error",
        lambda: elsewhere(
            sa.update(Patient.__table__)
            .where(Patient.__table__.c.id == patient_id)
            .values(phone="312-555-1111", version=2)
        ),
    )
    response = send(
        client_as("admin"),
        f"/patients/{patient_id}/entered-in-error",
        {"reason": "Registered twice at the desk"},
    )
    assert response.status_code == 200
    assert form_error(response.get_data(as_text=True)) == CONFLICT_MESSAGE
    [patient] = rows(app, Patient)
    assert not patient.entered_in_error and patient.phone == "312-555-1111"


@pytest.mark.parametrize("form", ["edit", "entered_in_error", "discharge", "transfer", "deadlines"])
def test_a_form_sent_without_its_version_is_refused(app, client_as, enrolled, make_program, form):
    """A crafted POST without the version field cannot skip the optimistic lock."""
    iop = make_program("Intensive outpatient", "intensive_outpatient")
    enrollment = enrolled["enrollment"]
    role, url, data = {
        "edit": ("staff", f"/patients/{enrolled['patient']}/edit", patient_edit(phone="1")),
        "entered_in_error": (
            "admin",
            f"/patients/{enrolled['patient']}/entered-in-error",
            {"reason": "Registered twice at the desk"},
        ),
        "discharge": (
            "clinician",
            f"/patients/enrollments/{enrollment}/discharge",
            {"discharged_on": days_ago(1).isoformat(), "reason": "1"},
        ),
        "transfer": (
            "clinician",
            f"/patients/enrollments/{enrollment}/transfer",
            admit_data(iop, admitted_on=days_ago(1).isoformat()),
        ),
        "deadlines": (
            "clinician",
            deadlines_url(enrollment),
            {"medical_exam_on": days_ago(1).isoformat()},
        ),
    }[form]
    before_patient = [(p.version, p.phone) for p in rows(app, Patient)]
    before = [(e.id, e.version) for e in rows(app, Enrollment)]
    response = send(client_as(role), url, {**data, "version": None})
    assert response.status_code == 200
    assert form_error(response.get_data(as_text=True)) == RELOAD_MESSAGE
    assert [(p.version, p.phone) for p in rows(app, Patient)] == before_patient
    assert [(e.id, e.version) for e in rows(app, Enrollment)] == before


def test_services_refuse_a_missing_expected_version(app, enrolled):
    with app.app_context():
        enrollment = db.session.get(Enrollment, enrolled["enrollment"])
        with pytest.raises(DomainError, match="Someone else changed this record"):
            milestones.record_milestones(
                enrollment, actor=User(**SETUP), values={}, expected_version=None
            )
        db.session.rollback()


# --- refused lookups are audited ------------------------------------------------------------


def denied_events(app, after: int) -> list[AuditEvent]:
    return [e for e in rows(app, AuditEvent) if e.seq > after and e.action.value == "access_denied"]


def last_seq(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0)))


def test_a_program_of_another_site_is_not_found_and_the_refusal_recorded(
    app, client_as, make_site, make_program, site
):
    east_program = make_program(site_id=make_site("EAST"))
    admin = client_as("admin")  # MAIN only
    url = f"/admin/programs/{east_program}/edit"
    before = last_seq(app)
    assert admin.get(url).status_code == 404
    token = admin.csrf_token("/admin/programs/")
    refused = admin.post(url, data={**program_data(site, name="Taken over"), "csrf_token": token})
    assert refused.status_code == 404
    denied = denied_events(app, before)
    assert [(e.entity_type, e.entity_id, e.user_id) for e in denied] == [
        ("program", str(east_program), admin.user_id)
    ] * 2
    assert rows(app, Program)[0].name == "Methadone maintenance"


def test_emergency_access_to_an_unknown_mrn_is_a_recorded_refusal(app, client_as, make_site):
    clinician = client_as("clinician", site_ids=[make_site("EAST")])
    before = last_seq(app)
    response = send(
        clinician,
        "/patients/break-glass",
        {"mrn": "MAIN-999999", "reason": "Unconscious at the EAST emergency room"},
    )
    assert field_error(response.get_data(as_text=True), "mrn") == (
        "No patient has that medical record number."
    )
    denied = denied_events(app, before)
    assert [(e.entity_type, e.user_id) for e in denied] == [("patient", clinician.user_id)]
    assert "MAIN-999999" not in denied[0].details


# --- control characters never reach the database ---------------------------------------------


def test_a_nul_byte_in_a_name_is_a_field_error_not_a_500(app, client_as, site):
    response = send(client_as("staff"), "/patients/new", registration(site, first_name="Jo\x00"))
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "first_name") == CONTROL_CHARACTER_MESSAGE
    assert rows(app, Patient) == []


def test_a_nul_byte_in_the_emergency_access_mrn_is_a_field_error_not_a_500(
    app, client_as, make_site
):
    clinician = client_as("clinician", site_ids=[make_site("EAST")])
    response = send(
        clinician,
        "/patients/break-glass",
        {"mrn": "MAIN-\x00000001", "reason": "Unconscious at the EAST emergency room"},
    )
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "mrn") == CONTROL_CHARACTER_MESSAGE
    assert rows(app, BreakGlassGrant) == []

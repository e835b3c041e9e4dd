"""The patient registry: registration through the form, duplicate warnings, search (and
its indexes on both engines), demographics edits with optimistic locking, entered in
error, and site scoping of charts."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.patients import registry, search
from clinic.patients.models import Patient
from tests.conftest import ON_POSTGRES

CHICAGO = ZoneInfo("America/Chicago")


def today() -> dt.date:
    return dt.datetime.now(CHICAGO).date()


def patient_form(site_id: int, **overrides) -> dict:
    data = {
        "site_id": str(site_id),
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1990-01-02",
        "sex_at_birth": "female",
        "primary_substance": "heroin",
        "intake_date": today().isoformat(),
        "phone": "312-555-0100",
        "city": "Springfield",
    }
    data.update(overrides)
    return data


def patients(app) -> list[Patient]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Patient).order_by(Patient.id)))
        db.session.expunge_all()
        return found


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return match.group(1) if match else ""


def names_listed(html: str) -> set[str]:
    return set(re.findall(r'href="/patients/\d+">([^<]+)</a>', html))


def search_names(client, text: str) -> set[str]:
    """Who a search finds: the names listed, or the one patient whose chart a search
    with a single match opens directly."""
    response = client.get("/patients/", query_string={"q": text})
    if response.status_code == 302:
        location = response.headers["Location"]
        assert re.fullmatch(r"/patients/\d+", location), location
        chart = client.get(location).get_data(as_text=True)
        found = re.findall(r'data-testid="patient-name">([^<]+?)\s*(?:<|$)', chart)
    else:
        assert response.status_code == 200
        found = names_listed(response.get_data(as_text=True))
    return {html.unescape(name) for name in found}


# --- posting a form as the browser does ----------------------------------------------------

_FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
_INPUT_RE = re.compile(r"<input\b[^>]*>")
_ATTR_RE = re.compile(r'([a-z_-]+)="([^"]*)"')


def hidden_fields(html: str, action: str, *, same_page: bool) -> dict[str, str]:
    """The hidden inputs (CSRF token, record version, submission token) of the page's form
    that posts to ``action`` (``same_page``: the page's own URL, so also a form without an
    action attribute)."""
    for attrs, body in _FORM_RE.findall(html):
        form_attrs = dict(_ATTR_RE.findall(attrs))
        if form_attrs.get("method", "get").lower() != "post":
            continue
        if form_attrs.get("action", action if same_page else None) != action:
            continue
        fields = {}
        for tag in _INPUT_RE.findall(body):
            input_attrs = dict(_ATTR_RE.findall(tag))
            if input_attrs.get("type") == "hidden" and "name" in input_attrs:
                fields[input_attrs["name"]] = input_attrs.get("value", "")
        return fields
    raise AssertionError(f"no form posting to {action or 'the page'}")


def send(client, url: str, data: dict | None = None, *, form_url: str | None = None, **kwargs):
    """GET the page holding the form (``form_url``, default ``url``), then POST it with the
    form's hidden fields and ``data`` on top (a value of None leaves that field out)."""
    page = client.get(form_url or url)
    assert page.status_code == 200, (form_url or url, page.status_code)
    fields = hidden_fields(page.get_data(as_text=True), url, same_page=form_url in (None, url))
    fields.update(data or {})
    return client.post(url, data={k: v for k, v in fields.items() if v is not None}, **kwargs)


# --- registration ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_registration_gives_an_mrn_and_opens_the_chart(app, client_as, site, role):
    client = client_as(role)
    response = send(client, "/patients/new", patient_form(site))
    assert response.status_code == 302
    [patient] = patients(app)
    assert response.headers["Location"].endswith(f"/patients/{patient.id}")
    assert patient.mrn == "MAIN-000001"
    assert (patient.first_name, patient.last_name, patient.city) == ("Ann", "Lee", "Springfield")
    assert patient.created_by_id == client.user_id

    chart = client.get(response.headers["Location"])
    assert chart.status_code == 200
    assert "MAIN-000001" in chart.get_data(as_text=True)

    second = send(client, "/patients/new", patient_form(site, first_name="Bea"))
    assert second.status_code == 302
    assert [p.mrn for p in patients(app)] == ["MAIN-000001", "MAIN-000002"]


def test_single_site_user_registers_with_the_form_as_rendered(app, client_as, site):
    client = client_as("staff")
    page = client.get("/patients/new").get_data(as_text=True)
    # No site to choose: the one site travels in a hidden field, as a browser sends it.
    assert 'id="site_id"' not in page
    assert f'<input type="hidden" name="site_id" value="{site}">' in page
    data = patient_form(site)
    response = send(client, "/patients/new", data)
    assert response.status_code == 302
    assert len(patients(app)) == 1


def tomorrow() -> str:
    return (today() + dt.timedelta(days=1)).isoformat()


BAD_INPUT = [
    pytest.param({"first_name": ""}, "first_name", "This field is required.", id="no-first"),
    pytest.param({"last_name": "   "}, "last_name", "This field is required.", id="no-last"),
    pytest.param(
        {"first_name": "!!!"}, "first_name", "Enter a first name with at least one", id="no-letter"
    ),
    pytest.param(
        {"date_of_birth": "FUTURE"}, "date_of_birth", "date of birth is in the future", id="dob"
    ),
    pytest.param(
        {"date_of_birth": "1890-05-05"}, "date_of_birth", "Check the year of birth", id="dob-1890"
    ),
    pytest.param(
        {"date_of_birth": "1990-01-02", "intake_date": "1989-12-31"},
        "intake_date",
        "intake date is before the date of birth",
        id="intake-before-dob",
    ),
    pytest.param(
        {"intake_date": "FUTURE"}, "intake_date", "intake date is in the future", id="intake"
    ),
    pytest.param(
        {"date_of_birth": "1990-02-30"}, "date_of_birth", "Not a valid date value.", id="feb-30"
    ),
    pytest.param(
        {"date_of_birth": "yesterday"}, "date_of_birth", "Not a valid date value.", id="text"
    ),
    pytest.param(
        {"first_name": "Jo\x00"},
        "first_name",
        "Remove the control or invisible formatting characters",
        id="nul",
    ),
    pytest.param(
        {"email": "not an email"},
        "email",
        "email",
        id="bad-email",
    ),
]


@pytest.mark.parametrize(("overrides", "field", "message"), BAD_INPUT)
def test_bad_registration_input_is_a_field_message(app, client_as, site, overrides, field, message):
    overrides = {k: tomorrow() if v == "FUTURE" else v for k, v in overrides.items()}
    client = client_as("staff")
    response = send(client, "/patients/new", patient_form(site, **overrides))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message and message.lower() in field_error(html, field).lower()
    # The rest of what was typed is still there; nothing was saved.
    assert 'value="312-555-0100"' in html
    assert 'value="Springfield"' in html
    if field != "last_name":
        assert 'value="Lee"' in html
    assert patients(app) == []


# --- duplicates ----------------------------------------------------------------------------


def test_same_name_and_birth_date_warns_until_confirmed(app, client_as, site, make_patient):
    make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2))
    client = client_as("staff")
    data = patient_form(site, first_name="JO", last_name="smith", date_of_birth="1980-04-02")

    warned = send(client, "/patients/new", data)
    assert warned.status_code == 200
    html = warned.get_data(as_text=True)
    box = html.split('data-testid="duplicates"', 1)[1].split("</div>", 1)[0]
    assert "Smith, Jo" in box and "MAIN-000001" in box and "born 2 Apr 1980" in box
    assert 'name="confirm_duplicate"' in html
    assert 'value="312-555-0100"' in html
    assert len(patients(app)) == 1

    confirmed = send(client, "/patients/new", {**data, "confirm_duplicate": "y"})
    assert confirmed.status_code == 302
    assert [p.mrn for p in patients(app)] == ["MAIN-000001", "MAIN-000002"]


def test_same_name_at_another_site_warns_with_site_and_mrn_only(
    app, client_as, site, make_site, make_patient
):
    """Issue 9: the duplicate check covers every site; a match the user may not open is
    shown by site and MRN only (no name, no date of birth, no link), and recorded."""
    east = make_site("EAST", "East Side Clinic")
    make_patient("Jo", "Smith", site_id=east, date_of_birth=dt.date(1980, 4, 2), city="Eastville")
    client = client_as("staff")
    data = patient_form(site, first_name="Jo", last_name="Smith", date_of_birth="1980-04-02")
    warned = send(client, "/patients/new", data)
    assert warned.status_code == 200
    html = warned.get_data(as_text=True)
    box = html.split('data-testid="duplicates"', 1)[1].split("</div>", 1)[0]
    assert "EAST — East Side Clinic, MRN EAST-000001" in box
    assert "Smith, Jo" not in box and "Eastville" not in box
    assert 'href="/patients/' not in box
    assert 'value="Springfield"' in html  # the input is kept
    assert patients(app)[0].mrn == "EAST-000001" and len(patients(app)) == 1
    # Telling MAIN staff that EAST treats someone of this name is a disclosure: recorded.
    from clinic.audit.models import AuditEvent

    with app.app_context():
        shown = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "duplicate_warning")
        ).all()
        assert [(e.patient_id, e.user_id, e.site_id) for e in shown] == [
            (patients(app)[0].id, client.user_id, east)
        ]

    confirmed = send(client, "/patients/new", {**data, "confirm_duplicate": "y"})
    assert confirmed.status_code == 302
    assert [(p.mrn, p.duplicate_confirmed) for p in patients(app)] == [
        ("EAST-000001", False),
        ("MAIN-000001", True),
    ]


def test_visible_duplicate_opens_in_a_new_tab_so_the_form_is_kept(client_as, site, make_patient):
    make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2))
    client = client_as("staff")
    html = send(
        client,
        "/patients/new",
        patient_form(site, first_name="Jo", last_name="Smith", date_of_birth="1980-04-02"),
    ).get_data(as_text=True)
    box = html.split('data-testid="duplicates"', 1)[1].split("</div>", 1)[0]
    assert re.search(r'<a [^>]*href="/patients/\d+" target="_blank" rel="noopener">', box)


def test_different_birth_date_is_no_duplicate(app, client_as, site, make_patient):
    make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2))
    client = client_as("staff")
    response = send(
        client,
        "/patients/new",
        patient_form(site, first_name="Jo", last_name="Smith", date_of_birth="1980-04-03"),
    )
    assert response.status_code == 302


# --- search --------------------------------------------------------------------------------


@pytest.fixture
def people(app, site, make_site, make_patient) -> dict[str, int]:
    east = make_site("EAST")
    ids = {
        "smith": make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2)),
        "jones": make_patient(
            "Robert", "Jones", preferred_name="Bobby", date_of_birth=dt.date(1975, 6, 7)
        ),
        "nunez": make_patient("María", "Núñez", date_of_birth=dt.date(1991, 3, 3)),
        "error": make_patient("Jo", "Smithson", date_of_birth=dt.date(1980, 4, 2)),
        "east": make_patient("Jo", "Smithers", site_id=east, date_of_birth=dt.date(1980, 4, 2)),
    }
    with app.app_context():
        actor = User(id=None, username="setup", all_sites=True)
        patient = db.session.get(Patient, ids["error"])
        registry.mark_entered_in_error(
            patient, actor=actor, reason="registered twice by mistake", expected_version=1
        )
        db.session.commit()
    return ids


SEARCHES = [
    ("smi jo", {"Smith, Jo"}),
    ("jo smi", {"Smith, Jo"}),
    ("SMITH", {"Smith, Jo"}),
    ("bobby", {"Jones, Robert"}),
    ("rob jon", {"Jones, Robert"}),
    ("nun", {"Núñez, María"}),
    ("Núñez", {"Núñez, María"}),
    ("maria", {"Núñez, María"}),
    ("MAIN-000001", {"Smith, Jo"}),
    ("main-000002", {"Jones, Robert"}),
    ("MAIN-1", set()),
    ("MAIN-00000", set()),
    ("1980-04-02", {"Smith, Jo"}),
    ("04/02/1980", {"Smith, Jo"}),
    ("smith jones", set()),
    ("zzz", set()),
]


@pytest.mark.parametrize(("text", "expected"), SEARCHES)
def test_search(client_as, people, text, expected):
    assert search_names(client_as("staff"), text) == expected


def test_list_is_limited_to_the_users_sites_and_hides_entered_in_error(
    client_as, people, make_site
):
    main_staff = client_as("staff")
    listed = names_listed(main_staff.get("/patients/").get_data(as_text=True))
    assert listed == {"Smith, Jo", "Jones, Robert", "Núñez, María"}

    everywhere = client_as("admin", all_sites=True)
    listed = names_listed(everywhere.get("/patients/?q=smi").get_data(as_text=True))
    assert listed == {"Smith, Jo", "Smithers, Jo"}  # never the one entered in error


def test_search_of_another_sites_mrn_finds_nothing(app, client_as, people):
    with app.app_context():
        east_mrn = db.session.get(Patient, people["east"]).mrn
    response = client_as("staff").get("/patients/", query_string={"q": east_mrn})
    assert names_listed(response.get_data(as_text=True)) == set()


@pytest.mark.parametrize("text", ["smi jo", "nun", "MAIN-000001", "1980-04-02", "04/02/1980"])
def test_searches_use_indexes(app, make_user, people, text):
    user_id = make_user("staff")
    with app.app_context():
        user = db.session.get(User, user_id)
        query = search.search_patients(user, text)
        sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        if ON_POSTGRES:
            db.session.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(db.session.execute(sa.text(f"EXPLAIN {sql}")).scalars())
            assert "Seq Scan on patient" not in plan, plan
            assert "Index" in plan or "Bitmap" in plan, plan
        else:
            rows = db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")).all()
            plan = "\n".join(row[-1] for row in rows)
            for line in plan.splitlines():
                if "SCAN patient" in line:
                    assert "USING" in line and "INDEX" in line, plan
        db.session.rollback()


def test_name_search_uses_the_name_key_indexes(app, people):
    """Not just the site index: the prefix ranges are served by the name-key indexes."""
    with app.app_context():
        query = search.search_patients(User(id=None, all_sites=True), "smi jo")
        sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        if ON_POSTGRES:
            db.session.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(db.session.execute(sa.text(f"EXPLAIN {sql}")).scalars())
        else:
            plan = "\n".join(
                row[-1] for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"))
            )
        db.session.rollback()
    assert "ix_patient_name_token_token" in plan, plan
    assert "Seq Scan on patient" not in plan
    assert not any("SCAN patient" in line and "INDEX" not in line for line in plan.splitlines()), (
        plan
    )


# --- editing with optimistic locking --------------------------------------------------------


def edit_form(**overrides) -> dict:
    data = {
        "first_name": "Jo",
        "last_name": "Smith",
        "date_of_birth": "1980-04-02",
        "sex_at_birth": "female",
        "primary_substance": "fentanyl",
        "intake_date": "2026-01-05",
    }
    data.update(overrides)
    return data


def version_on(html: str) -> str:
    return re.search(r'name="version"[^>]*value="(\d+)"', html).group(1)


def test_edit_demographics(app, client_as, make_patient):
    patient_id = make_patient()
    client = client_as("staff")
    url = f"/patients/{patient_id}/edit"
    page = client.get(url).get_data(as_text=True)
    assert 'value="Smith"' in page
    response = send(client, url, edit_form(phone="312-555-7777", version=version_on(page)))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/patients/{patient_id}")
    [patient] = patients(app)
    assert patient.phone == "+13125557777"
    assert patient.version == 2


def test_edit_refuses_bad_input_and_keeps_it(app, client_as, make_patient):
    patient_id = make_patient()
    client = client_as("staff")
    url = f"/patients/{patient_id}/edit"
    response = send(
        client, url, edit_form(date_of_birth=tomorrow(), phone="312-555-7777", version="1")
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "in the future" in field_error(html, "date_of_birth")
    assert 'value="312-555-7777"' in html
    [patient] = patients(app)
    assert patient.phone is None and patient.date_of_birth == dt.date(1980, 4, 2)


def test_second_of_two_concurrent_edits_gets_a_conflict(app, client_as, make_patient):
    patient_id = make_patient()
    url = f"/patients/{patient_id}/edit"
    first, second = client_as("staff"), client_as("staff")
    first_page = first.get(url).get_data(as_text=True)
    second_page = second.get(url).get_data(as_text=True)
    first_token = re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', first_page).group(1)
    second_token = re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', second_page).group(1)

    saved = first.post(
        url,
        data=edit_form(
            phone="312-555-1111", version=version_on(first_page), csrf_token=first_token
        ),
    )
    assert saved.status_code == 302

    refused = second.post(
        url,
        data=edit_form(
            phone="312-555-2222",
            city="Shelbyville",
            version=version_on(second_page),
            csrf_token=second_token,
        ),
    )
    assert refused.status_code == 200
    html = refused.get_data(as_text=True)
    assert "Someone else changed this record" in html
    assert 'value="312-555-2222"' in html and 'value="Shelbyville"' in html
    [patient] = patients(app)
    assert patient.phone == "+13125551111"
    assert patient.city is None
    assert patient.version == 2


def test_clinicians_cannot_edit_demographics(app, client_as, make_patient):
    patient_id = make_patient()
    assert client_as("clinician").get(f"/patients/{patient_id}/edit").status_code == 403
    assert client_as("clinician").get("/patients/new").status_code == 403


# --- entered in error -----------------------------------------------------------------------


def test_admin_marks_a_patient_entered_in_error(app, client_as, make_patient):
    patient_id = make_patient()
    admin = client_as("admin")
    url = f"/patients/{patient_id}/entered-in-error"

    short = send(admin, url, {"reason": "oops"})
    assert short.status_code == 200
    assert "between 10 and 500" in field_error(short.get_data(as_text=True), "reason")
    padded = send(admin, url, {"reason": "   oops        "})
    assert padded.status_code == 200
    assert "at least 10 characters" in field_error(padded.get_data(as_text=True), "reason")
    assert patients(app)[0].entered_in_error_at is None

    done = send(admin, url, {"reason": "Registered twice at the front desk"})
    assert done.status_code == 302
    [patient] = patients(app)  # never deleted
    assert patient.entered_in_error_at is not None
    assert patient.entered_in_error_reason == "Registered twice at the front desk"
    assert patient.entered_in_error_by_id == admin.user_id

    assert names_listed(admin.get("/patients/").get_data(as_text=True)) == set()
    chart = admin.get(f"/patients/{patient_id}")
    assert chart.status_code == 200
    assert "Registered twice at the front desk" in chart.get_data(as_text=True)
    # A record entered in error can no longer be edited: the page says so, with no form.
    edit_page = admin.get(f"/patients/{patient_id}/edit")
    assert edit_page.status_code == 200
    edit_html = edit_page.get_data(as_text=True)
    assert "entered in error and can no longer be changed" in edit_html
    assert 'name="first_name"' not in edit_html


def test_entered_in_error_refused_while_enrolled(
    app, client_as, make_patient, make_program, make_enrollment
):
    patient_id = make_patient()
    make_enrollment(patient_id, make_program())
    admin = client_as("admin")
    response = send(
        admin,
        f"/patients/{patient_id}/entered-in-error",
        {"reason": "Registered twice at the desk"},
    )
    assert response.status_code == 200
    assert "Discharge the patient" in response.get_data(as_text=True)
    assert patients(app)[0].entered_in_error_at is None


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_admins_mark_entered_in_error(app, client_as, make_patient, role):
    patient_id = make_patient()
    client = client_as(role)
    url = f"/patients/{patient_id}/entered-in-error"
    assert client.get(url).status_code == 403
    token = client.csrf_token(f"/patients/{patient_id}")
    response = client.post(
        url, data={"reason": "Registered twice at the desk", "csrf_token": token}
    )
    assert response.status_code == 403
    assert patients(app)[0].entered_in_error_at is None


# --- site scoping ---------------------------------------------------------------------------


def test_patients_of_other_sites_are_not_found(app, client_as, make_site, make_patient):
    east = make_site("EAST")
    patient_id = make_patient(site_id=east)
    for role in ("staff", "clinician", "admin"):
        client = client_as(role)
        assert client.get(f"/patients/{patient_id}").status_code == 404, role
        if role != "clinician":
            assert client.get(f"/patients/{patient_id}/edit").status_code == 404, role
    staff = client_as("staff")
    token = staff.csrf_token("/patients/")
    refused = staff.post(
        f"/patients/{patient_id}/edit",
        data=edit_form(phone="312-555-9999", version="1", csrf_token=token),
    )
    assert refused.status_code == 404
    assert patients(app)[0].phone is None

    east_staff = client_as("staff", site_ids=[east])
    assert east_staff.get(f"/patients/{patient_id}").status_code == 200
    assert east_staff.get(f"/patients/{patient_id}/edit").status_code == 200
    east_clinician = client_as("clinician", site_ids=[east])
    assert east_clinician.get(f"/patients/{patient_id}").status_code == 200
    assert client_as("admin", all_sites=True).get(f"/patients/{patient_id}").status_code == 200


def test_staff_cannot_register_at_another_site(app, client_as, site, make_site):
    east = make_site("EAST")
    client = client_as("staff", site_ids=[site])
    response = send(client, "/patients/new", patient_form(east))
    assert response.status_code == 200  # refused: EAST is not one of the choices
    page = html.unescape(response.get_data(as_text=True))
    assert "Not a valid choice" not in page
    # One site: the field is hidden, so the refusal is on top of the form, in plain words.
    assert "The site of this form is not one of yours" in page
    assert patients(app) == []


def test_the_service_refuses_registration_at_another_site(app, make_user, site, make_site):
    from clinic.errors import DomainError
    from clinic.sites.models import Site

    east = make_site("EAST")
    user_id = make_user("staff", site_ids=[site])
    with app.app_context():
        with pytest.raises(DomainError) as refused:
            registry.register_patient(
                actor=db.session.get(User, user_id),
                site=db.session.get(Site, east),
                data=registry.Demographics.from_mapping(
                    {
                        **patient_form(site),
                        "date_of_birth": dt.date(1990, 1, 2),
                        "intake_date": today(),
                    }
                ),
            )
        assert (refused.value.message, refused.value.field) == (
            "You can only register patients at your own sites.",
            "site_id",
        )
        db.session.rollback()
    assert patients(app) == []


def test_a_user_of_several_sites_chooses_the_site_it_does_not_start_chosen(
    app, client_as, site, make_site
):
    east = make_site("EAST")
    client = client_as("staff", site_ids=[site, east])
    page = client.get("/patients/new").get_data(as_text=True)
    select = re.search(r'<select[^>]*name="site_id".*?</select>', page, re.S).group(0)
    # The browser shows the first option when none is selected: "Choose…".
    assert re.search(r'<select[^>]*>\s*<option value="0">Choose…</option>', select)
    assert "selected" not in select
    data = patient_form(site)
    data["site_id"] = "0"
    response = send(client, "/patients/new", data)
    assert response.status_code == 200
    assert patients(app) == []
    assert 'id="site_id-error"' in response.get_data(as_text=True)


def test_the_chart_has_one_h1_and_so_do_the_pages_under_it(app, client_as, make_patient):
    patient_id = make_patient()
    client = client_as("clinician")
    chart = client.get(f"/patients/{patient_id}").get_data(as_text=True)
    assert chart.count("<h1") == 1
    assert re.search(r'<h1[^>]*data-testid="patient-name"', chart)
    admit = client.get(f"/patients/{patient_id}/admit").get_data(as_text=True)
    assert admit.count("<h1") == 1

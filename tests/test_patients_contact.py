"""Phone numbers (patient and emergency contact) validated with phonenumbers, stored in
E.164 and shown formatted; US ZIP codes in the USPS format; an implausible age at intake
warned about (not refused), confirmed with a check box like the duplicate warning."""

from __future__ import annotations

import datetime as dt
import html as html_text

import pytest

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.patients import registry
from clinic.patients.contact import (
    PHONE_MESSAGE,
    ZIP_MESSAGE,
    InvalidContact,
    format_phone,
    normalise_phone,
    normalise_zip,
)
from clinic.patients.models import Patient
from tests.test_patients_registry import field_error, patient_form, patients, send, today


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("(312) 555-0147", "+13125550147"),
        ("312-555-0147", "+13125550147"),
        ("3125550147", "+13125550147"),
        ("+1 312 555 0147", "+13125550147"),
        ("1-800-273-8255", "+18002738255"),
        ("+44 20 7946 0958", "+442079460958"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_phone_numbers_are_stored_in_e164(typed, stored):
    assert normalise_phone(typed) == stored


@pytest.mark.parametrize(
    "typed", ["call me maybe", "555-0100", "312 555 01477", "1", "+1 312 555", "(000) 000-0000"]
)
def test_what_is_not_a_phone_number_is_refused(typed):
    with pytest.raises(InvalidContact) as error:
        normalise_phone(typed)
    assert error.value.message == PHONE_MESSAGE


def test_phone_numbers_are_shown_formatted():
    assert format_phone("+13125550147") == "(312) 555-0147"
    assert format_phone("+442079460958") == "+44 20 7946 0958"
    assert format_phone("555-0100") == "555-0100"  # stored before numbers were checked
    assert format_phone(None) == ""


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("60601", "60601"),
        (" 60601 ", "60601"),
        ("60601-1234", "60601-1234"),
        ("606011234", "60601-1234"),
        ("00501", "00501"),
        ("", None),
    ],
)
def test_zip_codes_in_the_usps_format(typed, stored):
    assert normalise_zip(typed) == stored


@pytest.mark.parametrize(
    "typed", ["ABCDE", "6060", "606011", "60601-12", "60601-12345", "60601 1234", "6060l"]
)
def test_what_is_not_a_zip_code_is_refused(typed):
    with pytest.raises(InvalidContact) as error:
        normalise_zip(typed)
    assert error.value.message == ZIP_MESSAGE


# --- through the registration form ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone", "call me maybe", PHONE_MESSAGE),
        ("emergency_contact_phone", "555-0100", PHONE_MESSAGE),
        ("postal_code", "ABCDE", ZIP_MESSAGE),
    ],
)
def test_bad_phone_or_zip_is_refused_next_to_the_field(app, client_as, site, field, value, message):
    response = send(client_as("staff"), "/patients/new", patient_form(site, **{field: value}))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html_text.unescape(field_error(html, field)) == message
    assert f'value="{value}"' in html  # kept, to be corrected
    assert 'value="Springfield"' in html  # the other entries too
    assert patients(app) == []


def test_phones_and_zip_stored_normalised_and_shown_formatted(app, client_as, site):
    client = client_as("staff")
    response = send(
        client,
        "/patients/new",
        patient_form(
            site,
            phone="312.555.0147",
            emergency_contact_name="Sam Lee",
            emergency_contact_phone="+44 20 7946 0958",
            postal_code="606011234",
        ),
    )
    assert response.status_code == 302
    [patient] = patients(app)
    assert (patient.phone, patient.emergency_contact_phone, patient.postal_code) == (
        "+13125550147",
        "+442079460958",
        "60601-1234",
    )
    chart = client.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "(312) 555-0147" in chart and "+44 20 7946 0958" in chart
    edit = client.get(f"/patients/{patient.id}/edit").get_data(as_text=True)
    assert 'value="(312) 555-0147"' in edit  # as people write it, not +13125550147


def test_editing_checks_the_phone_too(app, client_as, site, make_patient):
    patient_id = make_patient()
    client = client_as("staff")
    url = f"/patients/{patient_id}/edit"
    data = {
        "first_name": "Jo",
        "last_name": "Smith",
        "date_of_birth": "1980-04-02",
        "sex_at_birth": "female",
        "primary_substance": "fentanyl",
        "intake_date": "2026-01-05",
        "phone": "call me maybe",
    }
    response = send(client, url, data)
    assert field_error(response.get_data(as_text=True), "phone") == PHONE_MESSAGE
    with app.app_context():
        assert db.session.get(Patient, patient_id).version == 1


# --- an implausible age: a warning -------------------------------------------------------------


def born_years_before(day: dt.date, years: int, days: int = 0) -> dt.date:
    return day.replace(year=day.year - years) + dt.timedelta(days=days)


@pytest.mark.parametrize(
    ("years", "days", "warned"),
    [
        (12, 0, False),  # 12 today: plausible
        (12, 1, True),  # 12 tomorrow: 11 at intake
        (111, 1, False),  # 110, 111 tomorrow
        (111, 0, True),  # 111 today
        (126, 0, True),
    ],
)
def test_an_implausible_age_at_intake_is_warned_about(app, client_as, site, years, days, warned):
    intake = today()
    born = born_years_before(intake, years, days)
    client = client_as("staff")
    form = patient_form(site, date_of_birth=born.isoformat(), intake_date=intake.isoformat())
    response = send(client, "/patients/new", form)
    if not warned:
        assert response.status_code == 302
        return
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    age = registry.age_on(born, intake)
    assert field_error(html, "date_of_birth").startswith(
        f"With this date of birth the patient was {age} at intake."
    )
    assert 'data-testid="age-warning"' in html and 'name="confirm_age"' in html
    assert f'value="{born.isoformat()}"' in html and 'value="Springfield"' in html
    assert patients(app) == []
    # Confirmed: registered as typed.
    confirmed = send(client, "/patients/new", {**form, "confirm_age": "y"})
    assert confirmed.status_code == 302
    [patient] = patients(app)
    assert patient.date_of_birth == born


def test_the_service_warns_unless_confirmed(app, site):
    from clinic.sites.models import Site

    data = {
        "first_name": "Ann",
        "last_name": "Old",
        "date_of_birth": dt.date(1900, 1, 1),
        "sex_at_birth": "female",
        "primary_substance": "alcohol",
        "intake_date": dt.date(2026, 1, 5),
    }
    with app.app_context():
        actor = User(id=None, username="setup", all_sites=True)
        with pytest.raises(registry.ImplausibleAge) as error:
            registry.register_patient(
                actor=actor,
                site=db.session.get(Site, site),
                data=registry.Demographics.from_mapping(data),
            )
        assert (error.value.age, error.value.field) == (126, "date_of_birth")
        patient = registry.register_patient(
            actor=actor,
            site=db.session.get(Site, site),
            data=registry.Demographics.from_mapping(data),
            confirm_age=True,
        )
        assert patient.date_of_birth == dt.date(1900, 1, 1)


def test_an_edit_that_keeps_the_dates_does_not_ask_again(app, client_as, site):
    from clinic.sites.models import Site

    with app.app_context():
        patient_id = registry.register_patient(
            actor=User(id=None, username="setup", all_sites=True),
            site=db.session.get(Site, site),
            data=registry.Demographics.from_mapping(
                {
                    "first_name": "Jo",
                    "last_name": "Smith",
                    "date_of_birth": dt.date(1910, 1, 1),
                    "sex_at_birth": "female",
                    "primary_substance": "fentanyl",
                    "intake_date": dt.date(2026, 1, 5),
                }
            ),
            confirm_age=True,
        ).id
        db.session.commit()
    client = client_as("staff")
    data = {
        "first_name": "Jo",
        "last_name": "Smith",
        "date_of_birth": "1910-01-01",
        "sex_at_birth": "female",
        "primary_substance": "fentanyl",
        "intake_date": "2026-01-05",
        "city": "Springfield",
    }
    assert send(client, f"/patients/{patient_id}/edit", data).status_code == 302
    # A new date of birth giving an implausible age asks again.
    response = send(client, f"/patients/{patient_id}/edit", {**data, "date_of_birth": "1911-01-01"})
    assert response.status_code == 200
    assert 'name="confirm_age"' in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["clinician"])
def test_roles_that_cannot_register(app, client_as, site, role):
    client = client_as(role)
    response = client.submit("/patients/new", patient_form(site), form_url="/patients/")
    assert response.status_code == 403
    assert patients(app) == []

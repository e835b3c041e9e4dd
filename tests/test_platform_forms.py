"""The shared form chrome (issue 9, "Forms and accessibility"): date hints that match the
browser, each message once and next to its field, risky choices starting empty,
aria-invalid on invalid fields, one <h1> per page, a readable page for a signed-out POST."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa
from flask import flash, render_template_string
from wtforms import DateField, HiddenField, StringField
from wtforms.validators import DataRequired

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.forms import ClinicForm


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


class DatesForm(ClinicForm):
    born = DateField("Date of birth", description="YYYY-MM-DD")
    seen = DateField("Seen on", description="The day of the visit (YYYY-MM-DD).")
    bounded = DateField("From", render_kw={"min": "2000-01-01", "max": "2999-12-31"})
    name = StringField("Name", description="YYYY-MM-DD")  # not a date: left alone


RENDER = """{% from "_macros/forms.html" import render_field, form_errors %}
{{ form_errors(form) }}
{% for f in form if f.name != "csrf_token" %}{{ render_field(f) }}{% endfor %}"""


def render(form) -> str:
    return html.unescape(render_template_string(RENDER, form=form))


# --- dates -----------------------------------------------------------------------------


def test_date_fields_drop_the_typed_format_hint_and_keep_four_digit_years(app):
    with app.test_request_context():
        form = DatesForm(meta={"csrf": False})
        assert form.born.description == ""
        assert form.seen.description == "The day of the visit"
        assert form.name.description == "YYYY-MM-DD"
        page = render(form)
    assert 'id="born-help"' not in page
    assert re.search(r'<input[^>]*id="born"[^>]*max="9999-12-31"', page)
    # A form's own bounds win.
    assert re.search(r'<input[^>]*id="bounded"[^>]*max="2999-12-31"', page)
    assert re.search(r'<input[^>]*id="bounded"[^>]*min="2000-01-01"', page)
    # The class's field is untouched: another form instance starts from the same text.
    assert DatesForm.born.kwargs["description"] == "YYYY-MM-DD"


# --- messages once, next to the field --------------------------------------------------


class NameForm(ClinicForm):
    name = StringField("Name", validators=[DataRequired(message="Enter a name.")])
    version = HiddenField()


def test_a_message_on_a_field_is_not_repeated_on_top(app):
    with app.test_request_context(method="POST", data={"name": ""}):
        form = NameForm(meta={"csrf": False})
        assert not form.validate()
        form.name.errors.append("Enter a name.")  # the same message twice on the field
        form.form_errors.append("Enter a name.")  # and on top
        page = render(form)
    assert page.count("Enter a name.") == 1
    assert "data-error-summary" not in page
    assert re.search(
        r'<input[^>]*aria-describedby="name-error"[^>]*aria-invalid="true"[^>]*id="name"', page
    ) or re.search(r'<input[^>]*aria-invalid="true"[^>]*id="name"', page)
    assert 'id="name-error"' in page


def test_a_message_for_a_field_that_is_not_shown_goes_on_top_once(app):
    with app.test_request_context(method="POST", data={"name": "Ana"}):
        form = NameForm(meta={"csrf": False})
        form.validate()
        form.version.errors = ["Someone else changed this record."]
        form.form_errors.append("Someone else changed this record.")
        page = render(form)
    assert page.count("Someone else changed this record.") == 1
    assert 'id="version-error"' not in page
    assert '<input id="version" name="version" type="hidden" value="">' in page
    assert re.search(
        r'<div class="alert alert-danger" role="alert" tabindex="-1" data-error-summary>', page
    )


def test_a_valid_field_is_not_marked_invalid(app):
    with app.test_request_context(method="POST", data={"name": "Ana"}):
        form = NameForm(meta={"csrf": False})
        assert form.validate()
        page = render(form)
    assert "aria-invalid" not in page
    assert "data-error-summary" not in page


PAGE = """{% extends "base.html" %}{% block content %}
{% from "_macros/forms.html" import render_field, form_errors %}
{{ form_errors(form) }}{{ render_field(form.name) }}{% endblock %}"""


def test_a_flashed_refusal_the_form_shows_is_not_shown_twice(app):
    # What clinic.web.show_domain_error does with a refusal of no field: flash it and
    # put it on the form. The page shows it once.
    with app.test_request_context(method="POST", data={"name": "Ana"}):
        form = NameForm(meta={"csrf": False})
        form.validate()
        flash("The discharge date is before the admission date.", "error")
        form.form_errors.append("The discharge date is before the admission date.")
        flash("Saved elsewhere.", "success")  # other messages still show
        page = html.unescape(render_template_string(PAGE, form=form))
    assert page.count("The discharge date is before the admission date.") == 1
    assert page.count("Saved elsewhere.") == 1


def test_a_flashed_refusal_is_shown_when_no_form_shows_it(app):
    with app.test_request_context():
        flash("You cannot deactivate yourself.", "error")
        page = render_template_string('{% extends "base.html" %}')
    assert page.count("You cannot deactivate yourself.") == 1


# --- risky choices start empty ---------------------------------------------------------


def test_new_user_role_starts_on_choose(client_as):
    admin = client_as("admin")
    page = text_of(admin.get("/admin/users/new"))
    select = re.search(r'<select[^>]*id="role"[^>]*>(.*?)</select>', page, re.S).group(1)
    options = re.findall(r"<option([^>]*)>([^<]*)</option>", select)
    assert options[0] == (' selected value=""', "Choose…") or (
        options[0][1] == "Choose…" and 'value=""' in options[0][0]
    )
    assert [o[1] for o in options] == ["Choose…", "Administrator", "Clinician", "Staff"]
    assert not any("selected" in attrs for attrs, label in options[1:])


def test_new_user_without_a_role_is_refused_next_to_the_field(app, client_as):
    admin = client_as("admin")
    response = admin.submit(
        "/admin/users/new",
        {
            "username": "newbie",
            "full_name": "New Bie",
            "role": "",
            "sites": "1",
            "password": "river lantern oboe thicket",
        },
    )
    page = text_of(response)
    assert response.status_code == 200
    assert re.search(r'id="role-error"[^>]*>Choose a role\.<', page)
    assert re.search(r'<select[^>]*aria-invalid="true"[^>]*id="role"', page)
    assert 'value="New Bie"' in page  # the rest kept
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.username == "newbie")) is None


@pytest.mark.parametrize("role", ["admin", "clinician", "staff"])
def test_new_user_with_each_role_chosen_is_created(app, client_as, role):
    admin = client_as("admin")
    response = admin.submit(
        "/admin/users/new",
        {
            "username": f"new-{role}",
            "full_name": "New Person",
            "role": role,
            "sites": "1",
            "password": "river lantern oboe thicket",
        },
    )
    assert response.status_code == 302, text_of(response)
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == f"new-{role}"))
        assert user.role == role


def test_the_edit_form_keeps_the_users_role_selected(client_as, make_user):
    admin = client_as("admin")
    target = make_user("clinician")
    page = text_of(admin.get(f"/admin/users/{target}/edit"))
    assert "Choose…" not in page
    assert re.search(r'<option selected value="clinician">', page)


# --- one <h1> per page, and the signed-out page --------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/account",
        "/account/password",
        "/account/mfa",
        "/admin/users/",
        "/admin/users/new",
        "/no-such-page",
    ],
)
def test_platform_pages_have_exactly_one_h1(client_as, path):
    admin = client_as("admin")
    page = admin.get(path).get_data(as_text=True)
    assert len(re.findall(r"<h1[\s>]", page)) == 1, path


def test_sign_in_page_has_exactly_one_h1(client):
    assert len(re.findall(r"<h1[\s>]", client.get("/login").get_data(as_text=True))) == 1


def test_a_post_without_a_session_says_signed_out_not_error_401(client):
    token = client.csrf_token("/login")
    response = client.post("/admin/users/new", data={"csrf_token": token, "full_name": "X"})
    assert response.status_code == 401
    page = text_of(response)
    assert "You are signed out" in page
    assert "Error 401" not in page
    assert 'href="/login"' in page
    assert len(re.findall(r"<h1[\s>]", page)) == 1

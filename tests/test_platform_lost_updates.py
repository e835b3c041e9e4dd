"""Nothing typed is lost (issue 9): two administrators editing the same program or the
same user account no longer silently undo each other's change. The second save from an
out-of-date form is refused with the record's current values beside the user's entries,
nothing saved; the form is re-armed, so saving again (having looked) goes through. A form
sent without its version is refused, never let through unchecked. A sign-in writes the
user's row but never counts as a profile change. A program form kept across a sign-in
shows what was typed, not the record's values."""

from __future__ import annotations

import datetime as dt
import html
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from flask import message_flashed
from wtforms import HiddenField, StringField

from clinic import web
from clinic.accounts import services as account_services
from clinic.accounts.models import User
from clinic.errors import CONFLICT_MESSAGE, ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import ClinicForm
from clinic.patients import common, program_settings
from clinic.patients.models import Program
from tests.conftest import CSRF_RE, login

CONFLICT = "Someone else changed this record after you opened it."
RELOAD = "This form is incomplete or out of date, so nothing was saved"
RESTORED_MESSAGE = "Your entries were kept while you signed in again."
CAPS = ("take_home_cap_days_0_14", "take_home_cap_days_15_30", "take_home_cap_days_31_plus")

_ROW_RE = re.compile(
    r'<tr[^>]*><th scope="row">(.*?)</th><td>(.*?)</td>'
    r"<td>(.*?)(?: <span[^>]*>\(differs\)</span>)?</td></tr>"
)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'<input[^>]*value="([^"]*)"[^>]*name="{name}"', page
    )
    assert match, f"no hidden {name} on the page"
    return match.group(1)


def opened(client, url: str) -> dict[str, str]:
    """Open the edit page as a browser does: the CSRF token and the version it carries."""
    page = client.get(url)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    return {"csrf_token": CSRF_RE.search(body).group(1), "version": hidden(body, "version")}


def conflict_table(response) -> dict[str, tuple[str, str]]:
    """The conflict box: field label -> (saved now, your entry)."""
    body = response.get_data(as_text=True)
    assert 'data-testid="conflict"' in body, "no conflict box"
    box = body[body.index('data-testid="conflict"') :]
    box = box[: box.index("</table>")]
    return {
        html.unescape(label): (html.unescape(saved), html.unescape(yours))
        for label, saved, yours in _ROW_RE.findall(box)
    }


def signed_in(app, username: str):
    browser = app.test_client()
    response = login(browser, username)
    assert response.status_code == 302, text_of(response)
    return browser


# --- programs ---------------------------------------------------------------------------


def program_form(**changes) -> dict:
    data = {
        "name": "Methadone maintenance",
        "kind": "methadone_otp",
        "active": "y",
        "care_plan_review_days": "90",
        "take_home_cap_days_0_14": "7",
        "take_home_cap_days_15_30": "14",
        "take_home_cap_days_31_plus": "28",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def program_of(app, program_id: int) -> Program:
    with app.app_context():
        program = db.session.get(Program, program_id)
        db.session.expunge(program)
        return program


def program_audit_updates(app, program_id: int) -> int:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(
                AuditEvent.entity_type == "program",
                AuditEvent.entity_id == str(program_id),  # a string column
                AuditEvent.action == "update",
            )
        )


@pytest.fixture
def admins(make_user):
    return {"ada": make_user("admin", "ada"), "bea": make_user("admin", "bea")}


def test_second_program_edit_from_the_same_version_shows_both_values_and_saves_nothing(
    app, admins, make_program
):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    assert ada_form["version"] == bea_form["version"] == "1"

    first = ada.post(url, data={**ada_form, **program_form(care_plan_review_days="60")})
    assert first.status_code == 302
    second = bea.post(
        url,
        data={**bea_form, **program_form(name="Methadone (main)", care_plan_review_days="30")},
    )

    assert second.status_code == 200
    assert CONFLICT in text_of(second)
    rows = conflict_table(second)
    assert rows["Care-plan review interval (days)"] == ("60", "30")
    assert rows["Name"] == ("Methadone maintenance", "Methadone (main)")
    assert rows["Kind"] == ("Methadone maintenance (OTP)", "Methadone maintenance (OTP)")
    # Bea's entries are still in the form; the record keeps Ada's change only.
    assert 'value="Methadone (main)"' in second.get_data(as_text=True)
    program = program_of(app, program_id)
    assert (program.name, program.care_plan_review_days, program.version) == (
        "Methadone maintenance",
        60,
        2,
    )
    assert program_audit_updates(app, program_id) == 1


def test_saving_again_after_seeing_the_program_conflict_goes_through(app, admins, make_program):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    assert ada.post(url, data={**ada_form, **program_form(active=None)}).status_code == 302
    conflict = bea.post(url, data={**bea_form, **program_form(care_plan_review_days="30")})
    assert conflict_table(conflict)["Open to admissions"] == ("no", "yes")
    rearmed = hidden(conflict.get_data(as_text=True), "version")
    assert rearmed == "2"

    again = bea.post(
        url,
        data={
            "csrf_token": bea_form["csrf_token"],
            "version": rearmed,
            **program_form(care_plan_review_days="30"),
        },
    )

    assert again.status_code == 302
    program = program_of(app, program_id)
    assert (program.active, program.care_plan_review_days, program.version) == (True, 30, 3)


def test_program_post_without_its_version_is_refused(app, admins, make_program):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    ada = signed_in(app, "ada")
    form = opened(ada, url)

    response = ada.post(
        url, data={"csrf_token": form["csrf_token"], **program_form(name="Crafted")}
    )

    assert response.status_code == 200
    assert RELOAD in text_of(response)
    assert 'value="Crafted"' in response.get_data(as_text=True)  # the input is kept
    assert program_of(app, program_id).name == "Methadone maintenance"


@pytest.mark.parametrize("version", [None, 0, 2])
def test_the_program_service_refuses_a_missing_or_other_version(app, site, make_program, version):
    program_id = make_program()
    with app.app_context():
        program = db.session.get(Program, program_id)
        settings = program_settings.ProgramSettings(
            name="Renamed",
            kind=program.kind,
            active=True,
            care_plan_review_days=90,
            take_home_cap_days_0_14=7,
            take_home_cap_days_15_30=14,
            take_home_cap_days_31_plus=28,
        )
        actor = User(id=None, username="setup", all_sites=True)
        with pytest.raises(DomainError, match=r"^Someone else changed this record"):
            program_settings.update_program(
                program, actor=actor, settings=settings, expected_version=version
            )
        db.session.rollback()
    assert program_of(app, program_id).name == "Methadone maintenance"


def test_a_new_program_needs_no_version(app, admins, site):
    ada = signed_in(app, "ada")
    page = ada.get("/admin/programs/new").get_data(as_text=True)
    assert 'name="version"' not in page
    response = ada.post(
        "/admin/programs/new",
        data={
            "csrf_token": CSRF_RE.search(page).group(1),
            "submission_token": hidden(page, "submission_token"),
            "site_id": str(site),
            **program_form(name="Outpatient", kind="outpatient", **dict.fromkeys(CAPS)),
        },
    )
    assert response.status_code == 302
    with app.app_context():
        assert (
            db.session.scalar(sa.select(Program.version).where(Program.name == "Outpatient")) == 1
        )


# --- a program form kept across a sign-in -------------------------------------------------


def sent_after_timeout(app, clock, start, url: str, typed: dict):
    """Ada opens ``url``, types, and sends it 15 minutes later (the idle sign-out)."""
    browser = signed_in(app, "ada")
    page = browser.get(url).get_data(as_text=True)
    fields = {"csrf_token": CSRF_RE.search(page).group(1)}
    for name in ("version", "submission_token"):
        if f'name="{name}"' in page:
            fields[name] = hidden(page, name)
    clock.move_to(start + dt.timedelta(minutes=16))
    response = browser.post(url, data={**fields, **typed})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/login?next={url}"
    back = login(browser, "ada", url=response.headers["Location"])
    assert back.status_code == 302 and back.headers["Location"] == url
    return browser


def test_restored_program_edit_shows_what_was_typed_not_the_record(app, admins, make_program):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    typed = program_form(
        name="Typed before the sign-out", kind="office_buprenorphine", care_plan_review_days="45"
    )
    for cap in CAPS:
        typed.pop(cap)
    start = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        browser = sent_after_timeout(app, clock, start, url, typed)
        page = browser.get(url)

    body = page.get_data(as_text=True)
    assert RESTORED_MESSAGE in text_of(page)
    assert 'value="Typed before the sign-out"' in body
    assert 'value="45"' in body
    assert re.search(r'<option selected value="office_buprenorphine">', body)
    assert hidden(body, "version") == "1"  # the version it was built from, kept
    program = program_of(app, program_id)
    assert (program.name, program.kind.value) == ("Methadone maintenance", "methadone_otp")


def test_restored_program_edit_still_meets_a_change_saved_meanwhile(app, admins, make_program):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    start = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        browser = sent_after_timeout(
            app, clock, start, url, program_form(care_plan_review_days="45")
        )
        bea = signed_in(app, "bea")
        bea_form = opened(bea, url)
        assert bea.post(url, data={**bea_form, **program_form(name="Bea's")}).status_code == 302
        page = browser.get(url).get_data(as_text=True)
        response = browser.post(
            url,
            data={
                "csrf_token": CSRF_RE.search(page).group(1),
                "version": hidden(page, "version"),
                **program_form(care_plan_review_days="45"),
            },
        )

    assert response.status_code == 200
    assert conflict_table(response)["Name"] == ("Bea's", "Methadone maintenance")
    assert program_of(app, program_id).care_plan_review_days == 90


def test_restored_new_program_form_shows_what_was_typed(app, admins, site):
    url = "/admin/programs/new"
    typed = {
        "site_id": str(site),
        **program_form(name="Typed new program", kind="outpatient", care_plan_review_days="30"),
    }
    for cap in CAPS:
        typed.pop(cap)
    start = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        browser = sent_after_timeout(app, clock, start, url, typed)
        page = browser.get(url)

    body = page.get_data(as_text=True)
    assert RESTORED_MESSAGE in text_of(page)
    assert 'value="Typed new program"' in body and 'value="30"' in body
    assert re.search(r'<option selected value="outpatient">', body)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Program.id))) == 0  # nothing saved


# --- user accounts ----------------------------------------------------------------------


@pytest.fixture
def target(make_user):
    return make_user("clinician", "tom", full_name="Tom Original", email="tom@example.org")


def user_form(site: int, **changes) -> dict:
    data = {
        "full_name": "Tom Original",
        "email": "tom@example.org",
        "role": "clinician",
        "sites": [site],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def user_of(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def test_second_user_edit_from_the_same_version_shows_both_values_and_saves_nothing(
    app, admins, target, site
):
    url = f"/admin/users/{target}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    assert ada_form["version"] == bea_form["version"] == "1"

    first = ada.post(url, data={**ada_form, **user_form(site, full_name="Tom Ada")})
    assert first.status_code == 302
    second = bea.post(url, data={**bea_form, **user_form(site, full_name="Tom Bea", role="staff")})

    assert second.status_code == 200
    assert CONFLICT in text_of(second)
    rows = conflict_table(second)
    assert rows["Full name"] == ("Tom Ada", "Tom Bea")
    assert rows["Role"] == ("Clinician", "Staff")
    assert rows["Email"] == ("tom@example.org", "tom@example.org")
    assert rows["Sites"][0] == rows["Sites"][1] == "MAIN — Main Street Clinic"
    assert 'value="Tom Bea"' in second.get_data(as_text=True)  # her entries are kept
    user = user_of(app, target)
    assert (user.full_name, user.role.value, user.profile_version) == ("Tom Ada", "clinician", 2)


def test_saving_again_after_seeing_the_user_conflict_goes_through(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    assert ada.post(url, data={**ada_form, **user_form(site, email="")}).status_code == 302
    conflict = bea.post(url, data={**bea_form, **user_form(site, full_name="Tom Bea")})
    assert conflict_table(conflict)["Email"] == ("—", "tom@example.org")
    rearmed = hidden(conflict.get_data(as_text=True), "version")
    assert rearmed == "2"

    again = bea.post(
        url,
        data={
            "csrf_token": bea_form["csrf_token"],
            "version": rearmed,
            **user_form(site, full_name="Tom Bea", email=""),
        },
    )

    assert again.status_code == 302
    user = user_of(app, target)
    assert (user.full_name, user.email, user.profile_version) == ("Tom Bea", None, 3)


def test_user_edit_without_its_version_is_refused(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada = signed_in(app, "ada")
    form = opened(ada, url)

    response = ada.post(
        url, data={"csrf_token": form["csrf_token"], **user_form(site, full_name="Crafted")}
    )

    assert response.status_code == 200
    assert RELOAD in text_of(response)
    assert user_of(app, target).full_name == "Tom Original"


@pytest.mark.parametrize("version", [None, 0, 2])
def test_update_user_refuses_a_missing_or_other_version(app, admins, target, site, version):
    with app.app_context():
        user = db.session.get(User, target)
        with pytest.raises(DomainError, match=r"^Someone else changed this record"):
            account_services.update_user(
                user,
                actor=db.session.get(User, admins["ada"]),
                full_name="Renamed",
                email=None,
                role=user.role,
                sites=user.sites,
                is_prescriber=False,
                all_sites=False,
                expected_version=version,
            )
        db.session.rollback()
    assert user_of(app, target).full_name == "Tom Original"


def test_a_sign_in_does_not_bump_the_profile_version(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada = signed_in(app, "ada")
    form = opened(ada, url)

    # Tom signs in, and a wrong password is counted: both write his row.
    assert login(app.test_client(), "tom", "not the password").status_code == 200
    tom = signed_in(app, "tom")
    assert tom.get("/").status_code == 200
    user = user_of(app, target)
    assert user.last_login_at is not None
    assert user.profile_version == 1

    saved = ada.post(url, data={**form, **user_form(site, full_name="Tom Renamed")})
    assert saved.status_code == 302  # no conflict: nobody changed the profile
    assert user_of(app, target).full_name == "Tom Renamed"


def test_nothing_changed_keeps_the_profile_version(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada = signed_in(app, "ada")
    response = ada.post(url, data={**opened(ada, url), **user_form(site)})
    assert response.status_code == 302
    assert user_of(app, target).profile_version == 1


def test_deactivation_and_reactivation_bump_the_profile_version(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada = signed_in(app, "ada")
    stale = opened(ada, url)
    for action, version in (("deactivate", 2), ("reactivate", 3)):
        page = f"/admin/users/{target}/{action}"
        assert ada.post(page, data={"csrf_token": ada.csrf_token(page)}).status_code == 302
        assert user_of(app, target).profile_version == version

    # A form opened before is out of date: refused, with the values beside.
    response = ada.post(url, data={**stale, **user_form(site, full_name="Tom Stale")})
    assert response.status_code == 200
    assert conflict_table(response)["Full name"] == ("Tom Original", "Tom Stale")


@pytest.mark.parametrize("service", ["deactivate_user", "reactivate_user"])
def test_deactivate_and_reactivate_refuse_an_other_version_when_given(app, admins, target, service):
    with app.app_context():
        user = db.session.get(User, target)
        if service == "reactivate_user":
            user.active = False
            db.session.commit()
        with pytest.raises(DomainError, match=r"^Someone else changed this record"):
            getattr(account_services, service)(
                user, actor=db.session.get(User, admins["ada"]), expected_version=7
            )
        db.session.rollback()
    assert user_of(app, target).active is (service == "deactivate_user")


def test_the_cli_deactivates_without_a_form_version(app, admins, target):
    with app.app_context():
        account_services.deactivate_user(db.session.get(User, target), actor=None)
        db.session.commit()
    user = user_of(app, target)
    assert (user.active, user.profile_version) == (False, 2)


def test_restored_user_edit_keeps_the_version_it_was_built_from(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    start = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        browser = sent_after_timeout(app, clock, start, url, user_form(site, full_name="Typed Tom"))
        bea = signed_in(app, "bea")
        assert (
            bea.post(url, data={**opened(bea, url), **user_form(site, email="")}).status_code == 302
        )
        page = browser.get(url).get_data(as_text=True)
        assert 'value="Typed Tom"' in page
        assert hidden(page, "version") == "1"
        response = browser.post(
            url,
            data={
                "csrf_token": CSRF_RE.search(page).group(1),
                "version": "1",
                **user_form(site, full_name="Typed Tom"),
            },
        )
    assert response.status_code == 200
    assert conflict_table(response)["Email"] == ("—", "tom@example.org")
    assert user_of(app, target).full_name == "Tom Original"


# --- one conflict display for every page ----------------------------------------------------


def test_every_service_refuses_a_stale_version_with_a_conflict_error(app, admins, target):
    with pytest.raises(ConflictError) as patient_conflict:
        common.check_version(2, 1)
    with app.app_context():
        user = db.session.get(User, target)
        with pytest.raises(ConflictError) as account_conflict:
            account_services.check_profile_version(user, 0)
    for conflict in (patient_conflict.value, account_conflict.value):
        assert isinstance(conflict, DomainError)  # every page's refusal handling applies
        assert conflict.message == CONFLICT_MESSAGE and conflict.field is None


def test_a_row_changed_under_the_save_is_a_conflict_error(app, site, make_program):
    from sqlalchemy.orm.exc import StaleDataError

    def raced():
        raise StaleDataError("UPDATE statement on table 'program' expected to update 1 row")

    with app.test_request_context():
        outcome = web.save(_NameForm(meta={"csrf": False}), raced)
    assert isinstance(outcome.error, ConflictError) and not outcome.saved


def test_a_conflict_is_recognised_by_its_type_not_its_words(app, make_program):
    program_id = make_program()
    with app.test_request_context():
        program = db.session.get(Program, program_id)
        form = _NameForm(meta={"csrf": False})
        same_words = web.Outcome(saved=False, error=DomainError(CONFLICT_MESSAGE))
        assert web.conflict_rows(same_words, form, program, lambda r: {}) is None
        conflict = web.Outcome(saved=False, error=ConflictError())
        rows = web.conflict_rows(conflict, form, program, lambda r: {"name": r.name})
        assert [(r.label, r.saved) for r in rows] == [("Name", "Methadone maintenance")]
        assert form.version.data == program.version  # re-armed


def test_conflict_rows_show_nothing_for_other_refusals(app):
    with app.test_request_context():
        outcome = web.Outcome(saved=False, error=DomainError("Enter a name.", field="name"))
        assert web.conflict_rows(outcome, None, None, lambda r: {}) is None


def test_the_conflict_sentence_is_written_once():
    clinic = Path(web.__file__).parent
    holding = sorted(
        str(path.relative_to(clinic))
        for path in clinic.rglob("*.py")
        if "Someone else changed this record" in path.read_text(encoding="utf-8")
    )
    assert holding == ["errors.py"]
    assert web.CONFLICT_MESSAGE is CONFLICT_MESSAGE  # what the pages' tests read


def test_the_user_edit_conflict_is_shown_once_on_top_of_the_form(app, admins, target, site):
    url = f"/admin/users/{target}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    assert (
        ada.post(url, data={**ada_form, **user_form(site, full_name="Tom Ada")}).status_code == 302
    )

    with flashed(app) as messages:
        second = bea.post(url, data={**bea_form, **user_form(site, full_name="Tom Bea")})

    page = text_of(second)
    assert page.count(CONFLICT) == 1
    assert re.search(r"data-error-summary>[^<]*" + re.escape(CONFLICT), page)
    assert messages == []  # on the form only: not also flashed (base.html hid the copy)
    assert CONFLICT not in text_of(bea.get(f"/admin/users/{target}"))


def test_a_refused_new_user_shows_the_refusal_once_next_to_its_field(app, admins, site):
    from clinic.accounts.services import USERNAME_TAKEN

    ada = signed_in(app, "ada")
    page = ada.get("/admin/users/new").get_data(as_text=True)
    with flashed(app) as messages:
        response = ada.post(
            "/admin/users/new",
            data={
                "csrf_token": CSRF_RE.search(page).group(1),
                "username": "ada",  # taken: a refusal next to its field
                "full_name": "Another Ada",
                "role": "staff",
                "sites": [site],
                "password": "a long enough passphrase 42",
            },
        )
    assert response.status_code == 200
    assert text_of(response).count(USERNAME_TAKEN) == 1
    assert re.search(r'id="username-error"[^>]*>' + re.escape(USERNAME_TAKEN), text_of(response))
    assert messages == []


def test_the_program_conflict_shows_the_dose_steps(app, admins, make_program):
    program_id = make_program()
    url = f"/admin/programs/{program_id}/edit"
    ada, bea = signed_in(app, "ada"), signed_in(app, "bea")
    ada_form, bea_form = opened(ada, url), opened(bea, url)
    first = ada.post(url, data={**ada_form, **program_form(methadone_step_mg="20")})
    assert first.status_code == 302
    second = bea.post(
        url, data={**bea_form, **program_form(methadone_step_mg="10.0", buprenorphine_step_mg="2")}
    )
    rows = conflict_table(second)
    assert rows["Methadone dose step (mg)"] == ("20", "10")
    assert rows["Buprenorphine dose step (mg)"] == ("4", "2")
    program = program_of(app, program_id)
    assert (program.methadone_step_mg, program.buprenorphine_step_mg) == (20, 4)
    assert program_audit_updates(app, program_id) == 1


@contextmanager
def flashed(app):
    """The messages flashed while the block runs (whether or not a page showed them)."""
    messages: list[str] = []

    def remember(sender, message, category):
        messages.append(message)

    with message_flashed.connected_to(remember, app):
        yield messages


class _NameForm(ClinicForm):
    name = StringField("Name")
    version = HiddenField()

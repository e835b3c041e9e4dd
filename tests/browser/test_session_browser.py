"""The session clock in a real browser (issue 9, "nothing typed is lost"): the warning a
minute before the idle sign-out (here: half of a short timeout), "Stay signed in" from the
keyboard, typing as activity, the page replaced at the sign-out, and a form sent after
the session ended coming back filled after the same user signs in again."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from playwright.sync_api import expect

from clinic.accounts.models import User, UserSession
from clinic.extensions import db
from tests.conftest import PASSWORD

# 12 seconds: the warning comes 6 s before, typing pings at most every 2.4 s.
SHORT_IDLE_MINUTES = 12 / 60


def sign_in(ui, username: str):
    page = ui.goto("/login", all_impacts=True)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check(all_impacts=True)
    return page


def test_warning_counts_down_and_stay_signed_in_works_from_the_keyboard(
    app, ui, make_user, username_of
):
    app.config["SESSION_IDLE_TIMEOUT_MINUTES"] = SHORT_IDLE_MINUTES
    page = sign_in(ui, username_of(make_user("staff")))
    ui.goto("/account", all_impacts=True)
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    expect(warning).to_be_visible(timeout=12_000)
    expect(warning).to_contain_text(re.compile(r"signed out in\s+\d seconds?"))
    stay = page.get_by_role("button", name="Stay signed in")
    expect(stay).to_be_focused()
    ui.check(all_impacts=True)  # the page with its warning open
    page.keyboard.press("Enter")
    expect(warning).to_be_hidden()
    # Past the first deadline: still here, still signed in.
    page.wait_for_timeout(7_000)
    assert page.url.endswith("/account")
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_at_the_idle_sign_out_the_page_is_replaced_by_the_sign_in_page(
    app, ui, make_user, username_of
):
    app.config["SESSION_IDLE_TIMEOUT_MINUTES"] = SHORT_IDLE_MINUTES
    page = sign_in(ui, username_of(make_user("staff")))
    ui.goto("/account", all_impacts=True)
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faccount$"), timeout=16_000)
    expect(page.get_by_text("You were signed out after a period of inactivity.")).to_be_visible()
    ui.check(all_impacts=True)
    expect(page.get_by_role("heading", name="Your account")).to_have_count(0)


def test_typing_in_a_form_keeps_the_session_alive(app, ui, make_user, username_of):
    app.config["SESSION_IDLE_TIMEOUT_MINUTES"] = SHORT_IDLE_MINUTES
    target = make_user("staff", full_name="Tom Original")
    page = sign_in(ui, username_of(make_user("admin")))
    ui.goto(f"/admin/users/{target}/edit", all_impacts=True)
    name = page.get_by_label("Full name")
    name.fill("")
    # 16 s of typing, longer than the 12 s timeout: no warning, no sign-out.
    for letter in "Tom Typist!":
        name.press_sequentially(letter)
        page.wait_for_timeout(1_500)
    expect(page.get_by_role("alertdialog")).to_be_hidden()
    page.get_by_role("button", name="Save").click()
    ui.check(all_impacts=True)
    expect(page.get_by_role("heading", name="Tom Typist!")).to_be_visible()


def test_form_sent_after_the_session_ended_comes_back_after_signing_in(
    app, ui, make_user, username_of
):
    target = make_user("staff", full_name="Tom Original")
    admin = make_user("admin")
    page = sign_in(ui, username_of(admin))
    ui.goto(f"/admin/users/{target}/edit", all_impacts=True)
    page.get_by_label("Full name").fill("Tom Kept-Across")
    # The laptop slept: the server's session timed out while the page's clock stood still.
    with app.app_context():
        db.session.execute(
            sa.update(UserSession)
            .where(UserSession.user_id == admin)
            .values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16))
        )
        db.session.commit()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("What you typed is kept: sign in again to see it.")).to_be_visible()
    ui.check(all_impacts=True)
    page.get_by_label("Username").fill(username_of(admin))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Full name")).to_have_value("Tom Kept-Across")
    expect(page.get_by_text("Your entries were kept while you signed in again.")).to_be_visible()
    ui.check(all_impacts=True)
    with app.app_context():
        assert db.session.get(User, target).full_name == "Tom Original"  # not saved yet
    page.get_by_role("button", name="Save").click()
    ui.check(all_impacts=True)
    expect(page.get_by_role("heading", name="Tom Kept-Across")).to_be_visible()

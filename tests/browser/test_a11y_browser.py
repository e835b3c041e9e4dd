"""Accessibility of the platform pages in a real browser (issue 9, "Forms and
accessibility"): focus moves to the first error after a failed submit, keyboard focus is
visible on the dark navigation bar (WCAG 2.2 2.4.11, 1.4.11: at least 3:1), and axe finds
no violation of any impact on the pages this part touches."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD


def sign_in(ui, username: str):
    page = ui.goto("/login", all_impacts=True)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check(all_impacts=True)
    return page


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_focus_moves_to_the_first_invalid_field_after_a_failed_submit(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    ui.goto("/admin/users/new", all_impacts=True)
    page.get_by_label("Username").fill("dan.miller")
    # Full name and role left empty: the first of them (in page order) takes the focus.
    page.get_by_label("Temporary password").fill("river lantern oboe thicket")
    page.get_by_role("button", name="Create user").click()
    ui.check(all_impacts=True)
    expect(page.get_by_label("Full name")).to_be_focused()
    expect(page.get_by_label("Full name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Full name")).to_have_accessible_description("This field is required.")
    expect(page.get_by_label("Role")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Username")).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Username")).to_have_value("dan.miller")


def test_focus_moves_to_the_error_summary_when_no_field_is_invalid(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    ui.goto("/account/password", all_impacts=True)
    # An expired form (its token removed): the message concerns no field.
    page.evaluate("document.querySelector('main form input[name=csrf_token]').value = 'stale'")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("violet tractor moonlight 1987")
    page.get_by_label("Repeat new password").fill("violet tractor moonlight 1987")
    page.get_by_role("button", name="Change password").click()
    ui.check(all_impacts=True)
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()


def _contrast(rgb_a: tuple[float, ...], rgb_b: tuple[float, ...]) -> float:
    def luminance(rgb):
        channels = []
        for c in rgb[:3]:
            c = c / 255
            channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    high, low = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def test_keyboard_focus_on_the_dark_navigation_bar_is_visible(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    page.get_by_role("link", name="Skip to main content").focus()
    for _ in range(4):  # the brand, then the first menu link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('nav-link')"):
            break
    style = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineColor, e.matches('.nav-link'),"
        " e.matches(':focus-visible')]; }"
    )
    assert style[3] and style[4], "a menu link has the keyboard focus"
    bar = page.locator("nav.navbar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert style[0] == "solid"
    assert float(style[1].removesuffix("px")) >= 2
    assert _contrast(_rgb(style[2]), _rgb(bar)) >= 3, (style, bar)


@pytest.mark.parametrize(
    "path",
    ["/", "/account", "/account/password", "/account/mfa", "/admin/users/", "/admin/users/new"],
)
def test_platform_pages_have_no_axe_violation_of_any_impact(ui, make_user, username_of, path):
    sign_in(ui, username_of(make_user("admin")))
    page = ui.goto(path, all_impacts=True)
    assert page.locator("h1").count() == 1


def test_user_pages_have_no_axe_violation_of_any_impact(ui, make_user, username_of):
    target = make_user("clinician")
    sign_in(ui, username_of(make_user("admin")))
    for path in (
        f"/admin/users/{target}",
        f"/admin/users/{target}/edit",
        f"/admin/users/{target}/reset-password",
    ):
        page = ui.goto(path, all_impacts=True)
        assert page.locator("h1").count() == 1, path

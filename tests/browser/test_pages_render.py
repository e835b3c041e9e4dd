"""The pages render with their stylesheet and pass axe."""

from playwright.sync_api import expect


def test_login_page_renders_with_bootstrap(ui):
    page = ui.goto("/login")
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.locator("nav.navbar")).to_be_visible()
    # Bootstrap's stylesheet is applied: the navbar is a flex container.
    display = page.locator("nav.navbar").evaluate("e => getComputedStyle(e).display")
    assert display == "flex"

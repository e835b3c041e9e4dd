"""Browser tests: Playwright driving Debian's chromium against a live server.

No ``playwright install``: the browser is ``/usr/bin/chromium`` (or ``$CHROMIUM``). Without
it the tests skip with the reason, unless ``REQUIRE_BROWSER=1``, when they fail.
Every page a test visits must pass axe with no serious or critical violation: use
``ui.goto()`` and ``ui.check()``; a page loaded but never checked fails the test.
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
BLOCKING_IMPACTS = {"serious", "critical"}
# axe-core's own run, as axe-playwright-python's Axe.run does it (only the violations are
# read, so only they come back to Python); ``null`` when the page has no axe yet.
AXE_RUN = (
    "() => window.axe ? axe.run({resultTypes: ['violations']})"
    ".then(results => ({violations: results.violations})) : null"
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            if not HAVE_CHROMIUM and not REQUIRE_BROWSER:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"chromium not found at {CHROMIUM} (apt-get install chromium)"
                    )
                )


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not HAVE_CHROMIUM:
        pytest.fail(f"REQUIRE_BROWSER=1 but chromium is not at {CHROMIUM}")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def live_server(app):
    """Serve the test's app on a free loopback port in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


class UI:
    """The page under test, with an accessibility check after every page load.

    axe-core (572 KB) is given to the page once, as a script every document of the page
    runs first, rather than sent and compiled again before each check."""

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.unchecked: list[str] = []
        page.add_init_script(script=AXE_SCRIPT)
        page.on("load", lambda p: self.unchecked.append(p.url))

    def goto(self, path: str, *, all_impacts: bool = False):
        self.page.goto(self.base_url + path)
        self.check(all_impacts=all_impacts)
        return self.page

    def check(self, *, all_impacts: bool = False) -> None:
        """Run axe on the current page; fail on serious or critical violations, or on a
        violation of any impact with ``all_impacts`` (the platform pages: issue 9)."""
        self.page.wait_for_load_state()
        results = self.page.evaluate(AXE_RUN)
        if results is None:  # a document loaded before the page had axe
            self.page.evaluate(AXE_SCRIPT)
            results = self.page.evaluate(AXE_RUN)
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:3])
            for v in results["violations"]
            if all_impacts or v.get("impact") in BLOCKING_IMPACTS
        ]
        assert not blocking, f"axe on {self.page.url}:\n" + "\n".join(blocking)
        self.unchecked = [u for u in self.unchecked if u != self.page.url]


@pytest.fixture
def ui(page, live_server):
    page.set_default_timeout(10_000)
    ui = UI(page, live_server)
    yield ui
    assert not ui.unchecked, f"pages loaded but never checked with axe: {ui.unchecked}"

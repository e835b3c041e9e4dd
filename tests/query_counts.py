"""The statement-count walk of the per-patient pages (no tests here): which endpoints show
or act on one patient (from the app's URL map), the ``histories`` fixture (a patient with a
SMALL history and one with a LARGE one, tests/patient_history.py) and the comparison.

A domain's module (tests/test_query_counts_<domain>.py) declares ``CASES``: for each of its
per-patient endpoints, who opens it and, where the number is meaningful, the exact count of
statements it runs. tests/test_query_counts_coverage.py fails when a per-patient GET page
of the URL map has no case in any module (or an explicit exclusion with its reason).
``Action`` measures a POST the same way (tests/test_query_counts_actions.py).

The histories are built once per worker and put back for each test (a snapshot of the
database, as conftest does for the walks over every endpoint).

Import ``histories_fixture`` and ``histories_database_uri`` into a module to use the
``histories`` fixture there.
"""

from __future__ import annotations

import datetime as dt
import html.parser
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, url_for

from clinic.extensions import db
from tests.conftest import (
    ON_POSTGRES,
    WALK,
    WalkSnapshot,
    login,
    main_site,
    make_app,
    patient_factory,
    program_factory,
    user_factory,
)
from tests.patient_history import LARGE, SMALL, Team, build_history, build_team

# URL variables naming a patient or a record of exactly one patient: a rule with one of
# these shows or acts on one patient.
PATIENT_VARIABLES = frozenset(
    {
        "patient_id",
        "enrollment_id",
        "order_id",
        "hold_id",
        "flag_id",
        "test_id",
        "call_back_id",
        "dispensing_id",
        "decision_id",
        "note_id",
        "counseling_note_id",
        "session_id",
        "attendee_id",
        "consent_id",
        "restriction_id",
        "referral_id",
        "support_person_id",
        "grant_id",
    }
)
# Every other URL variable, and why a rule with it is not a per-patient page. A variable
# in neither set fails tests/test_query_counts_coverage.py: classify it.
OTHER_VARIABLES = {
    "user_id": "a staff account (the user administration pages)",
    "program_id": "a program of a site",
    "site_id": "a site (calendar, counseling readers, the random draw)",
    "closure_id": "a holiday of a site's calendar",
    "resource_id": "a resource of the aftercare directory",
    "draw_id": "a random drug-test draw: a list of many patients (the schedule's pages)",
    "reader_id": "a site's counseling-note reader grant",
    "slug": "a network-wide report",
    "filename": "a static file",
    "action": "an account action (user administration)",
}


def per_patient_endpoints(app: Flask, method: str = "GET") -> set[str]:
    """The endpoints whose rule, for ``method``, carries a patient's variable."""
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if method in (rule.methods or ()) and rule.arguments & PATIENT_VARIABLES
    }


@dataclass(frozen=True)
class Case:
    """How a per-patient page is measured: signed in as ``role`` (``clinician``: the
    team's clinician with every flag), with the history's ids (``ids`` maps a URL variable
    to another key of the history, e.g. a draft note), ``query`` appended (``{name}``: the
    history's id of that name, e.g. a keyset cursor); ``statements``:
    the exact count, where a constant is meaningful; ``status`` expected for both;
    ``shows``: a piece of the page found more often for the large history than for the
    small one (the page lists the history, so a flat count means something)."""

    role: str = "clinician"
    ids: dict[str, str] = field(default_factory=dict)
    query: str = ""
    statements: int | None = None
    status: int = 200
    shows: str | None = None


@dataclass
class Histories:
    team: Team
    small: dict[str, int]
    large: dict[str, int]
    clients: dict[str, object]


# The histories take seconds to build: once per worker, kept as a snapshot of the database
# (conftest's ``WalkSnapshot``, as the walks over every endpoint do) and put back for each
# test; built again when older than ``WALK_SNAPSHOT_MAX_AGE`` or of another site day.
_snapshot: WalkSnapshot | None = None


def _fresh_snapshot(database_template, tmp_path_factory) -> WalkSnapshot:
    global _snapshot  # one per worker
    if _snapshot is not None and _snapshot.fresh():
        _snapshot.just_built = False
        return _snapshot
    if ON_POSTGRES:
        url, path = database_template, None  # emptied by the previous test's teardown
    else:
        path = tmp_path_factory.mktemp("histories") / "histories.db"
        shutil.copyfile(database_template, path)
        url = f"sqlite:///{path}"
    built_at = dt.datetime.now(dt.UTC)
    app = make_app(url)
    site = main_site(app)
    make_user, make_patient = user_factory(app, site), patient_factory(app, site)
    team = build_team(app, site, make_user, program_factory(app, site))
    built = {
        "team": team,
        "small": build_history(app, team, make_patient, SMALL, "Small"),
        "large": build_history(app, team, make_patient, LARGE, "Large"),
    }
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    snapshot = WalkSnapshot(site, built, {}, built_at, sqlite_path=path)
    if ON_POSTGRES:
        snapshot.capture_postgres(url)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    _snapshot = snapshot
    return snapshot


@pytest.fixture(name="database_uri")
def histories_database_uri(request, database_template, tmp_path, tmp_path_factory) -> str:
    """The test's database holds the histories (in place of conftest's ``database_uri``:
    import this into the module); conftest's ``site`` fixture finds their site."""
    snapshot = _fresh_snapshot(database_template, tmp_path_factory)
    request.node.stash[WALK] = snapshot
    if ON_POSTGRES:
        if not snapshot.just_built:
            snapshot.restore_postgres(database_template)
        return database_template
    path = Path(tmp_path) / "clinic.db"
    shutil.copyfile(snapshot.sqlite_path, path)
    return f"sqlite:///{path}"


@pytest.fixture(name="histories")
def histories_fixture(request, app, username_of) -> Histories:
    """The SMALL and LARGE histories of the test's database, and a signed-in client for
    each of the team's clinician, staff member and administrator."""
    built = request.node.stash[WALK].records
    team = built["team"]
    clients = {}
    for role in ("clinician", "staff", "admin"):
        client = app.test_client()
        signed_in = login(client, username_of(getattr(team, role)))
        assert signed_in.status_code == 302, role
        clients[role] = client
    # Copies: a test may point an id elsewhere (a hold it placed).
    return Histories(team, dict(built["small"]), dict(built["large"]), clients)


def page_url(app: Flask, endpoint: str, case: Case, ids: dict[str, int]) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    values = {name: ids[case.ids.get(name, name)] for name in rule.arguments}
    with app.test_request_context():
        return url_for(endpoint, **values) + case.query.format(**ids)


class _Counter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement)


def counted(app: Flask, request) -> tuple[object, list[str]]:
    """``request()``'s response and the statements it ran (the engine's, outside any app
    context: the request has its own, as in production)."""
    with app.app_context():
        engine = db.engine
    counter = _Counter()
    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        response = request()
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
    return response, counter.statements


def measure_get(app: Flask, histories: Histories, endpoint: str, case: Case) -> list[str]:
    """The GET page for the small and the large history: the differences found, if any
    (statement counts, statuses, the exact count)."""
    client = histories.clients[case.role]
    found = []
    counts, shown = {}, {}
    client.get(page_url(app, endpoint, case, histories.small)).close()  # warm up
    for name, ids in (("small", histories.small), ("large", histories.large)):
        url = page_url(app, endpoint, case, ids)
        response, statements = counted(app, lambda url=url: client.get(url))
        if response.status_code != case.status:
            found.append(f"{endpoint} {url}: status {response.status_code}, not {case.status}")
        counts[name] = len(statements)
        shown[name] = response.get_data(as_text=True).count(case.shows or "")
        response.close()
    if case.shows is not None and not shown["large"] > shown["small"]:
        found.append(f"{endpoint}: {case.shows!r} shown {shown['large']} times (large)")
    if counts["small"] != counts["large"]:
        found.append(f"{endpoint}: {counts['small']} statements (small), {counts['large']} (large)")
    elif case.statements is not None and counts["small"] != case.statements:
        found.append(f"{endpoint}: {counts['small']} statements, expected {case.statements}")
    return found


def endpoint_of(key: str) -> str:
    """A case's endpoint: its key, or the key's first word ("dosing.history page 2")."""
    return key.split(" ")[0]


def assert_flat(app: Flask, histories: Histories, cases: dict[str, Case]) -> None:
    """Every case's page runs as many statements for the large history as for the small."""
    found = []
    for key, case in cases.items():
        found.extend(measure_get(app, histories, endpoint_of(key), case))
    assert found == [], "\n".join(found)


class FormFields(html.parser.HTMLParser):
    """The values a browser would send from the page's form ``action`` (inputs, checked
    boxes, selected options, textareas); a form without an action posts to ``page``.
    ``choices``: the values of each radio button group and check box, in page order."""

    def __init__(self, action: str, page: str = "") -> None:
        super().__init__()
        self.action = action
        self.page = page
        self.inside = False
        self.fields: dict[str, str] = {}
        self.choices: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = (a.get("action") or self.page) == self.action
        if not self.inside or ("name" not in a and tag != "option"):
            return
        if tag == "input" and a.get("type") in ("checkbox", "radio"):
            self.choices.setdefault(a["name"], []).append(a.get("value") or "")
        if tag == "input" and (a.get("type") not in ("checkbox", "radio") or "checked" in a):
            self.fields.setdefault(a["name"], a.get("value") or "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select:
            # The first option unless one is selected, as a browser sends.
            if "selected" in a or self._select not in self.fields:
                self.fields[self._select] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields[a["name"]] = ""

    def handle_data(self, data) -> None:
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            # A browser drops the newline that follows <textarea>.
            name, self._textarea = self._textarea, None
            if name and self.fields[name].startswith("\n"):
                self.fields[name] = self.fields[name][1:]


def form_of(client, url: str, action: str | None = None) -> FormFields:
    page = url.split("?")[0]
    parser = FormFields(action or page, page)
    parser.feed(client.get(url).get_data(as_text=True))
    return parser


@dataclass(frozen=True)
class Action:
    """A per-patient POST measured like a page: the form is opened (not counted), filled
    with ``fill`` (or ``fill(ids, choices)``: the history's ids, the form's radio and
    check box values) as a user would, sent (counted), answered with ``status`` (a
    redirect: it saved)."""

    role: str = "clinician"
    ids: dict[str, str] = field(default_factory=dict)
    fill: object = field(default_factory=dict)
    statements: int | None = None
    status: int = 302


def measure_post(app: Flask, histories: Histories, endpoint: str, case: Action) -> list[str]:
    client = histories.clients[case.role]
    found, counts = [], {}
    for name, ids in (("small", histories.small), ("large", histories.large)):
        url = page_url(app, endpoint, Case(ids=case.ids), ids)
        parsed = form_of(client, url)
        form = parsed.fields
        form.update(case.fill(ids, parsed.choices) if callable(case.fill) else case.fill)
        response, statements = counted(app, lambda url=url, form=form: client.post(url, data=form))
        if response.status_code != case.status:
            body = response.get_data(as_text=True)
            errors = re.findall(r'class="invalid-feedback[^"]*"[^>]*>\s*([^<]+)', body)
            found.append(f"POST {url}: status {response.status_code} {errors}")
        response.close()
        counts[name] = len(statements)
    if counts["small"] != counts["large"]:
        found.append(
            f"POST {endpoint}: {counts['small']} statements (small), {counts['large']} (large)"
        )
    elif case.statements is not None and counts["small"] != case.statements:
        found.append(f"POST {endpoint}: {counts['small']} statements, expected {case.statements}")
    return found

"""Two app servers behind one load balancer (issue 16, "stateless instances"): gunicorn
instances A and B, each on a port of its own, with the production configuration, against
the same PostgreSQL database and the same Redis. Whatever a user does must not depend on
which instance answers: sessions, the account lockout, the sign-in rate limit and the
one-dose-a-day rule live in the shared stores, never in a process's memory, and no
instance writes files of its own at run time.

PostgreSQL only (``TEST_DATABASE_URL``); Redis on 127.0.0.1:6379 (skipped without it,
failed under ``REQUIRE_REDIS=1``). The two servers start once: one test of subtests,
whatever pytest-xdist's distribution.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from tests.conftest import ON_POSTGRES, PASSWORD, TEST_DATABASE_URL, main_site, user_factory
from tests.gunicorn_servers import (
    AppServer,
    Browser,
    form_fields,
    module_database,
    patients_due_today,
    require_services,
    server_environment,
)

# Low enough to reach in a few requests, high enough for the other tests' sign-ins (each
# from a workstation address of its own: the limit counts per address).
LOGIN_RATE_LIMIT = 6
# clinic.medications.ledger.RACE_MESSAGE and ALREADY_DOSED_MESSAGE, as the page shows them.
RACE_WORDS = "recorded at the same moment"
ALREADY_DOSED_WORDS = "Already dosed today."


@pytest.fixture(scope="module")
def world(request):
    """The module's records: a site, its users and patients due a dose today."""
    if not ON_POSTGRES:
        pytest.skip("several app servers share one database only on PostgreSQL")
    require_services(TEST_DATABASE_URL)
    # Asked for once the skips are behind: a migrated test database of the worker.
    database_template = request.getfixturevalue("database_template")
    with module_database(database_template) as app:
        site = main_site(app)
        make_user = user_factory(app, site)
        yield SimpleNamespace(
            app=app,
            url=database_template,
            nurses=[make_user("clinician", f"scale-nurse-{n}", may_dispense=True) for n in (1, 2)],
            locked=make_user("clinician", "scale-lockout"),
            admin=make_user("admin", "scale-admin"),
            patients=patients_due_today(app, site, 4, name="Scale"),
        )


@pytest.fixture(scope="module")
def servers(world, tmp_path_factory):
    """Instances A and B: the same database, Redis and keys (SECRET_KEY signs the session
    cookie, AUDIT_HMAC_KEYS chains the audit trail: shared by every instance)."""
    base_dir = tmp_path_factory.mktemp("scale_out")
    env = server_environment(
        world.url,
        world.app.config["AUDIT_HMAC_KEYS"],
        secrets.token_hex(32),
        LOGIN_RATE_LIMIT=f"{LOGIN_RATE_LIMIT} per minute",
    )
    a, b = AppServer("a", env, base_dir), AppServer("b", env, base_dir)
    try:
        a.launch()
        b.launch()
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.terminate()
        b.terminate()
        a.stop()
        b.stop()


def _username(world, user_id: int) -> str:
    from clinic.accounts.models import User
    from clinic.extensions import db

    with world.app.app_context():
        return db.session.get(User, user_id).username


def _scalar(world, sql: str, **params):
    from clinic.extensions import db

    with world.app.app_context():
        value = db.session.scalar(sa.text(sql), params)
        db.session.remove()
        return value


# --- sessions ------------------------------------------------------------------------------------


def a_session_started_on_one_instance_goes_on_on_the_other_and_ends_on_both(world, servers):
    a, b = servers
    patient = world.patients[0]
    browser = Browser().signed_in(a, _username(world, world.nurses[0]), PASSWORD)

    chart = browser.get(b, f"/patients/{patient}")
    assert chart.status == 200, chart.status
    assert "Patient000" in chart.text  # the patient's chart, not the sign-in page

    stolen = dict(browser.cookies)  # the same cookie, kept in another tab (or by a thief)
    logout = browser.post(b, "/logout", form_fields(chart.text, 'action="/logout"'))
    assert logout.status == 302 and logout.location == "/login"

    browser.cookies = stolen
    refused = browser.get(a, f"/patients/{patient}")
    assert refused.status == 302 and refused.location == "/login"


# --- lockout and the sign-in rate limit ----------------------------------------------------------


def failed_sign_ins_spread_over_both_instances_lock_the_account_at_the_fifth(world, servers):
    a, b = servers
    username = _username(world, world.locked)
    browser = Browser()
    for attempt in range(1, 6):
        server = (a, b)[attempt % 2]
        answer = browser.sign_in(server, username, f"wrong password {attempt}")
        assert answer.status == 200 and "Invalid username or password." in answer.text
        locked = _scalar(
            world, "SELECT locked_until IS NOT NULL FROM app_user WHERE id = :id", id=world.locked
        )
        assert locked is (attempt == 5), f"after failure {attempt} on {server.name}"

    # The right password, on the instance that did not see the fifth failure: refused.
    answer = Browser().sign_in(a, username, PASSWORD)
    assert answer.status == 200 and "Invalid username or password." in answer.text
    sessions = _scalar(
        world, "SELECT COUNT(*) FROM user_session WHERE user_id = :id", id=world.locked
    )
    assert sessions == 0


def the_sign_in_rate_limit_counts_requests_to_both_instances(servers):
    a, b = servers
    browser = Browser()  # one workstation address: the limiter's key
    statuses = [
        browser.post((a, b)[n % 2], "/login", {"username": "nobody", "password": "x"}).status
        for n in range(LOGIN_RATE_LIMIT + 1)
    ]
    # Each post is refused by the CSRF check (400) but counted; the next one over the limit,
    # whichever instance it reaches, is 429. Per instance, none went over the limit.
    assert statuses == [400] * LOGIN_RATE_LIMIT + [429], statuses
    other = Browser().post(a, "/login", {"username": "nobody", "password": "x"})
    assert other.status == 400  # another workstation is not limited


# --- one dose, whichever instance ----------------------------------------------------------------


def nurses_at_two_windows(world, servers) -> list[Browser]:
    """Two nurses at two windows, the first signed in on A, the second on B."""
    return [
        Browser().signed_in(server, _username(world, user), PASSWORD)
        for server, user in zip(servers, world.nurses, strict=True)
    ]


def _dose_at_once(servers, nurses: list[Browser], patient: int) -> list:
    """Each nurse opens the patient's dose form on their instance, then both post it at
    the same moment. Returns their two answers."""
    path = f"/dosing/patients/{patient}/dose"
    forms = []
    for server, nurse in zip(servers, nurses, strict=True):
        page = nurse.get(server, path)
        assert page.status == 200
        fields = form_fields(page.text, 'id="dose-form"')
        assert fields, "no dose form"
        forms.append({**fields, "dob_confirmed": "y", "reason": "", "station": "Window"})
    barrier = threading.Barrier(2)
    answers: list = [None, None]

    def post(index: int) -> None:
        barrier.wait()
        answers[index] = nurses[index].post(servers[index], path, forms[index])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def two_nurses_on_two_instances_dosing_one_patient_at_once_record_one_dose(
    world, servers, nurses, patient: int
):
    answers = _dose_at_once(servers, nurses, patient)

    saved = [x for x in answers if x.status == 302 and x.location.startswith("/dosing/")]
    refused = [x for x in answers if x not in saved]
    assert len(saved) == 1, [x.status for x in answers]
    [other] = refused
    assert (other.status == 409 and RACE_WORDS in other.text) or (
        other.status == 200 and ALREADY_DOSED_WORDS in other.text
    ), other.status
    doses = _scalar(
        world,
        "SELECT COUNT(*) FROM dose_entry WHERE patient_id = :p AND kind = 'observed'",
        p=patient,
    )
    assert doses == 1


# --- nothing written outside the configured directories ------------------------------------------


def _files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def the_instances_write_no_files_of_their_own_while_serving(world, servers):
    """Pages, a report with its chart (matplotlib) and CSV exports: nothing lands in the
    working directory, ``TMPDIR`` or the instance directory of either instance (an
    instance keeps no state of its own; exports are streamed, never files), nor in
    ``HOME``: matplotlib's font cache goes to the configured ``CACHE_DIR``."""
    a, b = servers
    admin = Browser().signed_in(a, _username(world, world.admin), PASSWORD)
    today = dt.date.today().isoformat()
    pages = [
        (a, f"/reports/census?on={today}"),  # one chart is enough: matplotlib's first
        (b, f"/reports/census/export.csv?on={today}"),
        *(
            (server, path)
            for server in (a, b)
            for path in ("/", f"/patients/{world.patients[0]}", "/admin/audit/export.csv")
        ),
    ]
    for server, path in pages:
        answer = admin.get(server, path)
        assert answer.status == 200, (path, server.name, answer.status)
        if path.startswith("/reports/census?"):
            assert "data:image/svg+xml" in answer.text  # the chart was drawn
    written = {
        f"{server.name}/{part}": _files_under(getattr(server, part))
        for server in (a, b)
        for part in ("cwd", "tmp", "instance", "home")
    }
    assert {k: v for k, v in written.items() if v} == {}
    assert any(f.startswith("matplotlib/fontlist-") for f in _files_under(a.cache))


# --- the test ------------------------------------------------------------------------------------


def test_two_instances_behave_as_one(world, servers, subtests):
    """One test of subtests, so that the two servers start once whatever pytest-xdist's
    distribution (it would send separate tests of the module to both workers)."""
    with subtests.test("a session started on A goes on on B, signed out on B, A refuses it"):
        a_session_started_on_one_instance_goes_on_on_the_other_and_ends_on_both(world, servers)
    with subtests.test("failed sign-ins spread over both instances lock at the fifth"):
        failed_sign_ins_spread_over_both_instances_lock_the_account_at_the_fifth(world, servers)
    with subtests.test("the sign-in rate limit counts the requests to both instances"):
        the_sign_in_rate_limit_counts_requests_to_both_instances(servers)
    with subtests.test("two nurses dosing one patient at once on two instances: one dose"):
        nurses = nurses_at_two_windows(world, servers)
        for patient in world.patients[1:]:
            two_nurses_on_two_instances_dosing_one_patient_at_once_record_one_dose(
                world, servers, nurses, patient
            )
    with subtests.test("the instances write no files of their own while serving"):
        the_instances_write_no_files_of_their_own_while_serving(world, servers)

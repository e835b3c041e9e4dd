"""Durability under crashes (issue 16): the app server is killed with SIGKILL (master and
workers at once, as a power cut or the OOM killer would) several times while nurses record
doses and a counselor adds signed addenda, then started again; the writers go on, sending
again every form the dead server did not answer, as a browser's user would.

Afterwards, in the database: every write the server acknowledged is there exactly once;
no form saved twice (a form sent again after the crash is the same form: its submission
token); nothing saved that the writer was told was refused, or that no writer sent; each
row has the audit event written in its transaction, the audit chain verifies with its
keys; the foreign keys hold and the signed texts match their hashes. (The app server
crashes, not the database: PostgreSQL's own durability is its business, and the test
database runs with ``synchronous_commit = off``.)

PostgreSQL only (``TEST_DATABASE_URL``); Redis on 127.0.0.1:6379 (skipped without it,
failed under ``REQUIRE_REDIS=1``). Each kill comes once both writers have had a write
acknowledged by the server just started, after a random pause of a fraction of a second
(in the middle of the next requests). Bounded: ``KILLS`` kills at most, none after
``KILL_BUDGET_SECONDS``, and a hard deadline. One test of subtests, so the crashed run
happens once whatever pytest-xdist's distribution.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import secrets
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from tests.conftest import (
    ON_POSTGRES,
    PASSWORD,
    TEST_DATABASE_URL,
    main_site,
    user_factory,
)
from tests.gunicorn_servers import (
    AppServer,
    Browser,
    form_fields,
    module_database,
    patients_due_today,
    require_services,
    server_environment,
)

KILLS = 5
# No new kill after this many seconds of the run (a server takes seconds to start on a
# busy two-core machine): fewer kills then, never fewer than MIN_KILLS.
KILL_BUDGET_SECONDS = 30
MIN_KILLS = 2
# Each kill comes once both writers have had a write acknowledged by the new server (or
# after PROGRESS_SECONDS), then after a random pause in this range (seconds): in the
# middle of the next requests.
PROGRESS_SECONDS = 15
KILL_PAUSE_SECONDS = (0.0, 0.4)
DEADLINE_SECONDS = 150  # the whole run, a bound only (a hung server, a stuck writer)
PATIENTS = 20  # the dose writer stops early when all are dosed
RETRY_SECONDS = 0.1


@dataclasses.dataclass
class Form:
    """One form a writer filled in, and everything it got back: each send's request id
    and what came of it (an HTTP status, or the connection error's name)."""

    kind: str  # "dose" or "addendum"
    token: str  # the form's submission token
    subject: int  # the patient dosed, or the note amended
    text: str = ""  # an addendum's text (unique: the run and the form's number)
    request_ids: list[str] = dataclasses.field(default_factory=list)
    answers: list[int | str] = dataclasses.field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return any(a == 302 for a in self.answers)

    @property
    def refused(self) -> bool:
        """Answered, but not with the redirect of a saved form."""
        return not self.acknowledged and any(isinstance(a, int) for a in self.answers)


class Writers:
    """The nurse's and the counselor's loops, in threads, until ``stop`` (each finishes
    the form in hand) or the deadline."""

    def __init__(self, server: AppServer, world, deadline: float):
        self.server = server
        self.world = world
        self.deadline = deadline
        self.stop = threading.Event()
        self.forms: list[Form] = []
        self.interrupted = 0  # sends cut off by a kill (reset, closed), not refused
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def _send(self, browser: Browser, method: str, path: str, data=None, form: Form | None = None):
        """Send until the server answers (it may be dead or starting), within the deadline.
        Returns the answer, or None at the deadline."""
        while time.monotonic() < self.deadline:
            try:
                answer = browser.request(self.server, method, path, data)
            except ConnectionRefusedError as exc:
                self._note(form, browser, type(exc).__name__)
            except OSError as exc:
                with self._lock:
                    self.interrupted += 1
                self._note(form, browser, type(exc).__name__)
            else:
                self._note(form, browser, answer.status)
                return answer
            time.sleep(RETRY_SECONDS)
        return None

    def acknowledged(self, kind: str) -> int:
        with self._lock:
            return sum(1 for f in self.forms if f.kind == kind and f.acknowledged)

    def wait_for_progress(self, threads: list[threading.Thread], timeout: float) -> None:
        """Until each writer still writing has had one more write acknowledged."""
        start = {kind: self.acknowledged(kind) for kind in ("dose", "addendum")}
        until = time.monotonic() + timeout
        while time.monotonic() < until and any(t.is_alive() for t in threads):
            done = {kind: self.acknowledged(kind) > n for kind, n in start.items()}
            alive = {t.name: t.is_alive() for t in threads}
            if all(done[kind] or not alive[kind] for kind in done):
                return
            time.sleep(0.02)

    @staticmethod
    def _note(form: Form | None, browser: Browser, outcome: int | str) -> None:
        if form is not None:
            form.request_ids.append(f"t-{browser.run}-{browser.sent}")
            form.answers.append(outcome)

    def _fill(self, browser: Browser, path: str, marker: str) -> dict[str, str] | None:
        page = self._send(browser, "GET", path)
        if page is None:
            return None
        fields = form_fields(page.text, marker)
        if page.status != 200 or not fields.get("submission_token"):
            self.errors.append(f"GET {path}: {page.status}, no form")
            return None
        return fields

    def _post(self, browser: Browser, path: str, form: Form, data: dict[str, str]) -> None:
        with self._lock:
            self.forms.append(form)
        self._send(browser, "POST", path, data, form)

    def dose(self, browser: Browser) -> None:
        for patient in self.world.patients:
            if self.stop.is_set():
                return
            path = f"/dosing/patients/{patient}/dose"
            fields = self._fill(browser, path, 'id="dose-form"')
            if fields is None:
                return
            data = {**fields, "dob_confirmed": "y", "reason": "", "station": "Window 1"}
            self._post(browser, path, Form("dose", fields["submission_token"], patient), data)

    def addenda(self, browser: Browser) -> None:
        path = f"/therapy/notes/{self.world.note}/addendum"
        for number in range(10_000):
            if self.stop.is_set():
                return
            fields = self._fill(browser, path, '<form method="post" novalidate>')
            if fields is None:
                return
            text = f"Durability addendum {browser.run} {number}: the plan stands."
            form = Form("addendum", fields["submission_token"], self.world.note, text)
            self._post(browser, path, form, {**fields, "text": text})

    def start(self, nurse: Browser, counselor: Browser) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._guarded, args=(self.dose, nurse), name="dose"),
            threading.Thread(target=self._guarded, args=(self.addenda, counselor), name="addendum"),
        ]
        for thread in threads:
            thread.start()
        return threads

    def _guarded(self, loop, browser: Browser) -> None:
        try:
            loop(browser)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(f"{loop.__name__}: {exc!r}")


# --- the records ---------------------------------------------------------------------------------


def _signed_note(app, site_id: int, counselor_id: int, patient_id: int) -> int:
    """An individual session three hours ago with the patient, recorded by the counselor
    with a signed note; returns the note's id."""
    from clinic.accounts.models import User
    from clinic.db import utcnow
    from clinic.extensions import db
    from clinic.therapy import notes, sessions

    with app.test_request_context():
        counselor = db.session.get(User, counselor_id)
        session = sessions.plan_session(
            actor=counselor,
            plan=sessions.SessionPlan(
                site_id=site_id,
                starts_at=(utcnow() - dt.timedelta(hours=3)).replace(microsecond=0),
                duration_minutes=60,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[patient_id],
            ),
        )
        sessions.record_session(
            session,
            actor=counselor,
            attendees=[sessions.AttendeeRecord(patient_id, "attended", 60, "Session note.")],
            sign=True,
        )
        db.session.commit()
        [note] = notes.live_notes_of(session)
        return note.id


@pytest.fixture(scope="module")
def world(request):
    if not ON_POSTGRES:
        pytest.skip("the crash test runs the production server: PostgreSQL only")
    require_services(TEST_DATABASE_URL)
    # Asked for once the skips are behind: a migrated test database of the worker.
    database_template = request.getfixturevalue("database_template")
    with module_database(database_template) as app:
        site = main_site(app)
        make_user = user_factory(app, site)
        nurse = make_user("clinician", "durable-nurse", may_dispense=True)
        counselor = make_user("clinician", "durable-counselor")
        patients = patients_due_today(app, site, PATIENTS + 1, name="Durable")
        yield SimpleNamespace(
            app=app,
            url=database_template,
            nurse=nurse,
            counselor=counselor,
            patients=patients[1:],
            note=_signed_note(app, site, counselor, patients[0]),
        )


# --- the run -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed_run(world, tmp_path_factory):
    """Write while the server is killed ``KILLS`` times and started again; returns the
    writers (their forms and answers), the baseline and the server."""
    from clinic.extensions import db

    with world.app.app_context():
        baseline = {
            "dose_id": db.session.scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM dose_entry")),
            "addendum_id": db.session.scalar(
                sa.text("SELECT COALESCE(MAX(id), 0) FROM note_addendum")
            ),
        }
        db.session.remove()
    env = server_environment(world.url, world.app.config["AUDIT_HMAC_KEYS"], secrets.token_hex(32))
    server = AppServer(
        "durable", env, tmp_path_factory.mktemp("durability"), workers=2, preload=True
    )
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    rng = random.Random(uuid.uuid4().int)
    try:
        server.start()
        nurse = Browser().signed_in(server, "durable-nurse", PASSWORD)
        counselor = Browser().signed_in(server, "durable-counselor", PASSWORD)
        writers = Writers(server, world, deadline)
        threads = writers.start(nurse, counselor)
        for kill in range(KILLS):
            writers.wait_for_progress(threads, PROGRESS_SECONDS)
            time.sleep(rng.uniform(*KILL_PAUSE_SECONDS))
            late = time.monotonic() - started > KILL_BUDGET_SECONDS and kill >= MIN_KILLS
            if late or not any(t.is_alive() for t in threads):
                break
            server.kill()
            server.start()
        writers.wait_for_progress(threads, PROGRESS_SECONDS)  # the last server writes too
        writers.stop.set()
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 1))
        assert not any(t.is_alive() for t in threads), "a writer did not finish in time"
    finally:
        server.stop()
    seconds = round(time.monotonic() - started, 1)
    return SimpleNamespace(writers=writers, baseline=baseline, server=server, seconds=seconds)


def _rows(world, sql: str, **params) -> list:
    from clinic.extensions import db

    with world.app.app_context():
        rows = db.session.execute(sa.text(sql), params).all()
        db.session.remove()
        return rows


def the_server_was_killed_while_writes_were_in_flight(run) -> None:
    assert not run.writers.errors, run.writers.errors
    assert run.server.starts >= 3, "too few restarts to test anything"
    # A kill cut a request in flight (not only refused new connections).
    assert run.writers.interrupted >= 1
    kinds = {f.kind for f in run.writers.forms if f.acknowledged}
    assert kinds == {"dose", "addendum"}, "both writers must have had writes acknowledged"
    assert not run.server.unhandled_errors(), run.server.unhandled_errors()[:5]


def _check_forms(forms: list[Form], rows_by_form: dict[str, list[int]], strays: list[int]):
    """The ledger against the writers' forms: (lost, doubled, saved though refused,
    stray rows)."""
    lost = [f.token[:8] for f in forms if f.acknowledged and not rows_by_form.get(f.token)]
    doubled = {t[:8]: ids for t, ids in rows_by_form.items() if len(ids) > 1}
    saved_refused = [
        (f.token[:8], f.answers) for f in forms if f.refused and rows_by_form.get(f.token)
    ]
    return lost, doubled, saved_refused, strays


def every_acknowledged_dose_is_in_the_ledger_exactly_once(world, crashed_run) -> None:
    forms = [f for f in crashed_run.writers.forms if f.kind == "dose"]
    form_of_request = {rid: f.token for f in forms for rid in f.request_ids}
    rows = _rows(
        world,
        "SELECT d.id, d.patient_id, a.request_id FROM dose_entry d"
        " LEFT JOIN audit_event a ON a.entity_type = 'dose_entry' AND a.action = 'create'"
        " AND a.entity_id = CAST(d.id AS VARCHAR(64)) WHERE d.id > :after ORDER BY d.id",
        after=crashed_run.baseline["dose_id"],
    )
    rows_by_form: dict[str, list[int]] = {}
    strays = []
    for dose_id, patient_id, request_id in rows:
        token = form_of_request.get(request_id)
        if token is None or patient_id != next(f.subject for f in forms if f.token == token):
            strays.append(dose_id)  # no audit event, or none of our posts made it
        else:
            rows_by_form.setdefault(token, []).append(dose_id)
    lost, doubled, saved_refused, strays = _check_forms(forms, rows_by_form, strays)
    assert (lost, doubled, saved_refused, strays) == ([], {}, [], [])
    assert sum(f.acknowledged for f in forms) == len(rows)
    per_patient = _rows(
        world,
        "SELECT patient_id, COUNT(*) FROM dose_entry WHERE kind = 'observed'"
        " GROUP BY patient_id HAVING COUNT(*) > 1",
    )
    assert per_patient == []


def every_acknowledged_addendum_is_there_exactly_once_and_signed(world, crashed_run) -> None:
    forms = [f for f in crashed_run.writers.forms if f.kind == "addendum"]
    form_of_text = {f.text: f for f in forms}
    rows = _rows(
        world,
        "SELECT n.id, n.text, n.text_sha256, a.request_id FROM note_addendum n"
        " LEFT JOIN audit_event a ON a.action = 'addendum' AND a.entity_type = 'progress_note'"
        " AND a.entity_id = CAST(n.note_id AS VARCHAR(64))"
        " AND a.details LIKE '%\"addendum_id\":' || n.id || ',%'"
        " WHERE n.id > :after ORDER BY n.id",
        after=crashed_run.baseline["addendum_id"],
    )
    from clinic.therapy.models import sha256_text

    rows_by_form: dict[str, list[int]] = {}
    strays = []
    for addendum_id, text, digest, request_id in rows:
        form = form_of_text.get(text)
        if form is None or request_id not in form.request_ids or digest != sha256_text(text):
            strays.append(addendum_id)  # not ours, no audit event of its own, or altered
        else:
            rows_by_form.setdefault(form.token, []).append(addendum_id)
    lost, doubled, saved_refused, strays = _check_forms(forms, rows_by_form, strays)
    assert (lost, doubled, saved_refused, strays) == ([], {}, [], [])
    assert sum(f.acknowledged for f in forms) == len(rows)


def the_audit_chain_and_the_foreign_keys_hold_after_the_crashes(world, crashed_run) -> None:
    from clinic.audit.services import verify_chain
    from clinic.extensions import db

    with world.app.app_context():
        report = verify_chain()
        db.session.remove()
    assert report.ok, report.problem
    orphans = _rows(
        world,
        "SELECT 'dose_entry', d.id FROM dose_entry d"
        " LEFT JOIN medication_order o ON o.id = d.order_id"
        " LEFT JOIN patient p ON p.id = d.patient_id"
        " LEFT JOIN app_user u ON u.id = d.dispenser_id"
        " WHERE o.id IS NULL OR p.id IS NULL OR u.id IS NULL"
        " UNION ALL SELECT 'note_addendum', n.id FROM note_addendum n"
        " LEFT JOIN progress_note pn ON pn.id = n.note_id"
        " LEFT JOIN app_user u ON u.id = n.author_id WHERE pn.id IS NULL OR u.id IS NULL"
        " UNION ALL SELECT 'form_submission', s.id FROM form_submission s"
        " LEFT JOIN app_user u ON u.id = s.user_id WHERE u.id IS NULL",
    )
    assert orphans == []
    # Every foreign key of the schema is in force (none left NOT VALID or dropped by a
    # migration run half-way).
    not_validated = _rows(
        world, "SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
    )
    assert not_validated == []
    # Each acknowledged form's idempotency key was kept with what it created.
    acknowledged = {f.token for f in crashed_run.writers.forms if f.acknowledged}
    kept = {
        token
        for (token,) in _rows(
            world,
            "SELECT token FROM form_submission WHERE kind IN ('dose', 'note_addendum')",
        )
    }
    assert acknowledged <= kept


# --- the test ------------------------------------------------------------------------------------


def test_acknowledged_writes_survive_the_server_killed_again_and_again(
    world, crashed_run, subtests
):
    """One test of subtests over one crashed run (it costs several server starts), whatever
    pytest-xdist's distribution."""
    forms = crashed_run.writers.forms
    print(  # shown with the test's report: what the run exercised
        f"{crashed_run.server.starts - 1} kills; {len(forms)} forms sent, "
        f"{sum(f.acknowledged for f in forms)} acknowledged, "
        f"{sum(1 for f in forms if len(f.answers) > 1)} sent again after a kill; "
        f"{crashed_run.writers.interrupted} requests cut off in flight; "
        f"starts took {crashed_run.server.start_seconds} s; the run {crashed_run.seconds} s"
    )
    with subtests.test("the server was killed while writes were in flight"):
        the_server_was_killed_while_writes_were_in_flight(crashed_run)
    with subtests.test("every acknowledged dose is in the ledger exactly once"):
        every_acknowledged_dose_is_in_the_ledger_exactly_once(world, crashed_run)
    with subtests.test("every acknowledged addendum is there exactly once, signed"):
        every_acknowledged_addendum_is_there_exactly_once_and_signed(world, crashed_run)
    with subtests.test("the audit chain verifies and the foreign keys hold"):
        the_audit_chain_and_the_foreign_keys_hold_after_the_crashes(world, crashed_run)

"""Timing the pages (interleaved with the trivial endpoint) and explaining their queries.

Each iteration of a page is: the trivial endpoint (``GET /healthz``: the app's stack, the
login gate, one ``SELECT 1``), timed; the page's preparation (a form fetched, a cursor
found), untimed; the page's request, timed, with its SQL statements counted
(``before_cursor_execute``). The ratio of the two medians is what compares across runs of a
noisy machine. A redirect after a POST is not followed: the time is the POST's.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter

import sqlalchemy as sa

from bench.common import Recorder, log, summary_ms, timed
from bench.pages_catalog import Page
from bench.pages_client import Browser

TRIVIAL = "/healthz"
# A full scan of these tables is flagged: the ledger, therapy sessions and attendances, the
# audit trail and enrollments (issue 15), and the other tables that grow with the network.
WATCHED_TABLES = (
    "dose_entry",
    "therapy_session",
    "session_attendee",
    "audit_event",
    "enrollment",
    "patient",
    "patient_name_token",
    "progress_note",
    "counseling_note",
    "drug_test",
    "drug_test_result",
    "medication_order",
    "take_home_decision",
    "take_home_dispensing",
    "referral",
    "referral_event",
    "part2_consent",
)
EXPLAINED = re.compile(r"^\s*(SELECT|WITH|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
MAX_ERRORS = 3


class SqlClock:
    """The time spent in the database during a request: the sum of each statement's
    ``before_cursor_execute`` to ``after_cursor_execute`` (ms)."""

    def __init__(self, engine) -> None:
        self.ms = 0.0
        self._started: list[float] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *args) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *args) -> None:
        if self._started:
            self.ms += (time.perf_counter() - self._started.pop()) * 1000


def measure_page(
    page: Page, browser: Browser, runs: int, recorder: Recorder, clock: SqlClock | None = None
) -> dict:
    """Time ``page`` ``runs`` times after one warm-up; return its figures and, for a hot
    page, the statements of its first timed request (``_statements``)."""
    page_ms, trivial_ms, counts, errors, sql = [], [], [], [], []
    captured: list = []
    iteration = 0
    for n in range(runs + 1):
        try:
            trivial_elapsed, trivial = timed(browser.get, TRIVIAL)
            request = page.prepare(iteration)
            iteration += 1
            send = browser.get if request.method == "GET" else browser.post
            args = (request.url,) if request.method == "GET" else (request.url, request.data)
            sql_before = clock.ms if clock else 0.0
            with recorder.recording():
                elapsed, response = timed(send, *args)
            sql_ms = (clock.ms if clock else 0.0) - sql_before
            statements = list(recorder.statements)
        except Exception as error:  # a page that fails is reported, not fatal
            errors.append(f"{type(error).__name__}: {error}"[:300])
            if len(errors) >= MAX_ERRORS:
                break
            continue
        if response.status_code not in request.expect or trivial.status_code != 200:
            errors.append(
                f"{request.method} {request.url[:120]}: {response.status_code}"
                f" (expected {'/'.join(map(str, request.expect))})"
                + _page_error(response.get_data(as_text=True))
            )
            if len(errors) >= MAX_ERRORS:
                break
            continue
        if n == 0:
            continue  # the warm-up
        page_ms.append(elapsed)
        trivial_ms.append(trivial_elapsed)
        counts.append(len(statements))
        sql.append(sql_ms)
        if not captured:
            captured = statements
    result: dict = {"key": page.key, "title": page.title, "role": page.role}
    if page_ms:
        result.update(summary_ms(page_ms))
        trivial = summary_ms(trivial_ms)
        result["trivial_median_ms"] = trivial["median_ms"]
        result["ratio"] = round(statistics.median(page_ms) / statistics.median(trivial_ms), 1)
        result["sql_median_ms"] = round(statistics.median(sql), 2)
        result["statements"] = Counter(counts).most_common(1)[0][0]
        result["statements_seen"] = sorted(set(counts))
        result["runs_ms"] = [round(t, 2) for t in page_ms]
    if errors:
        result["errors"] = errors
    if page.notes:
        result["notes"] = page.notes
    result["_statements"] = captured if page.hot else []
    return result


ERROR_TEXT = re.compile(r'class="(?:invalid-feedback[^"]*|alert alert-danger)"[^>]*>([^<]+)<')


def _page_error(html: str) -> str:
    """The first error message a refused form shows, if any."""
    match = ERROR_TEXT.search(html)
    return f": {match.group(1).strip()[:200]}" if match else ""


def measure(
    pages: list[Page], browsers: dict[str, Browser], runs: int, report_runs: int, recorder: Recorder
) -> list[dict]:
    """Every page in turn; prints a line per page."""
    from clinic.extensions import db

    app = next(iter(browsers.values())).app
    with app.app_context():
        clock = SqlClock(db.engine)
    results = []
    for page in pages:
        n = report_runs if page.report else runs
        result = measure_page(page, browsers[page.role], n, recorder, clock)
        results.append(result)
        if "median_ms" in result:
            log(
                f"  {page.key:<34} median {result['median_ms']:8.1f} ms  p95"
                f" {result['p95_ms']:8.1f}  x{result['ratio']:<6} SQL"
                f" {result['sql_median_ms']:7.1f} ms  statements"
                f" {result['statements']}{'' if len(result['statements_seen']) == 1 else '*'}"
                + (f"  ERRORS {result['errors'][0]}" if result.get("errors") else "")
            )
        else:
            log(f"  {page.key:<34} FAILED {result.get('errors')}")
    return results


# --- plans -----------------------------------------------------------------------------


def full_scans(engine_name: str, plan: str) -> list[str]:
    """The watched tables ``plan`` reads in full: PostgreSQL ``Seq Scan on <t>``, SQLite
    ``SCAN <t>`` without an index (an alias ``<t>_1`` counts as ``<t>``)."""
    found = []
    if engine_name == "postgresql":
        names = re.findall(r"Seq Scan on (\w+)", plan)
    else:
        names = [
            m.group(1)
            for m in re.finditer(r"^\s*(?:\S+\s+)*?SCAN (\w+)(?: AS \w+)?(.*)$", plan, re.MULTILINE)
            if "USING" not in m.group(2)
        ]
    for name in names:
        base = re.sub(r"_\d+$", "", name)
        if base in WATCHED_TABLES and base not in found:
            found.append(base)
    return found


def explain_statement(conn, engine_name: str, statement: str, parameters) -> str:
    """The plan of one statement: PostgreSQL ``EXPLAIN (ANALYZE, BUFFERS)`` (run, then
    rolled back with the caller's transaction), SQLite ``EXPLAIN QUERY PLAN``."""
    if engine_name == "postgresql":
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or {})
        return "\n".join(r[0] for r in rows)
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters or ())
    # (id, parent, notused, detail): indent by depth as the sqlite3 shell does.
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(lines)


def explain_pages(engine, results: list[dict]) -> list[dict]:
    """Each distinct statement the hot pages ran, once, with the pages that ran it, its
    plan and the watched tables it scans in full. Writes are explained in a transaction
    rolled back (PostgreSQL's EXPLAIN ANALYZE runs them)."""
    explained: dict[str, dict] = {}
    with engine.connect() as conn:
        for result in results:
            for statement, parameters in result.get("_statements", []):
                if not EXPLAINED.match(statement):
                    continue
                if statement in explained:
                    if result["key"] not in explained[statement]["pages"]:
                        explained[statement]["pages"].append(result["key"])
                    continue
                transaction = conn.begin()
                try:
                    plan = explain_statement(conn, engine.dialect.name, statement, parameters)
                except sa.exc.DBAPIError as error:
                    plan = f"EXPLAIN failed: {str(error.orig).splitlines()[0][:300]}"
                finally:
                    transaction.rollback()
                explained[statement] = {
                    "pages": [result["key"]],
                    "statement": statement,
                    "plan": plan,
                    "full_scans": full_scans(engine.dialect.name, plan),
                }
    return list(explained.values())

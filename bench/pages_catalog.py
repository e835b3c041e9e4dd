"""The pages ``bench/pages.py`` times, and the records each one is timed on.

Every page is requested as a user of its role at the first site (the synthetic loader's
``s1-nurse01``, ``s1-clinician01``, ``s1-staff01``, ``s1-admin``) or, for the reports
over all sites, an organisation-wide administrator the benchmark adds. The records are
chosen from the loaded data, the same way at every size: the patients with an open
enrollment at site 1 (a different one each iteration on per-patient pages), the longest
dose history at site 1, a common surname, a surname in a non-Latin script, the patients
due today on the dosing screen.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bench.pages_client import Browser, form_posting_to, next_link

PER_PAGE_DOSES = 50
PATIENT_LIST_DEEP_PAGE = 1_000
AUDIT_DEEP_PAGE = 1_000
AUDIT_PAGE_SIZE = 100
NETWORK_ADMIN = "bench-network-admin"
SITE_ZONE = "America/Chicago"  # site S01's (clinic.synthetic)

# Target kinds (issue 15, PostgreSQL at size M).
HOT = "hot"  # median < 20 ms, p95 < 60 ms
SITE_REPORT = "site_report"  # < 1 s
NETWORK_REPORT = "network_report"  # < 5 s


@dataclass
class Request:
    """One timed request: ``GET url`` or ``POST url`` with ``data``; ``expect``: the
    status codes that mean it worked."""

    method: str
    url: str
    data: dict | None = None
    expect: tuple[int, ...] = (200,)


@dataclass
class Page:
    """A page to time. ``prepare(i)`` (untimed) returns the ``Request`` of iteration
    ``i``; ``hot``: EXPLAIN its statements; ``per_patient``: k ≤ 0.1 expected;
    ``deep_of``: the key of the page-1 twin it should cost as much as."""

    key: str
    title: str
    role: str
    prepare: Callable[[int], Request]
    target: str | None = None
    hot: bool = False
    per_patient: bool = False
    deep_of: str | None = None
    report: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Records:
    """What the pages are timed on, chosen from the loaded data."""

    site_id: int
    site_code: str
    active_patients: list[int]
    mrns: list[str]
    common_surname: str
    non_latin_surname: str | None
    longest_history_patient: int
    longest_history_rows: int
    history_deep_cursor: int | None
    history_deep_page: int
    audit_deep_cursor: int | None
    today: dt.date


def _non_latin(name: str) -> bool:
    # Beyond Latin Extended-B: Cyrillic, Greek, Arabic, CJK, ...
    return any(ord(c) > 0x24F for c in name)


def choose_records(session, today: dt.date) -> Records:
    """Pick the records from the database (in an app context: ``db.session``)."""
    q = lambda sql, **p: session.execute(sa.text(sql), p)  # noqa: E731
    site_id, site_code = q("SELECT id, code FROM site ORDER BY id LIMIT 1").one()
    active = q(
        "SELECT DISTINCT p.id, p.mrn FROM patient p JOIN enrollment e ON e.patient_id = p.id"
        " WHERE p.site_id = :s AND e.discharged_on IS NULL AND p.entered_in_error_at IS NULL"
        " ORDER BY p.id LIMIT 60",
        s=site_id,
    ).all()
    surnames = q(
        "SELECT last_name, count(*) AS n FROM patient WHERE site_id = :s"
        " AND entered_in_error_at IS NULL GROUP BY last_name ORDER BY n DESC, last_name",
        s=site_id,
    ).all()
    non_latin = next((name for name, _ in surnames if _non_latin(name)), None)
    longest, rows = q(
        "SELECT patient_id, count(*) AS n FROM dose_entry WHERE site_id = :s"
        " GROUP BY patient_id ORDER BY n DESC, patient_id LIMIT 1",
        s=site_id,
    ).one()
    # The deepest page: the cursor is the id of the last row of the page before it
    # (the history's order: dispensed_at, id, newest first).
    deep_page = max(1, -(-rows // PER_PAGE_DOSES))
    cursor = None
    if deep_page > 1:
        cursor = q(
            "SELECT id FROM dose_entry WHERE patient_id = :p"
            " ORDER BY dispensed_at DESC, id DESC LIMIT 1 OFFSET :k",
            p=longest,
            k=PER_PAGE_DOSES * (deep_page - 1) - 1,
        ).scalar()
    events = q("SELECT count(*) FROM audit_event").scalar()
    deep = min(AUDIT_PAGE_SIZE * (AUDIT_DEEP_PAGE - 1), max(events - AUDIT_PAGE_SIZE, 0))
    audit_cursor = (
        q("SELECT seq FROM audit_event ORDER BY seq DESC LIMIT 1 OFFSET :k", k=deep).scalar()
        if deep
        else None
    )
    return Records(
        site_id=site_id,
        site_code=site_code,
        active_patients=[r[0] for r in active],
        mrns=[r[1] for r in active],
        common_surname=surnames[0][0],
        non_latin_surname=non_latin,
        longest_history_patient=longest,
        longest_history_rows=rows,
        history_deep_cursor=cursor,
        history_deep_page=deep_page,
        audit_deep_cursor=audit_cursor,
        today=today,
    )


def deep_list_url(browser: Browser, first_url: str, page: int) -> tuple[str, int]:
    """The URL of page ``page`` of a list (or of its last page when it has fewer), and
    that page's number: by ``?page=`` when the list numbers its pages, else by following
    its "next" links (a keyset cursor)."""
    html = browser.html(first_url)
    link = next_link(html)
    if link is None:
        return first_url, 1
    if re.search(r"[?&]page=2\b", link):
        last = max((int(n) for n in re.findall(r"[?&]page=(\d+)", html)), default=1)
        number = min(page, last) if last >= 2 else page
        return re.sub(r"([?&]page=)\d+", rf"\g<1>{number}", link), number
    url, number = first_url, 1
    while number < page and link is not None:
        url, number = link, number + 1
        link = next_link(browser.html(url)) if number < page else link
    return url, number


def rotate(items: list, i: int):
    return items[i % len(items)]


def build_pages(
    records: Records, browsers: dict[str, Browser], report_slugs: list[str]
) -> list[Page]:
    """Every page of the benchmark, in the order they are timed."""
    r = records
    get = lambda url: lambda i: Request("GET", url)  # noqa: E731
    pages = [
        Page(
            "search_name",
            f"Patient search by name ({r.common_surname[:1]}…)",
            "staff",
            get(f"/patients/?q={r.common_surname}"),
            HOT,
            hot=True,
        ),
    ]
    if r.non_latin_surname:
        pages.append(
            Page(
                "search_non_latin",
                "Patient search by a non-Latin name",
                "staff",
                get(f"/patients/?q={r.non_latin_surname}"),
                HOT,
                hot=True,
            )
        )
    pages += [
        Page(
            "search_mrn",
            "Patient search by MRN (one found: redirect to the chart)",
            "staff",
            lambda i: Request("GET", f"/patients/?q={rotate(r.mrns, i)}", expect=(200, 302)),
            HOT,
            hot=True,
            per_patient=True,
        ),
        Page(
            "chart",
            "Patient chart",
            "clinician",
            lambda i: Request("GET", f"/patients/{rotate(r.active_patients, i)}"),
            HOT,
            hot=True,
            per_patient=True,
        ),
        Page(
            "dosing_screen",
            "Dosing screen (today's due list)",
            "nurse",
            get(f"/dosing/?site={r.site_code}"),
            HOT,
            hot=True,
        ),
    ]
    due = _due_patients(browsers["nurse"], r.site_code)
    pages += [
        Page(
            "dose_page",
            "Dose page (GET, a due patient)",
            "nurse",
            lambda i: Request("GET", f"/dosing/patients/{rotate(due, i)}/dose"),
            HOT,
            hot=True,
            per_patient=True,
        ),
        Page(
            "record_dose",
            "Record a dose (POST, a different due patient each time)",
            "nurse",
            _record_dose(browsers["nurse"], due),
            HOT,
            hot=True,
            per_patient=True,
        ),
        Page(
            "dose_history",
            "Dose history, page 1 (longest history)",
            "nurse",
            get(f"/dosing/patients/{r.longest_history_patient}/history"),
            hot=True,
            per_patient=True,
        ),
    ]
    if r.history_deep_cursor is not None:
        pages.append(
            Page(
                "dose_history_deep",
                f"Dose history, deepest page ({r.history_deep_page})",
                "nurse",
                get(
                    f"/dosing/patients/{r.longest_history_patient}/history"
                    f"?before={r.history_deep_cursor}"
                ),
                hot=True,
                per_patient=True,
                deep_of="dose_history",
            )
        )
    group = _GroupSessions(browsers["clinician"], r.today)
    pages += [
        Page("session_day", "Session day (clinician's My day)", "clinician", get("/therapy/")),
        Page("caseload", "Caseload", "clinician", get("/therapy/caseload")),
        Page("plan_group", "Plan a group session (POST)", "clinician", group.plan),
        Page(
            "record_group", "Record a group session (POST, 6 attendees)", "clinician", group.record
        ),
        Page(
            "referrals", "Referral list (aftercare dashboard)", "staff", get("/aftercare/dashboard")
        ),
        Page(
            "take_home_review", "Take-home review list", "clinician", get("/take-homes/review-list")
        ),
        Page("drug_test_worklist", "Drug-test worklist", "nurse", get("/drug-tests/schedule/")),
        Page("audit", "Audit viewer, first page", "admin", get("/admin/audit/"), hot=True),
    ]
    if r.audit_deep_cursor is not None:
        pages.append(
            Page(
                "audit_deep",
                f"Audit viewer, page {AUDIT_DEEP_PAGE} (or the last)",
                "admin",
                get(f"/admin/audit/?before={r.audit_deep_cursor}"),
                hot=True,
                deep_of="audit",
            )
        )
    try:
        deep_url, deep_number = deep_list_url(
            browsers["network"], "/patients/", PATIENT_LIST_DEEP_PAGE
        )
    except Exception as error:  # the page is then reported as failed, with this error
        deep_url, deep_number = "/patients/", PATIENT_LIST_DEEP_PAGE
        failure = RuntimeError(f"finding page {deep_number:,}: {type(error).__name__}: {error}")
        get_deep = _failing(failure)
    else:
        get_deep = get(deep_url)
    pages += [
        # As the organisation-wide administrator: every site's patients (M: 100,000, so
        # page 1,000 exists; a user of one site sees 10,000: 200 pages).
        Page("patient_list", "Patient list (all sites), page 1", "network", get("/patients/")),
        Page(
            "patient_list_deep",
            f"Patient list (all sites), page {deep_number:,}",
            "network",
            get_deep,
            hot=True,
            deep_of="patient_list",
            notes=[
                f"page {deep_number:,} of the list (the last when fewer than "
                f"{PATIENT_LIST_DEEP_PAGE:,})"
            ],
        ),
    ]
    for slug in report_slugs:
        pages += [
            Page(
                f"report_{slug}_site",
                f"Report {slug}, one site",
                "network",
                get(f"/reports/{slug}?site={r.site_id}"),
                SITE_REPORT,
                report=True,
            ),
            Page(
                f"report_{slug}_network",
                f"Report {slug}, all sites",
                "network",
                get(f"/reports/{slug}"),
                NETWORK_REPORT,
                report=True,
            ),
        ]
    return pages


def _failing(error: Exception) -> Callable[[int], Request]:
    def prepare(i: int) -> Request:
        raise error

    return prepare


DOSE_LINK = re.compile(r'href="/dosing/patients/(\d+)/dose"')


def _due_patients(nurse: Browser, site_code: str, pages: int = 5) -> list[int]:
    """The patients the dosing screen lists with a dose to record (in its order), from its
    first ``pages`` pages when it is paged."""
    url: str | None = f"/dosing/?site={site_code}"
    due: list[int] = []
    for _ in range(pages):
        html = nurse.html(url)
        due += [int(n) for n in DOSE_LINK.findall(html)]
        url = next_link(html)
        if url is None:
            break
    due = list(dict.fromkeys(due))
    if not due:
        raise RuntimeError("the dosing screen lists no patient due today: load with today's date")
    return due


def _record_dose(nurse: Browser, due: list[int]) -> Callable[[int], Request]:
    """Each iteration: the next due patient's dose page (untimed), then its POST with the
    prefilled amount and the date of birth confirmed. A patient whose dose is already
    recorded (a second pass over the list) is skipped."""
    queue = list(due)

    def prepare(i: int) -> Request:
        while queue:
            patient_id = queue.pop(0)
            url = f"/dosing/patients/{patient_id}/dose"
            try:
                form = nurse.form(url)
            except KeyError:
                continue  # nothing to record for this one (done, held, refused)
            data = form.data(dob_confirmed="y")
            if not data.get("amount_mg"):
                continue
            return Request("POST", url, data, expect=(302,))
        raise RuntimeError("no due patient left to record a dose for: fewer --runs")

    return prepare


class _GroupSessions:
    """Plan a group session of six patients (earlier today, so it can be recorded), then
    record it: every attendee attended 60 minutes, a group note."""

    def __init__(self, clinician: Browser, today: dt.date) -> None:
        self.clinician = clinician
        self.today = today
        self.local_hour = dt.datetime.now(ZoneInfo(SITE_ZONE)).hour

    def plan(self, i: int) -> Request:
        form = self.clinician.form("/therapy/sessions/new")
        # Today (the patients offered are those in treatment today), at a time already
        # past and one no session of the clinician starts at (08:03, 08:08, ...); before
        # 15:00 at the site, yesterday at those times.
        day = self.today if self.local_hour >= 15 else self.today - dt.timedelta(days=1)
        if day != self.today:
            # The patients offered are those in treatment on the form's day: post the day
            # alone (refused: no attendee) and take the form the answer shows for it (a
            # patient admitted today was refused yesterday's group).
            answer = self.clinician.post("/therapy/sessions/new", form.data(day=day.isoformat()))
            html = answer.get_data(as_text=True)
            form = form_posting_to(html, "/therapy/sessions/new", "/therapy/sessions/new")
        patients = form.options.get("patient_ids", [])
        if len(patients) < 6:
            raise RuntimeError(f"fewer than six patients in treatment on {day} to plan a group")
        start = (6 * i) % max(len(patients) - 5, 1)
        minute = self._free_minute(day)
        data = form.data(
            day=day.isoformat(),
            start_time=f"{minute // 60:02d}:{minute % 60:02d}",
            duration_minutes="60",
            kind="group",
            modality="cbt",
            setting="in_person",
            group_name=f"Bench group {i}",
            patient_ids=patients[start : start + 6],
            weeks="",
        )
        return Request("POST", "/therapy/sessions/new", data, expect=(302,))

    def _free_minute(self, day: dt.date) -> int:
        """The first minute of ``day`` from 08:03 (site time) at which no bench group
        starts: a data set timed again (``--reuse``) already has the earlier runs' groups,
        and a clinician has one session at a time."""
        from clinic.extensions import db

        zone = ZoneInfo(SITE_ZONE)
        with self.clinician.app.app_context():
            starts = db.session.scalars(
                sa.text(
                    "SELECT starts_at FROM therapy_session WHERE group_name LIKE 'Bench group %'"
                )
            ).all()
            db.session.remove()
        taken = set()
        for start in starts:
            if isinstance(start, str):  # SQLite's text
                start = dt.datetime.fromisoformat(start)
            local = (start if start.tzinfo else start.replace(tzinfo=dt.UTC)).astimezone(zone)
            if local.date() == day:
                taken.add(local.hour * 60 + local.minute)
        return next(m for m in range(8 * 60 + 3, 24 * 60) if m not in taken)

    def record(self, i: int) -> Request:
        from clinic.extensions import db

        # The group this iteration records: the latest planned, unrecorded bench group.
        with self.clinician.app.app_context():
            session_id = db.session.execute(
                sa.text(
                    "SELECT id FROM therapy_session WHERE group_name LIKE 'Bench group %'"
                    " AND recorded_at IS NULL AND entered_in_error_at IS NULL"
                    " ORDER BY id DESC LIMIT 1"
                )
            ).scalar()
            db.session.remove()
        if session_id is None:
            self.plan_one(i)
            return self.record(i)
        url = f"/therapy/sessions/{session_id}/record"
        form = self.clinician.form(url)
        changes: dict = {"group_note": "Coping skills; every attendee took part."}
        for name, _ in form.values:
            if name.endswith("-attendance"):
                changes[name] = "attended"
            elif name.endswith("-minutes"):
                changes[name] = "60"
        return Request("POST", url, form.data(**changes), expect=(302,))

    def plan_one(self, i: int) -> None:
        request = self.plan(42 + i)
        response = self.clinician.post(request.url, request.data)
        if response.status_code != 302:
            raise RuntimeError(f"planning a group session: {response.status_code}")

"""Benchmark: every registered report (issue 14) on the network-size data set, on PostgreSQL.

Creates a scratch database of its own on the server (``clinic_bench_reports_<random>``),
migrates it to head, bulk-loads a synthetic network with set-based SQL (COPY for the
per-patient plan, ``INSERT ... SELECT FROM generate_series`` for the ledger, sessions and
tests), ANALYZEs it, then times each report's ``compute(filters)`` for one site and for
the whole network with the report's default filters: the median of ``--runs`` runs after
one warm-up, and the SQL statements each compute runs (they must be the same number on a
tiny data set and on the network-size one, for one site and for all). The database is
dropped at the end, also on failure or Ctrl-C, unless ``--keep``.

    .venv/bin/python bench/reports.py                      # 100,000 patients, ~11 M dose rows
    .venv/bin/python bench/reports.py --patients 5000      # a quick check
    BENCH_DATABASE_URL=postgresql://postgres@db:5432/postgres .venv/bin/python bench/reports.py
    .venv/bin/python bench/reports.py --keep               # then, without loading again:
    .venv/bin/python bench/reports.py --reuse clinic_bench_reports_net_1a2b3c4d --set jit=off

Targets (issue 14, PostgreSQL, network size): one site under 1 s, the network under 5 s.
Writes ``bench/results/reports-postgresql.md`` and ``.json`` (and, when a target is missed,
the EXPLAIN (ANALYZE, BUFFERS) of each such report's slowest statement in
``reports-postgresql-explain.md``); exits 1 when a target is missed or a statement count
differs.

The data (fixed seed, fixed "today" 2026-11-18): 10 sites, 4 programs each (methadone OTP,
office-based buprenorphine, XR naltrexone, intensive outpatient); ~10 % of patients with
an open enrollment, the others discharged with TEDS reasons 1-7; readmissions, transfers
between programs (reason 4 and ``transferred_from_id``), patients entered in error; orders
with dose changes and medication switches; one ledger row per dose-day for daily-dosed
patients (observed, take-home bottles for the closed Sunday or a weekly pick-up, missed
days and relapse runs, reversals), monthly XR naltrexone injections; a year of individual
sessions every two weeks and intensive-outpatient groups three times a week; drug tests
every ~6 weeks with 6 analytes; aftercare referrals with their events, consents and
disclosures; TPO consents. Every CHECK holds; foreign keys and unique constraints are
dropped during the load and added back after it (so they are validated on the data);
user triggers are disabled during the load and enabled after it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

TODAY = dt.date(2026, 11, 18)  # a Wednesday
HISTORY_START = dt.date(2020, 1, 1)
SESSION_WINDOW_DAYS = 365
SINGLE_SITE_TARGET_MS = 1000.0
NETWORK_TARGET_MS = 5000.0
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")

# Program kinds: (kind, name, share of admissions, mean length of stay in days).
PROGRAMS = (
    ("methadone_otp", "Methadone OTP", 0.50, 125),
    ("office_buprenorphine", "Office-based buprenorphine", 0.25, 95),
    ("xr_naltrexone", "XR naltrexone", 0.10, 100),
    ("intensive_outpatient", "Intensive outpatient", 0.15, 70),
)
ASAM = {
    "methadone_otp": "OTP",
    "office_buprenorphine": "1",
    "xr_naltrexone": "1",
    "intensive_outpatient": "2.1",
}
# medication -> (product form, strength, substance, schedule)
MEDS = {
    "methadone": ("oral_liquid", "10 mg/mL", "methadone", "daily"),
    "buprenorphine_naloxone": ("sublingual_film", "8 mg/2 mg", "buprenorphine", "daily"),
    "xr_naltrexone": ("injection", "380 mg", "naltrexone", "monthly"),
}
PROGRAM_MED = {
    "methadone_otp": "methadone",
    "office_buprenorphine": "buprenorphine_naloxone",
    "xr_naltrexone": "xr_naltrexone",
}
# TEDS discharge reasons of an episode's last enrollment (4, transferred, is for transfers).
REASONS = ((1, 0.25), (2, 0.45), (3, 0.10), (5, 0.07), (6, 0.02), (7, 0.11))
FIRST = ("Ana", "John", "Maria", "Wei", "Keisha", "José", "Olga", "Mary-Jane", "Иван", "Nia")
LAST = ("Smith", "Núñez", "Nguyen", "Watson-Parker", "Петров", "Garcia", "Kim", "Brown")
RESOURCE_KINDS = (
    "halfway_house",
    "recovery_residence",
    "support_group",
    "outpatient_care",
    "peer_support",
)
# A referral's path through its statuses, with its weight.
REFERRAL_PATHS = (
    (("draft",), 0.05),
    (("draft", "closed"), 0.05),
    (("draft", "sent"), 0.08),
    (("draft", "sent", "accepted", "placed"), 0.40),
    (("draft", "sent", "waitlisted", "placed"), 0.10),
    (("draft", "sent", "declined", "closed"), 0.15),
    (("draft", "sent", "accepted", "closed"), 0.07),
    (("draft", "sent", "waitlisted"), 0.05),
    (("draft", "sent", "accepted"), 0.05),
)

# Tables the loader fills: their foreign keys, unique constraints and secondary indexes
# are dropped for the load and created again after it; their user triggers are disabled.
LOADED_TABLES = (
    "site",
    "app_user",
    "user_site",
    "program",
    "patient",
    "enrollment",
    "medication_order",
    "take_home_decision",
    "take_home_dispensing",
    "dose_entry",
    "therapy_session",
    "session_attendee",
    "drug_test",
    "drug_test_result",
    "aftercare_resource",
    "part2_consent",
    "referral",
    "referral_event",
    "part2_disclosure",
)


def choose(rng: random.Random, weighted) -> object:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def log(message: str) -> None:
    print(message, flush=True)


# --- the per-patient plan (Python, COPY) ---------------------------------------------------


class Plan:
    """Rows for the small tables, built in Python with a seeded generator."""

    def __init__(self, patients: int, sites: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sites = sites
        self.rows: dict[str, list[tuple]] = {t: [] for t in (*LOADED_TABLES, "bench_order")}
        self.enrollment_id = 0
        self.order_id = 0
        self.consent_id = 0
        self.referral_id = 0
        self.event_id = 0
        self.disclosure_id = 0
        self.now = dt.datetime.combine(TODAY, dt.time(17), tzinfo=dt.UTC)
        self._structure()
        for patient_id in range(1, patients + 1):
            self._patient(patient_id)

    # Users: admin 1; per site s: clinicians s*100+1..10 (1-2 prescribers, 3-5 dispensers,
    # 1-8 counsellors, 9-10 group leaders), staff s*100+50.
    def _structure(self) -> None:
        stamp = dt.datetime(2019, 12, 1, tzinfo=dt.UTC)
        user = self.rows["app_user"]
        user.append((1, "bench-admin", "Bench Administrator", "admin", False, True, False, stamp))
        for s in range(1, self.sites + 1):
            self.rows["site"].append(
                (s, f"NW{s:02d}", f"Network site {s}", TIMEZONES[(s - 1) % len(TIMEZONES)])
            )
            for k in range(1, 11):
                user.append(
                    (s * 100 + k, f"c{s:02d}{k:02d}", f"Clinician {s}-{k}", "clinician",
                     k <= 2, False, 3 <= k <= 5, stamp)
                )  # fmt: skip
                self.rows["user_site"].append((s * 100 + k, s))
            user.append(
                (s * 100 + 50, f"s{s:02d}", f"Staff {s}", "staff", False, False, False, stamp)
            )
            self.rows["user_site"].append((s * 100 + 50, s))
            for j, (kind, name, _, _) in enumerate(PROGRAMS, start=1):
                caps = (1, 6, 13) if kind == "methadone_otp" else (None, None, None)
                self.rows["program"].append(((s - 1) * 4 + j, s, name, kind, *caps))
        for r in range(1, 101):
            kind = RESOURCE_KINDS[(r - 1) % len(RESOURCE_KINDS)]
            site = None if r % 3 == 0 else (r - 1) % self.sites + 1
            self.rows["aftercare_resource"].append(
                (r, f"Aftercare resource {r}", kind,
                 "medication_assisted" if kind == "support_group" else None,
                 site, stamp, stamp)
            )  # fmt: skip

    def _program(self, site: int, kind: str) -> int:
        index = next(i for i, p in enumerate(PROGRAMS) if p[0] == kind)
        return (site - 1) * 4 + index + 1

    def _episode_kind(self) -> str:
        return choose(self.rng, [(p[0], p[2]) for p in PROGRAMS])

    def _los(self, kind: str) -> int:
        mean = next(p[3] for p in PROGRAMS if p[0] == kind)
        return int(self.rng.expovariate(1 / mean)) + 1

    def _patient(self, pid: int) -> None:
        rng = self.rng
        site = (pid - 1) % self.sites + 1
        total_days = (TODAY - HISTORY_START).days
        episodes: list[tuple[str, dt.date, dt.date | None]] = []
        kind = self._episode_kind()
        if rng.random() < 0.10:  # in treatment today
            tenure = min(int(rng.expovariate(1 / 330)) + 1, total_days)
            episodes.append((kind, TODAY - dt.timedelta(days=tenure - 1), None))
        else:
            discharged = HISTORY_START + dt.timedelta(days=rng.randrange(30, total_days))
            admitted = max(HISTORY_START, discharged - dt.timedelta(days=self._los(kind) - 1))
            episodes.append((kind, admitted, discharged))
        if rng.random() < 0.15:  # a readmission: an earlier episode ended before this one
            before = episodes[0][1] - dt.timedelta(days=rng.randrange(14, 365))
            if before > HISTORY_START + dt.timedelta(days=30):
                earlier = self._episode_kind()
                start = max(HISTORY_START, before - dt.timedelta(days=self._los(earlier) - 1))
                episodes.insert(0, (earlier, start, before))
        intake = episodes[0][1] - dt.timedelta(days=rng.randrange(0, 15))
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(19000))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        in_error = rng.random() < 0.003
        self.rows["patient"].append(
            (pid, site, f"B{pid:07d}", first, last, first.lower(), f"{last.lower()}{pid}",
             born, rng.choice(("female", "male", "male", "unknown")),
             rng.choice(("heroin", "fentanyl", "fentanyl", "prescription_opioids")), intake,
             dt.datetime.combine(intake, dt.time(15), tzinfo=dt.UTC),
             self.now if in_error else None, "Registered twice" if in_error else None)
        )  # fmt: skip
        name = f"{first} {last}"
        if rng.random() < 0.30:
            self._tpo_consent(pid, name, self._program(site, episodes[0][0]), episodes[0][1])
        for kind, admitted, discharged in episodes:
            self._episode(pid, site, name, kind, admitted, discharged)

    def _episode(self, pid, site, name, kind, admitted, discharged) -> None:
        rng = self.rng
        last_day = discharged or TODAY
        length = (last_day - admitted).days + 1
        reason = None if discharged is None else choose(rng, REASONS)
        parts = [(kind, admitted, discharged, reason)]
        if length >= 45 and rng.random() < 0.05:  # transferred between programs
            moved = admitted + dt.timedelta(days=rng.randrange(14, length - 21))
            other = {"methadone_otp": "office_buprenorphine"}.get(kind, "methadone_otp")
            parts = [(kind, admitted, moved, 4), (other, moved, discharged, reason)]
        previous = None
        for n, (pkind, start, end, why) in enumerate(parts):
            self.enrollment_id += 1
            eid = self.enrollment_id
            counsellor = site * 100 + 1 + eid % 8
            self.rows["enrollment"].append(
                (eid, pid, self._program(site, pkind), start, "3", ASAM[pkind], counsellor,
                 previous, end, why, dt.datetime.combine(start, dt.time(15), tzinfo=dt.UTC))
            )  # fmt: skip
            # The orders of an enrollment followed by a transfer end the day before it.
            last = (end - dt.timedelta(days=1)) if n < len(parts) - 1 else end
            if pkind in PROGRAM_MED and (last is None or last >= start):
                self._orders(pid, site, eid, pkind, start, last)
            previous = eid
        if discharged is not None and reason in (1, 2) and rng.random() < 0.25:
            self._referral(pid, site, name, self._program(site, parts[-1][0]), discharged)

    def _orders(self, pid, site, eid, kind, start, last) -> None:
        rng = self.rng
        med = PROGRAM_MED[kind]
        plan = [(med, self._dose(med))]
        change = None
        length = ((last or TODAY) - start).days + 1
        if med != "xr_naltrexone" and length > 50 and rng.random() < 0.65:
            change = start + dt.timedelta(days=rng.randrange(14, 46))
            if med == "methadone" and rng.random() < 0.06:  # switched to buprenorphine
                plan.append(("buprenorphine_naloxone", self._dose("buprenorphine_naloxone")))
            else:
                plan.append((med, min(plan[0][1] + rng.randrange(10, 61, 5), 200)))
        previous = None
        for n, (medication, dose) in enumerate(plan):
            self.order_id += 1
            oid = self.order_id
            begin = start if n == 0 else change
            end = (change - dt.timedelta(days=1)) if n == 0 and change else last
            form, strength, _, schedule = MEDS[medication]
            ended = end is not None
            ended_at = dt.datetime.combine(end, dt.time(20), tzinfo=dt.UTC) if ended else None
            self.rows["medication_order"].append(
                (oid, pid, eid, medication, form, strength, dose, schedule, begin, end,
                 "ended" if ended else "active", site * 100 + 1 + oid % 2,
                 previous if medication == plan[0][0] and n else None,
                 ("Dose change" if n == 0 and change else "Discharged") if ended else None,
                 site * 100 + 1 if ended else None, ended_at,
                 dt.datetime.combine(begin, dt.time(14), tzinfo=dt.UTC))
            )  # fmt: skip
            previous = oid
            if schedule == "daily":
                weekly = n > 0 and rng.random() < (0.3 if medication == "methadone" else 0.5)
                # A relapse: ten days without a dose in a tenth of the orders.
                span = ((end or TODAY) - begin).days
                relapse = (
                    begin + dt.timedelta(days=rng.randrange(span))
                    if not weekly and span > 30 and rng.random() < 0.10
                    else None
                )
                self._decision(oid, pid, site, eid, medication, begin, end, weekly, relapse)

    def _dose(self, medication: str) -> int:
        if medication == "methadone":
            return self.rng.randrange(20, 81, 5)
        if medication == "buprenorphine_naloxone":
            return self.rng.choice((8, 12, 16, 16, 24))
        return 380

    def _decision(self, oid, pid, site, eid, medication, start, end, weekly, relapse) -> None:
        """The take-home decision behind the order's bottles (its id is the order's): the
        closed Sunday's bottle, or a weekly pick-up on Monday with six bottles. The order's
        relapse day (or None) rides along for the dose SQL in ``bench_order``."""
        cap = (6 if weekly else 1) if medication == "methadone" else None
        weekdays = "234567" if weekly else "7"
        recorded = dt.datetime.combine(start, dt.time(16), tzinfo=dt.UTC)
        ended = end is not None
        self.rows["take_home_decision"].append(
            (oid, pid, site, eid, oid, medication if medication == "methadone" else "buprenorphine",
             start, weekdays, 0, cap, len(weekdays), start, site * 100 + 1, recorded,
             site * 100 + 2, recorded, end,
             site * 100 + 1 if ended else None,
             dt.datetime.combine(end, dt.time(20), tzinfo=dt.UTC) if ended else None,
             "Order ended" if ended else None)
        )  # fmt: skip
        self.rows["bench_order"].append((oid, weekly, relapse))

    def _tpo_consent(self, pid, name, program_id, signed) -> None:
        self.consent_id += 1
        revoked = signed + dt.timedelta(days=200) if self.rng.random() < 0.03 else None
        if revoked and revoked > TODAY:
            revoked = None
        self._consent(pid, name, "tpo", program_id, None, "outpatient_care", "tpo", None, signed,
                      revoked)  # fmt: skip

    def _consent(self, pid, name, kind, program_id, resource, recipient_class, purpose,
                 expires, signed, revoked) -> int:  # fmt: skip
        self.consent_id += 1
        cid = self.consent_id
        revoked_at = dt.datetime.combine(revoked, dt.time(16), tzinfo=dt.UTC) if revoked else None
        self.rows["part2_consent"].append(
            (cid, pid, name, kind, program_id, resource, recipient_class, purpose,
             "date" if expires else "none", expires, signed,
             "Redisclosure prohibited (42 CFR 2.32)." if kind == "tpo" else None,
             revoked, "In writing" if revoked else None, 1 if revoked else None, revoked_at,
             f"Aftercare resource {resource}" if resource else "Outpatient providers",
             f"SCAN-{cid}", dt.datetime.combine(signed, dt.time(16), tzinfo=dt.UTC))
        )  # fmt: skip
        return cid

    def _referral(self, pid, site, name, program_id, discharged) -> None:
        rng = self.rng
        created = dt.datetime.combine(
            discharged - dt.timedelta(days=rng.randrange(3, 30)), dt.time(15), tzinfo=dt.UTC
        )
        resource = rng.randrange(1, 101)
        consent = self._consent(
            pid, name, "specific_disclosure", program_id, resource, None, "aftercare_referral",
            created.date() + dt.timedelta(days=365), created.date(), None,
        )  # fmt: skip
        self.referral_id += 1
        rid = self.referral_id
        staff = site * 100 + 50
        at, status, previous = created, "draft", None
        events = []
        for n, step in enumerate(choose(rng, REFERRAL_PATHS)):
            if n:
                at = at + dt.timedelta(days=rng.randrange(1, 15), hours=rng.randrange(0, 6))
            if at > self.now:
                break
            self.event_id += 1
            events.append((self.event_id, rid, previous, step, staff, at))
            if step == "sent":
                self.disclosure_id += 1
                self.rows["part2_disclosure"].append(
                    (self.disclosure_id, pid, rid, resource, f"Aftercare resource {resource}",
                     "Name, dates of treatment, medication", "aftercare_referral", consent,
                     staff, at, at.date())
                )  # fmt: skip
            status, previous = step, step
        follow_up = (
            (at.date() + dt.timedelta(days=14)) if status in ("sent", "waitlisted") else None
        )
        self.rows["referral"].append(
            (rid, pid, resource, "Aftercare after discharge", "aftercare_referral", status,
             follow_up, staff, created, at)
        )  # fmt: skip
        self.rows["referral_event"].extend(events)


# Columns of each COPY, and NOT NULL columns every row shares (appended to each row).
COPY_COLUMNS = {
    "site": "id, code, name, timezone",
    "app_user": "id, username, full_name, role, is_prescriber, all_sites, may_dispense, created_at",
    "user_site": "user_id, site_id",
    "program": "id, site_id, name, kind, take_home_cap_days_0_14, take_home_cap_days_15_30,"
    " take_home_cap_days_31_plus",
    "aftercare_resource": "id, name, kind, support_group_type, site_id, created_at, updated_at",
    "patient": "id, site_id, mrn, first_name, last_name, first_key, last_key, date_of_birth,"
    " sex_at_birth, primary_substance, intake_date, created_at, entered_in_error_at,"
    " entered_in_error_reason",
    "enrollment": "id, patient_id, program_id, admitted_on, asam_edition, asam_level,"
    " primary_counselor_id, transferred_from_id, discharged_on, discharge_reason, created_at",
    "medication_order": "id, patient_id, enrollment_id, medication, product_form, strength,"
    " dose_mg, schedule, start_on, end_on, status, prescriber_id, replaces_id, ended_reason,"
    " ended_by_id, ended_at, created_at",
    "take_home_decision": "id, patient_id, site_id, enrollment_id, order_id, medication,"
    " start_on, weekdays, treatment_day, cap_days, counted_days, storage_education_on,"
    " recorded_by_id, recorded_at, approved_by_id, approved_at, ended_on, ended_by_id,"
    " ended_at, end_reason",
    "bench_order": "order_id, weekly, relapse_on",
    "part2_consent": "id, patient_id, patient_name, kind, program_id, resource_id,"
    " recipient_class, purpose, expiry_kind, expires_on, signed_on, redisclosure_statement,"
    " revoked_on, revocation_method, revoked_by_id, revoked_at, recipient_name,"
    " paper_scan_reference, recorded_at",
    "referral": "id, patient_id, resource_id, reason, purpose, status, follow_up_on,"
    " created_by_id, created_at, status_changed_at",
    "referral_event": "id, referral_id, from_status, to_status, actor_id, occurred_at",
    "part2_disclosure": "id, patient_id, referral_id, resource_id, recipient_name, description,"
    " purpose, consent_id, disclosed_by_id, disclosed_at, disclosed_on",
}
_STAMP = dt.datetime(2019, 12, 1, tzinfo=dt.UTC)
COPY_CONSTANTS: dict[str, tuple[str, tuple]] = {
    "app_user": ("password_hash, password_changed_at", ("!bench-no-login", _STAMP)),
    "take_home_decision": (
        "schedule_kind, substance_use_met, attendance_met, behaviour_met, diversion_met,"
        " storage_met, other_met, substance_use_note, attendance_note, behaviour_note,"
        " diversion_note, storage_note, other_note",
        (
            "weekly",
            True,
            True,
            True,
            True,
            True,
            True,
            "Negative tests",
            "Attends",
            "Stable",
            "No concern",
            "Lock box",
            "None",
        ),
    ),
    "part2_consent": (
        "program_name, information_description, purpose_text, right_to_revoke,"
        " signature_method, recorded_by_id",
        (
            "Program",
            "Dates of treatment and medication",
            "Continuity of care",
            "May revoke at any time, in writing",
            "paper",
            1,
        ),
    ),
}


# --- the bulk tables (set-based SQL) -------------------------------------------------------


def _d(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def bench_rand_sql(seed: int) -> str:
    """A deterministic uniform number in [0, 1) from (key, salt): the loader's dice."""
    return (
        "CREATE FUNCTION bench_rand(bigint, integer) RETURNS double precision"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS"
        f" $$ SELECT (hashint8(($1 * 1000003 + $2) # {seed}) & 2147483647)"
        " / 2147483648.0::float8 $$"
    )


def dose_sql(first: dt.date, last: dt.date) -> str:
    """The ledger rows of the site-local days ``first``..``last`` (one month a statement,
    in day order, as a ledger grows): one row per dose-day of each daily order (observed;
    a take-home bottle for the closed Sunday picked up on Saturday, or six bottles picked up
    on Monday; missed days, 3 % at random and 10-day relapse runs; none on a Sunday without
    a bottle), and an injection every 28 days for XR naltrexone."""
    today = _d(TODAY)
    return f"""
INSERT INTO dose_entry (kind, patient_id, site_id, order_id, medication, substance, strength,
    dosage_form, dispensed_on, dispensed_at, amount_mg, slot, dispenser_id, reason, lot,
    injection_site, take_on, bottle_number, dispensing_id)
WITH o AS (
    SELECT mo.id AS order_id, mo.patient_id, p.site_id, mo.medication, mo.strength,
           mo.product_form, mo.dose_mg, mo.start_on, b.weekly, b.relapse_on,
           CASE mo.medication WHEN 'methadone' THEN 'methadone' ELSE 'buprenorphine' END
               AS substance,
           greatest(mo.start_on, {_d(first)} - 7) AS from_day,
           least(coalesce(mo.end_on, {today} + 6), {_d(last)} + 7) AS to_day
    FROM medication_order mo
    JOIN patient p ON p.id = mo.patient_id
    JOIN bench_order b ON b.order_id = mo.id
    WHERE mo.schedule = 'daily' AND mo.start_on <= {_d(last)} + 7
      AND coalesce(mo.end_on, {today} + 6) >= {_d(first)} - 7
), d AS (
    SELECT o.*, g.day::date AS day, extract(isodow FROM g.day)::int AS dow,
           g.day::date - DATE '1970-01-01' AS dn,
           o.relapse_on IS NOT NULL AND g.day::date BETWEEN o.relapse_on AND o.relapse_on + 9
               AS relapsing
    FROM o, generate_series(o.from_day, o.to_day, interval '1 day') AS g(day)
), k AS (
    SELECT d.*,
        CASE WHEN weekly AND dow > 1 AND day - (dow - 1) >= start_on THEN day - (dow - 1)
             WHEN dow = 7 AND day - 1 >= start_on AND NOT (relapse_on IS NOT NULL
                  AND day - 1 BETWEEN relapse_on AND relapse_on + 9) THEN day - 1
        END AS pickup
    FROM d
), r AS (
    SELECT k.*,
        CASE WHEN pickup IS NOT NULL THEN 'take_home'
             WHEN dow = 7 THEN NULL
             WHEN relapsing THEN 'missed'
             WHEN dow <> 6 AND NOT (weekly AND dow = 1) AND bench_rand(order_id, dn) < 0.03
                 THEN 'missed'
             ELSE 'observed'
        END AS kind
    FROM k
), daily AS (
    SELECT kind, patient_id, site_id, order_id, medication, substance, strength,
           product_form, coalesce(pickup, day) AS dispensed_on, dn, dose_mg,
           CASE WHEN kind = 'take_home' THEN day END AS take_on,
           CASE WHEN kind = 'take_home' THEN day - pickup END AS bottle_number,
           CASE WHEN kind = 'take_home'
                THEN order_id * 1000 + ((pickup - DATE '1970-01-05') / 7) % 1000 END
               AS dispensing_id
    FROM r WHERE kind IS NOT NULL
), injections AS (
    SELECT 'injection' AS kind, mo.patient_id, p.site_id, mo.id AS order_id, mo.medication,
           'naltrexone' AS substance, mo.strength, mo.product_form,
           g.day::date AS dispensed_on, g.day::date - DATE '1970-01-01' AS dn, mo.dose_mg,
           NULL::date AS take_on, NULL::int AS bottle_number, NULL::int AS dispensing_id
    FROM medication_order mo
    JOIN patient p ON p.id = mo.patient_id,
    generate_series(mo.start_on, coalesce(mo.end_on, {today}), interval '28 days') AS g(day)
    WHERE mo.medication = 'xr_naltrexone' AND mo.start_on <= {_d(last)}
      AND coalesce(mo.end_on, {today}) >= {_d(first)}
), rows AS (
    SELECT * FROM daily UNION ALL SELECT * FROM injections
)
SELECT kind, patient_id, site_id, order_id, medication, substance, strength, product_form,
       dispensed_on,
       (dispensed_on + time '15:00') AT TIME ZONE 'UTC'
           + ((order_id * 7 + dn) % 300) * interval '1 minute',
       CASE WHEN kind <> 'missed' THEN dose_mg END,
       CASE WHEN kind IN ('observed', 'injection') THEN 1 END,
       site_id * 100 + 3 + dn % 3,
       CASE WHEN kind = 'missed' THEN 'Did not attend' END,
       CASE WHEN kind = 'injection' THEN 'LOT-' || (dn / 90) END,
       CASE WHEN kind = 'injection'
            THEN (ARRAY['gluteal_left', 'gluteal_right'])[1 + dn % 2] END,
       take_on, bottle_number, dispensing_id
FROM rows
WHERE dispensed_on BETWEEN {_d(first)} AND {_d(last)} AND dispensed_on <= {today}
ORDER BY dispensed_on, patient_id
"""  # noqa: S608


REVERSAL_SQL = """
INSERT INTO dose_entry (kind, patient_id, site_id, order_id, medication, substance, strength,
    dosage_form, dispensed_on, dispensed_at, amount_mg, slot, dispenser_id, reason,
    reverses_id)
SELECT 'reversal', patient_id, site_id, order_id, medication, substance, strength,
       dosage_form, dispensed_on, dispensed_at + interval '10 minutes', NULL, NULL,
       dispenser_id, 'Wrong patient selected', id
FROM dose_entry WHERE kind = 'observed' AND bench_rand(id, 77) < 0.0005;
INSERT INTO dose_entry (kind, patient_id, site_id, order_id, medication, substance, strength,
    dosage_form, dispensed_on, dispensed_at, amount_mg, slot, dispenser_id)
SELECT 'observed', patient_id, site_id, order_id, medication, substance, strength,
       dosage_form, dispensed_on, dispensed_at + interval '12 minutes', r.amount, 2,
       dispenser_id
FROM (SELECT d.*, o.amount_mg AS amount FROM dose_entry d
      JOIN dose_entry o ON o.id = d.reverses_id WHERE d.kind = 'reversal') r
"""

DISPENSING_SQL = """
INSERT INTO take_home_dispensing (id, patient_id, site_id, decision_id, order_id,
    dispensed_on, dispensed_at, dispenser_id, bottle_count)
SELECT dispensing_id, min(patient_id), min(site_id), min(order_id), min(order_id),
       min(dispensed_on), min(dispensed_at), min(dispenser_id), count(*)
FROM dose_entry WHERE kind = 'take_home'
GROUP BY dispensing_id ORDER BY min(dispensed_on), dispensing_id
"""


def sessions_sql() -> str:
    """A year of counselling (and the next two weeks, planned): an individual session
    every 14 days per enrollment (weekends moved to Friday) with its counsellor's 30-minute
    slot, and intensive-outpatient groups of up to 12 on Mondays, Wednesdays and Fridays."""
    today = _d(TODAY)
    start = _d(TODAY - dt.timedelta(days=SESSION_WINDOW_DAYS))
    return f"""
CREATE UNLOGGED TABLE bench_individual AS
WITH e AS (
    SELECT e.id AS enrollment_id, e.patient_id, pr.site_id, s.timezone, pr.kind,
           greatest(e.admitted_on, {start}) AS first_day,
           least(coalesce(e.discharged_on, {today} + 14), {today} + 14) AS last_day
    FROM enrollment e JOIN program pr ON pr.id = e.program_id JOIN site s ON s.id = pr.site_id
    WHERE e.admitted_on <= {today} + 14
      AND (e.discharged_on IS NULL OR e.discharged_on >= {start})
), d AS (
    SELECT e.*, g.day::date AS raw
    FROM e, generate_series(e.first_day + (e.enrollment_id % 14), e.last_day,
                            interval '14 days') AS g(day)
), w AS (
    SELECT d.*, raw - CASE extract(isodow FROM raw)::int WHEN 6 THEN 1 WHEN 7 THEN 2
                      ELSE 0 END AS day
    FROM d
)
SELECT w.*, row_number() OVER (PARTITION BY site_id, day ORDER BY enrollment_id) - 1 AS n
FROM w WHERE day >= first_day;

CREATE UNLOGGED TABLE bench_member AS
WITH e AS (
    SELECT e.id AS enrollment_id, e.patient_id, pr.site_id, s.timezone,
           greatest(e.admitted_on, {start}) AS first_day,
           least(coalesce(e.discharged_on, {today} + 14), {today} + 14) AS last_day
    FROM enrollment e JOIN program pr ON pr.id = e.program_id JOIN site s ON s.id = pr.site_id
    WHERE pr.kind = 'intensive_outpatient' AND e.admitted_on <= {today} + 14
      AND (e.discharged_on IS NULL OR e.discharged_on >= {start})
), d AS (
    SELECT e.*, g.day::date AS day
    FROM e, generate_series(e.first_day, e.last_day, interval '1 day') AS g(day)
    WHERE extract(isodow FROM g.day) IN (1, 3, 5)
)
SELECT d.*, row_number() OVER (PARTITION BY site_id, day ORDER BY enrollment_id) - 1 AS r
FROM d;

CREATE UNLOGGED TABLE bench_group AS
SELECT site_id, timezone, day, r / 12 AS g, min(r) AS first_r
FROM bench_member GROUP BY site_id, timezone, day, r / 12;

CREATE UNLOGGED TABLE bench_session AS
SELECT row_number() OVER (ORDER BY day, site_id, clinician_id, starts_at) AS id, x.*
FROM (
    SELECT site_id, day, enrollment_id, patient_id, NULL::int AS g, 'individual' AS kind,
           site_id * 100 + 1 + n % 8 AS clinician_id, 30 AS duration,
           (day + time '08:00' + (n / 8) * interval '30 minutes') AT TIME ZONE timezone
               AS starts_at
    FROM bench_individual
    UNION ALL
    SELECT site_id, day, NULL, NULL, g, 'group', site_id * 100 + 1 + g % 10, 90,
           (day + time '17:15' + (g / 10) * interval '100 minutes') AT TIME ZONE timezone
    FROM bench_group
) x;

INSERT INTO therapy_session (id, clinician_id, site_id, starts_at, duration_minutes, kind,
    modality, setting, group_name, status, recorded_at, recorded_by_id, created_at,
    created_by_id, entered_in_error_at, entered_in_error_reason, entered_in_error_by_id)
SELECT id, clinician_id, site_id, starts_at, duration, kind,
       CASE WHEN kind = 'group'
            THEN (ARRAY['relapse_prevention', 'cbt', 'matrix_model'])[1 + id % 3]
            ELSE (ARRAY['cbt', 'motivational_interviewing', 'contingency_management',
                        'relapse_prevention', 'twelve_step_facilitation',
                        'community_reinforcement', 'dbt', 'peer_support', 'cbt'])[1 + id % 9]
       END,
       CASE WHEN bench_rand(id, 5) < 0.85 THEN 'in_person'
            WHEN bench_rand(id, 5) < 0.95 THEN 'video' ELSE 'audio_only' END,
       CASE WHEN kind = 'group' THEN 'Intensive outpatient group' END,
       CASE WHEN day < {today} THEN 'recorded' ELSE 'planned' END,
       CASE WHEN day < {today} THEN starts_at + interval '1 hour' END,
       CASE WHEN day < {today} THEN clinician_id END,
       starts_at - interval '14 days', clinician_id,
       CASE WHEN day < {today} AND bench_rand(id, 6) < 0.002
            THEN starts_at + interval '2 hours' END,
       CASE WHEN day < {today} AND bench_rand(id, 6) < 0.002 THEN 'Wrong patient' END,
       CASE WHEN day < {today} AND bench_rand(id, 6) < 0.002 THEN clinician_id END
FROM bench_session ORDER BY id;

INSERT INTO session_attendee (session_id, patient_id, enrollment_id, position, attendance,
    minutes_attended)
SELECT id, patient_id, enrollment_id, position,
       CASE WHEN day >= {today} THEN NULL
            WHEN u < 0.78 THEN 'attended' WHEN u < 0.82 THEN 'late'
            WHEN u < 0.85 THEN 'left_early' WHEN u < 0.95 THEN 'no_show'
            WHEN u < 0.98 THEN 'cancelled_by_patient' ELSE 'cancelled_by_clinic' END,
       CASE WHEN day >= {today} THEN NULL
            WHEN u < 0.78 THEN duration WHEN u < 0.82 THEN duration - 10
            WHEN u < 0.85 THEN duration - 15 END
FROM (
    SELECT s.id, s.day, s.duration, s.patient_id, s.enrollment_id, 1 AS position,
           bench_rand(s.id, 7) AS u
    FROM bench_session s WHERE s.kind = 'individual'
    UNION ALL
    SELECT s.id, s.day, s.duration, m.patient_id, m.enrollment_id, m.r % 12 + 1,
           bench_rand(s.id * 20 + m.r % 12, 8)
    FROM bench_session s
    JOIN bench_member m ON m.site_id = s.site_id AND m.day = s.day AND m.r / 12 = s.g
    WHERE s.kind = 'group'
) a ORDER BY id, position
"""  # noqa: S608


def drug_test_sql() -> str:
    """A test every 38-51 days of each enrollment (weekends moved to Friday), six analytes
    each; 0.3 % entered in error."""
    today = _d(TODAY)
    return f"""
INSERT INTO drug_test (patient_id, site_id, collected_at, collected_on, specimen, observed,
    reason, collected_by_id, temperature_in_range, recorded_by_id, recorded_at,
    entered_in_error_at, entered_in_error_by_id, entered_in_error_reason)
SELECT patient_id, site_id, collected_at, day,
       CASE WHEN bench_rand(eid, dn) < 0.9 THEN 'urine' ELSE 'oral_fluid' END,
       bench_rand(eid, dn + 1) < 0.5,
       CASE WHEN bench_rand(eid, dn + 2) < 0.7 THEN 'random' ELSE 'scheduled' END,
       site_id * 100 + 3 + dn % 3,
       CASE WHEN bench_rand(eid, dn) < 0.9 THEN true END,
       site_id * 100 + 3 + dn % 3, collected_at + interval '3 hours',
       CASE WHEN bench_rand(eid, dn + 3) < 0.003 THEN collected_at + interval '1 day' END,
       CASE WHEN bench_rand(eid, dn + 3) < 0.003 THEN site_id * 100 + 3 END,
       CASE WHEN bench_rand(eid, dn + 3) < 0.003 THEN 'Wrong patient label' END
FROM (
    SELECT eid, patient_id, site_id, day, day - DATE '1970-01-01' AS dn,
           (day + time '10:00' + (eid % 360) * interval '1 minute') AT TIME ZONE timezone
               AS collected_at
    FROM (
        SELECT e.id AS eid, e.patient_id, pr.site_id, s.timezone, e.admitted_on,
               g.day::date - CASE extract(isodow FROM g.day)::int WHEN 6 THEN 1
                                 WHEN 7 THEN 2 ELSE 0 END AS day
        FROM enrollment e JOIN program pr ON pr.id = e.program_id
        JOIN site s ON s.id = pr.site_id,
        generate_series(e.admitted_on + (e.id % 20), coalesce(e.discharged_on, {today}),
                        make_interval(days => 38 + e.id % 14)) AS g(day)
    ) t WHERE day >= admitted_on AND day <= {today}
) x ORDER BY day, patient_id;

INSERT INTO drug_test_result (test_id, analyte, result, method, entered_by_id, entered_at)
SELECT t.id, a.analyte,
       CASE WHEN bench_rand(t.id, a.salt) < a.p THEN 'positive'
            WHEN bench_rand(t.id, a.salt) > 0.995 THEN 'not_tested' ELSE 'negative' END,
       'presumptive', t.recorded_by_id, t.recorded_at
FROM drug_test t CROSS JOIN (VALUES ('opioids', 11, 0.15), ('fentanyl', 12, 0.12),
    ('cocaine', 13, 0.08), ('amphetamines', 14, 0.06), ('benzodiazepines', 15, 0.05),
    ('cannabis', 16, 0.2)) AS a(analyte, salt, p)
ORDER BY t.id
"""  # noqa: S608


# --- the scratch database ------------------------------------------------------------------


class Scratch:
    """A database of its own on the server: created, migrated, dropped at the end."""

    def __init__(self, server_url: str, label: str, reuse: str | None = None) -> None:
        from config import normalise_database_url

        self.admin_url = sa.make_url(normalise_database_url(server_url))
        self.name = reuse or f"clinic_bench_reports_{label}_{uuid.uuid4().hex[:8]}"
        self.url = self.admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created = False

    def create(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.created = True
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off'))

    def drop(self) -> None:
        if self.created:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.created = False
        self.admin.dispose()


def migrate(url: str) -> None:
    import logging

    from flask_migrate import upgrade

    from clinic import create_app
    from clinic.extensions import db

    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        logging.disable(logging.INFO)  # alembic's line per migration
        try:
            upgrade()
        finally:
            logging.disable(logging.NOTSET)
        db.engine.dispose()


def _deferred(conn) -> tuple[list[str], list[str]]:
    """Drop the loaded tables' foreign keys, unique constraints and secondary indexes;
    return the statements that create them again (indexes first, then constraints)."""
    tables = list(LOADED_TABLES)
    constraints = conn.execute(
        sa.text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype"
            " FROM pg_constraint WHERE contype IN ('f', 'u')"
            " AND conrelid::regclass::text = ANY(:t) ORDER BY contype, conname"
        ),
        {"t": tables},
    ).all()
    indexes = conn.execute(
        sa.text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i WHERE i.indrelid::regclass::text = ANY(:t) AND NOT i.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid"
            " AND c.contype IN ('u', 'p', 'x'))"
        ),
        {"t": tables},
    ).all()
    for table, name, _, _ in constraints:  # 'f' sorts first: foreign keys before uniques
        conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        conn.execute(sa.text(f"DROP INDEX {name}"))
    recreate = [definition for _, definition in indexes]
    recreate += [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition, kind in sorted(constraints, key=lambda c: c[3] != "u")
    ]
    return recreate, [f"ALTER TABLE {t} ENABLE TRIGGER USER" for t in tables]


def describe_loaded(url: str) -> dict:
    """The facts of a data set loaded by an earlier run (``--keep``, then ``--reuse``)."""
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    with engine.connect() as conn:
        rows = {
            t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()  # noqa: S608
            for t in LOADED_TABLES
        }
    engine.dispose()
    return {"rows": rows, "steps_s": {}, "load_s": None, "patients": rows["patient"],
            "sites": rows["site"]}  # fmt: skip


def load(url: str, patients: int, sites: int, seed: int) -> dict:
    """Fill the migrated database; return the row counts and the load time per step."""
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
    steps: dict[str, float] = {}
    started = time.perf_counter()

    def step(label: str, statements: str | list[str]) -> None:
        t0 = time.perf_counter()
        for statement in [statements] if isinstance(statements, str) else statements:
            for part in [s for s in statement.split(";\n") if s.strip()]:
                raw.execute(part)
        steps[label] = steps.get(label, 0.0) + time.perf_counter() - t0
        log(f"  {label:<34} {time.perf_counter() - t0:7.1f} s")

    with engine.connect() as conn:
        # The driver's own cursor: no placeholders in these statements ("%" is modulo).
        raw = conn.connection.driver_connection
        for setting in (
            "work_mem = '256MB'",
            "maintenance_work_mem = '1GB'",
            "synchronous_commit = off",
            "max_parallel_maintenance_workers = 2",
            "jit = off",  # compiling each generated statement costs seconds, saves nothing
        ):
            raw.execute(f"SET {setting}")  # fmt: skip
        raw.execute(bench_rand_sql(seed))
        raw.execute(
            "CREATE UNLOGGED TABLE bench_order (order_id integer PRIMARY KEY,"
            " weekly boolean NOT NULL, relapse_on date)"
        )
        recreate, enable = _deferred(conn)
        for table in LOADED_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        t0 = time.perf_counter()
        plan = Plan(patients, sites, seed)
        steps["plan (Python)"] = time.perf_counter() - t0
        log(f"  {'plan (Python)':<34} {steps['plan (Python)']:7.1f} s")
        t0 = time.perf_counter()
        with raw.cursor() as cursor:
            for table, columns in COPY_COLUMNS.items():
                extra_columns, extra = COPY_CONSTANTS.get(table, ("", ()))
                names = f"{columns}, {extra_columns}" if extra_columns else columns
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in plan.rows[table]:
                        copy.write_row(row + extra)
        steps["COPY plan tables"] = time.perf_counter() - t0
        log(f"  {'COPY plan tables':<34} {steps['COPY plan tables']:7.1f} s")
        del plan
        raw.execute("ANALYZE")
        months = []
        first = HISTORY_START
        while first <= TODAY:
            nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            months.append((first, min(nxt - dt.timedelta(days=1), TODAY)))
            first = nxt
        t0 = time.perf_counter()
        for n, (first, last) in enumerate(months, start=1):
            raw.execute(dose_sql(first, last))
            if n % 12 == 0 or n == len(months):
                count = raw.execute("SELECT count(*) FROM dose_entry").fetchone()[0]
                log(f"  dose_entry to {last}: {count:>11,} rows  {time.perf_counter() - t0:7.1f} s")
        steps["dose_entry"] = time.perf_counter() - t0
        step("dose reversals", REVERSAL_SQL)
        step("take_home_dispensing", DISPENSING_SQL)
        step("therapy sessions + attendees", sessions_sql())
        step("drug tests + results", drug_test_sql())
        step(
            "sequences",
            [
                f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"  # noqa: S608
                for t in LOADED_TABLES
                if t != "user_site"
            ],
        )
        step("indexes + constraints (validated)", recreate)
        step("triggers enabled", enable)
        step(
            "drop helpers",
            "DROP TABLE bench_order, bench_individual, bench_member, bench_group, bench_session;\n"
            "DROP FUNCTION bench_rand(bigint, integer)",
        )
        step("VACUUM ANALYZE", "VACUUM ANALYZE")
        counts = {
            t: raw.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in LOADED_TABLES
        }
    engine.dispose()
    return {"rows": counts, "steps_s": steps, "load_s": time.perf_counter() - started}


# --- timing the reports --------------------------------------------------------------------


class Recorder:
    """Each SQL statement a compute sends (``before_cursor_execute``), with its time."""

    def __init__(self, engine) -> None:
        self.active = False
        self.statements: list[tuple[float, str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            started = conn.info["bench_started"].pop()
            self.statements.append((time.perf_counter() - started, statement, parameters))

    @contextlib.contextmanager
    def recording(self):
        self.statements = []
        self.active = True
        try:
            yield self
        finally:
            self.active = False


def report_filters(report, site_ids: tuple[int, ...]):
    from clinic.reports.filters import ReportFilters, last_thirty_days

    period = report.default_period or last_thirty_days
    date_from, date_to = period(TODAY)
    return ReportFilters(
        site_ids=site_ids,
        program_id=None,
        medications=None,
        date_from=date_from,
        date_to=date_to,
        on=TODAY,
        today=TODAY,
        single_site=len(site_ids) == 1,
    )


def measure_reports(
    url: str, sites: int, runs: int, only: list[str] | None, settings: dict[str, str] | None = None
) -> dict:
    """Per report and scope ("site": site 1; "network": every site): the times of ``runs``
    computes after one warm-up (ms), the statements of each compute, and the slowest
    statement of the slowest run. ``runs`` 0: one compute, for the statement count only.
    ``settings``: PostgreSQL settings of the app's connections (e.g. ``{"jit": "off"}``)."""
    from clinic import create_app
    from clinic.extensions import db
    from clinic.reports.core import REPORTS, run

    config = {"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url}
    if settings:
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            "hide_parameters": True,
            **connect_options(settings),
        }
    app = create_app(config)
    measured: dict[str, dict] = {}
    with app.app_context():
        recorder = Recorder(db.engine)
        reports = sorted(REPORTS.values(), key=lambda r: (r.order, r.slug))
        for report in reports:
            if only and report.slug not in only:
                continue
            entry = measured.setdefault(report.slug, {"title": report.title})
            for scope, site_ids in (("site", (1,)), ("network", tuple(range(1, sites + 1)))):
                filters = report_filters(report, site_ids)
                timings, counts, slowest = [], [], (0.0, "", None)
                try:
                    for n in range(runs + 1):
                        with recorder.recording():
                            t0 = time.perf_counter()
                            run(report, filters)  # as the app runs it
                            elapsed = (time.perf_counter() - t0) * 1000
                        db.session.remove()
                        counts.append(len(recorder.statements))
                        if n == 0 and runs:
                            continue  # the warm-up
                        timings.append(elapsed)
                        top = max(recorder.statements, default=(0.0, "", None))
                        if top[0] > slowest[0]:
                            slowest = top
                except Exception as error:  # a report in progress may fail
                    db.session.remove()
                    entry[scope] = {"error": f"{type(error).__name__}: {error}"[:500]}
                    log(f"  {report.slug:<14} {scope:<8} ERROR {entry[scope]['error'][:200]}")
                    continue
                entry[scope] = {
                    "median_ms": round(statistics.median(timings), 1) if timings else None,
                    "runs_ms": [round(t, 1) for t in timings],
                    "statements": counts,
                    "period": [filters.date_from.isoformat(), filters.date_to.isoformat()],
                    "slowest_statement_ms": round(slowest[0] * 1000, 1),
                    "_slowest": slowest,
                }
                if runs:
                    log(
                        f"  {report.slug:<14} {scope:<8} median {entry[scope]['median_ms']:9.1f}"
                        f" ms   statements {counts[-1]:>3}   slowest statement"
                        f" {slowest[0] * 1000:8.1f} ms"
                    )
        db.engine.dispose()
    return measured


def connect_options(settings: dict[str, str] | None) -> dict:
    """Engine options that give each connection these PostgreSQL settings."""
    if not settings:
        return {}
    return {"connect_args": {"options": " ".join(f"-c {k}={v}" for k, v in settings.items())}}


def explain(url: str, statement: str, parameters, settings: dict[str, str] | None = None) -> str:
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url), **connect_options(settings))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or ()
            ).all()
        return "\n".join(r[0] for r in rows)
    finally:
        engine.dispose()


def machine_facts(url: str) -> dict:
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        settings = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")
        }
    engine.dispose()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": version,
        "postgresql_settings": settings,
        "load_average": " ".join(f"{n:.1f}" for n in os.getloadavg()),
    }


# --- results -------------------------------------------------------------------------------


def summarise(measured: dict, tiny: dict | None) -> list[dict]:
    rows = []
    for slug, entry in measured.items():
        site, network = entry.get("site", {}), entry.get("network", {})
        counts = {
            "site": site.get("statements"),
            "network": network.get("statements"),
        }
        if tiny and slug in tiny:
            counts["tiny_site"] = tiny[slug].get("site", {}).get("statements")
            counts["tiny_network"] = tiny[slug].get("network", {}).get("statements")
        distinct = {c for runs in counts.values() if runs for c in runs}
        error = site.get("error") or network.get("error")
        if tiny and slug in tiny:
            error = error or tiny[slug].get("site", {}).get("error")
            error = error or tiny[slug].get("network", {}).get("error")
        site_met = site.get("median_ms") is not None and site["median_ms"] < SINGLE_SITE_TARGET_MS
        net_met = network.get("median_ms") is not None and network["median_ms"] < NETWORK_TARGET_MS
        rows.append(
            {
                "slug": slug,
                "title": entry["title"],
                "period": (site or network).get("period"),
                "site_ms": site.get("median_ms"),
                "network_ms": network.get("median_ms"),
                "site_runs_ms": site.get("runs_ms"),
                "network_runs_ms": network.get("runs_ms"),
                "statements": sorted(distinct)[0] if len(distinct) == 1 else sorted(distinct),
                "statement_counts": counts,
                "statements_constant": len(distinct) == 1,
                "site_slowest_statement_ms": site.get("slowest_statement_ms"),
                "network_slowest_statement_ms": network.get("slowest_statement_ms"),
                "site_target_met": site_met,
                "network_target_met": net_met,
                "error": error,
            }
        )
    return rows


def fmt_ms(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| Report | One site (ms) | Network (ms) | Statements | Targets met |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "yes" if r["site_target_met"] and r["network_target_met"] else "**no**"
        if r["error"]:
            met = f"**error**: {r['error'][:120]}"
        statements = r["statements"]
        if not r["statements_constant"]:
            statements = f"**differ: {statements}**"
        lines.append(
            f"| {r['slug']} | {fmt_ms(r['site_ms'])} | {fmt_ms(r['network_ms'])} |"
            f" {statements} | {met} |"
        )
    return lines


def write_results(facts: dict, dataset: dict, rows: list[dict], args, explains: list) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"-{k}-{v}".replace("_", "-").lower() for k, v in args.settings.items())
    base = RESULTS / f"reports-postgresql{suffix}"
    payload = {
        "benchmark": "bench/reports.py",
        "machine": facts,
        "today": TODAY.isoformat(),
        "seed": args.seed,
        "runs": args.runs,
        "app_settings": args.settings,
        "targets_ms": {"site": SINGLE_SITE_TARGET_MS, "network": NETWORK_TARGET_MS},
        "dataset": dataset,
        "reports": rows,
    }
    base.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    rows_loaded = dataset["rows"]
    loaded = (
        "loaded by an earlier run (--reuse)"
        if dataset["load_s"] is None
        else f"loaded in {dataset['load_s']:.0f} s"
    )
    lines = [
        "# Reports benchmark (PostgreSQL)",
        "",
        f"Run {facts['date']} by `bench/reports.py` on {facts['cpus']} CPUs,"
        f" PostgreSQL {facts['postgresql']} (shared_buffers"
        f" {facts['postgresql_settings']['shared_buffers']}, work_mem"
        f" {facts['postgresql_settings']['work_mem']}, jit {facts['postgresql_settings']['jit']}),"
        f" Python {facts['python']}; load average {facts['load_average']} (2 cores shared with"
        " other work: times are noisy).",
        "",
        "The app's connections ran with "
        + (", ".join(f"`{k} = {v}`" for k, v in args.settings.items()) or "the server's settings")
        + ".",
        "",
        f"Data set: {dataset['patients']:,} patients at {dataset['sites']} sites,"
        f" {rows_loaded['dose_entry']:,} dose rows, {rows_loaded['enrollment']:,} enrollments,"
        f" {rows_loaded['therapy_session']:,} sessions, {rows_loaded['drug_test']:,} drug"
        f" tests; {loaded}. Today is {TODAY.isoformat()}; each"
        " report with its default period; one site is site 1.",
        "",
        f"Median of {args.runs} computes after one warm-up; targets: one site under"
        f" {SINGLE_SITE_TARGET_MS:,.0f} ms, the network under {NETWORK_TARGET_MS:,.0f} ms."
        " Statements: SQL statements per compute, the same for one site, the network"
        + (
            f" and a tiny data set ({args.tiny_patients} patients)."
            if args.tiny_patients
            else " (no tiny data set this run)."
        ),
        "",
        *table_lines(rows),
        "",
        "Rows loaded: " + ", ".join(f"{t} {n:,}" for t, n in rows_loaded.items() if n) + ".",
        "",
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    explain_file = RESULTS / f"reports-postgresql{suffix}-explain.md"
    explain_file.unlink(missing_ok=True)  # an earlier run's plans
    if explains:
        text = ["# Slowest statement of each report over its target", ""]
        for slug, scope, ms, statement, plan in explains:
            text += [
                f"## {slug} ({scope}): {ms:,.1f} ms",
                "",
                "```sql",
                statement.strip(),
                "```",
                "",
                "```",
                plan,
                "```",
                "",
            ]
        explain_file.write_text("\n".join(text))
    return base


# --- main ----------------------------------------------------------------------------------


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="a PostgreSQL server (any database on it): the scratch databases are made there"
        " (default $BENCH_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed computes after a warm-up")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--tiny-patients",
        type=int,
        default=200,
        help="patients of the tiny data set the statement counts are compared with (0: skip)",
    )
    parser.add_argument("--report", action="append", help="only this report (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="time the reports on a network data set kept by an earlier --keep run (no load)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the app's connections, e.g. --set jit=off (repeatable;"
        " the results file is named after them)",
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="EXPLAIN every report's slowest statement"
    )
    args = parser.parse_args()
    if not args.server_url.startswith(("postgres://", "postgresql")):
        parser.error("the reports benchmark runs on PostgreSQL: give a postgresql:// URL")
    try:
        args.settings = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        parser.error("--set takes NAME=VALUE")
    if args.reuse and not args.reuse.startswith("clinic_bench_reports_"):
        parser.error("--reuse takes a database this benchmark made (clinic_bench_reports_...)")
    # Ctrl-C and a kill both end in the ``finally`` that drops the scratch databases (also
    # when started in the background, where SIGINT would otherwise be ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    scratches: list[Scratch] = []
    try:
        tiny = None
        if args.tiny_patients:
            scratch = Scratch(args.server_url, "tiny")
            scratches.append(scratch)
            log(f"tiny data set: {args.tiny_patients} patients in {scratch.name}")
            scratch.create()
            migrate(scratch.url)
            load(scratch.url, args.tiny_patients, args.sites, args.seed)
            tiny = measure_reports(scratch.url, args.sites, 0, args.report)
        scratch = Scratch(args.server_url, "net", reuse=args.reuse)
        scratches.append(scratch)
        if args.reuse:
            log(f"network data set: the kept {scratch.name}")
            dataset = describe_loaded(scratch.url)
        else:
            log(f"network data set: {args.patients:,} patients in {scratch.name}")
            t0 = time.perf_counter()
            scratch.create()
            migrate(scratch.url)
            log(f"  {'migrated':<34} {time.perf_counter() - t0:7.1f} s")
            dataset = load(scratch.url, args.patients, args.sites, args.seed)
            dataset.update(patients=args.patients, sites=args.sites)
        log(f"{dataset['rows']['dose_entry']:,} dose rows")
        load_at_start = " ".join(f"{n:.1f}" for n in os.getloadavg())
        measured = measure_reports(
            scratch.url, dataset["sites"], args.runs, args.report, settings=args.settings
        )
        rows = summarise(measured, tiny)
        explains = []
        for row in rows:
            for scope, met in (("site", "site_target_met"), ("network", "network_target_met")):
                entry = measured[row["slug"]].get(scope, {})
                if "_slowest" in entry and (args.explain_all or not row[met]):
                    ms, statement, parameters = entry["_slowest"]
                    if statement:
                        try:
                            plan = explain(
                                scratch.url, statement, parameters, settings=args.settings
                            )
                        except Exception as error:
                            plan = f"EXPLAIN failed: {error}"
                        explains.append((row["slug"], scope, ms * 1000, statement, plan))
        facts = machine_facts(scratch.url)
        facts["load_average"] = f"{load_at_start} at the start, {facts['load_average']} at the end"
        base = write_results(facts, dataset, rows, args, explains)
        print()
        print("\n".join(table_lines(rows)))
        print(f"\nresults: {base}.md, {base}.json")
        failed = any(
            r["error"]
            or not r["statements_constant"]
            or not (r["site_target_met"] and r["network_target_met"])
            for r in rows
        )
        return 1 if failed else 0
    finally:
        for scratch in scratches:
            if args.keep or scratch.name == args.reuse:
                log(f"kept {scratch.name}: --reuse {scratch.name}")
                scratch.admin.dispose()
            else:
                scratch.drop()


if __name__ == "__main__":
    sys.exit(main())

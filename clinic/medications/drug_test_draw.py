"""The day's random drug-test draw at a site (42 CFR 8.12(f)(6): at least eight random tests
a year per patient in maintenance treatment; issue 13: "each day the app picks patients to
test so that every maintenance patient reaches 8 a year, unpredictably").

The draw is made **on its day only** (never ahead: nothing can be drawn or shown before the
day), once per site and site-local day (``uq_random_test_draw_site_id_draw_on``: a second
call, or a race, returns the draw already made), and stored with its secret seed and each
selected patient's probability, never changed (database triggers).

Who is eligible: the site's maintenance patients (``clinic.medications.drug_test_schedule``)
not already tested today (any test not entered in error collected today). No draw is made
on a day the site is closed (its closed weekdays and holidays): nobody would be tested.

The probability of each eligible patient (``probability_permille``), per open day:

1. the **base rate** ``8 / open days in the coming 365 days`` (about 8/313 = 2.6 % for a
   site closed on Sundays): on its own it gives 8 tests a year on average;
2. raised for a patient who needs tests soon: for each day ``D`` of the next
   ``HORIZON_DAYS`` (46, an eighth of a year, today included), the tests the patient will
   be short of on ``D`` (required on ``D`` minus the random tests already done that are
   still inside the 12 months ending ``D``), spread over the open days from today to
   ``D``; the largest of these rates. A patient needing one test within ``n`` open days
   is tested on each of them with chance ``1/n``, ``1/(n-1)``...: uniformly over them,
   and surely by the last;
3. capped at ``MAX_PERMILLE`` (50 %): even a patient behind is never certain to be
   picked on a given day, so the day of a test stays unpredictable (a patient behind is
   still picked within a few open days);
4. rounded **up** to whole per mille (1 to 500), the value stored on the selection.

Selection, reproducible from the stored seed (``ticket``): for each eligible patient,
``HMAC-SHA256(key = seed, message = "<draw day ISO>/<patient id>")``, its first 8 bytes as a
big-endian integer, modulo 1000 — the patient's ticket; selected when ``ticket <
probability``. Anyone holding the seed can check each selected patient (and, recomputing
the probabilities as of that morning, each patient not selected).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.drug_test_models import (
    DrugTest,
    RandomTestDraw,
    RandomTestSelection,
    TestReason,
)
from clinic.medications.drug_test_schedule import (
    TESTS_PER_YEAR,
    YEAR_DAYS,
    maintenance_starts,
    required_on,
    window_start,
)
from clinic.sites.models import Site, SiteClosure
from clinic.sites.time import site_today

HORIZON_DAYS = 46  # ceil(365 / 8): the days within which one more test can fall due
MAX_PERMILLE = 500
SEED_BYTES = 32  # 64 hex digits (RandomTestDraw.seed holds up to 64)
# ``now`` may differ this much from the server's clock (a caller's clock); a day never.
CLOCK_SKEW = dt.timedelta(minutes=5)
NOT_TODAY_MESSAGE = "A random draw is made on its own day: never ahead, never afterwards."
CLOSED_MESSAGE = "The site is closed today: no random tests are drawn."
INACTIVE_MESSAGE = "The site is inactive: no random tests are drawn."


@dataclass(frozen=True)
class SiteCalendar:
    """The days a site is closed: ISO weekdays (1 Monday ... 7 Sunday) and holidays."""

    closed_weekdays: frozenset[int]
    closures: frozenset[dt.date]

    def is_open(self, day: dt.date) -> bool:
        return day.isoweekday() not in self.closed_weekdays and day not in self.closures

    def open_counts(self, first: dt.date, days: int) -> list[int]:
        """``counts[i]``: the open days from ``first`` to ``first + i``, both included."""
        counts, total = [], 0
        for offset in range(days):
            total += self.is_open(first + dt.timedelta(days=offset))
            counts.append(total)
        return counts


def site_calendar(site: Site, first: dt.date, days: int = YEAR_DAYS) -> SiteCalendar:
    """The site's calendar for ``days`` days from ``first`` (its holidays in that span):
    one SQL statement."""
    closures = db.session.scalars(
        sa.select(SiteClosure.closed_on).where(
            SiteClosure.site_id == site.id,
            SiteClosure.closed_on >= first,
            SiteClosure.closed_on < first + dt.timedelta(days=days),
        )
    )
    return SiteCalendar(
        closed_weekdays=frozenset(int(d) for d in site.closed_weekdays or ""),
        closures=frozenset(closures),
    )


def probability_permille(
    admitted_on: dt.date,
    today: dt.date,
    random_tests: Iterable[dt.date],
    open_counts: Sequence[int],
) -> int:
    """The chance (per mille, 1 to ``MAX_PERMILLE``) that today's draw picks a patient
    admitted on ``admitted_on`` with these random tests (site-local days, since the
    admission, within the 12 months ending today), given ``open_counts`` (the site's
    ``SiteCalendar.open_counts(today, 365)``, today open). The rule: module docstring."""
    tests = sorted(random_tests)
    best = TESTS_PER_YEAR / max(open_counts[YEAR_DAYS - 1], 1)
    for offset in range(HORIZON_DAYS):
        day = today + dt.timedelta(days=offset)
        oldest_kept = day - dt.timedelta(days=YEAR_DAYS - 1)
        kept = sum(1 for t in tests if t >= oldest_kept)
        short = required_on(admitted_on, day) - kept
        if short > 0:
            best = max(best, short / max(open_counts[offset], 1))
    return max(1, min(MAX_PERMILLE, math.ceil(round(best * 1000, 9))))


def ticket(seed: str, draw_on: dt.date, patient_id: int) -> int:
    """The patient's ticket in a draw, 0 to 999, from the draw's seed (module docstring)."""
    message = f"{draw_on.isoformat()}/{patient_id}".encode()
    digest = hmac.new(seed.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 1000


def selected(seed: str, draw_on: dt.date, patient_id: int, permille: int) -> bool:
    return ticket(seed, draw_on, patient_id) < permille


def eligible_probabilities(site: Site, today: dt.date, calendar: SiteCalendar) -> dict[int, int]:
    """Patient id -> today's probability (per mille) for each eligible patient of ``site``
    (maintenance patients not already tested today). Two SQL statements."""
    starts = maintenance_starts(today, site_ids=[site.id])
    tested_today = sa.select(DrugTest.patient_id).where(
        DrugTest.collected_on == today, DrugTest.entered_in_error_at.is_(None)
    )
    patients = dict(
        db.session.execute(
            sa.select(starts.c.patient_id, starts.c.admitted_on).where(
                starts.c.patient_id.not_in(tested_today)
            )
        ).all()
    )
    if not patients:
        return {}
    tests: dict[int, list[dt.date]] = {}
    rows = db.session.execute(
        sa.select(DrugTest.patient_id, DrugTest.collected_on)
        .join(starts, starts.c.patient_id == DrugTest.patient_id)
        .where(
            DrugTest.reason == TestReason.RANDOM,
            DrugTest.entered_in_error_at.is_(None),
            DrugTest.collected_on >= window_start(today),
            DrugTest.collected_on <= today,
            DrugTest.collected_on >= starts.c.admitted_on,
        )
    )
    for patient_id, collected_on in rows:
        tests.setdefault(patient_id, []).append(collected_on)
    counts = calendar.open_counts(today, YEAR_DAYS)
    return {
        pid: probability_permille(admitted_on, today, tests.get(pid, ()), counts)
        for pid, admitted_on in patients.items()
    }


def draw_on_day(site: Site, day: dt.date) -> RandomTestDraw | None:
    """The site's draw of ``day`` (site-local), if made."""
    return db.session.scalar(
        sa.select(RandomTestDraw).where(
            RandomTestDraw.site_id == site.id, RandomTestDraw.draw_on == day
        )
    )


def draw_for_today(site: Site, *, actor=None, now: dt.datetime | None = None) -> RandomTestDraw:
    """Make the site's random draw for today (site-local day of ``now``, default the
    server's clock), or return the one already made today (by an earlier call or a racing
    one: the unique constraint decides; the loser's transaction is rolled back, so call
    this in a transaction of its own, as the page and the command do). ``actor``: the user
    whose page asked (None for the scheduled command). Audited (``create``, counts only).

    Raises ``DomainError`` for a ``now`` more than ``CLOCK_SKEW`` from the server's clock
    (never a future day, nor a past one drawn afterwards), a closed day (weekday or
    holiday) and an inactive site. Rule and algorithm: module docstring."""
    clock = utcnow()
    now = now or clock
    if abs(now - clock) > CLOCK_SKEW:
        raise DomainError(NOT_TODAY_MESSAGE)
    today = site_today(site, now)
    existing = draw_on_day(site, today)
    if existing is not None:
        return existing
    if not site.active:
        raise DomainError(INACTIVE_MESSAGE)
    calendar = site_calendar(site, today)
    if not calendar.is_open(today):
        raise DomainError(CLOSED_MESSAGE)
    probabilities = eligible_probabilities(site, today, calendar)
    seed = secrets.token_hex(SEED_BYTES)
    draw = RandomTestDraw(
        site_id=site.id,
        draw_on=today,
        seed=seed,
        eligible_count=len(probabilities),
        drawn_by_id=getattr(actor, "id", None),
    )
    db.session.add(draw)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()  # another call made today's draw first: that one stands
        winner = draw_on_day(site, today)
        if winner is None:
            raise
        return winner
    picked = [
        RandomTestSelection(draw_id=draw.id, patient_id=pid, probability=permille)
        for pid, permille in sorted(probabilities.items())
        if selected(seed, today, pid, permille)
    ]
    db.session.add_all(picked)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type="random_test_draw",
        entity_id=draw.id,
        site_id=site.id,
        details={
            "draw_on": today.isoformat(),
            "eligible": len(probabilities),
            "selected": len(picked),
            "via": "web" if actor is not None else "cli",
        },
    )
    return draw

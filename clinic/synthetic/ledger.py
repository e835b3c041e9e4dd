"""The dose ledger, streamed order by order (``dose_rows``), and what hangs off it: the
take-home dispensings, bottle returns, call-backs, diversion incidents and missed-dose
reviews (appended to ``plan.rows`` as the stream runs), and the audit events of the last
month's dosing.

Each daily order gets one row per dose-day from its start to its end or yesterday: an
observed dose (two portions for a split order); on Saturday a take-home bottle for the
closed Sunday, or for a weekly pick-up on Monday, bottles for Tuesday to Sunday (never a
bottle for today or later: patients in treatment can be dosed today); missed days, 3 % at
random (never in the last three days of an open order) and ten-day relapse runs, each run
followed by a clinician's missed-dose review; held days while a stop-dose hold was in
force; and 1 in 2,000 observed doses reversed and given again. Injection orders get an
injection every 4 weeks or every month.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from clinic.medications.models import Schedule
from clinic.synthetic.structure import MINUTES

if TYPE_CHECKING:
    from clinic.synthetic.plan import OrderSpec, Plan

DAY = dt.timedelta(days=1)
SUBSTANCE = {"methadone": "methadone", "naltrexone": "naltrexone", "xr_naltrexone": "naltrexone"}
RECENT_DAYS = 30  # the audit trail holds the dosing of the last month
RETURNS_DAYS = 120
STATIONS = ("Window 1", "Window 2", "Window 3")
WEEK = tuple(dt.timedelta(days=n) for n in range(1, 7))  # a Monday's bottles: Tue-Sun
SUNDAY = (
    dt.timedelta(days=1),
)  # a Saturday's bottle  # bottle returns are checked for the bottles of the last four months

COLUMNS = {
    "dose_entry": "id, kind, patient_id, site_id, order_id, medication, substance, strength,"
    " dosage_form, dispensed_on, dispensed_at, amount_mg, take_home_mg, take_home_form, slot,"
    " dispenser_id, station, reason, reverses_id, lot, injection_site, take_on, bottle_number,"
    " dispensing_id",
    "take_home_dispensing": "id, patient_id, site_id, decision_id, order_id, dispensed_on,"
    " dispensed_at, dispenser_id, bottle_count",
    "bottle_return": "id, dose_entry_id, patient_id, checked_on, outcome, note, incident_id,"
    " recorded_by_id, recorded_at",
    "diversion_incident": "id, patient_id, site_id, found_on, source, description,"
    " recorded_by_id, recorded_at",
    "call_back": "id, patient_id, site_id, called_at, called_on, due_by, called_by_id,"
    " bottles_expected, bottles_counted, outcome, outcome_at, outcome_by_id, note, incident_id",
    "missed_dose_review": "id, patient_id, order_id, reviewed_on, missed_days, decision, note,"
    " reviewed_by_id, reviewed_at",
}


INJECTION_SITES = ("gluteal_left", "gluteal_right", "abdomen")


def _head(spec: OrderSpec) -> tuple:
    """The columns every ledger row of the order shares, from patient_id to dosage_form."""
    substance = SUBSTANCE.get(spec.medication, "buprenorphine")
    return (spec.patient_id, spec.site.id, spec.id, spec.medication, substance, spec.strength,
            spec.form)  # fmt: skip


class Ledger:
    """Streams ``dose_entry`` rows (``rows()``); side rows go to ``plan.rows``."""

    def __init__(self, plan: Plan, first_id: int) -> None:
        self.plan = plan
        self.first_id = first_id
        self._ids = itertools.count(first_id + 1)
        self.today = plan.today
        self.yesterday = plan.today - DAY
        self.recent = plan.today - dt.timedelta(days=RECENT_DAYS)
        self.returns_from = plan.today - dt.timedelta(days=RETURNS_DAYS)
        self.rng = plan.rng
        self.count = 0

    def rows(self) -> Iterator[tuple]:
        for spec in self.plan.orders:
            if spec.schedule in ("daily", "split"):
                yield from self._daily(spec)
            else:
                yield from self._injections(spec)
        self.count = next(self._ids) - self.first_id - 1

    # --- daily orders ----------------------------------------------------------------

    def _daily(self, spec: OrderSpec) -> Iterator[tuple]:
        plan, site, new_id = self.plan, spec.site, self._ids.__next__
        random = self.rng.random
        last = min(spec.end or self.yesterday, self.yesterday)
        if last < spec.start:
            return
        head = _head(spec)
        relapse = (spec.relapse_on, spec.relapse_on + dt.timedelta(days=9)) if spec.relapse_on \
            else (dt.date.max, dt.date.max)  # fmt: skip
        hold = spec.hold or (dt.date.max, dt.date.max)
        protected = self.today - dt.timedelta(days=3) if spec.end is None else dt.date.max
        portions = tuple(enumerate(spec.split or (spec.dose,), start=1))
        midnight, nurses = site.clock.midnight, site.nurses
        count = len(nurses)
        covered_until = dt.date.min
        day, dow = spec.start, spec.start.isoweekday()
        oid, weekly, decision = spec.id, spec.weekly, spec.decision_id
        reversible = spec.split is None
        while day <= last:
            dn = day.toordinal()
            nurse = nurses[(oid + dn) % count]
            if hold[0] <= day <= hold[1]:
                yield (new_id(), "held", *head, day, midnight(day) + MINUTES[480], None, None,
                       None, None, nurse, None, "Stop-dose hold in force", None, None, None,
                       None, None, None)  # fmt: skip
            elif relapse[0] <= day <= relapse[1]:
                if dow != 7:
                    yield (new_id(), "missed", *head, day, midnight(day) + MINUTES[1140], None,
                           None, None, None, nurse, None, "Did not attend", None, None, None,
                           None, None, None)  # fmt: skip
                if day == relapse[1] or day == last:
                    self._review(spec, day, relapse)
            elif day <= covered_until or dow == 7:
                pass  # a take-home bottle covers it, or the clinic is closed (Sunday)
            elif day < protected and random() < 0.03 and not (weekly and dow == 1):
                yield (new_id(), "missed", *head, day, midnight(day) + MINUTES[1140], None, None,
                       None, None, nurse, None, "Did not attend", None, None, None, None, None,
                       None)  # fmt: skip
            else:
                at = midnight(day) + MINUTES[420 + (oid * 7 + dn) % 240]
                station = STATIONS[dn % 3]
                observed_id = 0
                for slot, amount in portions:
                    if slot == 2:
                        at = midnight(day) + MINUTES[900 + dn % 60]
                    observed_id = new_id()
                    yield (observed_id, "observed", *head, day, at, amount, None, None, slot,
                           nurse, station, None, None, None, None, None, None, None)  # fmt: skip
                if reversible and random() < 0.0005:
                    yield (new_id(), "reversal", *head, day, at + MINUTES[10], None, None, None,
                           None, nurse, station, "Wrong amount recorded", observed_id, None,
                           None, None, None, None)  # fmt: skip
                    yield (new_id(), "observed", *head, day, at + MINUTES[12], spec.dose, None,
                           None, 2, nurse, station, None, None, None, None, None, None,
                           None)  # fmt: skip
                if day >= self.recent:
                    plan.event(at - MINUTES[1], nurse, site, "view", "patient",
                               spec.patient_id, spec.patient_id, '{"page":"dosing"}')  # fmt: skip
                    plan.event(at, nurse, site, "create", "dose_entry", observed_id,
                               spec.patient_id)  # fmt: skip
                if decision is not None and (dow == 6 or (weekly and dow == 1)):
                    bottles = [b for b in (WEEK if dow == 1 else SUNDAY) if day + b <= last]
                    if bottles:
                        yield from self._bottles(spec, head, day, at, nurse, bottles)
                        covered_until = day + bottles[-1]
            day += DAY
            dow = 1 if dow == 7 else dow + 1
        if weekly:
            self._call_backs(spec, last)

    def _bottles(self, spec, head, day, at, nurse, offsets) -> Iterator[tuple]:
        plan, site = self.plan, spec.site
        did = plan.ids.next("take_home_dispensing")
        at = at + MINUTES[2]
        plan.rows["take_home_dispensing"].append(
            (did, spec.patient_id, site.id, spec.decision_id, spec.id, day, at, nurse,
             len(offsets))
        )  # fmt: skip
        for number, offset in enumerate(offsets, start=1):
            entry = next(self._ids)
            take_on = day + offset
            yield (entry, "take_home", *head, day, at, spec.dose, None, None, None, nurse, None,
                   None, None, None, None, take_on, number, did)  # fmt: skip
            checked = take_on + DAY
            if take_on >= self.returns_from and checked < self.today:
                self._return(spec, entry, checked)

    def _return(self, spec: OrderSpec, entry: int, checked: dt.date) -> None:
        plan, site = self.plan, spec.site
        rid = plan.ids.next("bottle_return")
        finding = self.rng.random() < 0.004 or not plan.rows["diversion_incident"]
        incident = self._incident(spec, checked, "bottle_return") if finding else None
        plan.rows["bottle_return"].append(
            (rid, entry, spec.patient_id, checked, "unreturned" if finding else "returned",
             "Bottle not brought back" if finding else None, incident, site.nurse(rid),
             site.clock.at(checked, 600))
        )  # fmt: skip

    def _incident(self, spec: OrderSpec, day: dt.date, source: str) -> int:
        plan, site = self.plan, spec.site
        iid = plan.ids.next("diversion_incident")
        counselor = site.counselor(iid)
        plan.rows["diversion_incident"].append(
            (iid, spec.patient_id, site.id, day, source,
             "Take-home medication unaccounted for", counselor, site.clock.at(day, 610))
        )  # fmt: skip
        return iid

    def _call_backs(self, spec: OrderSpec, last: dt.date) -> None:
        """Twice a year for a weekly pick-up: on a Wednesday, the patient brings Thursday
        to Sunday's bottles within 24 hours."""
        plan, rng, site = self.plan, self.rng, spec.site
        first = plan.rows["call_back"]  # the first weekly order has one early on
        day = spec.start + dt.timedelta(days=60 + rng.randrange(60) if first else 7)
        while day + dt.timedelta(days=7) <= last:
            day += dt.timedelta(days=(3 - day.isoweekday()) % 7)  # a Wednesday
            cid = plan.ids.next("call_back")
            called = site.clock.at(day, 600)
            r = rng.random()
            outcome = "complete" if r < 0.95 else "short" if r < 0.98 else "no_show"
            incident = (
                None if outcome == "complete" else self._incident(spec, day + DAY, "call_back")
            )
            plan.rows["call_back"].append(
                (cid, spec.patient_id, site.id, called, day, called + dt.timedelta(hours=24),
                 site.counselor(cid), 4, None if outcome == "no_show" else 4 - (outcome == "short"),
                 outcome, called + dt.timedelta(hours=20), site.counselor(cid),
                 None, incident)
            )  # fmt: skip
            day += dt.timedelta(days=150 + rng.randrange(60))

    def _review(self, spec: OrderSpec, day: dt.date, relapse) -> None:
        """A clinician's review the day after a relapse run, unless the run reaches
        yesterday by design (the patient is on the review list today)."""
        reviewed = day + DAY
        if spec.review_open or reviewed >= self.today:
            return
        plan, site = self.plan, spec.site
        rid = plan.ids.next("missed_dose_review")
        missed = (day - relapse[0]).days + 1
        plan.rows["missed_dose_review"].append(
            (rid, spec.patient_id, spec.id, reviewed, missed, "continue",
             "Returned after a relapse; dose continued", site.prescriber(rid),
             site.clock.at(reviewed, 430))
        )  # fmt: skip

    # --- injections ------------------------------------------------------------------

    def _injections(self, spec: OrderSpec) -> Iterator[tuple]:
        site = spec.site
        last = min(spec.end or self.yesterday, self.yesterday)
        schedule = Schedule(spec.schedule)
        head = _head(spec)
        day = spec.start
        n = 0
        while day <= last:
            at = site.clock.at(day, 600 + spec.id % 300)
            nurse = site.nurse(spec.id + n)
            entry = next(self._ids)
            yield (entry, "injection", *head, day, at, spec.dose, None, None, 1, nurse,
                   "Injection room", None, None, f"LOT-{day.year}{day.month:02d}",
                   INJECTION_SITES[n % 3], None, None, None)  # fmt: skip
            if day >= self.recent:
                self.plan.event(at, nurse, site, "create", "dose_entry", entry, spec.patient_id)
            day = schedule.next_due(day)
            n += 1

"""Demo take-home bottles for ``flask seed-demo`` (after the take-home decisions' demo):
bottles dispensed under an approved decision, a return with a missing bottle (a diversion
incident), and a call-back with its outcome.

Everything goes through the services (the rules apply: a decision covering the days, the
cap), with "now" set in the past for the bottles already taken and checked. A decision that
began at least two days ago gives the returned bottles; the first decision in force with
days still to dispense gives the bottles in hand and the call-back. Without an approved
decision nothing is written (the message says so). Idempotent: once the site has a
dispensing, nothing is added.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import bottle_returns, call_backs, take_home_bottles
from clinic.medications.models import Medication
from clinic.medications.take_home_models import ReturnOutcome, TakeHomeDecision, TakeHomeDispensing
from clinic.sites.models import Site
from clinic.sites.time import site_today

BOTTLES_IN_HAND = 3


def _at(site: Site, day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(site.timezone)).astimezone(dt.UTC)


def _attempt(action):
    """Run a service call in a savepoint: a refusal leaves nothing behind (None)."""
    try:
        with db.session.begin_nested():
            return action()
    except DomainError:
        return None


def seed(site: Site, *, nurse: User, clinician: User) -> str:
    """Bottles, a return with a missing bottle and a call-back at ``site``; returns what was
    done, for the command's output. ``nurse`` dispenses (may dispense), ``clinician``
    records the returns and the call-back."""
    if db.session.scalar(
        sa.select(TakeHomeDispensing.id).where(TakeHomeDispensing.site_id == site.id).limit(1)
    ):
        return "Take-home bottles are already there; nothing changed."
    today = site_today(site)
    decisions = list(
        db.session.scalars(
            sa.select(TakeHomeDecision)
            .where(
                TakeHomeDecision.site_id == site.id,
                TakeHomeDecision.medication == Medication.METHADONE,
                TakeHomeDecision.approved_at.is_not(None),
                TakeHomeDecision.declined_at.is_(None),
                TakeHomeDecision.ended_at.is_(None),
            )
            .order_by(TakeHomeDecision.start_on, TakeHomeDecision.id)
        )
    )
    if not decisions:
        return "No approved take-home decision at the site: no take-home bottles were dispensed."
    done = []
    # Bottles already taken: dispensed the day before a decision began, checked today.
    for decision in decisions:
        if decision.start_on > today - dt.timedelta(days=2):
            continue
        patient = decision.patient
        then = _at(site, decision.start_on - dt.timedelta(days=1), 10)
        past = _attempt(
            lambda p=patient, t=then, d=decision: take_home_bottles.dispense_take_homes(
                p,
                actor=nurse,
                take_on_dates=[d.start_on, d.start_on + dt.timedelta(days=1)],
                now=t,
            )
        )
        if past is None:
            continue
        first, second = take_home_bottles.dispensing_bottles(past)
        checked = _attempt(
            lambda p=patient, a=first, b=second: bottle_returns.record_returns(
                p,
                actor=clinician,
                outcomes={a.id: ReturnOutcome.RETURNED, b.id: ReturnOutcome.UNRETURNED},
                note="The patient says the second bottle was lost on the bus.",
            )
        )
        done.append("a return with a missing bottle (a diversion incident)" if checked else "")
        break
    # Bottles in hand, then a call-back to count them.
    for decision in decisions:
        patient = decision.patient
        plan = take_home_bottles.dispensing_plan(patient)
        days = [d.day for d in plan.days if d.may_choose][:BOTTLES_IN_HAND]
        if plan.refusal is not None or not days:
            continue
        dispensed = _attempt(
            lambda p=patient, chosen=days: take_home_bottles.dispense_take_homes(
                p, actor=nurse, take_on_dates=chosen
            )
        )
        if dispensed is None:
            continue
        done.append(f"{dispensed.bottle_count} take-home bottles in hand")
        call_back = _attempt(lambda p=patient: call_backs.start_call_back(p, actor=clinician))
        if call_back is not None and _attempt(
            lambda c=call_back: call_backs.record_outcome(
                c,
                actor=clinician,
                bottles_counted=c.bottles_expected,
                outcome="complete",
                note="Every bottle brought back within the day, seals intact.",
            )
        ):
            done.append("a call-back with its count")
        break
    db.session.flush()
    done = [d for d in done if d]
    if not done:
        return "No decision in force had days to dispense: no take-home bottles."
    return "Created " + ", ".join(done) + "."

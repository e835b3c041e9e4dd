"""The audit trail of the synthetic network, and its emergency accesses.

The plan, the ledger and the care module collect events as they make rows (creations,
discharges, dosing-screen views and doses of the last month, signatures and recorded
sessions of the last 90 days, drug tests of the last year, consents, referrals and
disclosures); here are added the staff's sign-ins of the last month and the break-glass
grants. Events are put in time order and chained exactly as ``clinic.audit.services``
appends them (``event_hash`` with the app's current key, after the chain head), so
``flask audit verify`` passes; the head is moved to the last event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from clinic.audit.services import event_hash

if TYPE_CHECKING:
    from clinic.synthetic.plan import Plan

DAY = dt.timedelta(days=1)
LOGIN_DAYS = 30

COLUMNS = {
    "audit_event": "id, seq, occurred_at, user_id, username, role, site_id, action,"
    " entity_type, entity_id, patient_id, outcome, ip, request_id, details, key_id,"
    " prev_hash, hash",
    "break_glass_grant": "id, user_id, patient_id, reason, granted_at, expires_at,"
    " acknowledged_at, acknowledged_by_id, review_outcome, review_note",
}


def add_sign_ins(plan: Plan) -> None:
    """Every account signs in on each open day of the last month."""
    for site in plan.sites:
        users = [site.admin, *site.nurses, *site.clinicians, *site.staff]
        day = plan.today - dt.timedelta(days=LOGIN_DAYS)
        while day < plan.today:
            if day.isoweekday() != 7:
                for n, user in enumerate(users):
                    at = site.clock.at(day, 400 + n)
                    plan.events.append((at, user, None, "login", "user", user, None, None))
            day += DAY


def add_break_glass(plan: Plan) -> None:
    """Five emergency accesses a site in the last 90 days, each to a patient of the next
    site (of the same site in a one-site network); all but the last acknowledged."""
    first_patient: dict[int, list[int]] = {}
    for row in plan.rows["patient"]:
        if row[27] is None and len(first_patient.setdefault(row[1], [])) < 5:
            first_patient[row[1]].append(row[0])
    for k, site in enumerate(plan.sites):
        other = plan.sites[(k + 1) % len(plan.sites)]
        for n, patient in enumerate(first_patient.get(other.id, [])):
            gid = plan.ids.next("break_glass_grant")
            granted = site.clock.at(plan.today - dt.timedelta(days=80 - 15 * n), 800)
            acknowledged = n < 4
            plan.rows["break_glass_grant"].append(
                (gid, site.clinicians[0], patient,
                 "Guest dosing: patient arrived with no chart here", granted,
                 granted + dt.timedelta(hours=4), granted + DAY if acknowledged else None,
                 site.admin if acknowledged else None,
                 "appropriate" if acknowledged else None, None)
            )  # fmt: skip
            plan.events.append((granted, site.clinicians[0], other.id, "break_glass",
                                "patient", patient, patient, None))  # fmt: skip


def chained(
    plan: Plan, *, first_id: int, seq: int, prev: str, key_id: str, secret: bytes
) -> Iterator[tuple]:
    """The events as ``audit_event`` rows in time order, chained after (seq, prev).
    Sets ``plan.chain_end`` to the last (seq, hash)."""
    who = {row[0]: (row[1], row[4]) for row in plan.rows["app_user"]}
    site_of = {}
    for row in plan.rows["user_site"]:
        site_of.setdefault(row[0], row[1])
    plan.events.sort(key=lambda e: e[0])
    row_id = first_id
    for at, user, site_id, action, entity, entity_id, patient, details in plan.events:
        seq += 1
        row_id += 1
        username, role = who[user]
        site_id = site_id if site_id is not None else site_of.get(user)
        fields = {
            "seq": seq,
            "occurred_at": at,
            "user_id": user,
            "username": username,
            "role": role,
            "site_id": site_id,
            "action": action,
            "entity_type": entity,
            "entity_id": str(entity_id),
            "patient_id": patient,
            "outcome": "success",
            "ip": f"10.0.{site_id % 250}.{user % 250 + 1}",
            "request_id": f"{seq:032x}",
            "details": details or "{}",
            "key_id": key_id,
        }
        digest = event_hash(prev, fields, secret)
        yield (row_id, seq, at, user, username, role, site_id, action, entity, fields["entity_id"],
               patient, "success", fields["ip"], fields["request_id"], fields["details"], key_id,
               prev, digest)  # fmt: skip
        prev = digest
    plan.chain_end = (seq, prev)
    plan.events = []

"""Aftercare for the plan: support people, 42 CFR Part 2 consents (TPO, specific,
counseling notes; some revoked), restriction requests (§2.26), referrals along the DOMAIN's
status path with their events, and the disclosure each sent referral made (§2.25)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from clinic.aftercare.consent_models import RIGHT_TO_REVOKE_DEFAULT, TPO_REDISCLOSURE_DEFAULT

if TYPE_CHECKING:
    from clinic.synthetic.plan import Plan
    from clinic.synthetic.structure import SiteInfo

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
OPEN_PATHS = ((("draft",), 0.3), (("draft", "sent"), 0.4), (("draft", "sent", "waitlisted"), 0.3))
SUPPORT_NAMES = ("Rosa Núñez", "Tom Baker", "Анна Петрова", "Li Wei", "Grace O'Neil")


class ConsentWriter:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def _consent(self, pid, name, site, program, *, kind, resource=None, person=None,
                 recipient_class=None, recipient, purpose, signed, expires=None, event=None,
                 revoked=None) -> int:  # fmt: skip
        plan = self.plan
        cid = plan.ids.next("part2_consent")
        staff = site.staff[cid % len(site.staff)]
        recorded = plan.at(site, signed, 640)
        tpo = kind == "tpo"
        self.plan.rows["part2_consent"].append(
            (cid, pid, name, kind, program, site.program_names[program],
             "Dates of treatment, medication and attendance", resource, person, recipient_class,
             recipient, purpose, "Continuity of care after treatment", RIGHT_TO_REVOKE_DEFAULT,
             "date" if expires else "event" if event else "none", expires, event,
             "paper" if cid % 3 else "electronic", f"SCAN-{cid:08d}" if cid % 3 else None,
             None if cid % 3 else name, signed, TPO_REDISCLOSURE_DEFAULT if tpo else None, None,
             staff, recorded, revoked, "In writing" if revoked else None,
             staff if revoked else None, plan.at(site, revoked, 700) if revoked else None)
        )  # fmt: skip
        plan.event(recorded, staff, site, "create", "part2_consent", cid, pid)
        return cid

    def tpo(self, pid: int, name: str, site: SiteInfo, program: int, signed: dt.date) -> None:
        rng, today = self.plan.rng, self.plan.today
        revoked = signed + dt.timedelta(days=200) if rng.random() < 0.03 else None
        if revoked and revoked > today:
            revoked = None
        self._consent(pid, name, site, program, kind="tpo", recipient_class="outpatient_care",
                      recipient="Outpatient providers", purpose="tpo", signed=signed,
                      revoked=revoked)  # fmt: skip
        if rng.random() < 0.05:
            self._consent(pid, name, site, program, kind="counseling_notes",
                          recipient_class="outpatient_care", recipient="Outpatient providers",
                          purpose="care_coordination", signed=signed,
                          event="End of treatment")  # fmt: skip

    def support_people(self, pid: int, site: SiteInfo, since: dt.date) -> None:
        plan, rng = self.plan, self.plan.rng
        for n in range(rng.randrange(1, 3)):
            sid = plan.ids.next("support_person")
            created = plan.at(site, since, 700 + n)
            archived = n == 1 and rng.random() < 0.3
            plan.rows["support_person"].append(
                (sid, pid, rng.choice(SUPPORT_NAMES),
                 rng.choice(("family", "friend", "sponsor", "peer_recovery_coach")),
                 f"+1630{rng.randrange(2000000, 9999999)}", None, rng.random() < 0.1, None,
                 created, site.staff[0], None, None,
                 created + dt.timedelta(days=30) if archived else None,
                 site.staff[0] if archived else None, 1)
            )  # fmt: skip
            if n == 0 and (rng.random() < 0.08 or not plan.rows["disclosure_restriction"]):
                plan.rows["disclosure_restriction"].append(
                    (plan.ids.next("disclosure_restriction"), pid, None, None, sid, None,
                     "Do not contact about treatment", since, site.staff[0], created, None,
                     None, None, None)
                )  # fmt: skip

    def referral(self, pid, site, name, program, around: dt.date, open_: bool = False) -> None:
        plan, rng = self.plan, self.plan.rng
        days_before = rng.randrange(3, 30) if not open_ else rng.randrange(5, 60)
        created = plan.at(site, around - dt.timedelta(days=days_before), 900)
        rid_resource, _, rname = plan.resources[rng.randrange(len(plan.resources))]
        consent = self._consent(
            pid, name, site, program, kind="specific_disclosure", resource=rid_resource,
            recipient=rname, purpose="aftercare_referral", signed=created.date(),
            expires=created.date() + dt.timedelta(days=365),
        )  # fmt: skip
        rid = plan.ids.next("referral")
        staff = site.staff[rid % len(site.staff)]
        at, status, previous = created, "draft", None
        now = plan.at(site, plan.today, 600)
        events = []
        for n, step in enumerate(_choose(rng, OPEN_PATHS if open_ else REFERRAL_PATHS)):
            if n:
                at = at + dt.timedelta(days=rng.randrange(1, 15), hours=rng.randrange(0, 6))
            if at > now:
                break
            events.append((plan.ids.next("referral_event"), rid, previous, step, staff, at, None))
            plan.event(at, staff, site, "update" if n else "create", "referral", rid, pid,
                       f'{{"status":"{step}"}}')  # fmt: skip
            if step == "sent":
                did = plan.ids.next("part2_disclosure")
                plan.rows["part2_disclosure"].append(
                    (did, pid, rid, rid_resource, None, rname,
                     "Name, dates of treatment, medication", "aftercare_referral", consent,
                     staff, at, at.astimezone(site.clock.zone).date())
                )  # fmt: skip
                plan.event(at, staff, site, "disclose", "part2_disclosure", did, pid)
            status, previous = step, step
        follow = (at.date() + dt.timedelta(days=14)) if status in ("sent", "waitlisted") else None
        plan.rows["referral"].append(
            (rid, pid, rid_resource, None, "Aftercare after discharge", "aftercare_referral",
             status, follow, staff, created, at, 1)
        )  # fmt: skip
        plan.rows["referral_event"].extend(events)


def _choose(rng, weighted):
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


COLUMNS = {
    "part2_consent": "id, patient_id, patient_name, kind, program_id, program_name,"
    " information_description, resource_id, support_person_id, recipient_class,"
    " recipient_name, purpose, purpose_text, right_to_revoke, expiry_kind, expires_on,"
    " expiry_event, signature_method, paper_scan_reference, electronic_signature_name,"
    " signed_on, redisclosure_statement, based_on_id, recorded_by_id, recorded_at, revoked_on,"
    " revocation_method, revoked_by_id, revoked_at",
    "support_person": "id, patient_id, name, relationship, phone, email, can_offer_housing,"
    " notes, created_at, created_by_id, updated_at, updated_by_id, archived_at,"
    " archived_by_id, version",
    "disclosure_restriction": "id, patient_id, purpose, resource_id, support_person_id,"
    " recipient_class, details, requested_on, recorded_by_id, recorded_at, lifted_on,"
    " lift_reason, lifted_by_id, lifted_at",
    "referral": "id, patient_id, resource_id, support_person_id, reason, purpose, status,"
    " follow_up_on, created_by_id, created_at, status_changed_at, version",
    "referral_event": "id, referral_id, from_status, to_status, actor_id, occurred_at, note",
    "part2_disclosure": "id, patient_id, referral_id, resource_id, support_person_id,"
    " recipient_name, description, purpose, consent_id, disclosed_by_id, disclosed_at,"
    " disclosed_on",
}

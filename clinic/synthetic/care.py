"""Counseling and drug testing for the plan's enrollments.

Sessions (the last year and the next two weeks): an individual session every 14 days per
enrollment (weekends moved to Friday) in its counselor's next free half hour, a few of them
family sessions, some led by the trainee; intensive-outpatient groups of up to 12 on
Mondays, Wednesdays and Fridays. Past sessions are recorded with attendance and minutes;
each patient present gets a progress note (signed, or a recent draft; late ones marked; the
trainee's co-signed by the supervisor), groups a group note too; 1 % of signed notes have
an addendum, 3 % of individual sessions an SUD counseling note.

Drug tests: one every 38-51 days of each enrollment (weekends moved to Friday), six analytes
and the patient's own medication, presumptive, a tenth of positives confirmed; the random
tests of the last 60 days answer their site's daily draw.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from clinic.synthetic.structure import GROUP_LEADERS, TRAINEE, UTC

if TYPE_CHECKING:
    from clinic.synthetic.plan import EnrollmentSpec, Plan

DAY = dt.timedelta(days=1)
WINDOW_DAYS = 365
AHEAD_DAYS = 14
DRAW_DAYS = 60
MODALITIES = ("cbt", "motivational_interviewing", "contingency_management",
              "twelve_step_facilitation", "community_reinforcement", "relapse_prevention",
              "matrix_model", "dbt", "peer_support")  # fmt: skip
NOTES = (
    "Reviewed coping strategies for cravings; patient identified two triggers this week.",
    "Discussed housing goals and the referral; patient engaged and motivated.",
    "Patient reports stable dosing and improved sleep; continued relapse-prevention plan.",
    "Explored ambivalence about reducing use; set one small goal for the coming week.",
    "Worked on communication with family; practised a refusal-skills role play.",
)
GROUP_NOTE = "Group discussed triggers and high-risk situations; members shared strategies."
ANALYTES = (("opioids", 0.15), ("fentanyl", 0.12), ("cocaine", 0.08), ("amphetamines", 0.06),
            ("benzodiazepines", 0.05), ("cannabis", 0.2))  # fmt: skip
OWN = {"methadone_otp": "methadone", "office_buprenorphine": "buprenorphine"}

COLUMNS = {
    "therapy_session": "id, clinician_id, site_id, starts_at, duration_minutes, kind, modality,"
    " setting, group_name, series_key, status, recorded_at, recorded_by_id, created_at,"
    " created_by_id, entered_in_error_at, entered_in_error_reason, entered_in_error_by_id,"
    " version",
    "session_attendee": "id, session_id, patient_id, enrollment_id, position, attendance,"
    " minutes_attended",
    "progress_note": "id, session_id, attendee_id, author_id, status, text, text_sha256,"
    " signed_by_id, signed_at, late, cosign_required, cosigner_id, cosigned_at, created_at,"
    " updated_at, entered_in_error_at, entered_in_error_reason, entered_in_error_by_id, version",
    "note_addendum": "id, note_id, author_id, text, text_sha256, signed_at",
    "counseling_note": "id, session_id, attendee_id, patient_id, author_id, text, text_sha256,"
    " created_at",
    "drug_test": "id, patient_id, site_id, collected_at, collected_on, specimen, observed,"
    " reason, collected_by_id, temperature_in_range, adulteration_suspected, selection_id,"
    " recorded_by_id, recorded_at, entered_in_error_at, entered_in_error_by_id,"
    " entered_in_error_reason",
    "drug_test_result": "id, test_id, analyte, other_name, result, method, entered_by_id,"
    " entered_at",
    "random_test_draw": "id, site_id, draw_on, seed, eligible_count, drawn_at, drawn_by_id",
    "random_test_selection": "id, draw_id, patient_id, probability",
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_SHAS = {text: _sha(text) for text in (*NOTES, GROUP_NOTE)}


def _weekday(day: dt.date) -> dt.date:
    """Saturday moves to Friday, Sunday to Monday."""
    return day + dt.timedelta(days={6: -1, 7: 1}.get(day.isoweekday(), 0))


class Care:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = plan.rng
        self.today = plan.today
        self.first = plan.today - dt.timedelta(days=WINDOW_DAYS)
        self.slots: dict[tuple[int, dt.date], int] = {}

    def add(self) -> None:
        for spec in self.plan.enrollments:
            self._individual(spec)
            self._tests(spec)
        self._groups()

    # --- sessions --------------------------------------------------------------------

    def _slot(self, clinician: int, day: dt.date) -> int:
        """The clinician's next half hour from 8:00 (a busy day's later sessions start a
        minute after the earlier ones: distinct instants, within the working day)."""
        n = self.slots.get((clinician, day), 0)
        self.slots[(clinician, day)] = n + 1
        return 480 + 30 * (n % 24) + n // 24

    def _session(self, site, clinician, day, minutes, duration, kind, group=None, series=None):
        plan, rng = self.plan, self.rng
        sid = plan.ids.next("therapy_session")
        starts = site.clock.at(day, minutes)
        recorded = day < self.today
        done = starts + dt.timedelta(minutes=duration + 30)
        in_error = recorded and rng.random() < 0.002
        plan.rows["therapy_session"].append(
            (sid, clinician, site.id, starts, duration, kind, MODALITIES[sid % len(MODALITIES)],
             ("in_person", "in_person", "in_person", "in_person", "video")[sid % 5]
             if sid % 23 else "audio_only", group, series, "recorded" if recorded else "planned",
             done if recorded else None, clinician if recorded else None,
             starts - dt.timedelta(days=7), clinician, done if in_error else None,
             "Recorded for the wrong patient" if in_error else None,
             clinician if in_error else None, 1)
        )  # fmt: skip
        return sid, starts, done if recorded else None, in_error

    def _attendee(self, sid, spec, position, duration, done) -> tuple[int, bool]:
        aid = self.plan.ids.next("session_attendee")
        attendance, minutes = None, None
        if done is not None:
            r = self.rng.random()
            attendance, minutes = (
                ("attended", duration) if r < 0.78 else ("late", duration - 10) if r < 0.82
                else ("left_early", duration - 15) if r < 0.85 else ("no_show", None)
                if r < 0.95 else ("cancelled_by_patient", None) if r < 0.98
                else ("cancelled_by_clinic", None)
            )  # fmt: skip
        self.plan.rows["session_attendee"].append(
            (aid, sid, spec.patient_id, spec.id, position, attendance, minutes)
        )
        return aid, minutes is not None

    def _note(self, sid, aid, author, done, text, cosigner=None) -> None:
        plan, rng = self.plan, self.rng
        nid = plan.ids.next("progress_note")
        age = (self.today - done.date()).days
        signed = age > 3 or rng.random() < 0.5
        late = signed and rng.random() < 0.03
        signed_at = done + dt.timedelta(hours=100 if late else 2 + nid % 20) if signed else None
        cosigned = signed_at + DAY if cosigner and signed and age > 7 else None
        plan.rows["progress_note"].append(
            (nid, sid, aid, author, "signed" if signed else "draft", text,
             _SHAS[text] if signed else None, author if signed else None, signed_at, late,
             bool(cosigner and signed), cosigner if signed else None, cosigned, done,
             signed_at or done, None, None, None, 1)
        )  # fmt: skip
        if signed and age < 90:
            plan.events.append((signed_at, author, None, "sign", "progress_note", nid, None, None))
        if signed and rng.random() < 0.01:
            text = "Addendum: the patient's next appointment was moved to the following week."
            plan.rows["note_addendum"].append(
                (plan.ids.next("note_addendum"), nid, author, text, _sha(text),
                 signed_at + dt.timedelta(days=1))
            )  # fmt: skip

    def _individual(self, spec: EnrollmentSpec) -> None:
        plan, rng, site = self.plan, self.rng, spec.site
        last = min(spec.discharged or dt.date.max, self.today + dt.timedelta(days=AHEAD_DAYS))
        day = max(spec.admitted, self.first) + dt.timedelta(days=spec.id % 14)
        trainee = site.clinicians[TRAINEE]
        supervised = spec.counselor == site.clinicians[3] and spec.id % 5 == 0
        clinician = trainee if supervised else spec.counselor
        while day <= last:
            when = _weekday(day)
            day += dt.timedelta(days=14)
            if when < spec.admitted or when > last:
                continue
            family = rng.random() < 0.03
            duration = 60 if family else 50
            sid, _, done, in_error = self._session(
                site,
                clinician,
                when,
                self._slot(clinician, when),
                duration,
                "family" if family else "individual",
            )
            aid, present = self._attendee(sid, spec, 1, duration, done)
            if done is None or in_error:
                continue
            if done.date() >= self.today - dt.timedelta(days=90):
                plan.events.append((done, clinician, site.id, "update", "therapy_session", sid,
                                    spec.patient_id, None))  # fmt: skip
            if not present:
                continue
            cosigner = site.clinicians[3] if supervised else None
            text = NOTES[sid % len(NOTES)]
            if family:
                self._note(sid, None, clinician, done, GROUP_NOTE, cosigner)
            self._note(sid, aid, clinician, done, text, cosigner)
            if not family and rng.random() < 0.03:
                ctext = "Counseling note: " + text
                plan.rows["counseling_note"].append(
                    (plan.ids.next("counseling_note"), sid, aid, spec.patient_id, clinician,
                     ctext, _sha(ctext), done + dt.timedelta(hours=1))
                )  # fmt: skip

    def _groups(self) -> None:
        by_site: dict[int, list] = {}
        for spec in self.plan.enrollments:
            if spec.kind == "intensive_outpatient":
                by_site.setdefault(spec.site.id, []).append(spec)
        ahead = self.today + dt.timedelta(days=AHEAD_DAYS)
        for site in self.plan.sites:
            members = by_site.get(site.id, [])
            day = self.first
            while day <= ahead:
                if day.isoweekday() in (1, 3, 5):
                    here = [s for s in members if s.admitted <= day
                            and (s.discharged is None or s.discharged >= day)]  # fmt: skip
                    for g in range(0, len(here), 12):
                        self._group(site, day, g // 12, here[g : g + 12])
                day += DAY

    def _group(self, site, day, g, members) -> None:
        leader = site.clinicians[GROUP_LEADERS[g % len(GROUP_LEADERS)]]
        series = hashlib.md5(f"{site.id}-{g}".encode(), usedforsecurity=False).hexdigest()
        name = f"IOP group {chr(65 + g % 26)}"
        sid, _, done, in_error = self._session(
            site, leader, day, self._slot(leader, day), 90, "group", name, series
        )
        present = []
        for position, spec in enumerate(members, start=1):
            aid, here = self._attendee(sid, spec, position, 90, done)
            if here:
                present.append(aid)
        if done is None or in_error or not present:
            return
        self._note(sid, None, leader, done, GROUP_NOTE)
        for aid in present:
            self._note(sid, aid, leader, done, NOTES[aid % len(NOTES)])

    # --- drug tests ------------------------------------------------------------------

    def _tests(self, spec: EnrollmentSpec) -> None:
        plan, rng, site = self.plan, self.rng, spec.site
        last = min(spec.discharged or self.today, self.today)
        step = dt.timedelta(days=38 + spec.id % 14)
        day = spec.admitted + dt.timedelta(days=spec.id % 20)
        draws_from = self.today - dt.timedelta(days=DRAW_DAYS)
        while day <= last:
            when = _weekday(day)
            day += step
            if when < spec.admitted or when > last or when >= self.today:
                continue
            tid = plan.ids.next("drug_test")
            nurse = site.nurse(tid)
            collected = site.clock.at(when, 600 + spec.id % 360)
            urine = rng.random() < 0.9
            reason = "random" if rng.random() < 0.7 else "scheduled"
            selection = None
            if reason == "random" and when >= draws_from:
                selection = self._select(site, when, spec.patient_id)
            in_error = rng.random() < 0.003
            recorded = collected + dt.timedelta(hours=3)
            plan.rows["drug_test"].append(
                (tid, spec.patient_id, site.id, collected, when, "urine" if urine else "oral_fluid",
                 rng.random() < 0.5, reason if selection or when < draws_from else "scheduled",
                 nurse, True if urine else None, False, selection, nurse, recorded,
                 recorded + DAY if in_error else None, nurse if in_error else None,
                 "Wrong patient label" if in_error else None)
            )  # fmt: skip
            if when >= self.today - dt.timedelta(days=365):
                plan.events.append((recorded, nurse, site.id, "create", "drug_test", tid,
                                    spec.patient_id, None))  # fmt: skip
            analytes = list(ANALYTES)
            if spec.kind in OWN:
                analytes.append((OWN[spec.kind], 0.93))
            for analyte, p in analytes:
                u = rng.random()
                result = "positive" if u < p else "not_tested" if u > 0.997 else "negative"
                plan.rows["drug_test_result"].append(
                    (plan.ids.next("drug_test_result"), tid, analyte, "", result, "presumptive",
                     nurse, recorded)
                )  # fmt: skip
                if result == "positive" and analyte not in OWN.values() and u < p * 0.1:
                    plan.rows["drug_test_result"].append(
                        (plan.ids.next("drug_test_result"), tid, analyte, "",
                         "positive" if u < p * 0.08 else "negative", "definitive", nurse,
                         recorded + dt.timedelta(days=4))
                    )  # fmt: skip

    def _select(self, site, day: dt.date, patient_id: int) -> int | None:
        plan = self.plan
        draws = plan.__dict__.setdefault("_draws", {})
        key = (site.id, day)
        if key not in draws:
            did = plan.ids.next("random_test_draw")
            draws[key] = (did, set())
            plan.rows["random_test_draw"].append(
                (did, site.id, day, f"synthetic-{site.code}-{day.isoformat()}", 0,
                 site.clock.at(day, 361), None)
            )  # fmt: skip
        did, picked = draws[key]
        if patient_id in picked:
            return None
        picked.add(patient_id)
        sel = plan.ids.next("random_test_selection")
        plan.rows["random_test_selection"].append((sel, did, patient_id, 120))
        return sel

    def finish_draws(self) -> None:
        """Each draw's eligible count: its selections at the 12 % the draw gives each."""
        rows = self.plan.rows
        counts: dict[int, int] = {}
        for _, draw_id, _, _ in rows["random_test_selection"]:
            counts[draw_id] = counts.get(draw_id, 0) + 1
        rows["random_test_draw"] = [
            (d, s, on, seed, max(1, counts.get(d, 0) * 8), at, by)
            for d, s, on, seed, _, at, by in rows["random_test_draw"]
        ]


__all__ = ["COLUMNS", "UTC", "Care"]

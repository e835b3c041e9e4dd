"""How audit records read to people: times in a site's own time beside UTC, and what an
event did in plain words (for the patient access report, an accounting of access a
clinic can hand to the patient: 45 CFR 164.528, 42 CFR 2.24 list of disclosures).

Nothing here queries the database: callers load what is shown in bulk first.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from clinic.security import Role

SITE_TIME_FORMAT = "%d %b %Y %H:%M %Z"
UTC_FORMAT = "%Y-%m-%d %H:%M UTC"


@dataclass(frozen=True)
class Moment:
    """One instant as a site shows it (``local``; None without a site) and in UTC."""

    local: str | None
    utc: str
    iso: str


def moment(at: dt.datetime, timezone: str | None) -> Moment:
    """``at`` (aware) in the site's IANA ``timezone`` ("29 Nov 2026 02:15 CST") and in
    UTC ("2026-11-29 08:15 UTC"); ``local`` is None when no time zone is known."""
    at = at.astimezone(dt.UTC)
    local = at.astimezone(ZoneInfo(timezone)).strftime(SITE_TIME_FORMAT) if timezone else None
    return Moment(local=local, utc=at.strftime(UTC_FORMAT), iso=at.isoformat())


def role_label(role: str | None) -> str:
    """The role's name for people ("admin" -> "Administrator")."""
    try:
        return Role(role).label
    except ValueError:
        return "Unknown role" if role is None else role.replace("_", " ").capitalize()


def details_of(raw: str | None) -> dict:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# A patient page (the view event's ``details.page``, a Flask endpoint) in plain words.
PAGE_WORDS = {
    "patients.chart": "Viewed the chart",
    "patients.edit": "Opened the demographics form",
    "patients.entered_in_error": "Opened the entered-in-error form",
    "patients.admit": "Opened the admission form",
    "patients.discharge": "Opened the discharge form",
    "patients.transfer": "Opened the transfer form",
    "patients.deadlines": "Viewed program milestones and deadlines",
    "patients.add_review": "Opened the care-plan review form",
}
# (action, record type) in plain words, when the details say nothing more specific.
ACTION_WORDS = {
    ("view", "patient"): "Viewed the record",
    ("view", "enrollment"): "Viewed a program enrollment",
    ("view", "patient_access_report"): "Viewed this access report",
    ("view", "break_glass_grant"): "Opened the review of an emergency access",
    # Searches that disclose only where the patient is treated and the MRN, not the record.
    ("view", "duplicate_warning"): "Saw only the site and MRN (duplicate check at registration)",
    ("view", "break_glass_lookup"): "Saw only the site and MRN (emergency-access search)",
    ("create", "patient"): "Registered the patient",
    ("update", "patient"): "Changed demographics",
    ("create", "enrollment"): "Admitted to a program",
    ("update", "enrollment"): "Changed a program enrollment",
    ("create", "care_plan_review"): "Recorded a care-plan review",
    ("break_glass", "break_glass_grant"): "Used emergency access to open the record",
    ("acknowledge", "break_glass_grant"): "Reviewed an emergency access to the record",
}
MILESTONES = {"medical_exam_on", "assessment_on", "care_plan_on"}
ACTION_ONLY_WORDS = {
    "view": "Viewed the record",
    "create": "Added to the record",
    "update": "Changed the record",
    "sign": "Signed a note in the record",
    "addendum": "Added an addendum to the record",
    "export": "Exported the record",
    "print": "Printed the record",
    "disclose": "Disclosed the record",
    "break_glass": "Used emergency access to open the record",
    "acknowledge": "Reviewed an access to the record",
}


def describe(action: str, entity_type: str | None, details: dict) -> str:
    """What an event about a patient did, as a sentence a patient understands:
    ("view", "patient", {"page": "patients.chart"}) -> "Viewed the chart"."""
    fields = details.get("fields") or []
    if action == "view" and details.get("page") in PAGE_WORDS:
        words = PAGE_WORDS[details["page"]]
    elif action == "update" and entity_type == "patient" and "entered_in_error" in fields:
        words = "Marked the record as entered in error"
    elif action == "create" and entity_type == "enrollment" and details.get("transfer"):
        words = "Transferred to another program"
    elif action == "update" and entity_type == "enrollment" and "discharged_on" in fields:
        words = "Discharged from a program"
    elif (
        action == "update" and entity_type == "enrollment" and fields and set(fields) <= MILESTONES
    ):
        words = "Recorded program milestones"
    else:
        words = ACTION_WORDS.get(
            (action, entity_type or ""), ACTION_ONLY_WORDS.get(action, "Accessed the record")
        )
    if details.get("break_glass") and action != "break_glass":
        words += " (emergency access)"
    return words

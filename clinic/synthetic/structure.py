"""The network's structure: sites, holidays, accounts, programs, the aftercare directory,
counseling-note readers; and the clock that turns a site's local day and minute into UTC.

Ids are explicit, after ``bases[table]`` (the table's largest id: 0 in an empty database).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

UTC = dt.UTC
TIMEZONES = (
    "America/Chicago",
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/Anchorage",
    "Pacific/Honolulu",
)
CITIES = (
    ("Riverside", "IL", "60546"),
    ("Lakeview", "NY", "10001"),
    ("Fort Collins", "CO", "80521"),
    ("Oakland", "CA", "94607"),
    ("Tempe", "AZ", "85281"),
    ("Anchorage", "AK", "99501"),
    ("Hilo", "HI", "96720"),
    ("Springfield", "MO", "65801"),
    ("Dayton", "OH", "45402"),
    ("Macon", "GA", "31201"),
)
# (kind, name, share of admissions, mean length of stay in days, ASAM 3rd ed. level)
PROGRAMS = (
    ("methadone_otp", "Methadone maintenance (OTP)", 0.50, 125, "OTP"),
    ("office_buprenorphine", "Office-based buprenorphine", 0.25, 95, "1"),
    ("xr_naltrexone", "Extended-release naltrexone", 0.10, 100, "1"),
    ("intensive_outpatient", "Intensive outpatient", 0.15, 70, "2.1"),
)
NURSES, CLINICIANS, STAFF = 25, 10, 3
PRESCRIBERS = 3  # clinician01-03
COUNSELORS = range(3, 9)  # clinician04-09 (indexes)
GROUP_LEADERS = range(6, 9)  # clinician07-09 lead the intensive outpatient groups
TRAINEE = 9  # clinician10, supervised by clinician04
RESOURCE_KINDS = (
    "halfway_house",
    "recovery_residence",
    "support_group",
    "outpatient_care",
    "peer_support",
)
GROUP_TYPES = ("na", "aa", "smart_recovery", "medication_assisted", "recovery_dharma")
STAMP_TIME = dt.time(9)


MINUTES = [dt.timedelta(minutes=m) for m in range(3 * 1440)]


class Clock:
    """A site's local day and minutes after midnight as a UTC instant (each day's local
    midnight in UTC cached: the ledger asks millions of times)."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self._midnights: dict[dt.date, dt.datetime] = {}

    def midnight(self, day: dt.date) -> dt.datetime:
        """The UTC instant of ``day``'s local midnight (by the offset at noon)."""
        value = self._midnights.get(day)
        if value is None:
            offset = dt.datetime.combine(day, dt.time(12), self.zone).utcoffset()
            value = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) - offset
            self._midnights[day] = value
        return value

    def at(self, day: dt.date, minutes: int) -> dt.datetime:
        return self.midnight(day) + MINUTES[minutes]


@dataclass
class SiteInfo:
    id: int
    number: int  # k of S0k and s{k}-...
    code: str
    clock: Clock
    admin: int = 0
    nurses: list[int] = field(default_factory=list)
    clinicians: list[int] = field(default_factory=list)
    staff: list[int] = field(default_factory=list)
    programs: dict[str, int] = field(default_factory=dict)
    program_names: dict[int, str] = field(default_factory=dict)
    patients: int = 0

    def nurse(self, n: int) -> int:
        return self.nurses[n % len(self.nurses)]

    def prescriber(self, n: int) -> int:
        return self.clinicians[n % PRESCRIBERS]

    def counselor(self, n: int) -> int:
        return self.clinicians[COUNSELORS[n % len(COUNSELORS)]]


class Ids:
    """The next explicit id of each table, after its base."""

    def __init__(self, bases: dict[str, int]) -> None:
        self.last = dict(bases)

    def next(self, table: str) -> int:
        value = self.last[table] = self.last.get(table, 0) + 1
        return value


def site_rows(
    rows: dict[str, list[tuple]],
    ids: Ids,
    *,
    sites: int,
    first_number: int,
    patients: int,
    password_hash: str,
    start: dt.date,
    today: dt.date,
) -> tuple[list[SiteInfo], list[str]]:
    """Sites, their holidays, accounts and programs. Returns the sites and the usernames."""
    stamp = dt.datetime.combine(start - dt.timedelta(days=30), STAMP_TIME, UTC)
    infos, accounts = [], []
    for k in range(sites):
        number = first_number + k
        zone = TIMEZONES[k % len(TIMEZONES)]
        city, state, zip_code = CITIES[k % len(CITIES)]
        info = SiteInfo(ids.next("site"), number, f"S{number:02d}", Clock(zone))
        info.patients = patients // sites + (1 if k < patients % sites else 0)
        rows["site"].append(
            (info.id, info.code, f"{city} Treatment Center {number}", zone, True, info.patients,
             f"{100 + number} Main Street, {city}, {state} {zip_code}", f"+1312555{number:04d}",
             "7")
        )  # fmt: skip
        infos.append(info)
        users = [("admin", "admin", "Site Administrator")]
        users += [(f"nurse{n:02d}", "clinician", "Nurse") for n in range(1, NURSES + 1)]
        users += [(f"clinician{n:02d}", "clinician", "Clinician") for n in range(1, CLINICIANS + 1)]
        users += [(f"staff{n:02d}", "staff", "Front Desk") for n in range(1, STAFF + 1)]
        for name, role, title in users:
            uid = ids.next("app_user")
            username = f"s{number}-{name}"
            accounts.append(username)
            if name == "admin":
                info.admin = uid
            elif name.startswith("nurse"):
                info.nurses.append(uid)
            elif name.startswith("clinician"):
                info.clinicians.append(uid)
            else:
                info.staff.append(uid)
            index = len(info.clinicians) - 1
            prescriber = name.startswith("clinician") and index < PRESCRIBERS
            trainee = name.startswith("clinician") and index == TRAINEE
            rows["app_user"].append(
                (uid, username, f"{title} {name[-2:] if name != 'admin' else ''} {info.code}"
                 .replace("  ", " ").strip(), f"{username}@synthetic.example", role,
                 prescriber, name.startswith("nurse"), trainee,
                 info.clinicians[COUNSELORS[0]] if trainee else None, False, True, stamp,
                 password_hash, stamp, False, 0, 1)
            )  # fmt: skip
            rows["user_site"].append((uid, info.id))
        for kind, name, *_ in PROGRAMS:
            pid = ids.next("program")
            info.programs[kind] = pid
            info.program_names[pid] = name
            caps = (7, 14, 28) if kind == "methadone_otp" else (None, None, None)
            rows["program"].append((pid, info.id, name, kind, True, 90, *caps, 10, 4, 72, 90, 1))
        for year in range(start.year, today.year + 2):
            for month, day, holiday in ((1, 1, "New Year's Day"), (7, 4, "Independence Day"),
                                        (12, 25, "Christmas Day")):  # fmt: skip
                rows["site_closure"].append(
                    (ids.next("site_closure"), info.id, dt.date(year, month, day), holiday,
                     info.admin, stamp)
                )  # fmt: skip
        for n, counselor in enumerate(info.clinicians[COUNSELORS[0] : COUNSELORS[0] + 3]):
            granted = stamp + dt.timedelta(days=n)
            revoked = n == 2
            rows["counseling_note_reader"].append(
                (ids.next("counseling_note_reader"), info.id, counselor, info.admin, granted,
                 granted + dt.timedelta(days=400) if revoked else None,
                 info.admin if revoked else None)
            )  # fmt: skip
    return infos, accounts


def resource_rows(
    rows: dict[str, list[tuple]], ids: Ids, rng: random.Random, infos: list[SiteInfo], start
) -> list[tuple[int, str, str]]:
    """The aftercare directory: ten resources per site and ten network-wide. Returns
    (id, kind, name) of each."""
    stamp = dt.datetime.combine(start - dt.timedelta(days=20), STAMP_TIME, UTC)
    resources = []
    count = 10 * len(infos) + 10
    for n in range(count):
        rid = ids.next("aftercare_resource")
        kind = RESOURCE_KINDS[n % len(RESOURCE_KINDS)]
        site = infos[n % len(infos)] if n < 10 * len(infos) else None
        city, state, zip_code = CITIES[(n // 5) % len(CITIES)]
        residence = kind in ("halfway_house", "recovery_residence")
        moud = rng.choice(("yes", "yes", "no", "unknown"))
        methadone = "no" if moud == "no" else rng.choice(("yes", "no", "unknown"))
        beds = rng.randrange(6, 40) if residence else None
        name = f"{city} {kind.replace('_', ' ').title()} {n + 1}"
        rows["aftercare_resource"].append(
            (rid, name, kind, rng.choice(("I", "II", "III", "IV")) if kind == "recovery_residence"
             else None, GROUP_TYPES[n % len(GROUP_TYPES)] if kind == "support_group" else None,
             f"{200 + n} Oak Avenue", city, state, zip_code, f"+1312556{n:04d}",
             f"intake{n + 1}@resource.example", "Intake coordinator", moud, methadone,
             beds, rng.randrange(0, beds + 1) if beds else None,
             start if beds else None,
             "Mon, Wed 19:00" if kind == "support_group" else None,
             rng.choice(("all", "all", "women", "men")), None, n % 23 != 22,
             site.id if site else None, stamp, site.admin if site else None, stamp, None, 1)
        )  # fmt: skip
        resources.append((rid, kind, name))
    return resources


COLUMNS = {
    "site": "id, code, name, timezone, active, last_mrn, address, phone, closed_weekdays",
    "app_user": "id, username, full_name, email, role, is_prescriber, may_dispense, is_trainee,"
    " supervisor_id, all_sites, active, created_at, password_hash, password_changed_at,"
    " must_change_password, failed_logins, profile_version",
    "user_site": "user_id, site_id",
    "program": "id, site_id, name, kind, active, care_plan_review_days,"
    " take_home_cap_days_0_14, take_home_cap_days_15_30, take_home_cap_days_31_plus,"
    " methadone_step_mg, buprenorphine_step_mg, note_late_hours, take_home_review_days, version",
    "site_closure": "id, site_id, closed_on, name, created_by_id, created_at",
    "counseling_note_reader": "id, site_id, user_id, granted_by_id, granted_at, revoked_at,"
    " revoked_by_id",
    "aftercare_resource": "id, name, kind, narr_level, support_group_type, street, city, state,"
    " postal_code, phone, email, contact_name, accepts_moud, accepts_methadone, beds_total,"
    " beds_available, beds_confirmed_on, meeting_times, gender_served, notes, active, site_id,"
    " created_at, created_by_id, updated_at, updated_by_id, version",
}

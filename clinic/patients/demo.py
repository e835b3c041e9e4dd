"""Demo programs and patients for ``flask seed-demo``: a dozen patients at different
stages, so every step of the week in SCENARIOS.md can be walked through."""

from __future__ import annotations

import datetime as dt

from clinic.accounts.models import User
from clinic.patients import admissions, milestones, program_settings, registry
from clinic.patients.models import DischargeReason, ProgramKind
from clinic.sites.models import Site
from clinic.sites.time import site_today

PROGRAMS = [
    ("Methadone maintenance (OTP)", ProgramKind.METHADONE_OTP),
    ("Office-based buprenorphine", ProgramKind.OFFICE_BUPRENORPHINE),
    ("Extended-release naltrexone", ProgramKind.XR_NALTREXONE),
    ("Intensive outpatient", ProgramKind.INTENSIVE_OUTPATIENT),
]

# first, last, preferred, born, sex, substance, program index or None, days since
# admission, level, milestones done (exam, assessment, care plan), discharge reason or None
PATIENTS = [
    ("John", "Smith", "J", "1979-03-14", "male", "heroin", 0, 400, "3:OTP", True, None),
    ("Ana", "Torres", None, "1991-07-30", "female", "fentanyl", 0, 35, "3:OTP", True, None),
    ("Keisha", "Brown", None, "1986-11-02", "female", "fentanyl", 0, 12, "3:OTP", False, None),
    (
        "Luis",
        "Hernandez",
        "Lu",
        "1975-01-21",
        "male",
        "prescription_opioids",
        0,
        3,
        "4:1.0",
        False,
        None,
    ),
    ("Emily", "Nguyen", None, "1998-05-09", "female", "fentanyl", 1, 120, "4:1.5", True, None),
    ("Robert", "Johnson", "Bobby", "1968-09-17", "male", "heroin", 1, 20, "3:1", False, None),
    ("Sarah", "O'Connor", None, "1993-02-25", "female", "alcohol", 3, 40, "3:2.1", True, None),
    ("Michael", "Davis", None, "1983-12-12", "male", "fentanyl", 2, 60, "3:1", True, None),
    (
        "Jessica",
        "Wilson",
        "Jess",
        "1990-08-08",
        "female",
        "methamphetamine",
        3,
        200,
        "3:2.1",
        True,
        DischargeReason.COMPLETED,
    ),
    (
        "David",
        "Martinez",
        None,
        "1972-04-04",
        "male",
        "heroin",
        0,
        500,
        "3:OTP",
        True,
        DischargeReason.DROPPED_OUT,
    ),
    ("Jo", "Smithers", None, "2001-10-19", "nonbinary", "fentanyl", None, 0, "", False, None),
    ("Grace", "Kim", None, "1988-06-15", "female", "benzodiazepines", None, 0, "", False, None),
]


def seed(site: Site, east: Site, counselors: list[User], actor: User) -> int:
    """Create the demo programs and patients; returns how many patients."""
    today = site_today(site)
    programs = [
        program_settings.create_program(
            actor=actor,
            site=site,
            settings=program_settings.ProgramSettings(
                name=name,
                kind=kind,
                active=True,
                care_plan_review_days=90,
                # 42 CFR 8.12(i) caps: an OTP's only (empty: the federal caps).
            ),
        )
        for name, kind in PROGRAMS
    ]
    program_settings.create_program(
        actor=actor,
        site=east,
        settings=program_settings.ProgramSettings(
            name="Methadone maintenance (OTP)",
            kind=ProgramKind.METHADONE_OTP,
            active=True,
            care_plan_review_days=60,
            take_home_cap_days_0_14=7,
            take_home_cap_days_15_30=14,
            take_home_cap_days_31_plus=21,
        ),
    )
    for n, row in enumerate(PATIENTS):
        (
            first,
            last,
            preferred,
            born,
            sex,
            substance,
            program_index,
            days,
            level,
            done,
            discharge_reason,
        ) = row
        admitted = today - dt.timedelta(days=days)
        patient = registry.register_patient(
            actor=actor,
            site=site,
            confirm_duplicate=True,
            data=registry.Demographics(
                first_name=first,
                last_name=last,
                preferred_name=preferred,
                date_of_birth=dt.date.fromisoformat(born),
                sex_at_birth="unknown" if sex == "nonbinary" else sex,
                gender_identity="non-binary" if sex == "nonbinary" else None,
                primary_substance=substance,
                intake_date=admitted,
                phone=f"+1518555{n + 100:04d}",  # 555-01xx: fictional numbers
                city="Riverside",
                state="NY",
            ),
        )
        if program_index is None:
            continue
        edition, _, asam_level = level.partition(":")
        enrollment = admissions.admit(
            patient,
            programs[program_index],
            actor=actor,
            admitted_on=admitted,
            asam_edition=edition,
            asam_level=asam_level,
            primary_counselor=counselors[n % len(counselors)],
        )
        if done:
            milestones.record_milestones(
                enrollment,
                actor=actor,
                expected_version=enrollment.version,
                values={name: admitted + dt.timedelta(days=3) for name in milestones.MILESTONES},
            )
        if discharge_reason is not None:
            admissions.discharge(
                enrollment,
                actor=actor,
                reason=discharge_reason,
                discharged_on=admitted + dt.timedelta(days=days // 2),
                expected_version=enrollment.version,
            )
    # The same name and date of birth at the other site: the duplicate warning's case.
    registry.register_patient(
        actor=actor,
        site=east,
        confirm_duplicate=True,
        data=registry.Demographics(
            first_name="Ana",
            last_name="Torres",
            date_of_birth=dt.date(1991, 7, 30),
            sex_at_birth="female",
            primary_substance="heroin",
            intake_date=today - dt.timedelta(days=700),
        ),
    )
    return len(PATIENTS) + 1

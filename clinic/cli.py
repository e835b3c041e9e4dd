"""Operator commands: ``flask seed-demo`` and the command groups of each domain."""

from __future__ import annotations

import click
from flask import Flask

from clinic.accounts.passwords import generate_password
from clinic.accounts.services import create_user
from clinic.extensions import db
from clinic.security import Role
from clinic.sites.models import Site
from clinic.sites.services import create_site

DEMO_SITE = {"code": "MAIN", "name": "Riverside Treatment Center", "timezone": "America/New_York"}

DEMO_EAST_SITE = {"code": "EAST", "name": "Eastside Clinic", "timezone": "America/New_York"}

DEMO_USERS = [
    ("admin", "Alex Admin", Role.ADMIN, False),
    ("prescriber", "Dr. Priya Shah", Role.CLINICIAN, True),
    ("nurse", "Maria Lopez", Role.CLINICIAN, False),
    ("counselor", "Dan Miller", Role.CLINICIAN, False),
    ("trainee", "Chris Park", Role.CLINICIAN, False),  # a trainee counselor, under Dan
    ("staff", "Sam Front-Desk", Role.STAFF, False),
]


MISSED_PASSWORDS_HINT = (
    "Missed a password? Give the account a new temporary one: flask users reset-password NAME"
)

# The demo's one emergency access (a MAIN prescriber opening an EAST patient's chart).
DEMO_BREAK_GLASS_REASON = "Guest dosing: patient arrived from EAST with no chart here"


def _password_box(passwords: list[tuple[str, Role, str]]) -> str:
    """The demo accounts as a block that stands out at the end of ``make run``'s output."""
    rule = "=" * 64
    lines = [
        "",
        rule,
        "  DEMO ACCOUNTS: the passwords are shown this once; write them down.",
        rule,
        *(
            f"  {username:<12} {role.label:<14} {password}"
            for username, role, password in passwords
        ),
        rule,
        f"  {MISSED_PASSWORDS_HINT}",
        rule,
        "",
    ]
    return "\n".join(lines)


@click.command("seed-demo")
def seed_demo() -> None:
    """Load demo data into an empty database (once; later runs change nothing).

    Creates a site and one user per role, a second site, treatment programs and a dozen
    patients at different stages of treatment. The users' passwords are printed once,
    last, in a box; `flask users reset-password NAME` gives a user a new one.
    """
    if db.session.scalar(db.select(Site).limit(1)) is not None:
        click.echo("Demo data is already loaded; nothing changed.")
        click.echo(MISSED_PASSWORDS_HINT)
        return
    site = create_site(**DEMO_SITE)
    click.echo(f"Created demo site {site.code} ({site.name}).")
    users = {}
    passwords = []
    for username, full_name, role, prescriber in DEMO_USERS:
        password = generate_password()
        users[username] = create_user(
            actor=None,
            username=username,
            full_name=full_name,
            role=role,
            sites=[site],
            is_prescriber=prescriber,
            password=password,
        )
        passwords.append((username, role, password))
    east = create_site(**DEMO_EAST_SITE)
    from clinic.patients import demo

    admin = users["admin"]
    admin.all_sites, admin.sites = True, []  # the demo director sees both sites
    count = demo.seed(site, east, counselors=[users["counselor"], users["nurse"]], actor=admin)
    click.echo(f"Created site {east.code}, {len(demo.PROGRAMS) + 1} programs, {count} patients.")
    from clinic.medications import demo as medication_demo

    written = medication_demo.seed(site, prescriber=users["prescriber"], nurse=users["nurse"])
    click.echo(f"Created {written} medication orders, a hold and two flags.")
    from clinic.medications import dosing_demo

    doses = dosing_demo.seed(site, nurse=users["nurse"])
    click.echo(f"Created {doses} dose ledger rows (three weeks of doses).")
    from clinic.medications import drug_test_demo

    tests = drug_test_demo.seed(site, nurse=users["nurse"])
    click.echo(
        f"Created {tests} drug tests (a year of random tests, a confirmed and an overturned "
        "positive, a missing-methadone finding)."
    )
    from clinic.medications import take_home_demo

    decisions = take_home_demo.seed(
        site, prescriber=users["prescriber"], nurse=users["nurse"], admin=admin
    )
    click.echo(
        f"Created {decisions} take-home decisions (at days 12, 20 and 35 in treatment, one "
        "awaiting a prescriber; one of 12 days ago for a patient long in treatment), the "
        "site's label address and a holiday."
    )
    # After the decisions: bottles are dispensed under an approved one.
    from clinic.medications import take_home_bottle_demo

    click.echo(
        take_home_bottle_demo.seed(site, nurse=users["nurse"], clinician=users["prescriber"])
    )
    from clinic.therapy import demo as therapy_demo

    therapy = therapy_demo.seed(
        site, counselor=users["counselor"], trainee=users["trainee"], admin=admin
    )
    click.echo(
        f"Created {therapy.sessions} therapy sessions (a weekly group, individual sessions) "
        f"and {therapy.notes} progress notes; {users['trainee'].full_name} is a trainee "
        f"supervised by {users['counselor'].full_name}."
    )
    from clinic.aftercare import directory_demo

    resources = directory_demo.seed(site, east, actor=users["staff"])
    click.echo(f"Created {resources} aftercare directory resources (every kind).")
    from clinic.aftercare import consent_demo

    network = consent_demo.seed(site, staff=users["staff"])
    click.echo(
        f"Created {network.people} support people, {network.consents} consents (active, "
        f"expired, revoked, TPO, counseling notes) and {network.restrictions} restriction "
        "request."
    )
    # After the directory's and the consents' demos: referrals are sent under their consents.
    from clinic.aftercare import referral_demo

    referred = referral_demo.seed(site, staff=users["staff"])
    click.echo(
        f"Created {referred} referrals (every status; the sent ones disclosed)."
        if referred
        else "No referrals: the aftercare directory and consents demos made none to refer to."
    )
    from clinic.reports import demo as reports_demo

    history = reports_demo.seed(
        site,
        east,
        prescriber=users["prescriber"],
        nurse=users["nurse"],
        counselors=[users["counselor"], users["nurse"]],
        trainee=users["trainee"],
        staff=users["staff"],
        actor=admin,
    )
    click.echo(
        f"Created two years of history for the reports: {history.patients} past and current "
        f"patients ({history.enrollments} enrollments), {history.doses} dose ledger rows, "
        f"{history.sessions} therapy sessions, {history.drug_tests} drug tests and "
        f"{history.referrals} past referrals."
    )
    # Friday's audit review (SCENARIOS.md): one emergency access this week to acknowledge.
    from clinic.patients.emergency import grant_break_glass
    from clinic.patients.models import Patient

    east_mrn = db.session.scalar(
        db.select(Patient.mrn)
        .where(Patient.site_id == east.id, Patient.entered_in_error_at.is_(None))
        .order_by(Patient.id)
        .limit(1)
    )
    if east_mrn is not None:
        grant_break_glass(
            actor=users["prescriber"],
            mrn=east_mrn,
            reason=DEMO_BREAK_GLASS_REASON,
        )
        click.echo("Created one emergency access (break-glass) for the audit review.")
    db.session.commit()
    # In a transaction of its own (a draw that loses a race rolls back), after the tests.
    from clinic.medications import drug_test_schedule_demo

    drawn = drug_test_schedule_demo.seed(site)
    click.echo(
        f"Today's random drug-test draw: {drawn[0]} of {drawn[1]} patients selected."
        if drawn
        else "No random drug-test draw today: the site is closed."
    )
    # Last, after everything else the seeding printed, so it does not scroll past.
    click.echo(_password_box(passwords))


def register(app: Flask) -> None:
    from clinic.accounts.cli import mfa_cli, users_cli
    from clinic.audit.cli import audit_cli
    from clinic.backup.cli import backup_cli
    from clinic.medications.drug_test_schedule_cli import drug_tests_cli
    from clinic.production import preflight_command
    from clinic.synthetic.cli import seed_synthetic

    app.cli.add_command(seed_demo)
    app.cli.add_command(seed_synthetic)
    app.cli.add_command(audit_cli)
    app.cli.add_command(backup_cli)
    app.cli.add_command(drug_tests_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(mfa_cli)
    app.cli.add_command(preflight_command)

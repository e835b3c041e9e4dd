"""``flask users ...``: account commands for operators."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from clinic.accounts import mfa_secrets, services
from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.security import Role
from clinic.sites.services import site_by_code

users_cli = AppGroup(
    "users", help="Create, list, deactivate and unlock user accounts, and reset passwords."
)


def _fail(message: str) -> None:
    db.session.rollback()
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@users_cli.command("create")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="What the user may do.",
)
@click.option(
    "--site",
    "site_codes",
    multiple=True,
    metavar="CODE",
    help="A site the user works at (repeatable). An administrator without "
    "--site works at all sites.",
)
@click.option("--prescriber", is_flag=True, help="Clinicians only: may write medication orders.")
@click.option(
    "--dispense",
    is_flag=True,
    help="Clinicians only (a practitioner, nurse or pharmacist): may record doses.",
)
@click.option("--full-name", default=None, help="Defaults to the username.")
@click.option("--email", default=None)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of prompting twice.",
)
def create_command(
    username, role, site_codes, prescriber, dispense, full_name, email, password_stdin
):
    """Create user USERNAME."""
    sites = []
    for code in site_codes:
        site = site_by_code(code)
        if site is None:
            _fail(f"no site with code {code!r}.")
        sites.append(site)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = services.create_user(
            actor=None,
            username=username,
            full_name=full_name or username,
            email=email,
            role=Role(role),
            sites=sites,
            is_prescriber=prescriber,
            may_dispense=dispense,
            all_sites=role == Role.ADMIN and not sites,
            password=password,
        )
    except DomainError as error:
        _fail(error.message)
    db.session.commit()
    click.echo(f"Created {user.role.value} {user.username} (id {user.id}).")


@users_cli.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deactivated users.")
def list_command(show_all):
    """List users: username, role, sites, status."""
    query = sa.select(User).order_by(User.username).options(sa.orm.selectinload(User.sites))
    if not show_all:
        query = query.where(User.active)
    for user in db.session.scalars(query):
        sites = "all" if user.all_sites else ",".join(s.code for s in user.sites) or "-"
        status = "active" if user.active else "inactive"
        if user.is_locked():
            status += ",locked"
        flags = " prescriber" if user.is_prescriber else ""
        click.echo(f"{user.username}\t{user.role.value}{flags}\t{sites}\t{status}")


def _user_or_fail(username: str) -> User:
    user = services.user_by_username(username)
    if user is None:
        _fail(f"no user {username!r}.")
    return user


@users_cli.command("deactivate")
@click.argument("username")
def deactivate_command(username):
    """Deactivate USERNAME and end their sessions (users are never deleted)."""
    user = _user_or_fail(username)
    try:
        services.deactivate_user(user, actor=None)
    except DomainError as error:
        _fail(error.message)
    db.session.commit()
    click.echo(f"Deactivated {user.username}.")


@users_cli.command("unlock")
@click.argument("username")
def unlock_command(username):
    """Clear USERNAME's failed sign-ins and lock."""
    user = _user_or_fail(username)
    services.unlock_user(user, actor=None)
    db.session.commit()
    click.echo(f"Unlocked {user.username}.")


@users_cli.command("reset-password")
@click.argument("username")
def reset_password_command(username):
    """Give USERNAME a new temporary password (printed once).

    They must change it at their next sign-in; their sessions end and any lock is
    cleared. Recorded in the audit trail. For an operator who missed the passwords
    `flask seed-demo` printed.
    """
    user = _user_or_fail(username)
    temporary = services.reset_password(user, actor=None)
    db.session.commit()
    click.echo(f"Temporary password for {user.username}: {temporary}")
    click.echo("They must change it when they next sign in.")
    if not user.active:
        click.echo(
            f"Note: {user.username} is deactivated and cannot sign in until an administrator "
            "reactivates the account."
        )


mfa_cli = AppGroup("mfa", help="Two-step verification secrets: re-encrypt them under a new key.")


@mfa_cli.command("rotate-key")
def rotate_key_command():
    """Re-encrypt every stored MFA secret under the newest key of MFA_ENCRYPTION_KEYS.

    MFA_ENCRYPTION_KEYS lists Fernet keys, newest first; any listed key decrypts. To
    rotate: put a new key first and keep the old one, restart the app servers, run this,
    then remove the old key and restart again. One transaction, audited (counts only).
    Exit 1, changing nothing, if some user's secret is encrypted under a key that is no
    longer listed: the message names those user ids.
    """
    try:
        rotation = mfa_secrets.rotate_stored_secrets()
    except mfa_secrets.MfaSecretUnreadable as error:
        _fail(str(error))
    db.session.commit()
    click.echo(
        f"Re-encrypted {rotation.rotated} two-step verification secret(s) under the newest key."
    )
    if rotation.setups_dropped:
        click.echo(
            f"Forgot {rotation.setups_dropped} enrolment(s) in progress that no key opens "
            "(those users see a new code to scan)."
        )

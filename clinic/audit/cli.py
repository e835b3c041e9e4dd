"""``flask audit ...``: verify the audit trail, export its head, grant the app's role."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from clinic.audit.models import AuditChainHead, AuditEvent, BreakGlassGrant
from clinic.audit.services import ChainAnchor, chain_anchor, verify_chain
from clinic.extensions import db

audit_cli = AppGroup(
    "audit",
    help="Verify the append-only, HMAC-chained audit trail, export its head (anchor) and "
    "grant the app's database role what it needs (PostgreSQL).",
)


@audit_cli.command("verify")
@click.option(
    "--anchor",
    "anchor_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An anchor file written by 'flask audit anchor'; the chain must still hold that "
    "event with that hash. May be given several times.",
)
def verify_command(anchor_files: tuple[Path, ...]) -> None:
    """Walk the chain from the first event, checking every link and keyed hash
    (AUDIT_HMAC_KEYS), and each --anchor. Exit 0 when intact; otherwise report the first
    broken or missing link and exit 1. An empty chain, or one shorter than an anchor,
    is broken."""
    anchors = []
    for path in anchor_files:
        try:
            anchors.append(ChainAnchor.from_json(path.read_text()))
        except ValueError as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--anchor") from None
    report = verify_chain(anchors=anchors)
    if report.ok:
        against = f"; matches {report.anchors_checked} anchor(s)" if anchors else ""
        click.echo(
            f"Audit trail intact: {report.events} events; last hash {report.last_hash}{against}."
        )
        return
    click.echo(f"Audit trail BROKEN after {report.events} good events: {report.problem}.", err=True)
    sys.exit(1)


@audit_cli.command("anchor")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the anchor to this file instead of standard output.",
)
def anchor_command(output: Path | None) -> None:
    """Export the chain's last event (seq, hash, key id, time) as one line of JSON.

    Keep it outside the database (write-once storage, a signed e-mail, a ticket): later,
    'flask audit verify --anchor FILE' proves the chain still holds that event unchanged,
    so a chain shortened or rewritten by the database's owner is detected. Exit 1 when
    the chain is empty."""
    anchor = chain_anchor()
    if anchor is None:
        click.echo("The audit trail is empty: nothing to anchor.", err=True)
        sys.exit(1)
    text = anchor.to_json() + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"Anchored event {anchor.seq} in {output}.", err=True)


# What the application's role may do to each table. The records the law says never change
# are insert-and-read only, for the role as for the triggers: the audit trail, enrollment
# corrections, the dose ledger (21 CFR 1304.24) and what is recorded against it; the
# chain head is updated in place; break-glass grants are acknowledged and medication
# orders ended, never removed. Every other table is ordinary application data.
# tests/test_audit_chain.py checks that no table whose triggers refuse DELETE is granted it.
TABLE_PRIVILEGES = {
    AuditEvent.__tablename__: "SELECT, INSERT",
    AuditChainHead.__tablename__: "SELECT, UPDATE",
    BreakGlassGrant.__tablename__: "SELECT, INSERT, UPDATE",
    "enrollment_correction": "SELECT, INSERT",
    "medication_order": "SELECT, INSERT, UPDATE",
    "medication_hold": "SELECT, INSERT, UPDATE",
    "patient_flag": "SELECT, INSERT, UPDATE",
    "dose_entry": "SELECT, INSERT",
    "flag_acknowledgement": "SELECT, INSERT",
    "missed_dose_review": "SELECT, INSERT",
    "progress_note": "SELECT, INSERT, UPDATE",
    "note_addendum": "SELECT, INSERT",
    "counseling_note": "SELECT, INSERT",
    # Sessions and attendees are marked entered in error, never deleted (issue 11).
    "therapy_session": "SELECT, INSERT, UPDATE",
    "session_attendee": "SELECT, INSERT, UPDATE",
    "counseling_note_reader": "SELECT, INSERT, UPDATE",
    # Aftercare (issue 12): never deleted; a consent's elements and a restriction's
    # request never change (triggers), only their revocation / lifting is written, once.
    "support_person": "SELECT, INSERT, UPDATE",
    "part2_consent": "SELECT, INSERT, UPDATE",
    "disclosure_restriction": "SELECT, INSERT, UPDATE",
    # Referrals are closed, never deleted; their status history and the disclosures
    # they made (the accounting, 42 CFR 2.25) are append-only (triggers).
    "referral": "SELECT, INSERT, UPDATE",
    "referral_event": "SELECT, INSERT",
    "part2_disclosure": "SELECT, INSERT",
    # Drug tests and take-homes (issue 13): tests are marked entered in error, never
    # deleted; results, draws, reviews, dispensings, bottle checks and incidents are
    # append-only; decisions and call-backs get their approval / ending / outcome written
    # once (triggers).
    "drug_test": "SELECT, INSERT, UPDATE",
    "drug_test_result": "SELECT, INSERT",
    "random_test_draw": "SELECT, INSERT",
    "random_test_selection": "SELECT, INSERT",
    "take_home_decision": "SELECT, INSERT, UPDATE",
    "take_home_review": "SELECT, INSERT",
    "take_home_dispensing": "SELECT, INSERT",
    "bottle_return": "SELECT, INSERT",
    "diversion_incident": "SELECT, INSERT",
    "call_back": "SELECT, INSERT, UPDATE",
}
DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


def app_role_grants(role: str, schema: str, tables: list[str], quote) -> list[str]:
    """The statements that give ``role`` exactly what the app needs (idempotent: every
    privilege is revoked first). ``quote`` quotes an identifier for PostgreSQL."""
    r, s = quote(role), quote(schema)
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r}",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
    ]
    for table in sorted(tables):
        privileges = TABLE_PRIVILEGES.get(table, DEFAULT_PRIVILEGES)
        statements.append(f"GRANT {privileges} ON {s}.{quote(table)} TO {r}")
    # nextval() for the id columns; never setval() (UPDATE on a sequence).
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
    return statements


@audit_cli.command("grant-app-role")
@click.argument("role")
@click.option(
    "--execute",
    is_flag=True,
    help="Run the statements (as the owner of the tables) instead of only printing them.",
)
def grant_app_role_command(role: str, execute: bool) -> None:
    """Print (or with --execute, run) the PostgreSQL GRANTs for ROLE, the role the app
    connects as: INSERT and SELECT on audit_event (never UPDATE, DELETE or TRUNCATE),
    SELECT and UPDATE on audit_chain_head, and ordinary access to the other tables.

    Run it connected as the owner role that runs the migrations (DATABASE_URL), and again
    after every 'flask db upgrade' (new tables need their grants). ROLE must exist, must
    not own the tables and must not be a superuser: an owner can disable the append-only
    triggers. Exit 1 on SQLite, which has no roles."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        click.echo(
            "SQLite has no database roles: only the append-only triggers protect the trail. "
            "Use PostgreSQL in production.",
            err=True,
        )
        sys.exit(1)
    with engine.begin() as conn:
        found = conn.execute(
            sa.text(
                "SELECT r.rolsuper, pg_has_role(r.oid, t.tableowner, 'MEMBER') AS owns "
                "FROM pg_roles r, pg_tables t "
                "WHERE r.rolname = :role AND t.tablename = 'audit_event' "
                "AND t.schemaname = current_schema()"
            ),
            {"role": role},
        ).one_or_none()
        if found is None:
            click.echo(f"No role {role!r} (CREATE ROLE it first), or no audit_event.", err=True)
            sys.exit(1)
        if found.rolsuper or found.owns:
            click.echo(
                f"Role {role!r} is a superuser or owns the tables (or is a member of their "
                "owner): it could disable the audit triggers. The app must connect as a "
                "role of its own.",
                err=True,
            )
            sys.exit(1)
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        tables = [
            t for t in sa.inspect(conn).get_table_names(schema=schema) if t in db.metadata.tables
        ]
        quote = engine.dialect.identifier_preparer.quote_identifier
        statements = app_role_grants(role, schema, tables, quote)
        for statement in statements:
            click.echo(statement + ";")
            if execute:
                conn.execute(sa.text(statement))
    if execute:
        click.echo(f"Granted: role {role!r} may now run the app.", err=True)

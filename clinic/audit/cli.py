"""``flask audit ...``: check the audit trail."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from clinic.audit.services import verify_chain

audit_cli = AppGroup("audit", help="Check the append-only, hash-chained audit trail.")


@audit_cli.command("verify")
def verify_command() -> None:
    """Walk the hash chain from the first event; report the first broken or missing
    link and exit 1, or exit 0 when the chain is intact."""
    report = verify_chain()
    if report.ok:
        click.echo(f"Audit trail intact: {report.events} events; last hash {report.last_hash}.")
        return
    click.echo(f"Audit trail BROKEN after {report.events} good events: {report.problem}.", err=True)
    sys.exit(1)

"""``flask seed-synthetic``: the operator's command for ``clinic.synthetic.load``."""

from __future__ import annotations

import datetime as dt
import os

import click
from flask.cli import with_appcontext

from clinic.synthetic import DEFAULT_SEED, DEFAULT_TODAY, SIZES, SyntheticRefused, load

PASSWORD_ENV = "SYNTHETIC_PASSWORD"  # noqa: S105 (the variable's name)


def _day(_ctx, _param, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("a date YYYY-MM-DD") from None


@click.command("seed-synthetic")
@click.option("--size", type=click.Choice(sorted(SIZES)), default="S", show_default=True,
              help="S: 10,000 patients, 1 site, 7 years (~1 M dose rows); "
                   "M: 100,000 patients, 10 sites, 7 years (~11 M dose rows).")  # fmt: skip
@click.option("--patients", type=click.IntRange(1, 10_000_000), help="Overrides the size's.")
@click.option("--sites", type=click.IntRange(1, 999), help="Overrides the size's.")
@click.option("--years", type=click.IntRange(1, 30), help="Years of history (the size's: 7).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
@click.option("--today", callback=_day, metavar="YYYY-MM-DD",
              help=f"The day the data is generated around (default {DEFAULT_TODAY}); give "
                   "today's date to use the data in the app today.")  # fmt: skip
@click.option(
    "--password",
    envvar=PASSWORD_ENV,
    metavar="P",
    help=f"Password of every synthetic account (or ${PASSWORD_ENV}).",
)
@click.option("--force", is_flag=True,
              help="Load alongside the data a database already holds (new ids, codes, "
                   "usernames and MRNs).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bars, only the summary.")
@with_appcontext
def seed_synthetic(size, patients, sites, years, seed, today, password, force, quiet) -> None:
    """Bulk-load a synthetic network into EVERY table, for benchmarks (issue 15).

    Fixed seed, fixed "today": the same options give the same rows, on SQLite and on
    PostgreSQL. Refuses (exit status 2) a database that holds a patient, a user or an
    audit event, unless --force. The audit chain verifies after the load (same
    AUDIT_HMAC_KEYS).

    Accounts, per site k (S01, S02, ...): s{k}-admin (administrator), s{k}-nurse01..25
    (clinicians who may dispense), s{k}-clinician01..10 (01-03 prescribers, 10 a trainee),
    s{k}-staff01..03, all active, with --password, without MFA: a role listed in
    MFA_REQUIRED_ROLES (production: admin) is asked to enrol at its first sign-in.
    """
    base = SIZES[size]
    if not password:
        raise click.UsageError(f"give --password or set ${PASSWORD_ENV}")
    try:
        summary = load(
            patients=patients or base.patients,
            sites=sites or base.sites,
            years=years or base.years,
            seed=seed,
            today=today or DEFAULT_TODAY,
            password=password,
            force=force,
            progress=not quiet,
        )
    except SyntheticRefused as refused:
        click.echo(f"Refused: {refused}", err=True)
        raise SystemExit(2) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"\nLoaded on {summary['engine']} (today {summary['today']}, seed {seed}):")
    for table, count in sorted(summary["tables"].items()):
        seconds = summary["seconds"].get(table, 0.0)
        click.echo(f"  {table:<26} {count:>12,} rows {seconds:8.1f} s")
    for step, seconds in summary["seconds"].items():
        if step not in summary["tables"]:
            click.echo(f"  {step:<45} {seconds:8.1f} s")
    click.echo(f"  {'total':<45} {summary['total_seconds']:8.1f} s")
    first, last = summary["accounts"][0], summary["accounts"][-1]
    click.echo(f"{len(summary['accounts'])} accounts ({first} ... {last}); "
               f"load average {' '.join(f'{n:.1f}' for n in os.getloadavg())}.")  # fmt: skip

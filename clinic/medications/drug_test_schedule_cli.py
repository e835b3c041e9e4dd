"""``flask drug-tests ...``: the morning's random drug-test draw, for a scheduler (cron,
a systemd timer) to run each day after midnight at the sites' time."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import drug_test_draw
from clinic.sites.models import SITE_CODE_MAX, Site
from clinic.sites.time import site_today

drug_tests_cli = AppGroup(
    "drug-tests",
    help="Random drug testing (42 CFR 8.12(f)(6): at least 8 random tests a year per "
    "patient in maintenance treatment).",
)


@drug_tests_cli.command("draw")
@click.option(
    "--site",
    "site_code",
    default=None,
    metavar="CODE",
    help="Draw for this site only (its code, e.g. MAIN). Default: every active site.",
)
def draw_command(site_code: str | None) -> None:
    """Make today's random drug-test draw at each site: once per site and site-local day
    (running it again shows the draw already made; nothing changes). No draw is made on a
    day the site is closed (its closed weekdays and holidays), and never for a day ahead.

    Run it each morning, before the clinic opens. Prints, per site, how many patients were
    selected of how many eligible (no names). Exit 1 for an unknown or inactive --site."""
    query = sa.select(Site).order_by(Site.code)
    if site_code is not None:
        code = site_code.strip().upper()
        if not (code.isascii() and code.isprintable() and len(code) <= SITE_CODE_MAX):
            code = ""  # no site has it (and a NUL never reaches PostgreSQL)
        query = query.where(Site.code == code)
    else:
        query = query.where(Site.active.is_(True))
    sites = list(db.session.scalars(query))
    if site_code is not None and not sites:
        click.echo(f"No site with the code {site_code!r}.", err=True)
        sys.exit(1)
    if site_code is not None and not sites[0].active:
        click.echo(f"{sites[0].code}: {drug_test_draw.INACTIVE_MESSAGE}", err=True)
        sys.exit(1)
    for site in sites:
        today = site_today(site)
        made_before = drug_test_draw.draw_on_day(site, today) is not None
        try:
            draw = drug_test_draw.draw_for_today(site, actor=None)
            count = len(draw.selections)
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            click.echo(f"{site.code} {today.isoformat()}: {error.message}")
            continue
        already = " (already drawn; unchanged)" if made_before else ""
        click.echo(
            f"{site.code} {today.isoformat()}: {count} of {draw.eligible_count} eligible "
            f"patients selected{already}."
        )

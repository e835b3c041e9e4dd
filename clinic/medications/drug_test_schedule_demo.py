"""Demo data for random drug testing (``flask seed-demo``): today's draw at the demo site,
made like the morning command makes it, after the demo drug tests (so patients behind on
their random tests have their raised chance). Idempotent: one draw per site and day."""

from __future__ import annotations

from clinic.errors import DomainError
from clinic.medications import drug_test_draw
from clinic.sites.models import Site


def seed(site: Site) -> tuple[int, int] | None:
    """Make (or find) today's draw at ``site``; returns (selected, eligible), or None when
    the site is closed today (no draw is made on a closed day)."""
    try:
        draw = drug_test_draw.draw_for_today(site, actor=None)
    except DomainError:
        return None
    return len(draw.selections), draw.eligible_count

"""Benchmark: the audit viewer's queries on a large trail (HIPAA audit logs grow to
millions of rows). Loads N synthetic events straight into a scratch database of its own
(hashes are not computed: the viewer does not read them), then times the first page, a page
deep in the trail (keyset: ``seq < cursor``), filtered pages, and the first page of an
administrator of one of four sites (the site scope is part of every query), through the
real service.

    .venv/bin/python bench/audit_viewer.py                  # SQLite, 1,000,000 events
    .venv/bin/python bench/audit_viewer.py --events 200000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres   # a PostgreSQL server

Given a PostgreSQL URL it uses the server only: it creates
``clinic_bench_audit_viewer_<random>`` there, migrates and fills it, and drops it at the
end, also on an error or Ctrl-C (``bench/scratch.py``). Otherwise a SQLite file in a
temporary directory, removed at the end.

Prints the median and worst time per query; exits 1 if a median is over --budget-ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import migrate, scratch_database, stop_on_signals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to make a scratch database on (any database of it);"
        " default: a scratch SQLite file",
    )
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    args = parser.parse_args()
    stop_on_signals()
    with scratch_database(args.database_url, "audit_viewer") as url:
        return run(url, args)


def run(url: str, args: argparse.Namespace) -> int:
    """Migrate and fill the (scratch) database at ``url``, then time the viewer's pages."""
    import sqlalchemy as sa

    from clinic import create_app
    from clinic.audit import reading
    from clinic.audit.models import AuditEvent
    from clinic.extensions import db
    from clinic.sites.models import Site

    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    rng = random.Random(7)
    actions = ["view"] * 8 + ["update", "create", "login", "access_denied"]
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    step = dt.timedelta(days=730) / args.events
    migrate(url)
    with app.app_context():
        sites = [Site(code=f"S{n}", name=f"Site {n}", timezone="UTC") for n in range(4)]
        db.session.add_all(sites)
        db.session.flush()
        site_ids = [s.id for s in sites]
        loaded = time.perf_counter()
        rows = []
        for seq in range(1, args.events + 1):
            # A third of the events concern no patient (settings, sign-ins) but a site.
            about_patient = seq % 3 != 0
            rows.append(
                {
                    "seq": seq,
                    "occurred_at": start + step * seq,
                    "user_id": None,
                    "username": f"user{rng.randrange(200)}",
                    "role": "clinician",
                    "action": rng.choice(actions),
                    "site_id": rng.choice(site_ids),
                    "entity_type": "patient" if about_patient else "program",
                    "entity_id": str(rng.randrange(10_000)),
                    "patient_id": rng.randrange(10_000) if about_patient else None,
                    "outcome": "success",
                    "details": "{}",
                    "prev_hash": "0" * 64,
                    "hash": "0" * 64,
                }
            )
            if len(rows) == 10_000:
                db.session.execute(sa.insert(AuditEvent), rows)
                rows = []
        if rows:
            db.session.execute(sa.insert(AuditEvent), rows)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text("ANALYZE audit_event"))
            db.session.commit()
        print(f"loaded {args.events} events in {time.perf_counter() - loaded:.1f} s")
        deep = args.events // 2
        everything = reading.AuditScope.everything()
        one_site = reading.AuditScope(frozenset({site_ids[0]}))
        cases = {
            "first page": lambda: reading.event_page(
                reading.AuditFilters(), scope=everything, before=None
            ),
            "deep page": lambda: reading.event_page(
                reading.AuditFilters(), scope=everything, before=deep
            ),
            "by user": lambda: reading.event_page(
                reading.AuditFilters(username=f"user{rng.randrange(200)}"),
                scope=everything,
                before=deep,
            ),
            "by patient": lambda: reading.event_page(
                reading.AuditFilters(patient_id=rng.randrange(10_000)),
                scope=everything,
                before=None,
            ),
            "by action": lambda: reading.event_page(
                reading.AuditFilters(action="access_denied"), scope=everything, before=deep
            ),
            "by month": lambda: reading.event_page(
                reading.AuditFilters(date_from=dt.date(2025, 3, 1), date_to=dt.date(2025, 3, 31)),
                scope=everything,
                before=None,
            ),
            "one site": lambda: reading.event_page(
                reading.AuditFilters(), scope=one_site, before=deep
            ),
        }
        failed = False
        for name, run in cases.items():
            timings = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                run()
                timings.append((time.perf_counter() - t0) * 1000)
                db.session.expunge_all()
            median = statistics.median(timings)
            failed |= median > args.budget_ms
            print(f"{name:<11} median {median:7.2f} ms   worst {max(timings):7.2f} ms")
        db.session.remove()
        db.engine.dispose()  # before the scratch database is dropped
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

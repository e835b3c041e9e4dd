"""Benchmark: patient search at scale (DOMAIN.md: 10,000 patients at a large site over the
years; networks far more). Builds a scratch database of its own with N synthetic patients
(no real data), then times name-start, MRN and date-of-birth searches through the real
service. Names include other scripts and hyphenated names; a search word is a prefix range
on the name-token index.

    .venv/bin/python bench/patient_search.py                # SQLite, 100,000 patients
    .venv/bin/python bench/patient_search.py --patients 20000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres   # a PostgreSQL server

Given a PostgreSQL URL it uses the server only: it creates
``clinic_bench_patient_search_<random>`` there, migrates and fills it, and drops it at the
end, also on an error or Ctrl-C (``bench/scratch.py``). Otherwise a SQLite file in a
temporary directory, removed at the end.

Prints the median and worst time per search kind; exits 1 if a median is over --budget-ms.
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

FIRST = [
    "John",
    "Ana",
    "Maria",
    "James",
    "Keisha",
    "Luis",
    "Emily",
    "Robert",
    "Sarah",
    "Jo",
    "Michael",
    "Jessica",
    "David",
    "Grace",
    "Daniel",
    "Aisha",
    "Wei",
    "Olga",
    "Tom",
    "Nia",
    "Иван",
    "Ανδρέας",
    "Mary-Jane",
    "José",
]
LAST = [
    "Smith",
    "Torres",
    "Garcia",
    "Brown",
    "Nguyen",
    "Johnson",
    "Davis",
    "Wilson",
    "Kim",
    "Martinez",
    "Lopez",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Петров",
    "Παπαδόπουλος",
    "Watson-Parker",
    "Núñez",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to make a scratch database on (any database of it);"
        " default: a scratch SQLite file",
    )
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    args = parser.parse_args()
    stop_on_signals()
    with scratch_database(args.database_url, "patient_search") as url:
        return run(url, args)


def run(url: str, args: argparse.Namespace) -> int:
    """Migrate and fill the (scratch) database at ``url``, then time the searches."""
    import sqlalchemy as sa

    from clinic import create_app
    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.patients import names, search
    from clinic.patients.models import Patient, PatientNameToken
    from clinic.sites.models import Site

    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    rng = random.Random(42)
    migrate(url)
    with app.app_context():
        site = Site(code="BENCH", name="Bench", timezone="UTC")
        db.session.add(site)
        db.session.flush()
        started = time.perf_counter()
        rows, tokens, seen = [], [], set()

        def flush() -> None:
            db.session.execute(sa.insert(Patient), rows)
            db.session.execute(sa.insert(PatientNameToken), tokens)
            rows.clear()
            tokens.clear()

        for i in range(1, args.patients + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST) + (str(i % 97) if i % 3 else "")
            born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000))
            identity = (names.search_key(first), names.search_key(last), born)
            tokens.extend({"patient_id": i, "token": t} for t in names.name_tokens(first, last))
            rows.append(
                {
                    "id": i,
                    "site_id": site.id,
                    "mrn": f"BENCH-{i:06d}",
                    "first_name": first,
                    "last_name": last,
                    "first_key": names.search_key(first),
                    "last_key": names.search_key(last),
                    "preferred_key": None,
                    "date_of_birth": born,
                    # The same name and birth date twice: registered past the warning.
                    "duplicate_confirmed": identity in seen,
                    "sex_at_birth": "unknown",
                    "primary_substance": "other",
                    "intake_date": dt.date(2020, 1, 1),
                    "version": 1,
                    "created_at": dt.datetime.now(dt.UTC),
                }
            )
            seen.add(identity)
            if len(rows) == 5000:
                flush()
        if rows:
            flush()
        db.session.commit()
        print(f"loaded {args.patients} patients in {time.perf_counter() - started:.1f} s")
        viewer = User(id=0, username="bench", all_sites=True)
        kinds = {
            "name starts": lambda: f"{rng.choice(LAST)[:3]} {rng.choice(FIRST)[:2]}",
            "one name word": lambda: rng.choice(["parker", "петр", "andreas", "nunez", "smi"]),
            "MRN": lambda: f"BENCH-{rng.randrange(1, args.patients + 1):06d}",
            "date of birth": lambda: (
                dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000))
            ).isoformat(),
        }
        failed = False
        for kind, make in kinds.items():
            timings = []
            for _ in range(args.searches):
                # A page of results as the list shows it: with each patient's site and
                # enrollments (search.search_result_options: a fixed number of queries).
                query = (
                    search.search_patients(viewer, make())
                    .options(*search.search_result_options())
                    .order_by(Patient.last_key, Patient.id)
                    .limit(50)
                )
                t0 = time.perf_counter()
                list(db.session.scalars(query))
                db.session.expunge_all()  # each search loads its rows afresh
                timings.append((time.perf_counter() - t0) * 1000)
            median = statistics.median(timings)
            failed |= median > args.budget_ms
            print(f"{kind:<14} median {median:6.2f} ms   worst {max(timings):6.2f} ms")
        db.session.remove()
        db.engine.dispose()  # before the scratch database is dropped
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

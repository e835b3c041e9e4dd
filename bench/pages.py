"""Benchmark: every page of the app at sizes S and M, on SQLite and PostgreSQL (issue 15).

For each engine and size it makes a scratch database of its own (SQLite: a file in a
temporary directory; PostgreSQL: ``clinic_bench_pages_<size>_<random>`` on the server of
``BENCH_DATABASE_URL``), migrates it to head with the app's migrations, fills it with the
synthetic loader (``clinic.synthetic.load``, seed 15, today's date so the dosing screen has
doses to record) and times each page in-process through the Flask test client, signed in
through ``/login`` as a user of the page's role. Then it EXPLAINs the statements of the hot
pages, drops the database (also on an error or Ctrl-C, unless ``--keep``) and, on
PostgreSQL at the largest size, runs the HTTP load test of ``bench/load.py`` when present.

    .venv/bin/python bench/pages.py                          # both engines, S and M
    .venv/bin/python bench/pages.py --engine sqlite --size S --runs 10
    .venv/bin/python bench/pages.py --patients 500           # quick: 500 (S) and 5,000 (M)
    .venv/bin/python bench/pages.py --engine postgresql --load-only   # load S and M, keep them
    .venv/bin/python bench/pages.py --engine postgresql \\
        --reuse S=clinic_bench_pages_s_1a2b3c4d --reuse M=clinic_bench_pages_m_5e6f7a8b

Writes ``bench/results/pages-<engine>.md`` and ``.json`` (machine, engine version, date,
row counts and load time, each page's median, p95, ratio to the trivial endpoint,
statements and growth exponent k, the targets met) and ``plans-<engine>.md``. Exit status
1 when a page fails or its statement count differs between the sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_SERVER,
    PREFIX,
    Recorder,
    Scratch,
    load_average,
    log,
    machine_facts,
    make_app,
    migrate,
    table_counts,
)

PASSWORD = "bench pages correct horse 15"  # noqa: S105 (scratch accounts)
SEED = 15
# The synthetic loader's accounts at site 1 (``s{k}-...``) by the role a page is seen as.
ACCOUNTS = {
    "nurse": "s1-nurse01",
    "clinician": "s1-clinician01",
    "staff": "s1-staff01",
    "admin": "s1-admin",
}
# A nurse is a clinician who may dispense; the network administrator an admin of all sites.
ROLE_OF = {"nurse": "clinician", "network": "admin"}
COUNTED = (
    "site",
    "patient",
    "enrollment",
    "medication_order",
    "dose_entry",
    "take_home_decision",
    "therapy_session",
    "session_attendee",
    "progress_note",
    "drug_test",
    "referral",
    "part2_consent",
    "audit_event",
    "app_user",
)
LOAD_TEST = Path(__file__).resolve().parent / "load.py"


def site_local_today() -> dt.date:
    """Today at the clinics (US time zones; America/Chicago)."""
    return dt.datetime.now(ZoneInfo("America/Chicago")).date()


def load_data(url: str, size: str, patients: int | None, today: dt.date) -> dict:
    """Fill the migrated database with the synthetic loader; return the data set's facts."""
    from clinic.extensions import db
    from clinic.synthetic import SIZES, load

    spec = SIZES[size]
    count = spec.patients if patients is None else patients * (1 if size == "S" else 10)
    app = make_app(url)
    with app.app_context():
        summary = load(
            patients=count,
            sites=spec.sites,
            years=spec.years,
            seed=SEED,
            today=today,
            password=PASSWORD,
            force=False,
            progress=True,
        )
        db.session.remove()
        db.engine.dispose()
    return {
        "patients": count,
        "sites": spec.sites,
        "years": spec.years,
        "today": today.isoformat(),
        "load_s": round(summary.get("total_seconds", 0.0), 1),
        "load_steps_s": summary.get("seconds"),
        "rows": summary.get("tables") or table_counts(url, COUNTED),
    }


def ensure_accounts(app) -> dict[str, str]:
    """The username of each role, and an organisation-wide administrator (the reports of
    all sites) made by the benchmark. A loader account missing (another data set) is made
    at site 1 with the benchmark's password."""
    import sqlalchemy as sa

    from clinic.accounts.models import User
    from clinic.accounts.services import create_user
    from clinic.extensions import db
    from clinic.sites.models import Site

    names = dict(ACCOUNTS, network="bench-network-admin")
    with app.app_context():
        site = db.session.scalar(sa.select(Site).order_by(Site.id).limit(1))
        for role, username in names.items():
            if db.session.scalar(sa.select(User).where(User.username == username)):
                continue
            create_user(
                actor=None,
                username=username,
                full_name=f"Bench {role}",
                role=ROLE_OF.get(role, role),
                password=PASSWORD,
                sites=[] if role == "network" else [site],
                all_sites=role == "network",
                is_prescriber=role == "clinician",
                may_dispense=role == "nurse",
            )
            log(f"  made the account {username} ({role})")
        db.session.commit()
        db.session.remove()
    return names


def time_pages(
    url: str, runs: int, report_runs: int, today: dt.date, only: list[str] | None = None
) -> tuple[list, list]:
    """Sign in, choose the records, time every page, explain the hot ones."""
    from bench.pages_catalog import build_pages, choose_records
    from bench.pages_client import Browser
    from bench.pages_measure import explain_pages, measure
    from clinic.extensions import db
    from clinic.reports.core import REPORTS

    app = make_app(url)
    names = ensure_accounts(app)
    with app.app_context():
        records = choose_records(db.session, today)
        db.session.remove()
        engine = db.engine
    recorder = Recorder(engine)
    browsers = {role: Browser(app, username, PASSWORD) for role, username in names.items()}
    for browser in browsers.values():
        browser.login()
    slugs = [r.slug for r in sorted(REPORTS.values(), key=lambda r: (r.order, r.slug))]
    pages = build_pages(records, browsers, slugs)
    if only:
        pages = [p for p in pages if any(p.key.startswith(prefix) for prefix in only)]
    results = measure(pages, browsers, runs, report_runs, recorder)
    meta = {
        p.key: {"target": p.target, "deep_of": p.deep_of, "per_patient": p.per_patient}
        for p in pages
    }
    for result in results:
        result["meta"] = meta[result["key"]]
    plans = explain_pages(engine, results)
    engine.dispose()
    return results, plans


def run_engine(engine: str, args) -> tuple[dict, int]:
    """Every size on one engine; returns the run and its exit status."""
    from bench.pages_report import compare_sizes, targets, write_results

    sizes = ["S", "M"] if args.size == "both" else [args.size]
    run: dict = {
        "engine": engine,
        "command": " ".join(["bench/pages.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sizes": {},
    }
    if args.patients is not None or args.page:
        # A quick or partial run: its own files, so the full run's results stay.
        run["name"] = f"{engine}-quick"
    plans: dict[str, list] = {}
    today = site_local_today()
    for size in sizes:
        reused = args.reuse.get(size) if args.reuse else None
        scratch = Scratch(engine, size, args.server_url, reuse=reused)
        try:
            log(f"{engine} {size}: {scratch.name}")
            if reused:
                migrate(scratch.url)  # a kept data set, brought to the code's head
                dataset = {
                    "rows": table_counts(scratch.url, COUNTED),
                    "reused": scratch.name,
                    "today": today.isoformat(),
                }
                dataset["patients"] = dataset["rows"].get("patient")
                dataset["sites"] = dataset["rows"].get("site")
            else:
                scratch.create()
                started = time.perf_counter()
                migrate(scratch.url)
                log(f"  migrated in {time.perf_counter() - started:.1f} s; loading")
                dataset = load_data(scratch.url, size, args.patients, today)
                log(f"  loaded in {dataset['load_s']} s: {dataset['rows']}")
            if args.load_only:
                continue
            run.setdefault("facts", machine_facts(scratch.url))
            before = load_average()
            results, plans[size] = time_pages(
                scratch.url, args.runs, args.report_runs, today, args.page
            )
            run["sizes"][size] = {
                "dataset": dataset,
                "pages": results,
                "runs": args.runs,
                "report_runs": args.report_runs,
                "load_average_before": before,
                "load_average_after": load_average(),
            }
            if engine == "postgresql" and size == sizes[-1] and not args.no_load_test:
                run["load_test"] = load_test(scratch.url, today)
        finally:
            scratch.drop(keep=args.keep or args.load_only)
    if args.load_only:
        return run, 0
    run["compared"] = compare_sizes(run["sizes"])
    largest = run["sizes"][sizes[-1]]["pages"]
    meta = {p["key"]: p["meta"] for p in largest}
    run["targets"] = targets(largest, meta, run["compared"])
    base = write_results(run, plans)
    from bench.pages_report import table

    print("\n".join(table(run)))
    for key, check in run["targets"].items():
        state = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        print(f"  target {key:<30} {check['target']:<45} {state}")
    print(f"results: {base}.md, {base}.json, {base.parent}/plans-{run.get('name', engine)}.md")
    failed = any(p.get("errors") for s in run["sizes"].values() for p in s["pages"])
    differ = any(c.get("statements_same") is False for c in run["compared"].values())
    if differ:
        print("statement counts differ between the sizes: see the table")
    return run, 1 if failed or differ else 0


def load_test(url: str, today: dt.date) -> dict | None:
    """``bench.load.run_load`` on this database, when ``bench/load.py`` exists."""
    if not LOAD_TEST.exists():
        log("bench/load.py is not there: no HTTP load test")
        return None
    from bench.load import run_load

    log("HTTP load test: 20 users for 60 s (bench/load.py)")
    try:
        return run_load(url, users=20, seconds=60, today=today)
    except Exception as error:  # reported in the results, not fatal to the page figures
        log(f"  load test failed: {type(error).__name__}: {error}")
        return {"error": f"{type(error).__name__}: {error}"[:500]}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--size", choices=("S", "M", "both"), default="both")
    parser.add_argument("--runs", type=int, default=30, help="timed requests a page (30)")
    parser.add_argument("--report-runs", type=int, default=5, help="timed requests a report (5)")
    parser.add_argument("--patients", type=int, help="N patients for S and 10 N for M (quick runs)")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="a PostgreSQL server ($BENCH_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument(
        "--reuse",
        metavar="SIZE=NAME",
        action="append",
        help="time a data set kept by --keep or --load-only instead of loading that size "
        "(repeatable: S=NAME and M=NAME; one --engine)",
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="create, migrate and load the data sets, keep them and time nothing "
        "(then time them with --reuse)",
    )
    parser.add_argument(
        "--page", action="append", help="only the pages whose key starts so (repeatable)"
    )
    parser.add_argument("--no-load-test", action="store_true", help="skip bench/load.py")
    parser.add_argument(
        "--rewrite-results",
        action="store_true",
        help="only write results/pages-<engine>.md again from its .json (no timing)",
    )
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    if args.reuse:
        if len(engines) > 1:
            parser.error("--reuse takes one --engine")
        pairs = [item.partition("=") for item in args.reuse]
        if any(size not in ("S", "M") or not name for size, _, name in pairs):
            parser.error("--reuse takes SIZE=NAME, e.g. M=clinic_bench_pages_m_1a2b3c4d")
        args.reuse = {size: name for size, _, name in pairs}
        if engines == ["postgresql"] and not all(n.startswith(PREFIX) for n in args.reuse.values()):
            parser.error(f"--reuse takes a database this benchmark made ({PREFIX}...)")
    if args.rewrite_results:
        from bench.pages_report import rewrite

        for engine in engines:
            print(f"{rewrite(engine)}.md")
        return 0
    # Ctrl-C and a kill both end in the ``finally`` that drops the scratch database.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    status = 0
    for engine in engines:
        _, failed = run_engine(engine, args)
        status = status or failed
    return status


if __name__ == "__main__":
    sys.exit(main())

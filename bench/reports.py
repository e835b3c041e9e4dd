"""Benchmark: every registered report (issue 14) on the network-size data set, on PostgreSQL.

Creates a scratch database of its own on the server (``clinic_bench_reports_<random>``),
migrates it to head, bulk-loads a synthetic network with ``clinic.synthetic.load`` (the
data of ``flask seed-synthetic``, issue 15), then times each report's ``compute(filters)``
for one site and for the whole network with the report's default filters: the median of
``--runs`` runs after
one warm-up, and the SQL statements each compute runs (they must be the same number on a
tiny data set and on the network-size one, for one site and for all). The database is
dropped at the end, also on failure or Ctrl-C, unless ``--keep``.

    .venv/bin/python bench/reports.py                      # 100,000 patients, ~11 M dose rows
    .venv/bin/python bench/reports.py --patients 5000      # a quick check
    BENCH_DATABASE_URL=postgresql://postgres@db:5432/postgres .venv/bin/python bench/reports.py
    .venv/bin/python bench/reports.py --keep               # then, without loading again:
    .venv/bin/python bench/reports.py --reuse clinic_bench_reports_net_1a2b3c4d --set jit=off

Targets (issue 14, PostgreSQL, network size): one site under 1 s, the network under 5 s.
Writes ``bench/results/reports-postgresql.md`` and ``.json`` (and, when a target is missed,
the EXPLAIN (ANALYZE, BUFFERS) of each such report's slowest statement in
``reports-postgresql-explain.md``); exits 1 when a target is missed or a statement count
differs.

The data (fixed seed, fixed "today" 2026-11-18, seven years): ``clinic/synthetic``'s
design, every table filled (its package docstring describes it). ``--sites`` sites, one
of them site 1; every CHECK holds; foreign keys and unique constraints are added back
after the load (validated on the data) and user triggers enabled again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.scratch import migrate

TODAY = dt.date(2026, 11, 18)  # a Wednesday
SINGLE_SITE_TARGET_MS = 1000.0
NETWORK_TARGET_MS = 5000.0
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

# Tables the loader fills: their foreign keys, unique constraints and secondary indexes
# are dropped for the load and created again after it; their user triggers are disabled.
LOADED_TABLES = (
    "site",
    "app_user",
    "user_site",
    "program",
    "patient",
    "enrollment",
    "medication_order",
    "take_home_decision",
    "take_home_dispensing",
    "dose_entry",
    "therapy_session",
    "session_attendee",
    "drug_test",
    "drug_test_result",
    "aftercare_resource",
    "part2_consent",
    "referral",
    "referral_event",
    "part2_disclosure",
)


def log(message: str) -> None:
    print(message, flush=True)


# --- the data set (clinic.synthetic) ---------------------------------------------------------

# --- the scratch database ------------------------------------------------------------------


class Scratch:
    """A database of its own on the server: created, migrated, dropped at the end."""

    def __init__(self, server_url: str, label: str, reuse: str | None = None) -> None:
        from config import normalise_database_url

        self.admin_url = sa.make_url(normalise_database_url(server_url))
        self.name = reuse or f"clinic_bench_reports_{label}_{uuid.uuid4().hex[:8]}"
        self.url = self.admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created = False

    def create(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.created = True
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off'))

    def drop(self) -> None:
        if self.created:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.created = False
        self.admin.dispose()


def describe_loaded(url: str) -> dict:
    """The facts of a data set loaded by an earlier run (``--keep``, then ``--reuse``)."""
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    with engine.connect() as conn:
        rows = {
            t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()  # noqa: S608
            for t in LOADED_TABLES
        }
    engine.dispose()
    return {"rows": rows, "steps_s": {}, "load_s": None, "patients": rows["patient"],
            "sites": rows["site"]}  # fmt: skip


BENCH_PASSWORD = "bench synthetic accounts 15"  # noqa: S105 (the scratch database's accounts)
YEARS = 7


def load(url: str, patients: int, sites: int, seed: int) -> dict:
    """Fill the migrated database with ``clinic.synthetic.load`` (issue 15's loader, moved
    there from this file); return the row counts and the load time per step."""
    from clinic import create_app
    from clinic.extensions import db
    from clinic.synthetic import load as load_synthetic

    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        summary = load_synthetic(
            patients=patients, sites=sites, years=YEARS, seed=seed, today=TODAY,
            password=BENCH_PASSWORD, progress=False,
        )  # fmt: skip
        db.engine.dispose()
    for step, seconds in summary["seconds"].items():
        if step not in summary["tables"]:  # the steps; the tables are in the results file
            log(f"  {step:<44} {seconds:7.1f} s")
    log(f"  {'loaded (clinic.synthetic)':<44} {summary['total_seconds']:7.1f} s")
    return {"rows": summary["tables"], "steps_s": summary["seconds"],
            "load_s": summary["total_seconds"]}  # fmt: skip


# --- timing the reports --------------------------------------------------------------------


class Recorder:
    """Each SQL statement a compute sends (``before_cursor_execute``), with its time."""

    def __init__(self, engine) -> None:
        self.active = False
        self.statements: list[tuple[float, str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            started = conn.info["bench_started"].pop()
            self.statements.append((time.perf_counter() - started, statement, parameters))

    @contextlib.contextmanager
    def recording(self):
        self.statements = []
        self.active = True
        try:
            yield self
        finally:
            self.active = False


def report_filters(report, site_ids: tuple[int, ...]):
    from clinic.reports.filters import ReportFilters, last_thirty_days

    period = report.default_period or last_thirty_days
    date_from, date_to = period(TODAY)
    return ReportFilters(
        site_ids=site_ids,
        program_id=None,
        medications=None,
        date_from=date_from,
        date_to=date_to,
        on=TODAY,
        today=TODAY,
        single_site=len(site_ids) == 1,
    )


def measure_reports(
    url: str, sites: int, runs: int, only: list[str] | None, settings: dict[str, str] | None = None
) -> dict:
    """Per report and scope ("site": site 1; "network": every site): the times of ``runs``
    computes after one warm-up (ms), the statements of each compute, and the slowest
    statement of the slowest run. ``runs`` 0: one compute, for the statement count only.
    ``settings``: PostgreSQL settings of the app's connections (e.g. ``{"jit": "off"}``)."""
    from clinic import create_app
    from clinic.extensions import db
    from clinic.reports.core import REPORTS, run

    config = {"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url}
    if settings:
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_pre_ping": True,
            "hide_parameters": True,
            **connect_options(settings),
        }
    app = create_app(config)
    measured: dict[str, dict] = {}
    with app.app_context():
        recorder = Recorder(db.engine)
        reports = sorted(REPORTS.values(), key=lambda r: (r.order, r.slug))
        for report in reports:
            if only and report.slug not in only:
                continue
            entry = measured.setdefault(report.slug, {"title": report.title})
            for scope, site_ids in (("site", (1,)), ("network", tuple(range(1, sites + 1)))):
                filters = report_filters(report, site_ids)
                timings, counts, slowest = [], [], (0.0, "", None)
                try:
                    for n in range(runs + 1):
                        with recorder.recording():
                            t0 = time.perf_counter()
                            run(report, filters)  # as the app runs it
                            elapsed = (time.perf_counter() - t0) * 1000
                        db.session.remove()
                        counts.append(len(recorder.statements))
                        if n == 0 and runs:
                            continue  # the warm-up
                        timings.append(elapsed)
                        top = max(recorder.statements, default=(0.0, "", None))
                        if top[0] > slowest[0]:
                            slowest = top
                except Exception as error:  # a report in progress may fail
                    db.session.remove()
                    entry[scope] = {"error": f"{type(error).__name__}: {error}"[:500]}
                    log(f"  {report.slug:<14} {scope:<8} ERROR {entry[scope]['error'][:200]}")
                    continue
                entry[scope] = {
                    "median_ms": round(statistics.median(timings), 1) if timings else None,
                    "runs_ms": [round(t, 1) for t in timings],
                    "statements": counts,
                    "period": [filters.date_from.isoformat(), filters.date_to.isoformat()],
                    "slowest_statement_ms": round(slowest[0] * 1000, 1),
                    "_slowest": slowest,
                }
                if runs:
                    log(
                        f"  {report.slug:<14} {scope:<8} median {entry[scope]['median_ms']:9.1f}"
                        f" ms   statements {counts[-1]:>3}   slowest statement"
                        f" {slowest[0] * 1000:8.1f} ms"
                    )
        db.engine.dispose()
    return measured


def connect_options(settings: dict[str, str] | None) -> dict:
    """Engine options that give each connection these PostgreSQL settings."""
    if not settings:
        return {}
    return {"connect_args": {"options": " ".join(f"-c {k}={v}" for k, v in settings.items())}}


def explain(url: str, statement: str, parameters, settings: dict[str, str] | None = None) -> str:
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url), **connect_options(settings))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or ()
            ).all()
        return "\n".join(r[0] for r in rows)
    finally:
        engine.dispose()


def machine_facts(url: str) -> dict:
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        settings = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")
        }
    engine.dispose()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": version,
        "postgresql_settings": settings,
        "load_average": " ".join(f"{n:.1f}" for n in os.getloadavg()),
    }


# --- results -------------------------------------------------------------------------------


def summarise(measured: dict, tiny: dict | None) -> list[dict]:
    rows = []
    for slug, entry in measured.items():
        site, network = entry.get("site", {}), entry.get("network", {})
        counts = {
            "site": site.get("statements"),
            "network": network.get("statements"),
        }
        if tiny and slug in tiny:
            counts["tiny_site"] = tiny[slug].get("site", {}).get("statements")
            counts["tiny_network"] = tiny[slug].get("network", {}).get("statements")
        distinct = {c for runs in counts.values() if runs for c in runs}
        error = site.get("error") or network.get("error")
        if tiny and slug in tiny:
            error = error or tiny[slug].get("site", {}).get("error")
            error = error or tiny[slug].get("network", {}).get("error")
        site_met = site.get("median_ms") is not None and site["median_ms"] < SINGLE_SITE_TARGET_MS
        net_met = network.get("median_ms") is not None and network["median_ms"] < NETWORK_TARGET_MS
        rows.append(
            {
                "slug": slug,
                "title": entry["title"],
                "period": (site or network).get("period"),
                "site_ms": site.get("median_ms"),
                "network_ms": network.get("median_ms"),
                "site_runs_ms": site.get("runs_ms"),
                "network_runs_ms": network.get("runs_ms"),
                "statements": sorted(distinct)[0] if len(distinct) == 1 else sorted(distinct),
                "statement_counts": counts,
                "statements_constant": len(distinct) == 1,
                "site_slowest_statement_ms": site.get("slowest_statement_ms"),
                "network_slowest_statement_ms": network.get("slowest_statement_ms"),
                "site_target_met": site_met,
                "network_target_met": net_met,
                "error": error,
            }
        )
    return rows


def fmt_ms(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| Report | One site (ms) | Network (ms) | Statements | Targets met |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "yes" if r["site_target_met"] and r["network_target_met"] else "**no**"
        if r["error"]:
            met = f"**error**: {r['error'][:120]}"
        statements = r["statements"]
        if not r["statements_constant"]:
            statements = f"**differ: {statements}**"
        lines.append(
            f"| {r['slug']} | {fmt_ms(r['site_ms'])} | {fmt_ms(r['network_ms'])} |"
            f" {statements} | {met} |"
        )
    return lines


def write_results(facts: dict, dataset: dict, rows: list[dict], args, explains: list) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"-{k}-{v}".replace("_", "-").lower() for k, v in args.settings.items())
    base = RESULTS / f"reports-postgresql{suffix}"
    payload = {
        "benchmark": "bench/reports.py",
        "machine": facts,
        "today": TODAY.isoformat(),
        "seed": args.seed,
        "runs": args.runs,
        "app_settings": args.settings,
        "targets_ms": {"site": SINGLE_SITE_TARGET_MS, "network": NETWORK_TARGET_MS},
        "dataset": dataset,
        "reports": rows,
    }
    base.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    rows_loaded = dataset["rows"]
    loaded = (
        "loaded by an earlier run (--reuse)"
        if dataset["load_s"] is None
        else f"loaded in {dataset['load_s']:.0f} s"
    )
    lines = [
        "# Reports benchmark (PostgreSQL)",
        "",
        f"Run {facts['date']} by `bench/reports.py` on {facts['cpus']} CPUs,"
        f" PostgreSQL {facts['postgresql']} (shared_buffers"
        f" {facts['postgresql_settings']['shared_buffers']}, work_mem"
        f" {facts['postgresql_settings']['work_mem']}, jit {facts['postgresql_settings']['jit']}),"
        f" Python {facts['python']}; load average {facts['load_average']} (2 cores shared with"
        " other work: times are noisy).",
        "",
        "The app's connections ran with "
        + (", ".join(f"`{k} = {v}`" for k, v in args.settings.items()) or "the server's settings")
        + ".",
        "",
        f"Data set: {dataset['patients']:,} patients at {dataset['sites']} sites,"
        f" {rows_loaded['dose_entry']:,} dose rows, {rows_loaded['enrollment']:,} enrollments,"
        f" {rows_loaded['therapy_session']:,} sessions, {rows_loaded['drug_test']:,} drug"
        f" tests; {loaded}. Today is {TODAY.isoformat()}; each"
        " report with its default period; one site is site 1.",
        "",
        f"Median of {args.runs} computes after one warm-up; targets: one site under"
        f" {SINGLE_SITE_TARGET_MS:,.0f} ms, the network under {NETWORK_TARGET_MS:,.0f} ms."
        " Statements: SQL statements per compute, the same for one site, the network"
        + (
            f" and a tiny data set ({args.tiny_patients} patients)."
            if args.tiny_patients
            else " (no tiny data set this run)."
        ),
        "",
        *table_lines(rows),
        "",
        "Rows loaded: " + ", ".join(f"{t} {n:,}" for t, n in rows_loaded.items() if n) + ".",
        "",
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    explain_file = RESULTS / f"reports-postgresql{suffix}-explain.md"
    explain_file.unlink(missing_ok=True)  # an earlier run's plans
    if explains:
        text = ["# Slowest statement of each report over its target", ""]
        for slug, scope, ms, statement, plan in explains:
            text += [
                f"## {slug} ({scope}): {ms:,.1f} ms",
                "",
                "```sql",
                statement.strip(),
                "```",
                "",
                "```",
                plan,
                "```",
                "",
            ]
        explain_file.write_text("\n".join(text))
    return base


# --- main ----------------------------------------------------------------------------------


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="a PostgreSQL server (any database on it): the scratch databases are made there"
        " (default $BENCH_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed computes after a warm-up")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--tiny-patients",
        type=int,
        default=200,
        help="patients of the tiny data set the statement counts are compared with (0: skip)",
    )
    parser.add_argument("--report", action="append", help="only this report (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="time the reports on a network data set kept by an earlier --keep run (no load)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the app's connections, e.g. --set jit=off (repeatable;"
        " the results file is named after them)",
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="EXPLAIN every report's slowest statement"
    )
    args = parser.parse_args()
    if not args.server_url.startswith(("postgres://", "postgresql")):
        parser.error("the reports benchmark runs on PostgreSQL: give a postgresql:// URL")
    try:
        args.settings = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        parser.error("--set takes NAME=VALUE")
    if args.reuse and not args.reuse.startswith("clinic_bench_reports_"):
        parser.error("--reuse takes a database this benchmark made (clinic_bench_reports_...)")
    # Ctrl-C and a kill both end in the ``finally`` that drops the scratch databases (also
    # when started in the background, where SIGINT would otherwise be ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    scratches: list[Scratch] = []
    try:
        tiny = None
        if args.tiny_patients:
            scratch = Scratch(args.server_url, "tiny")
            scratches.append(scratch)
            log(f"tiny data set: {args.tiny_patients} patients in {scratch.name}")
            scratch.create()
            migrate(scratch.url)
            load(scratch.url, args.tiny_patients, args.sites, args.seed)
            tiny = measure_reports(scratch.url, args.sites, 0, args.report)
        scratch = Scratch(args.server_url, "net", reuse=args.reuse)
        scratches.append(scratch)
        if args.reuse:
            log(f"network data set: the kept {scratch.name}")
            dataset = describe_loaded(scratch.url)
        else:
            log(f"network data set: {args.patients:,} patients in {scratch.name}")
            t0 = time.perf_counter()
            scratch.create()
            migrate(scratch.url)
            log(f"  {'migrated':<34} {time.perf_counter() - t0:7.1f} s")
            dataset = load(scratch.url, args.patients, args.sites, args.seed)
            dataset.update(patients=args.patients, sites=args.sites)
        log(f"{dataset['rows']['dose_entry']:,} dose rows")
        load_at_start = " ".join(f"{n:.1f}" for n in os.getloadavg())
        measured = measure_reports(
            scratch.url, dataset["sites"], args.runs, args.report, settings=args.settings
        )
        rows = summarise(measured, tiny)
        explains = []
        for row in rows:
            for scope, met in (("site", "site_target_met"), ("network", "network_target_met")):
                entry = measured[row["slug"]].get(scope, {})
                if "_slowest" in entry and (args.explain_all or not row[met]):
                    ms, statement, parameters = entry["_slowest"]
                    if statement:
                        try:
                            plan = explain(
                                scratch.url, statement, parameters, settings=args.settings
                            )
                        except Exception as error:
                            plan = f"EXPLAIN failed: {error}"
                        explains.append((row["slug"], scope, ms * 1000, statement, plan))
        facts = machine_facts(scratch.url)
        facts["load_average"] = f"{load_at_start} at the start, {facts['load_average']} at the end"
        base = write_results(facts, dataset, rows, args, explains)
        print()
        print("\n".join(table_lines(rows)))
        print(f"\nresults: {base}.md, {base}.json")
        failed = any(
            r["error"]
            or not r["statements_constant"]
            or not (r["site_target_met"] and r["network_target_met"])
            for r in rows
        )
        return 1 if failed else 0
    finally:
        for scratch in scratches:
            if args.keep or scratch.name == args.reuse:
                log(f"kept {scratch.name}: --reuse {scratch.name}")
                scratch.admin.dispose()
            else:
                scratch.drop()


if __name__ == "__main__":
    sys.exit(main())

"""The results of ``bench/load.py``: ``bench/results/load-postgresql.md`` and ``.json``
(machine, PostgreSQL version, date, data set, the run's figures and checks)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import sqlalchemy as sa

RESULTS = Path(__file__).resolve().parent / "results"


def machine_facts(database_url: str) -> dict:
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(database_url))
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
            settings = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("shared_buffers", "synchronous_commit", "max_connections")
            }
    finally:
        engine.dispose()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": version,
        "postgresql_settings": settings,
        "load_average_after": " ".join(f"{n:.2f}" for n in os.getloadavg()),
    }


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def markdown(run: dict) -> str:
    r = run["result"]
    facts = run["machine"]
    lines = [
        "# HTTP load: the dosing window under gunicorn (bench/load.py)",
        "",
        f"{run['date']}; {facts['cpus']} cores ({facts['platform']}), PostgreSQL"
        f" {facts['postgresql']}, load average {facts['load_average_after']} after the run;"
        f" command `bench/load.py {' '.join(run['argv'])}`.",
        f"Data: {json.dumps(run['dataset'])}; site {r['site']}, dosing day {r['today']}.",
        f"{r['users']} nurses for {r['seconds']} s, gunicorn with {r['gunicorn_workers']} sync"
        " workers, production configuration behind one trusted proxy (the client).",
        "",
        f"- Throughput: **{_fmt(r['throughput_rps'])} requests/s** over"
        f" {_fmt(r['measured_seconds'])} s ({_fmt(r['requests'])} requests of the dosing loop);"
        f" {_fmt(r['doses_recorded'])} doses recorded ({_fmt(r['doses_per_s'])}/s).",
        f"- Lost doses: **{r['lost']}**; doubled: **{r['doubled']}**; unexpected rows:"
        f" **{r['unexpected']}**; 5xx answers: **{r['errors']['http_5xx']}**; unhandled"
        f" exceptions: **{len(r['errors']['unhandled_exceptions'])}**; audit chain written"
        f" under load linear: **{'yes' if r['audit_chain']['linear'] else 'NO'}**"
        f" ({_fmt(r['audit_chain']['events'])} events).",
        f"- Errors by kind: {json.dumps(r['errors']['by_kind']) or '{}'}.",
        f"- Posts of the dose form: {json.dumps(r['outcomes']['posts'])}; sent as"
        f" {json.dumps(r['outcomes']['posts_by_how'])}; forms already dosed or refused when"
        f" opened: {json.dumps(r['outcomes']['forms'])}; refusals:"
        f" {json.dumps(r['outcomes']['refusal_messages'], ensure_ascii=False)}.",
        "",
        "| Request | count | p50 ms | p95 ms | max ms | in the app: p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, figures in r["by_kind"].items():
        c, s = figures["client"], figures["server"]
        lines.append(
            f"| {kind} | {_fmt(c.get('count'))} | {_fmt(c.get('p50_ms'))} |"
            f" {_fmt(c.get('p95_ms'))} | {_fmt(c.get('max_ms'))} | {_fmt(s.get('p50_ms'))} |"
            f" {_fmt(s.get('p95_ms'))} |"
        )
    lines += [
        "",
        "Client times include the wait for a free worker (more nurses than workers); the"
        " app's are its request log's `duration_ms`. The client, gunicorn and PostgreSQL"
        " share the machine's cores.",
        "",
        f"Checks: **{'passed' if r['ok'] else 'FAILED'}**.",
    ]
    if r["ledger"]["examples"] or r["errors"]["unhandled_exceptions"]:
        lines += ["", "```", json.dumps(r["ledger"]["examples"], indent=1, default=str)]
        lines += [json.dumps(r["errors"]["unhandled_exceptions"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def write_results(result: dict, dataset: dict, database_url: str, argv: list[str]) -> Path:
    """Write ``load-postgresql.md`` and ``.json``; returns their path without suffix."""
    run = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": argv,
        "machine": machine_facts(database_url),
        "dataset": dataset,
        "result": result,
    }
    RESULTS.mkdir(exist_ok=True)
    base = RESULTS / "load-postgresql"
    base.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str) + "\n")
    base.with_suffix(".md").write_text(markdown(run))
    return base

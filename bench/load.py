"""Benchmark: the dosing window over HTTP under gunicorn — N nurses (20) recording doses at
once for S seconds (60), then the ledger checked: no dose lost, none doubled (issue 15).

    .venv/bin/python bench/load.py                     # a scratch database of its own
    .venv/bin/python bench/load.py --users 20 --seconds 60 --patients 10000
    .venv/bin/python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/clinic_x

``run_load(database_url)`` (also called by ``bench/pages.py``) runs the app with gunicorn
on ``127.0.0.1`` (a free port; 2 x cores + 1 sync workers) on the given, loaded database,
makes N nurse accounts of its own at the site with the most patients due today, and
drives them with locust (``bench/load_locustfile.py``: sign in through ``/login``, then
screen -> dose form -> post, as fast as the server answers; the same patient is often
picked by two nurses at once, and some forms are sent twice). Then it reads the client's
and the server's logs and checks the database (``bench/load_check.py``). It writes doses
and accounts into that database: give it a benchmark's database, never one in use.

The CLI without ``--database-url`` makes ``clinic_bench_load_<random>`` on the server of
``BENCH_DATABASE_URL`` (default the local PostgreSQL), migrates it, fills it with
``clinic.synthetic.load`` (``--patients``, default 10,000 — the size S — at one site in
America/Chicago, seed 15, today's date there), runs the load and drops the database at
the end, also on an error or Ctrl-C. Writes
``bench/results/load-postgresql.md`` and ``.json``; exit status 1 when a dose was lost or
doubled, a row is unexpected, an answer was a 5xx (or a 4xx other than a race's 409, or
none), the server raised, or the audit chain written under load is not one line.

The app runs with the production configuration (``CLINIC_ENV=production``: Redis rate
limits, ``Secure`` ``__Host-`` session cookie, HSTS, default argon2 profile) as it is
deployed behind a TLS-terminating proxy: ``PROXY_FIX_X_FOR=1``, and the load client plays
that proxy (``X-Forwarded-Proto: https``, one ``X-Forwarded-For`` address per nurse, so
the per-address sign-in limit counts each nurse's workstation). Only ``SECRET_KEY`` (random
per run), ``AUDIT_HMAC_KEYS`` (``$AUDIT_HMAC_KEYS``, else random per run) and
``DATABASE_URL`` are added.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench import load_check
from bench.load_report import write_results
from bench.scratch import DEFAULT_SERVER, Scratch, is_postgresql, migrate, stop_on_signals

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "bench" / "load_locustfile.py"
REDIS = ("127.0.0.1", 6379)
RESEND_SHARE = 0.05
DOUBLE_CLICK_SHARE = 0.05
STARTUP_SECONDS = 180
# Time allowed for every nurse to sign in (argon2, 64 MiB each) before the dosing starts.
SIGN_IN_SECONDS = 180


def _engine(database_url: str) -> sa.Engine:
    from config import normalise_database_url

    return sa.create_engine(normalise_database_url(database_url))


def choose_site(
    conn: sa.Connection, site_code: str | None, today: dt.date | None
) -> tuple[str, dt.date]:
    """(code, local date) of ``site_code``, or of the site with the most patients with a
    daily or split order (the busiest dosing window) among those where it is ``today``
    now. ValueError when there is no such site, or ``site_code``'s date is not ``today``:
    the server records doses on the real date of the site."""
    from zoneinfo import ZoneInfo

    rows = conn.execute(
        sa.text(
            "SELECT s.code, s.timezone, COUNT(o.id) AS orders FROM site s"
            " LEFT JOIN patient p ON p.site_id = s.id LEFT JOIN medication_order o"
            " ON o.patient_id = p.id AND o.schedule IN ('daily', 'split') AND o.end_on IS NULL"
            " GROUP BY s.code, s.timezone ORDER BY orders DESC, s.code"
        )
    ).all()
    for code, timezone, orders in rows:
        local = dt.datetime.now(ZoneInfo(timezone)).date()
        if site_code is not None and code != site_code:
            continue
        if today is not None and local != today:
            if site_code is not None:
                raise ValueError(f"it is {local} at site {code}, not {today}")
            continue
        if not orders:
            raise ValueError(f"no patient has a daily order at site {code}: load the data")
        return code, local
    raise ValueError(
        f"no site {site_code!r}" if site_code else f"no site with daily orders is at {today}"
    )


def make_nurses(database_url: str, site_code: str, users: int) -> list[dict]:
    """``users`` clinician accounts who may dispense, at the site, made for this run
    (``load-<6 hex>-nNN``, a random password each, the production argon2 profile), each
    with a workstation address of its own (10.15.x.y)."""
    from clinic import create_app
    from clinic.accounts.services import create_user
    from clinic.extensions import db
    from clinic.security import Role
    from clinic.sites.services import site_by_code

    run = secrets.token_hex(3)
    app = create_app(
        {
            "CLINIC_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PASSWORD_HASH_PROFILE": "default",
        }
    )
    accounts = []
    with app.app_context():
        site = site_by_code(site_code)
        for n in range(1, users + 1):
            password = secrets.token_urlsafe(18)
            username = f"load-{run}-n{n:02d}"
            create_user(
                actor=None,
                username=username,
                full_name=f"Load Nurse {n:02d}",
                role=Role.CLINICIAN,
                password=password,
                sites=[site],
                may_dispense=True,
            )
            address = f"10.15.{n // 250}.{n % 250 + 1}"
            accounts.append({"username": username, "password": password, "address": address})
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return accounts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def server_environment(database_url: str, instance: Path) -> dict[str, str]:
    """The production configuration behind one trusted proxy (module docstring)."""
    from config import normalise_database_url

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINIC_", "FLASK_"))}
    env.update(
        CLINIC_ENV="production",
        CLINIC_INSTANCE_PATH=str(instance),
        DATABASE_URL=normalise_database_url(database_url),
        SECRET_KEY=secrets.token_hex(32),
        # The caller's keys, so the chain stays verifiable with them; else a key per run.
        AUDIT_HMAC_KEYS=os.environ.get("AUDIT_HMAC_KEYS")
        or f"load{secrets.token_hex(2)}:{secrets.token_hex(32)}",
        # Likewise the MFA secrets' key (the nurses use none; required in production).
        MFA_ENCRYPTION_KEYS=os.environ.get("MFA_ENCRYPTION_KEYS")
        or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        PROXY_FIX_X_FOR="1",
        ALLOWED_HOSTS="127.0.0.1",  # required in production; the nurses use the address
        LOG_LEVEL="INFO",
    )
    return env


@contextlib.contextmanager
def gunicorn(database_url: str, workdir: Path, workers: int):
    """gunicorn serving ``wsgi:app`` on 127.0.0.1 (a free port) until the block ends;
    yields (base URL, path of its stderr: the app's JSON log)."""
    if not _redis_answers():
        raise RuntimeError("Redis does not answer at 127.0.0.1:6379 (production rate limits)")
    port = _free_port()
    log_path = workdir / "server.log"
    instance = workdir / "instance"
    instance.mkdir()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        "--timeout=30",
        "--graceful-timeout=10",
        "--no-control-socket",  # its default path is shared by every gunicorn of the user
        "wsgi:app",
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(  # noqa: S603 (our own command line)
            command,
            cwd=ROOT,
            env=server_environment(database_url, instance),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # Each worker imports the app; on a busy 2-core machine that alone takes a minute.
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({server.returncode}): see {log_path}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer /healthz in {STARTUP_SECONDS} s")
            time.sleep(0.3)
        yield base, log_path
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _tails(workdir: Path) -> str:
    """The last lines of the run's logs, for an error message."""
    found = []
    for name in ("locust.log", "server.log"):
        path = workdir / name
        if path.exists():
            lines = path.read_text(errors="replace").splitlines()[-15:]
            found.append(f"--- {name}:\n" + "\n".join(lines))
    return "\n".join(found)


def drive(base: str, workdir: Path, accounts: list[dict], seconds: int, pick_from: int) -> Path:
    """Run locust headless against ``base`` with one user per account: all sign in, then
    dose for ``seconds``. Returns the path of the client's JSON-lines log."""
    client_log = workdir / "client.jsonl"
    config = workdir / "locust.json"
    config.write_text(
        json.dumps(
            {
                "accounts": accounts,
                "seconds": seconds,
                "log": str(client_log),
                "pick_from": pick_from,
                "resend_share": RESEND_SHARE,
                "double_click_share": DOUBLE_CLICK_SHARE,
                "seed": 15,
            }
        )
    )
    users = len(accounts)
    command = [
        str(Path(sys.executable).parent / "locust"),
        f"--locustfile={LOCUSTFILE}",
        "--headless",
        f"--users={users}",
        f"--spawn-rate={users}",
        # A bound only: the nurses stop themselves ``seconds`` after the last signed in.
        f"--run-time={seconds + SIGN_IN_SECONDS}s",
        f"--host={base}",
        "--stop-timeout=30",  # each nurse finishes the dose in hand
        "--only-summary",
        "--loglevel=WARNING",
        "--exit-code-on-error=0",
    ]
    with (workdir / "locust.log").open("wb") as out:
        subprocess.run(  # noqa: S603 (our own command line)
            command,
            cwd=workdir,
            env={**os.environ, "LOAD_CONFIG": str(config)},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=seconds + SIGN_IN_SECONDS + 120,
            check=True,
        )
    if not client_log.exists():
        raise RuntimeError("locust wrote no requests: " + _tails(workdir))
    return client_log


def run_load(
    database_url: str,
    *,
    users: int = 20,
    seconds: int = 60,
    today: dt.date | None = None,
    site: str | None = None,
    pick_from: int | None = None,
    workers: int | None = None,
    log_dir: Path | None = None,
) -> dict:
    """Run ``users`` nurses for ``seconds`` against the app under gunicorn on the loaded
    PostgreSQL database ``database_url``; return the run's figures and checks:

    ``throughput_rps`` (requests of the dosing loop a second), ``doses_recorded`` (rows
    written), ``by_kind`` (per kind of request: client and server p50/p95/max in ms),
    ``errors`` (by kind and status; ``http_5xx``; the server's unhandled exceptions),
    ``outcomes`` (what the nurses were told), ``lost``, ``doubled``, ``unexpected``,
    ``audit_chain``, ``gunicorn_workers``, ``site``, ``today``, ``ok``.

    ``today``: the data set's dosing day; it must be the site's real local date (the
    server records doses on it), else ValueError. ``site``: a site code (default: the one
    with the most daily orders where it is ``today``). ``pick_from``: how many of the
    first dose-able rows of the screen a nurse picks from (default 2 x users: often the
    same patient as another nurse).
    ``log_dir``: where to keep the client's, the server's and locust's logs (default: not
    kept).
    Writes into the database (accounts, doses, audit events): a benchmark's, never one
    in use. Raises RuntimeError when gunicorn, Redis or locust fail."""
    workers = workers or 2 * (os.cpu_count() or 1) + 1
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            code, local_today = choose_site(conn, site, today)
            baseline = {
                "dose_id": conn.scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM dose_entry")),
                "audit_seq": conn.scalar(sa.text("SELECT COALESCE(MAX(seq), 0) FROM audit_event")),
            }  # fmt: skip
        accounts = make_nurses(database_url, code, users)
        with engine.connect() as conn:  # the accounts' audit events are not the run's
            baseline["audit_seq"] = conn.scalar(sa.text("SELECT MAX(seq) FROM audit_event"))
        workdir = Path(tempfile.mkdtemp(prefix="clinic_bench_load_"))
        try:
            with gunicorn(database_url, workdir, workers) as (base, server_log):
                client_log = drive(base, workdir, accounts, seconds, pick_from or 2 * users)
            entries = load_check.read_client_log(client_log)
            server, exceptions = load_check.read_server_log(server_log)
            if not any(e["kind"] in load_check.LOOP_KINDS for e in entries):
                raise RuntimeError("no nurse got to the dosing screen: " + _tails(workdir))
        finally:
            if log_dir is not None:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                for name in ("client.jsonl", "server.log", "locust.log"):
                    if (workdir / name).exists():
                        shutil.copy(workdir / name, Path(log_dir) / name)
            shutil.rmtree(workdir, ignore_errors=True)
        with engine.connect() as conn:
            ledger = load_check.check_ledger(conn, entries, baseline)
            chain = load_check.check_audit_chain(conn, baseline["audit_seq"])
    finally:
        engine.dispose()
    timing = load_check.timings(entries, server)
    errors = load_check.errors(entries, exceptions)
    result = {
        "users": users,
        "seconds": seconds,
        "gunicorn_workers": workers,
        "site": code,
        "today": local_today.isoformat(),
        "throughput_rps": timing["throughput_rps"],
        "measured_seconds": timing["seconds"],
        "requests": timing["requests"],
        "doses_recorded": ledger["rows_written"],
        "doses_per_s": round(ledger["rows_written"] / max(timing["seconds"], 0.1), 2),
        "by_kind": timing["by_kind"],
        "errors": errors,
        "outcomes": load_check.outcomes(entries),
        "lost": ledger["lost"],
        "doubled": ledger["doubled"],
        "unexpected": ledger["unexpected"],
        "ledger": ledger,
        "audit_chain": chain,
    }
    result["ok"] = not (
        result["lost"]
        or result["doubled"]
        or result["unexpected"]
        or errors["http_5xx"]
        or errors["by_kind"]  # any other unwanted answer too: 4xx but 409, none at all
        or errors["unhandled_exceptions"]
        or not chain["linear"]
    )
    return result


# --- the command line ----------------------------------------------------------------------


def fill(url: str, patients: int) -> dict:
    """Fill the scratch database with the synthetic loader: ``patients`` at one site
    (America/Chicago), the S size's years of history, seed 15, today's date there."""
    from zoneinfo import ZoneInfo

    from clinic import create_app
    from clinic.extensions import db
    from clinic.synthetic import SIZES, load

    years = SIZES["S"].years
    today = dt.datetime.now(ZoneInfo("America/Chicago")).date()
    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        summary = load(patients=patients, sites=1, years=years, seed=15, today=today,
                       password=secrets.token_urlsafe(18), force=False, progress=False)  # fmt: skip
        db.session.remove()
        db.engine.dispose()
    return {
        "loader": "clinic.synthetic",
        "patients": patients,
        "sites": 1,
        "years": years,
        "today": today.isoformat(),
        "dosable_today": len(summary.get("dosable_patients", [])),
        "dose_rows": summary.get("tables", {}).get("dose_entry"),
        "load_seconds": round(summary.get("total_seconds", 0.0), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", help="a loaded PostgreSQL database to run on (it is written to)"
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="without --database-url: the PostgreSQL server of the scratch database"
        " ($BENCH_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--patients", type=int, default=10_000, help="patients of the scratch data set (S)"
    )
    parser.add_argument("--site", help="site code (default: the most daily orders)")
    parser.add_argument("--pick-from", type=int, help="first dose-able rows picked from")
    parser.add_argument("--logs", type=Path, help="keep the client's and server's logs here")
    args = parser.parse_args()
    for url in (args.database_url, args.server_url):
        if url and not is_postgresql(url):
            parser.error("the load test runs on PostgreSQL: give a postgresql:// URL")
    if not 1 <= args.users <= 200 or not 1 <= args.seconds <= 600:
        parser.error("--users 1-200 and --seconds 1-600 (a bounded run)")
    stop_on_signals()
    dataset: dict = {"database": "given"}
    scratch = None
    try:
        url = args.database_url
        if url is None:
            scratch = Scratch(args.server_url, "load")
            print(f"scratch database {scratch.name}", flush=True)
            scratch.create()
            migrate(scratch.url)
            url = scratch.url
            dataset = fill(url, args.patients)
            print(f"loaded {dataset}", flush=True)
        print(f"{args.users} nurses for {args.seconds} s ...", flush=True)
        result = run_load(
            url,
            users=args.users,
            seconds=args.seconds,
            site=args.site,
            pick_from=args.pick_from,
            log_dir=args.logs,
        )
        base = write_results(result, dataset, url, sys.argv[1:])
        print(Path(f"{base}.md").read_text())
        return 0 if result["ok"] else 1
    finally:
        if scratch is not None:
            scratch.drop()
            print(f"dropped {scratch.name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

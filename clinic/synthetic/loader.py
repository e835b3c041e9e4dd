"""``clinic.synthetic.load``: refuse or place the data (ids, codes), generate it table by
table and write it through ``bulk.Bulk`` with a progress bar per table."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterable, Iterator

import click
import sqlalchemy as sa

from clinic.accounts.passwords import hash_password
from clinic.audit.keys import audit_keys
from clinic.audit.models import GENESIS_HASH
from clinic.extensions import db
from clinic.synthetic import SyntheticRefused, care, consents, ledger, plan, structure, trail
from clinic.synthetic.bulk import Bulk

COLUMNS = {
    **structure.COLUMNS,
    **plan.COLUMNS,
    **consents.COLUMNS,
    **care.COLUMNS,
    **ledger.COLUMNS,
    **trail.COLUMNS,
}
REAL_DATA_TABLES = ("patient", "app_user", "audit_event")
PLAN_TABLES = (
    "site", "app_user", "user_site", "program", "site_closure", "counseling_note_reader",
    "aftercare_resource", "patient", "patient_name_token", "enrollment", "care_plan_review",
    "enrollment_correction", "medication_order", "take_home_decision", "take_home_review",
    "medication_hold", "patient_flag", "flag_acknowledgement", "support_person",
    "disclosure_restriction", "part2_consent", "referral", "referral_event", "part2_disclosure",
)  # fmt: skip
CARE_TABLES = (
    "therapy_session", "session_attendee", "progress_note", "note_addendum", "counseling_note",
    "random_test_draw", "random_test_selection", "drug_test", "drug_test_result",
)  # fmt: skip
LEDGER_TABLES = ("take_home_dispensing", "bottle_return", "diversion_incident", "call_back",
                 "missed_dose_review")  # fmt: skip
KEPT = ("app_user", "user_site", "patient")  # the audit trail reads them last


def _check_sizes(patients: int, sites: int, years: int) -> None:
    if not 1 <= sites <= 999:
        raise ValueError("sites: 1 to 999")
    if not sites <= patients <= 10_000_000:
        raise ValueError("patients: at least one a site, at most 10,000,000")
    if not 1 <= years <= 30:
        raise ValueError("years: 1 to 30")


def _placement(conn: sa.Connection, force: bool) -> tuple[dict[str, int], int, set]:
    """The largest id of each table and the first free site number; refuses a database
    holding real data unless forced."""
    found = {
        t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar()  # noqa: S608
        for t in REAL_DATA_TABLES
    }
    if any(found.values()) and not force:
        held = ", ".join(f"{n:,} {t} rows" for t, n in found.items() if n)
        raise SyntheticRefused(
            f"the database holds data ({held}): seed-synthetic loads only into an empty "
            "database; --force loads alongside it"
        )
    bases = {}
    for table in db.metadata.sorted_tables:
        if "id" in table.c and table.c.id.primary_key:
            bases[table.name] = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
    codes = set(conn.execute(sa.text("SELECT code FROM site")).scalars())
    usernames = set(conn.execute(sa.text("SELECT username FROM app_user")).scalars())
    # Names and birthdays already registered: a synthetic twin is marked as confirmed.
    taken = list(
        conn.execute(
            sa.text(
                "SELECT last_key, first_key, date_of_birth FROM patient"
                " WHERE NOT duplicate_confirmed AND entered_in_error_at IS NULL"
            )
        ).all()
    )
    number = 1
    while f"S{number:02d}" in codes or f"s{number}-admin" in usernames:
        number += 1
    return bases, number, taken


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _chain_head(conn: sa.Connection) -> tuple[int, str]:
    row = conn.execute(sa.text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1"))
    head = row.one_or_none()
    return (head[0], head[1]) if head else (0, GENESIS_HASH)


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self.tables: dict[str, int] = {}

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0
        if self.enabled:
            click.echo(f"  {label:<40} {self.seconds[label]:8.1f} s", err=True)

    def write(self, bulk: Bulk, table: str, rows: Iterable[tuple], length: int) -> None:
        t0 = time.perf_counter()
        if self.enabled:
            with click.progressbar(length=max(length, 1), label=f"  {table:<24}",
                                   file=sys.stderr, show_pos=True) as bar:  # fmt: skip
                count = bulk.write(table, COLUMNS[table], rows, bar.update)
        else:
            count = bulk.write(table, COLUMNS[table], rows, lambda n: None)
        self.tables[table] = self.tables.get(table, 0) + count
        self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - t0


def run(*, patients, sites, years, seed, today, password, force, progress) -> dict:
    _check_sizes(patients, sites, years)
    if not password:
        raise ValueError("a password for the synthetic accounts is required")
    started = time.perf_counter()
    out = Progress(progress)
    db.session.remove()  # no transaction of this thread may hold the tables the load locks
    engine = db.engine
    with engine.connect() as conn:
        bases, first_number, taken = _placement(conn, force)
        seq, prev = _chain_head(conn)
        conn.commit()
        keys = audit_keys()
        start = today - dt.timedelta(days=365 * years)
        with out.step("plan (Python)"):
            password_hash = hash_password(password)  # once: argon2 is slow on purpose
            ids = structure.Ids(bases)
            taken = {(lk, fk, _date(born)) for lk, fk, born in taken}
            plan_ = _plan(ids, seed, today, start, patients, sites, first_number, password_hash,
                          taken)  # fmt: skip
        bulk = Bulk.for_connection(conn)
        try:
            with out.step("prepare (indexes, constraints, triggers off)"):
                bulk.prepare()
            _write_all(bulk, out, plan_, keys, seq, prev, bases)
            bulk.finish(out.step)
        except BaseException:
            bulk.abort()
            raise
        with out.step("ANALYZE" if conn.dialect.name == "sqlite" else "VACUUM ANALYZE"):
            bulk.analyze()
    return {
        "tables": out.tables,
        "seconds": out.seconds,
        "total_seconds": time.perf_counter() - started,
        "today": today,
        "engine": conn.dialect.name,
        "accounts": plan_.accounts,
        "seed": seed,
        "dosable_patients": plan_.active_daily,
    }


def _plan(ids, seed, today, start, patients, sites, first_number, password_hash,
          taken) -> plan.Plan:  # fmt: skip
    rows: dict[str, list[tuple]] = {t: [] for t in COLUMNS}
    infos, accounts = structure.site_rows(
        rows, ids, sites=sites, first_number=first_number,
        patients=patients, password_hash=password_hash, start=start, today=today,
    )  # fmt: skip
    plan_ = plan.Plan(ids=ids, seed=seed, today=today, start=start, sites=infos, resources=[])
    plan_.resources = structure.resource_rows(rows, ids, plan_.rng, infos, start)
    for table, values in rows.items():
        plan_.rows[table].extend(values)
    plan_.accounts = accounts
    plan_.identities |= taken
    plan_.add_patients(patients)
    return plan_


def _write_all(bulk: Bulk, out: Progress, plan_, keys, seq: int, prev: str, bases) -> None:
    rows = plan_.rows
    for table in PLAN_TABLES:
        out.write(bulk, table, rows[table], len(rows[table]))
        if table not in KEPT:
            rows[table] = []
    with out.step("sessions and drug tests (Python)"):
        care_ = care.Care(plan_)
        care_.add()
        care_.finish_draws()
    for table in CARE_TABLES:
        out.write(bulk, table, rows[table], len(rows[table]))
        rows[table] = []
    today = plan_.today
    expected = sum(
        ((min(o.end or today, today) - o.start).days + 1) // (28 if o.form == "injection" else 1)
        for o in plan_.orders
    )
    stream = ledger.Ledger(plan_, bases.get("dose_entry", 0))
    out.write(bulk, "dose_entry", stream.rows(), expected)
    for table in LEDGER_TABLES:
        out.write(bulk, table, rows[table], len(rows[table]))
        rows[table] = []
    trail.add_sign_ins(plan_)
    trail.add_break_glass(plan_)
    out.write(bulk, "break_glass_grant", rows["break_glass_grant"], len(rows["break_glass_grant"]))
    events = trail.chained(plan_, first_id=bases.get("audit_event", 0), seq=seq, prev=prev,
                           key_id=keys.current_id, secret=keys.current_secret)  # fmt: skip
    out.write(bulk, "audit_event", events, len(plan_.events))
    last_seq, last_hash = plan_.chain_end
    # Both drivers' cursors; the values are an int and 64 hex digits of our own.
    bulk.conn.connection.driver_connection.cursor().execute(
        f"UPDATE audit_chain_head SET last_seq = {int(last_seq)},"  # noqa: S608
        f" last_hash = '{last_hash}' WHERE id = 1"
    )

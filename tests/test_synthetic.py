"""``flask seed-synthetic`` (issue 15): every table filled, the database's rules back on
after the load, the audit chain intact, the same seed giving the same rows, real data
refused unless forced, and the app working on what was loaded. Tiny sizes, both engines."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

import clinic.synthetic
from clinic.audit.services import verify_chain
from clinic.extensions import db
from clinic.synthetic import SyntheticRefused, load
from tests.conftest import (
    CSRF_RE,
    ON_POSTGRES,
    PASSWORD,
    empty_postgres_tables,
    login,
    make_app,
)

TINY = {"patients": 60, "sites": 2, "years": 1, "seed": 15}
EMPTY_BY_DESIGN = {"recovery_code", "user_session", "saved_form_draft", "form_submission"}
SITE_ZONE = ZoneInfo("America/Chicago")  # site S01's
# The dose form's hidden fields (as tests/test_medications_dosing_views.py reads them).
TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
GIVEN_RE = re.compile(r'name="given_count"[^>]*? value="([^"]*)"')


def site_today() -> dt.date:
    return dt.datetime.now(SITE_ZONE).date()


def load_tiny(app, **options) -> dict:
    with app.app_context():
        return load(**{**TINY, "password": PASSWORD, "progress": False, **options})


def counts(app) -> dict[str, int]:
    with app.app_context():
        return {
            t.name: db.session.scalar(sa.select(sa.func.count()).select_from(t))
            for t in db.metadata.sorted_tables
        }


def schema_objects(app) -> set[tuple]:
    """Indexes, triggers and constraints of the schema, as the catalog lists them."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            query = "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
        else:
            query = (
                "SELECT 'constraint', conname, pg_get_constraintdef(oid) || convalidated::text"
                " FROM pg_constraint WHERE connamespace = 'public'::regnamespace UNION ALL"
                " SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                " UNION ALL SELECT 'trigger', tgname, tgenabled::text FROM pg_trigger"
                " WHERE NOT tgisinternal"
            )
        return set(db.session.execute(sa.text(query)).all())


def test_every_table_has_rows_except_the_documented_ones(app):
    summary = load_tiny(app)
    loaded = counts(app)
    empty = {t for t, n in loaded.items() if n == 0 and t != "alembic_version"}
    assert empty == EMPTY_BY_DESIGN
    for table in EMPTY_BY_DESIGN:  # each with its reason in the package's docstring
        assert f"``{table}``:" in clinic.synthetic.__doc__
    assert {t: n for t, n in summary["tables"].items() if n} == {
        t: n for t, n in loaded.items() if n and t != "audit_chain_head"
    }
    assert summary["engine"] == ("postgresql" if ON_POSTGRES else "sqlite")
    assert "s1-nurse25" in summary["accounts"] and "s2-staff03" in summary["accounts"]


def test_the_schema_is_whole_again_after_the_load(app):
    before = schema_objects(app)
    load_tiny(app)
    assert schema_objects(app) == before
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            assert db.session.execute(sa.text("PRAGMA foreign_key_check")).all() == []
            assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1


def test_the_append_only_rules_refuse_changes_after_the_load(app):
    load_tiny(app)
    with app.app_context():
        dose = db.session.scalar(sa.text("SELECT min(id) FROM dose_entry"))
        with pytest.raises(sa.exc.DatabaseError):
            db.session.execute(
                sa.text("UPDATE dose_entry SET amount_mg = 1 WHERE id = :i"), {"i": dose}
            )
        db.session.rollback()
        note = db.session.scalar(
            sa.text("SELECT min(id) FROM progress_note WHERE status = 'signed'")
        )
        with pytest.raises(sa.exc.DatabaseError):
            db.session.execute(
                sa.text("UPDATE progress_note SET text = 'x' WHERE id = :i"), {"i": note}
            )
        db.session.rollback()


def test_the_audit_chain_verifies(app):
    summary = load_tiny(app)
    with app.app_context():
        report = verify_chain()
    assert report.ok, report.problem
    assert report.events == summary["tables"]["audit_event"] > 1000


def _content(app) -> dict[str, list]:
    with app.app_context():
        return {
            table: db.session.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2")).all()
            for table in ("patient", "patient_name_token", "dose_entry", "progress_note",
                          "drug_test_result", "audit_event")
        }  # fmt: skip


def test_the_same_seed_loads_the_same_rows(app, database_template, tmp_path):
    load_tiny(app)
    first = _content(app)
    if ON_POSTGRES:  # the suite's database, emptied, is the second one
        with app.app_context(), db.engine.begin() as conn:
            empty_postgres_tables(conn)
        other = app
    else:
        copy = tmp_path / "second.db"
        shutil.copyfile(database_template, copy)
        other = make_app(f"sqlite:///{copy}", AUDIT_HMAC_KEYS=app.config["AUDIT_HMAC_KEYS"])
    try:
        load_tiny(other)
        assert _content(other) == first
    finally:
        if other is not app:
            with other.app_context():
                db.engine.dispose()


def test_a_database_with_a_patient_is_refused_unless_forced(app, make_patient):
    patient = make_patient()
    with pytest.raises(SyntheticRefused, match="1 patient rows"):
        load_tiny(app)
    assert counts(app)["dose_entry"] == 0
    summary = load_tiny(app, force=True)
    with app.app_context():
        codes = db.session.scalars(sa.text("SELECT code FROM site ORDER BY id")).all()
        assert codes == ["MAIN", "S01", "S02"]
        assert db.session.scalar(sa.text("SELECT count(*) FROM patient")) == 61
        assert (
            db.session.scalar(sa.text("SELECT min(id) FROM patient WHERE site_id <> 1")) > patient
        )
        assert verify_chain().ok
    assert summary["accounts"][0] == "s1-admin"
    # Forced again: new codes and usernames next to the first load's.
    summary = load_tiny(app, force=True)
    assert summary["accounts"][0] == "s3-admin"


def test_the_command_loads_then_refuses_with_status_2(app):
    runner = app.test_cli_runner()
    args = ["seed-synthetic", "--patients", "40", "--sites", "1", "--years", "1", "--quiet"]
    result = runner.invoke(args=[*args, "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    assert "dose_entry" in result.output and "total" in result.output
    again = runner.invoke(args=[*args, "--password", PASSWORD])
    assert again.exit_code == 2
    assert "Refused: the database holds data" in again.output
    assert "--force" in again.output
    missing = runner.invoke(args=args, env={"SYNTHETIC_PASSWORD": ""})
    assert missing.exit_code == 2 and "--password" in missing.output


def test_the_help_names_the_sizes_and_the_accounts(app):
    result = app.test_cli_runner().invoke(args=["seed-synthetic", "--help"])
    assert result.exit_code == 0
    for text in ("--size", "--patients", "--today", "SYNTHETIC_PASSWORD", "--force",
                 "s{k}-nurse01", "MFA_REQUIRED_ROLES"):  # fmt: skip
        assert text in result.output


def test_a_nurse_works_on_the_synthetic_patients_today(app, client):
    summary = load_tiny(app, today=site_today())
    with app.app_context():
        site1 = db.session.scalar(sa.text("SELECT id FROM site WHERE code = 'S01'"))
        at_site1 = set(
            db.session.scalars(sa.text("SELECT id FROM patient WHERE site_id = :s"), {"s": site1})
        )
        dosable = [p for p in summary["dosable_patients"] if p in at_site1]
        patient = dosable[0]
        dose = db.session.scalar(
            sa.text(
                "SELECT dose_mg FROM medication_order WHERE patient_id = :p AND status = 'active'"
            ),
            {"p": patient},
        )
    assert login(client, "s1-nurse01").status_code == 302
    assert client.get(f"/patients/{patient}").status_code == 200
    # Every patient the load says is dosable gets the dose form (no refusal in its place).
    pages = {p: client.get(f"/dosing/patients/{p}/dose") for p in dosable}
    assert len(dosable) >= 3
    for page in pages.values():
        assert page.status_code == 200
        assert GIVEN_RE.search(page.get_data(as_text=True)), page.get_data(as_text=True)[:3000]
    html = client.get(f"/dosing/patients/{patient}/dose").get_data(as_text=True)
    response = client.post(
        f"/dosing/patients/{patient}/dose",
        data={
            "csrf_token": CSRF_RE.search(html).group(1),
            "submission_token": TOKEN_RE.search(html).group(1),
            "given_count": GIVEN_RE.search(html).group(1),
            "dob_confirmed": "y",
            "amount_mg": str(dose),
            "reason": "",
            "station": "Window 1",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        today_doses = db.session.scalar(
            sa.text(
                "SELECT count(*) FROM dose_entry WHERE patient_id = :p AND dispensed_on = :d"
                " AND kind = 'observed'"
            ),
            {"p": patient, "d": site_today()},
        )
        assert today_doses == 1
        named = db.session.execute(
            sa.text("SELECT id, last_name, last_key FROM patient WHERE site_id = :s"
                    " AND entered_in_error_at IS NULL ORDER BY id"), {"s": site1}
        ).all()  # fmt: skip
    other_script = next(p for p in named if any(ord(c) > 0x24F for c in p.last_name))
    for words in (other_script.last_name, other_script.last_key):  # as written, romanised
        found = client.get("/patients/", query_string={"q": words}).get_data(as_text=True)
        assert f"/patients/{other_script.id}" in found

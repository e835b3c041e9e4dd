"""What a production server checks before it serves: settings, database, migrations.

Two places refuse to start:

- ``create_app`` (``check_production_settings``, every server, the CLI too): in
  production a ``SECRET_KEY`` that is missing or weak, or no ``ALLOWED_HOSTS``, is a
  RuntimeError. A weak key signs session cookies an attacker can forge (HIPAA
  164.312(d) person or entity authentication).
- ``preflight`` (gunicorn's ``on_starting`` hook, clinic/server.py, which first runs
  ``settings_problems`` and ``sqlite_problem`` on the settings alone, before it builds
  the app; and ``flask preflight``): SQLite unless ``ALLOW_SQLITE_IN_PRODUCTION`` (one writer at a
  time, no network: several workers would queue on its lock), a database that does not
  answer, and migrations not at head (the code would query columns that do not exist
  yet).

``/readyz`` (clinic/main/views.py) answers the same database and migration questions
while the app runs. The probes (``/healthz``, ``/readyz``, the preflight) give PostgreSQL
``PROBE_TIMEOUT_SECONDS`` to connect and answer: a hung database is "down", not a hang.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from clinic.edge import parse_hosts, parse_networks

MIN_SECRET_KEY_LENGTH = 32
# Keys copied from documentation and tutorials (compared lower-case, spaces stripped),
# and the words people type when they mean "set this later".
WELL_KNOWN_SECRET_KEYS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "secretkey",
        "secret-key",
        "secret_key",
        "dev",
        "development",
        "test",
        "testing",
        "password",
        "default",
        "insecure",
        "example",
        "your-secret-key",
        "your_secret_key",
        "super-secret-key",
        "supersecretkey",
        "notasecret",
        # Flask's documentation (quickstart, "How to generate good secret keys").
        '_5#y2l"f4q8z\\n\\xec]/',
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
    }
)
# Words of placeholder keys ("your-secret-key-here-change-in-production",
# "password1234567890..."), found anywhere in the key (compared lower-case, letters and
# digits only). None can occur in a hex key, and a random url-safe one holds one with odds
# under one in a million.
PLACEHOLDER_WORDS = (
    "changeme",
    "changethis",
    "replaceme",
    "secretkey",
    "yoursecret",
    "supersecret",
    "notsecret",
    "password",
    "insecure",
    "qwerty",
)
# Fewer distinct characters than this is a pattern, not a random key (a hex key of 32
# characters has about 13; 9 in one of about 7,000 secrets.token_hex(16), fewer than 8 in
# one of some ten million).
MIN_DISTINCT_CHARACTERS = 8
# A key that is one short piece repeated ("ab" * 32, "changeme" * 4) is as weak as the piece.
MAX_REPEATED_UNIT = 16


def secret_key_problem(key: object) -> str | None:
    """Why ``key`` cannot sign production sessions, or None when it can. The message never
    quotes the key. Rules: at least 32 characters, not a well-known value, no placeholder
    word (``PLACEHOLDER_WORDS``), not a short piece repeated, at least 8 distinct
    characters, not mostly a run of consecutive characters ("abcdef...", "123456...")."""
    if not key:
        return "SECRET_KEY must be set in production"
    text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
    generate = 'generate one with: python -c "import secrets; print(secrets.token_hex(32))"'
    if len(text) < MIN_SECRET_KEY_LENGTH:
        return f"SECRET_KEY is too short (at least {MIN_SECRET_KEY_LENGTH} characters); {generate}"
    folded = "".join(text.split()).lower()
    if folded in WELL_KNOWN_SECRET_KEYS or _repeated_unit(folded) in WELL_KNOWN_SECRET_KEYS:
        return f"SECRET_KEY is a well-known value; {generate}"
    letters = "".join(c for c in folded if c.isalnum())
    if any(word in letters for word in PLACEHOLDER_WORDS):
        return f"SECRET_KEY is a placeholder, not a random value; {generate}"
    unit = _repeated_unit(text)
    if len(unit) <= MAX_REPEATED_UNIT or len(set(text)) < MIN_DISTINCT_CHARACTERS:
        return f"SECRET_KEY is a repeated pattern, not a random value; {generate}"
    steps = sum(abs(ord(b) - ord(a)) == 1 for a, b in itertools.pairwise(folded))
    if steps * 2 > len(folded):
        return f"SECRET_KEY is a sequence, not a random value; {generate}"
    return None


def _repeated_unit(text: str) -> str:
    """The shortest piece that ``text`` repeats (``"abab"`` -> ``"ab"``), else ``text``."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def check_production_settings(app: Flask) -> None:
    """Raise RuntimeError when production settings are unsafe: a weak or missing
    ``SECRET_KEY``, no ``ALLOWED_HOSTS``. In every mode, ``TRUSTED_PROXIES`` and
    ``ALLOWED_HOSTS`` must parse."""
    problems = settings_problems(app.config)
    if problems:
        raise RuntimeError(problems[0])


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """What ``check_production_settings`` refuses, as messages (empty: none), from the
    settings alone (``config.load_config()``: no app built, nothing connected)."""
    problems = []
    try:
        parse_networks(settings["TRUSTED_PROXIES"])
    except ValueError as exc:
        problems.append(f"TRUSTED_PROXIES: {exc}")
    try:
        hosts = parse_hosts(settings["ALLOWED_HOSTS"])
    except ValueError as exc:
        problems.append(f"ALLOWED_HOSTS: {exc}")
        hosts = None
    problem = reports_database_url_problem(settings.get("REPORTS_DATABASE_URL") or "")
    if problem:
        problems.append(problem)
    if settings["ENV_NAME"] != "production":
        return problems
    problem = secret_key_problem(settings.get("SECRET_KEY"))
    if problem:
        problems.append(problem)
    if hosts == []:
        problems.append(
            "ALLOWED_HOSTS must be set in production: the host names the clinic is reached "
            "at, comma-separated (e.g. ALLOWED_HOSTS=clinic.example.org)"
        )
    return problems


def reports_database_url_problem(url: str) -> str | None:
    """Why ``REPORTS_DATABASE_URL`` cannot name the reports database, or None (also when it
    is empty). A typo otherwise went unnoticed until every report answered 500. The message
    never quotes the URL, which may hold a password."""
    if not url:
        return None
    from config import normalise_database_url

    try:
        parsed = sa.make_url(normalise_database_url(url))
        backend = parsed.get_backend_name()
        parsed.get_dialect()
    except (sa.exc.ArgumentError, ValueError):
        return "REPORTS_DATABASE_URL is not a database URL (postgresql://USER:PASSWORD@HOST/NAME)"
    if backend not in {"postgresql", "sqlite"}:
        return f"REPORTS_DATABASE_URL: {backend} is not supported (PostgreSQL or SQLite)"
    return None


def sqlite_problem(settings: Mapping[str, Any]) -> str | None:
    """Why the production server refuses this database: SQLite unless
    ``ALLOW_SQLITE_IN_PRODUCTION`` (one writer at a time: the workers would queue)."""
    if (
        is_sqlite(settings["SQLALCHEMY_DATABASE_URI"])
        and not settings["ALLOW_SQLITE_IN_PRODUCTION"]
    ):
        return (
            "the database is SQLite: set DATABASE_URL to PostgreSQL "
            "(or ALLOW_SQLITE_IN_PRODUCTION=1 for a single-user trial)"
        )
    return None


# --- migrations ---------------------------------------------------------------------------


@functools.cache
def migration_heads(directory: str) -> frozenset[str]:
    """The head revision(s) of the migration scripts in ``directory``. Cached: reading
    every script takes tens of milliseconds, and the scripts do not change while the
    process runs."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(directory).get_heads())


def migrations_directory(app: Flask) -> str:
    return str(app.extensions["migrate"].directory)


def database_revisions(connection: sa.Connection) -> frozenset[str]:
    """The revision(s) stamped in the database's ``alembic_version`` (empty when the
    database was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(connection).get_current_heads())


def migrations_at_head(app: Flask, connection: sa.Connection) -> bool:
    return database_revisions(connection) == migration_heads(migrations_directory(app))


# --- probes -------------------------------------------------------------------------------

# How long a probe (``/healthz``, ``/readyz``, the preflight) waits for PostgreSQL to accept
# a connection and to answer, in seconds. libpq's own default is to wait for ever: a
# database that accepts the TCP connection but never answers (a hung server, a stuck
# connection pooler, a dropped route) held the probe, and its worker, until gunicorn's
# timeout killed it, and held the preflight for good.
PROBE_TIMEOUT_SECONDS = 3
PROBE_EXTENSION = "clinic_probe_engine"


@contextmanager
def probe_connection(app: Flask) -> Iterator[sa.Connection]:
    """A connection to ``app``'s database for a health check, in the app context. On
    PostgreSQL it is a new one, bounded to ``PROBE_TIMEOUT_SECONDS`` to connect and per
    statement (an engine without a pool: the app's pool may be the very thing that is
    stuck); elsewhere one from the app's pool. Raises SQLAlchemyError when the database
    does not answer in time."""
    from clinic.extensions import db

    engine = db.engine
    if engine.dialect.name == "postgresql":
        probe = app.extensions.get(PROBE_EXTENSION)
        if probe is None:
            options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
            connect_args = dict(options.get("connect_args") or {})  # TLS settings, say
            connect_args["connect_timeout"] = PROBE_TIMEOUT_SECONDS
            probe = sa.create_engine(
                engine.url,
                poolclass=sa.pool.NullPool,
                hide_parameters=True,
                connect_args=connect_args,
            )
            app.extensions[PROBE_EXTENSION] = probe
        engine = probe
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            timeout_ms = PROBE_TIMEOUT_SECONDS * 1000
            # For this transaction only (a pooler such as PgBouncer shares the server
            # connection afterwards).
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout_ms}")
        yield connection


# --- preflight ----------------------------------------------------------------------------


def is_sqlite(url: str) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "sqlite"


def preflight(app: Flask) -> list[str]:
    """What stops ``app`` from serving in production, as messages for the operator (empty:
    ready). Checks SQLite (unless ``ALLOW_SQLITE_IN_PRODUCTION``), that the database
    answers and that its migrations are at head. Opens one connection and disposes of the
    engine afterwards (gunicorn's master forks the workers after this)."""
    from clinic.extensions import db

    problem = sqlite_problem(app.config)
    if problem:
        return [problem]
    with app.app_context():
        try:
            with probe_connection(app) as connection:
                at_head = migrations_at_head(app, connection)
        except sa.exc.SQLAlchemyError as exc:
            # The type only: a driver's message can carry the URL and its password.
            return [f"the database does not answer ({type(exc).__name__})"]
        finally:
            db.engine.dispose()
    return [] if at_head else ["migrations are pending: run `flask db upgrade` first"]


def refuse_to_start(problems: list[str]) -> None:
    """Raise RuntimeError listing ``problems``, if any (gunicorn prints it, exits 1)."""
    if problems:
        raise RuntimeError("clinic refuses to start: " + "; ".join(problems))


@click.command("preflight")
@with_appcontext
def preflight_command() -> None:
    """Check that this configuration can serve in production (CLINIC_ENV, database,
    migrations); exit 1 when it cannot."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    problems = preflight(app)
    if app.config["ENV_NAME"] != "production":
        problems.insert(0, f"CLINIC_ENV is {app.config['ENV_NAME']!r}, not 'production'")
    if problems:
        for problem in problems:
            click.echo(f"refused: {problem}", err=True)
        sys.exit(1)
    click.echo("ready: the database answers and its migrations are at head")

"""The production server: gunicorn.conf.py as gunicorn reads it, its JSON access log, the
refusals of its ``on_starting`` hook, and ``make serve`` refusing unsafe settings before
any worker starts. One real gunicorn, shared by the module, checks the whole chain."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from gunicorn.app.base import Application
from gunicorn.config import Config

import config
from clinic import server
from clinic.edge import ACCESS_NOTE
from tests.conftest import ON_POSTGRES, migrate_to_head

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "gunicorn.conf.py"
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_environment(database_url: str, **settings: str) -> dict[str, str]:
    """What ``make serve`` needs, for a server on a free loopback port."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PGPASSWORD")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_hex(32),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        AUDIT_HMAC_KEYS=f"test:{secrets.token_hex(32)}",
        MFA_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        RATELIMIT_STORAGE_URI="memory://",
        GUNICORN_BIND=f"127.0.0.1:{_free_port()}",
        GUNICORN_WORKERS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(settings)
    return env


# --- gunicorn.conf.py ---------------------------------------------------------------------


class _ConfigReader(Application):
    """gunicorn's own reading of a configuration file, without a command line."""

    def __init__(self) -> None:
        self.usage, self.prog, self.callable, self.logger = None, None, None, None
        self.cfg = Config()

    def init(self, parser, opts, args):  # type: ignore[no-untyped-def]
        return None

    def load(self):  # type: ignore[no-untyped-def]
        return None


def read_conf() -> Config:
    reader = _ConfigReader()
    reader.load_config_from_file(str(CONF))
    return reader.cfg


def test_gunicorn_reads_the_configuration_file(monkeypatch):
    for name in ("GUNICORN_BIND", "GUNICORN_WORKERS", "GUNICORN_TIMEOUT", "TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    cfg = read_conf()
    assert cfg.bind == ["127.0.0.1:8000"]
    assert cfg.workers == min(2 * (os.cpu_count() or 1) + 1, server.MAX_WORKERS)
    assert cfg.timeout == 30 and cfg.graceful_timeout == 30
    assert cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert cfg.logger_class is server.JsonAccessLogger
    assert cfg.accesslog == "-"
    assert cfg.control_socket_disable is True
    assert cfg.settings["on_starting"].get() is server.on_starting


def test_the_environment_overrides_the_configuration(monkeypatch):
    monkeypatch.setenv("GUNICORN_BIND", "unix:/run/clinic/gunicorn.sock")
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "60")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    cfg = read_conf()
    assert cfg.bind == ["unix:/run/clinic/gunicorn.sock"]
    assert cfg.workers == 3
    assert cfg.timeout == 60
    assert cfg.forwarded_allow_ips == ["10.0.0.0/8"]


@pytest.mark.parametrize(("cores", "workers"), [(1, 3), (2, 5), (4, 9), (64, server.MAX_WORKERS)])
def test_workers_follow_the_cores(cores, workers):
    assert server.worker_count({}, cores) == workers


@pytest.mark.parametrize("raw", ["0", "-2", "many", "2.5"])
def test_a_bad_worker_count_is_refused(raw):
    with pytest.raises(RuntimeError, match="GUNICORN_WORKERS"):
        server.worker_count({"GUNICORN_WORKERS": raw}, 2)


# --- the access log -----------------------------------------------------------------------


def test_the_access_log_is_json_without_path_or_query(tmp_path):
    cfg = Config()
    log_path = tmp_path / "access.log"
    cfg.set("accesslog", str(log_path))
    logger = server.JsonAccessLogger(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/patients/search",
        "QUERY_STRING": "q=Jo+Smith&dob=1980-04-02",
        "RAW_URI": "/patients/search?q=Jo+Smith&dob=1980-04-02",
        "HTTP_REFERER": "https://clinic.example.org/patients/?q=Jo+Smith",
        "REMOTE_ADDR": "192.0.2.9",
        ACCESS_NOTE: {"rule": "/patients/search"},
    }
    response = SimpleNamespace(
        status="200 OK", sent=5120, headers=[("X-Request-ID", "req-12345678")]
    )
    logger.access(response, None, environ, timedelta(milliseconds=12, microseconds=340))
    for handler in logger.access_log.handlers:
        handler.flush()
    (line,) = log_path.read_text().splitlines()
    entry = json.loads(line)
    assert entry == {
        "level": "INFO",
        "logger": "gunicorn.access",
        "event": "access",
        "method": "GET",
        "rule": "/patients/search",
        "status": 200,
        "bytes": 5120,
        "duration_ms": 12.3,
        "request_id": "req-12345678",
    }
    for leaked in ("Smith", "1980", "192.0.2.9", "q="):
        assert leaked not in line


# --- on_starting (in the master, before any worker) -----------------------------------------


class _Master:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.log = SimpleNamespace(warning=lambda msg, *args: self.warnings.append(msg % args))


def _starting(monkeypatch, env: dict[str, str]) -> _Master:
    # Only the given settings: none of the caller's environment reaches load_config.
    known = {k for k in dir(config.Config) if k.isupper()} | {"DATABASE_URL", "CLINIC_ENV"}
    for name in known - set(env):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    master = _Master()
    server.on_starting(master)
    return master


@pytest.fixture(scope="module")
def sqlite_template(database_template, tmp_path_factory) -> Path:
    """A migrated SQLite database for this module: the session's template on SQLite; on
    PostgreSQL, migrated here once."""
    path = tmp_path_factory.mktemp("production-server") / "template.db"
    if ON_POSTGRES:
        migrate_to_head(f"sqlite:///{path}")
    else:
        shutil.copyfile(database_template, path)
    return path


@pytest.fixture
def migrated_sqlite(sqlite_template, tmp_path) -> str:
    path = tmp_path / "served.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def test_on_starting_refuses_sqlite(monkeypatch, migrated_sqlite):
    env = production_environment(migrated_sqlite, CLINIC_ENV="production")
    with pytest.raises(RuntimeError, match="the database is SQLite"):
        _starting(monkeypatch, env)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("SECRET_KEY", "changeme", "SECRET_KEY is too short"),
        ("SECRET_KEY", "", "SECRET_KEY must be set"),
        ("ALLOWED_HOSTS", "", "ALLOWED_HOSTS must be set"),
    ],
)
def test_on_starting_refuses_unsafe_settings(monkeypatch, migrated_sqlite, setting, value, message):
    env = production_environment(
        migrated_sqlite, CLINIC_ENV="production", ALLOW_SQLITE_IN_PRODUCTION="1"
    )
    env[setting] = value
    with pytest.raises(RuntimeError, match=message):
        _starting(monkeypatch, env)


def test_on_starting_passes_a_ready_production(monkeypatch, migrated_sqlite):
    env = production_environment(
        migrated_sqlite, CLINIC_ENV="production", ALLOW_SQLITE_IN_PRODUCTION="1"
    )
    assert _starting(monkeypatch, env).warnings == []


def test_on_starting_outside_production_only_warns(monkeypatch, migrated_sqlite):
    env = production_environment(migrated_sqlite, CLINIC_ENV="testing")
    assert _starting(monkeypatch, env).warnings == [
        "clinic: CLINIC_ENV is testing, not production: no preflight"
    ]


# --- make serve -----------------------------------------------------------------------------


def _make_serve(env: dict[str, str]) -> subprocess.Popen:
    # -o: the virtualenv is the one running the tests; never install into it from here.
    return subprocess.Popen(  # noqa: S603 (our own command line)
        ["make", "--no-print-directory", "-o", ".venv/.run-installed", "serve", f"BIN={BIN}"],  # noqa: S607
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_serve_refuses_sqlite_and_a_weak_key_before_any_worker(migrated_sqlite):
    sqlite = _make_serve(production_environment(migrated_sqlite))
    weak = _make_serve(
        production_environment(
            migrated_sqlite, ALLOW_SQLITE_IN_PRODUCTION="1", SECRET_KEY="changeme" * 4
        )
    )
    outputs = []
    for process in (sqlite, weak):
        try:
            output, _ = process.communicate(timeout=STARTUP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        outputs.append(output.decode(errors="replace"))
        assert process.returncode != 0, outputs[-1]
    sqlite_output, weak_output = outputs
    assert "the database is SQLite" in sqlite_output
    assert "SECRET_KEY is a well-known value" in weak_output
    for output in outputs:
        assert "Booting worker" not in output
        assert "Listening at" not in output
        assert "changeme" not in output


# --- one real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, sqlite_template):
    """gunicorn with gunicorn.conf.py, one worker, production settings on a migrated SQLite
    database; yields (port, path of its log). Stopped at the end (SIGINT: no need to wait
    for idle workers)."""
    directory = tmp_path_factory.mktemp("served")
    path = directory / "served.db"
    shutil.copyfile(sqlite_template, path)
    env = production_environment(
        f"sqlite:///{path}",
        CLINIC_ENV="production",
        ALLOW_SQLITE_IN_PRODUCTION="1",
        CLINIC_INSTANCE_PATH=str(directory / "instance"),
        LOG_LEVEL="INFO",
    )
    port = env["GUNICORN_BIND"].rsplit(":", 1)[1]
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own command line)
            [str(BIN / "gunicorn"), f"--config={CONF}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _status(int(port), "/healthz") != 200:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited ({process.returncode}):\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield int(port), log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _request(port: int, path: str, host: str = "127.0.0.1", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def _status(port: int, path: str) -> int | None:
    try:
        return _request(port, path).status
    except OSError:
        return None


def _log_entries(log_path: Path, event: str) -> list[dict]:
    entries = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                entries.append(entry)
    return entries


def test_the_server_answers_ready_and_refuses_a_forged_host(served):
    port, log_path = served
    ready = _request(port, "/readyz")
    assert ready.status == 200
    search = _request(port, "/patients/?q=Jo+Smith", headers={"X-Request-ID": "req-h16-search"})
    assert search.status == 302
    assert search.getheader("Location").startswith("/login")
    forged = _request(port, "/patients/", host="evil.example")
    assert forged.status == 400
    assert forged.getheader("Location") is None

    deadline = time.monotonic() + 10
    while not any(e["request_id"] == "req-h16-search" for e in _log_entries(log_path, "access")):
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    text = log_path.read_text(errors="replace")
    assert "clinic: preflight passed" in text
    (access,) = [e for e in _log_entries(log_path, "access") if e["request_id"] == "req-h16-search"]
    assert access["rule"] == "/patients/"
    assert access["status"] == 302 and access["method"] == "GET"
    assert access["bytes"] > 0 and access["duration_ms"] >= 0
    assert "Smith" not in text and "evil.example" not in text

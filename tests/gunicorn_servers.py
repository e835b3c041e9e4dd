"""Real app servers for the tests that need processes, not a test client
(``tests/test_scale_out.py``, ``tests/test_durability.py``): gunicorn serving ``wsgi:app``
with the production configuration on 127.0.0.1, and a small HTTP client that plays a
browser behind the TLS-terminating proxy.

The servers run as production does (``CLINIC_ENV=production``: Redis rate limits, the
``__Host-`` ``Secure`` session cookie, the production argon2 profile) behind one trusted
proxy (``PROXY_FIX_X_FOR=1``), which the client plays: it sends ``X-Forwarded-Proto:
https`` and an ``X-Forwarded-For`` address of its own, and sends its ``Secure`` cookies back
over plain HTTP as a browser would over HTTPS (``bench/load_locustfile.py`` does the same).

Each server gets a directory of its own: an empty working directory, ``TMPDIR`` and
``HOME`` (so a test can see what the app writes at run time and where) and the instance
path; its output goes to ``server.log`` beside them. It runs in a process group of its
own, so ``kill()`` can SIGKILL the master and its workers at once.

Needs PostgreSQL (``TEST_DATABASE_URL``) and Redis on 127.0.0.1:6379: ``require_services()``
skips without them, or fails when ``REQUIRE_REDIS=1`` (CI) and Redis does not answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import http.client
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
# tests/test_rate_limit_redis.py uses db 15; each run here uses
# client addresses of its own (``workstation()``), so parallel runs never share a counter.
REDIS_URL = os.environ.get("TEST_SERVERS_REDIS_URL", "redis://127.0.0.1:6379/14")
# Importing the app takes seconds on a busy two-core machine (twice that for two at once).
STARTUP_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 30


# --- what the servers need -------------------------------------------------------------------


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def require_services(database_url: str) -> None:
    """Skip (or fail, for Redis under ``REQUIRE_REDIS=1``) unless the app servers can run
    as in production: on PostgreSQL, with Redis for the shared rate limits."""
    if not database_url.startswith(("postgres://", "postgresql")):
        pytest.skip(
            "several app servers share one database only on PostgreSQL: "
            "set TEST_DATABASE_URL to run these tests"
        )
    if not _redis_answers(REDIS_URL):
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")


def workstation() -> str:
    """A client address no other run uses (10.x.y.z, random): the rate limiter's key."""
    a, b, c = secrets.token_bytes(3)
    return f"10.{a}.{b}.{c % 250 + 1}"


def server_environment(
    database_url: str, audit_hmac_keys: str, secret_key: str, **settings: str
) -> dict[str, str]:
    """The environment of a production app server behind one trusted proxy (the module
    docstring); ``settings`` adds or overrides variables (``LOGIN_RATE_LIMIT=...``).
    Settings the app does not know are ignored by it (``config.load_config``)."""
    from cryptography.fernet import Fernet

    from config import normalise_database_url

    keep = ("PATH", "LANG", "LC_ALL", "PYTHONHASHSEED", "PGPASSWORD")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        CLINIC_ENV="production",
        DATABASE_URL=normalise_database_url(database_url),
        SECRET_KEY=secret_key,
        AUDIT_HMAC_KEYS=audit_hmac_keys,
        RATELIMIT_STORAGE_URI=REDIS_URL,
        PROXY_FIX_X_FOR="1",
        TRUSTED_PROXIES="127.0.0.1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MFA_REQUIRED_ROLES="",
        MFA_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        LOG_LEVEL="WARNING",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(settings)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """One gunicorn (``workers`` sync workers) on a port of its own, kept across
    restarts. ``start()`` returns once ``/healthz`` answers 200."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        base_dir: Path,
        *,
        workers: int = 1,
        preload: bool = False,
    ):
        self.name = name
        self.workers = workers
        # --preload: the master builds the app once and forks workers that serve at once
        # (a restart costs one import of the app, not one per worker).
        self.preload = preload
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = base_dir / name
        self.cwd, self.tmp, self.home, self.instance, self.cache = (
            self.dir / part for part in ("cwd", "tmp", "home", "instance", "cache")
        )
        for path in (self.cwd, self.tmp, self.home, self.instance):
            path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "server.log"
        self.env = {
            **env,
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "CLINIC_INSTANCE_PATH": str(self.instance),
            "CACHE_DIR": str(self.cache),
        }
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.start_seconds: list[float] = []  # how long each start() took

    def command(self) -> list[str]:
        command = [str(GUNICORN)]
        # The project's production settings when it has them; the flags below win.
        config = ROOT / "gunicorn.conf.py"
        if config.exists():
            command.append(f"--config={config}")
        return [
            *command,
            f"--pythonpath={ROOT}",
            f"--bind=127.0.0.1:{self.port}",
            f"--workers={self.workers}",
            "--worker-class=sync",
            "--timeout=30",
            "--graceful-timeout=5",
            "--no-control-socket",  # its default path is shared by every gunicorn of the user
            *(["--preload"] if self.preload else []),
            "wsgi:app",
        ]

    def start(self) -> None:
        began = time.monotonic()
        self.launch()
        self.wait_ready()
        self.start_seconds.append(round(time.monotonic() - began, 1))

    def launch(self) -> None:
        """Start gunicorn without waiting for it (``wait_ready()``): two servers start
        side by side."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own command line)
                self.command(),
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches every worker
            )
        self.starts += 1

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn {self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"gunicorn {self.name} did not answer /healthz in {STARTUP_SECONDS} s:\n"
                    + self.log_tail()
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the master and every worker at once (a power cut, the OOM killer)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        """Ask gunicorn to stop (SIGTERM) without waiting: several servers stop at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever is left after 2 s (the tests need no
        graceful shutdown; the database closes the connections either way)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
        self.kill()  # the master, or a worker it left behind

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def unhandled_errors(self) -> list[str]:
        """Lines of the server's log that report an exception (the app's JSON log lines
        with a traceback, and gunicorn's own worker errors)."""
        if not self.log_path.exists():
            return []
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"exc_type"' in line or "Traceback" in line or "[ERROR]" in line
        ]


# --- the client ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str
    request_id: str

    @property
    def location(self) -> str:
        """The path a redirect leads to ("" when it is not a redirect)."""
        return urlsplit(self.headers.get("location", "")).path


INPUT = re.compile(r"<input\b[^>]*>")
NAME = re.compile(r'\bname="([^"]+)"')
VALUE = re.compile(r'\bvalue="([^"]*)"')


def form_fields(page: str, marker: str = '<form method="post"') -> dict[str, str]:
    """The named inputs (and their values) of the first form whose tag holds ``marker``;
    empty when the page has no such form."""
    start = page.find(marker)
    if start < 0:
        return {}
    end = page.find("</form>", start)
    fields = {}
    for tag in INPUT.findall(page, start, end):
        name = NAME.search(tag)
        if name:
            value = VALUE.search(tag)
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


class Browser:
    """A browser at a workstation behind the clinic's TLS proxy, talking to any of the
    app servers (``server=``): cookies are the browser's, not the server's, so a session
    started on one server is sent to the others (cookies ignore the port)."""

    def __init__(self, address: str | None = None, *, run: str | None = None):
        self.address = address or workstation()
        self.cookies: dict[str, str] = {}
        self.run = run or uuid.uuid4().hex[:8]
        self.sent = 0

    def request(
        self,
        server: AppServer,
        method: str,
        path: str,
        data: dict[str, str] | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> Answer:
        """One request, redirects not followed. Raises ``OSError`` (refused, reset, no
        answer) when the server is down or dies while answering."""
        self.sent += 1
        request_id = f"t-{self.run}-{self.sent}"
        headers = {
            "Host": f"127.0.0.1:{server.port}",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": self.address,
            "Sec-Fetch-Site": "same-origin",
            "X-Request-ID": request_id,
            "User-Agent": "clinic-tests/servers",
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", errors="replace")
            for header in response.headers.get_all("Set-Cookie") or []:
                self._keep(header)
            return Answer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                text,
                request_id,
            )
        except http.client.HTTPException as exc:  # a connection cut mid-answer
            raise ConnectionError(str(exc)) from exc
        finally:
            connection.close()

    def _keep(self, header: str) -> None:
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            expired = morsel["max-age"] == "0" or (
                morsel["expires"] and "1970" in morsel["expires"]
            )
            if morsel.value == "" or expired:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    def get(self, server: AppServer, path: str) -> Answer:
        return self.request(server, "GET", path)

    def post(self, server: AppServer, path: str, data: dict[str, str]) -> Answer:
        return self.request(server, "POST", path, data)

    def submit(
        self, server: AppServer, path: str, data: dict[str, str], *, form_path: str | None = None
    ) -> Answer:
        """GET the page of the form (``form_path``, default ``path``), then POST ``data``
        with the form's hidden fields (CSRF and submission tokens)."""
        page = self.get(server, form_path or path)
        assert page.status == 200, f"{form_path or path}: {page.status}"
        return self.post(server, path, {**form_fields(page.text), **data})

    def sign_in(self, server: AppServer, username: str, password: str) -> Answer:
        return self.submit(server, "/login", {"username": username, "password": password})

    def signed_in(self, server: AppServer, username: str, password: str) -> Browser:
        answer = self.sign_in(server, username, password)
        assert answer.status == 302 and answer.location != "/login", (
            f"{username} could not sign in ({answer.status}) on {server.name}:\n"
            + server.log_tail()
        )
        return self


# --- the records the servers' tests share ------------------------------------------------------


@contextlib.contextmanager
def module_database(database_url: str):
    """An app (testing settings) on the worker's PostgreSQL test database for a module's
    records and checks, the tables emptied before and after (the next test of the worker
    expects them empty, as the ``app`` fixture leaves them)."""
    from clinic.extensions import db
    from tests.conftest import empty_postgres_tables, make_app

    app = make_app(database_url)
    with app.app_context(), db.engine.begin() as conn:
        empty_postgres_tables(conn)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as conn:
                empty_postgres_tables(conn)
            db.engine.dispose()


def patients_due_today(app, site_id: int, count: int, *, name: str = "Due") -> list[int]:
    """``count`` patients of the site, each admitted to one methadone program with a daily
    40 mg order starting today (no missed days, no hold, no flag): each may be dosed once
    today. Returns their ids."""
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today
    from tests.conftest import (
        enrollment_factory,
        order_factory,
        patient_factory,
        program_factory,
        user_factory,
    )

    make_patient = patient_factory(app, site_id)
    make_enrollment = enrollment_factory(app)
    make_order = order_factory(app)
    prescriber = user_factory(app, site_id)("clinician", is_prescriber=True)
    program = program_factory(app, site_id)(name=f"Methadone {name}")
    ids = [make_patient(name, f"Patient{n:03d}") for n in range(count)]
    with app.app_context():
        today = site_today(db.session.get(Patient, ids[0]).site)
    for patient_id in ids:
        make_order(make_enrollment(patient_id, program), prescriber, start_on=today)
    return ids

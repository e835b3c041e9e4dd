"""gunicorn's settings and hooks for clinic (read by ``gunicorn.conf.py``, ``make serve``).

- Workers: ``2 * cores + 1`` (gunicorn's rule of thumb for sync workers), at most
  ``MAX_WORKERS``: each worker holds its own database pool, and PostgreSQL's connections
  are the scarcer resource. ``GUNICORN_WORKERS`` overrides.
- Bind: loopback ``127.0.0.1:8000`` (``GUNICORN_BIND``; ``unix:/run/clinic.sock`` for a
  socket): the reverse proxy in front terminates TLS, the app server is never exposed.
- ``forwarded_allow_ips``: the proxies of ``TRUSTED_PROXIES`` (default loopback), as the
  app's own check of forwarded headers (clinic/edge.py).
- The access log: one JSON line per request, formatted as the app's own log
  (``clinic.logging.JsonFormatter``): method, URL rule, status, bytes, duration, request
  id. Never the path, the query string, the referrer or the client's headers: a path or a
  search can carry a name or a date of birth.
- ``on_starting``: in production, the app is built once in the master (its settings
  checks: ``SECRET_KEY``, ``ALLOWED_HOSTS``, audit keys) and ``clinic.production.preflight``
  runs (SQLite, database, migrations) before any worker starts. A refusal is a
  RuntimeError, which gunicorn prints (``Error: ...``) before it exits with status 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from clinic.edge import ACCESS_NOTE
from clinic.logging import JsonFormatter

DEFAULT_BIND = "127.0.0.1:8000"
MAX_WORKERS = 12
DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_GRACEFUL_TIMEOUT_SECONDS = 30
# Behind a proxy that keeps connections open to the app server.
KEEPALIVE_SECONDS = 5


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise RuntimeError(f"{name} must be at least 1, not {value}")
    return value


def worker_count(environ: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """``GUNICORN_WORKERS``, else ``2 * cores + 1`` capped at ``MAX_WORKERS``. Raises
    RuntimeError for a value that is not a positive whole number."""
    environ = os.environ if environ is None else environ
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return _positive_int(environ, "GUNICORN_WORKERS", min(2 * cores + 1, MAX_WORKERS))


def gunicorn_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's settings from the environment (``GUNICORN_BIND``, ``GUNICORN_WORKERS``,
    ``GUNICORN_TIMEOUT``, ``GUNICORN_GRACEFUL_TIMEOUT``, ``TRUSTED_PROXIES``); the names
    are gunicorn's. Timeouts in seconds."""
    environ = os.environ if environ is None else environ
    from config import Config

    return {
        "bind": [environ.get("GUNICORN_BIND", "").strip() or DEFAULT_BIND],
        "workers": worker_count(environ),
        "timeout": _positive_int(environ, "GUNICORN_TIMEOUT", DEFAULT_TIMEOUT_SECONDS),
        "graceful_timeout": _positive_int(
            environ, "GUNICORN_GRACEFUL_TIMEOUT", DEFAULT_GRACEFUL_TIMEOUT_SECONDS
        ),
        "keepalive": KEEPALIVE_SECONDS,
        "forwarded_allow_ips": environ.get("TRUSTED_PROXIES", Config.TRUSTED_PROXIES),
        "accesslog": "-",
        "logger_class": "clinic.server.JsonAccessLogger",
        # Its default path ($XDG_RUNTIME_DIR/gunicorn.ctl) is shared by every gunicorn of
        # the user; an operator who wants `gunicornc` turns it on with its own path.
        "control_socket_disable": True,
    }


class JsonAccessLogger(Logger):
    """gunicorn's logger with the access log as JSON lines without path or query string
    (``{"level": "INFO", "logger": "gunicorn.access", "event": "access", "method": "GET",
    "rule": "/patients/<int:patient_id>", "status": 200, "bytes": 5120, "duration_ms":
    12.3, "request_id": "..."}``). ``rule`` is None for a request no route matched."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.access_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict, request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        try:
            fields = access_fields(resp, environ, request_time)
            self.access_log.info("access", extra={"fields": fields})
        except Exception:  # a log line must never break a request
            self.error_log.exception("access log failed")


def access_fields(resp: Any, environ: Mapping[str, Any], request_time: timedelta) -> dict:
    """The access line's fields (see ``JsonAccessLogger``)."""
    status = resp.status
    if isinstance(status, str):
        status = status.split(None, 1)[0]
    headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
    request_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
    note = environ.get(ACCESS_NOTE) or {}
    return {
        "method": environ.get("REQUEST_METHOD"),
        "rule": note.get("rule"),
        "status": int(status) if str(status).isdigit() else None,
        "bytes": getattr(resp, "sent", None),
        "duration_ms": round(request_time.total_seconds() * 1000, 1),
        "request_id": request_id,
    }


def on_starting(server: Any) -> None:
    """gunicorn's hook in the master, before it binds and forks. In production: first the
    checks that need only the settings (``SECRET_KEY``, ``ALLOWED_HOSTS``, SQLite: an
    answer in a second), then the app is built (all its settings checks) and the
    database and its migrations are checked. Raises RuntimeError to refuse."""
    import config
    from clinic import production

    settings = config.load_config()
    if settings["ENV_NAME"] != "production":
        server.log.warning(
            "clinic: CLINIC_ENV is %s, not production: no preflight", settings["ENV_NAME"]
        )
        return
    problems = production.settings_problems(settings)
    problem = production.sqlite_problem(settings)
    production.refuse_to_start(problems + ([problem] if problem else []))
    from clinic import create_app

    # From the environment, as the workers' own (wsgi.py) will be.
    production.refuse_to_start(production.preflight(create_app()))
    logging.getLogger("gunicorn.error").info("clinic: preflight passed")

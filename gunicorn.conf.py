"""gunicorn's configuration for clinic: ``make serve``, or ``gunicorn -c gunicorn.conf.py
wsgi:app`` (gunicorn also reads this file by itself when started in this directory).

The values live in clinic/server.py; the environment overrides them: GUNICORN_BIND
(default 127.0.0.1:8000; may be unix:/path), GUNICORN_WORKERS (default 2 * cores + 1,
at most 12), GUNICORN_TIMEOUT and GUNICORN_GRACEFUL_TIMEOUT (seconds, default 30),
TRUSTED_PROXIES (forwarded_allow_ips; default loopback). In production the server
refuses to start (exit 1, before any worker) on unsafe settings, SQLite, an unreachable
database or pending migrations.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from clinic import server as _server  # noqa: E402 (after the path is set)

_settings = _server.gunicorn_settings()
bind = _settings["bind"]
workers = _settings["workers"]
timeout = _settings["timeout"]
graceful_timeout = _settings["graceful_timeout"]
keepalive = _settings["keepalive"]
forwarded_allow_ips = _settings["forwarded_allow_ips"]
accesslog = _settings["accesslog"]
logger_class = _settings["logger_class"]
control_socket_disable = _settings["control_socket_disable"]
on_starting = _server.on_starting

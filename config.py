"""Configuration for clinic, chosen by ``CLINIC_ENV`` (development, testing, production).

Every setting below can be overridden by an environment variable of the same name;
``DATABASE_URL`` sets ``SQLALCHEMY_DATABASE_URI``. See the configuration table in the README.
"""

from __future__ import annotations

import base64
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("CLINIC_INSTANCE_PATH", BASE_DIR / "instance"))


class Config:
    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    SECRET_KEY: str | None = None
    SQLALCHEMY_DATABASE_URI = f"sqlite:///{INSTANCE_DIR / 'clinic.db'}"
    # hide_parameters: a database error's message never carries the values (names, dates of
    # birth) it was given, wherever it is logged or shown.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True, "hide_parameters": True}
    # Sessions and cookies (HIPAA 164.312(a)(2)(iii) automatic logoff).
    SESSION_COOKIE_NAME = "clinic_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    # Floats, so a decimal is accepted from the environment (0.5: a test of the idle warning).
    SESSION_IDLE_TIMEOUT_MINUTES = 15.0
    SESSION_ABSOLUTE_TIMEOUT_HOURS = 12.0
    # Rate limits: in-memory by default; set a Redis URL when several app servers run.
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_ENABLED = True
    LOGIN_RATE_LIMIT = "20 per minute"
    # Accounts
    LOGIN_LOCKOUT_FAILURES = 5
    LOGIN_LOCKOUT_MINUTES = 15
    MFA_REQUIRED_ROLES = ""
    MFA_ISSUER = "clinic"
    PASSWORD_HASH_PROFILE = "default"  # noqa: S105 (a profile name)
    # Number of proxies in front of the app whose X-Forwarded-For is trusted (0: none).
    PROXY_FIX_X_FOR = 0
    # The proxies' own addresses or networks (comma-separated; CIDR allowed): forwarded
    # headers from any other peer are dropped (clinic/edge.py).
    TRUSTED_PROXIES = "127.0.0.1,::1"
    # Host names the app answers to (comma-separated; ".example.org" takes subdomains);
    # empty: any. Required in production, where another Host answers 400.
    ALLOWED_HOSTS = ""
    # The production server (gunicorn.conf.py, `flask preflight`) refuses SQLite unless set.
    ALLOW_SQLITE_IN_PRODUCTION = False
    # Forms
    WTF_CSRF_TIME_LIMIT = 3600
    # Security headers
    HSTS_ENABLED = False
    # Keys of the audit chain's HMAC, "ID:SECRET,..." newest first (clinic/audit/keys.py);
    # required in production, generated under instance/ in development.
    AUDIT_HMAC_KEYS = ""
    # Fernet keys encrypting MFA secrets in the database, comma-separated, newest first
    # (clinic/accounts/mfa_secrets.py); required in production, generated under instance/
    # in development.
    MFA_ENCRYPTION_KEYS = ""
    # Static files: Bootstrap from the Bootstrap-Flask package, never a CDN.
    BOOTSTRAP_SERVE_LOCAL = True
    LOG_LEVEL = "INFO"
    # Files the app generates for itself (matplotlib's font cache): one directory, set per
    # deployment, never the process's working directory, HOME or a temporary directory.
    CACHE_DIR = str(INSTANCE_DIR / "cache")
    # Reports: write counts of 1 to 10 as "<11" in exports (the common de-identification
    # rule for reports shared outside the program).
    SUPPRESS_SMALL_CELLS = False
    # Reports: a read replica (SQLAlchemy URL, e.g. a role with SELECT only) every report
    # query runs on, read-only; empty: the primary (clinic/reports/database.py).
    REPORTS_DATABASE_URL = ""


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = secrets.token_hex(32)
    RATELIMIT_ENABLED = False
    PASSWORD_HASH_PROFILE = "owasp-minimum"  # noqa: S105
    AUDIT_HMAC_KEYS = f"test:{secrets.token_hex(32)}"
    MFA_ENCRYPTION_KEYS = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # Fernet
    LOG_LEVEL = "WARNING"


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_NAME = "__Host-clinic_session"
    SESSION_COOKIE_SECURE = True
    HSTS_ENABLED = True
    MFA_REQUIRED_ROLES = "admin"
    PREFERRED_URL_SCHEME = "https"
    # Shared across app servers, so a client cannot spread attempts over workers.
    RATELIMIT_STORAGE_URI = "redis://127.0.0.1:6379/0"


CONFIGS: dict[str, type[Config]] = {
    c.ENV_NAME: c for c in (DevelopmentConfig, TestingConfig, ProductionConfig)
}


def _coerce(raw: str, default: object) -> object:
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {raw!r}")
        return value
    return raw


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_config(env_name: str | None = None, environ: dict | None = None) -> dict:
    """The settings of ``env_name`` (default ``$CLINIC_ENV``, else development),
    each overridden by an environment variable of the same name."""
    environ = os.environ if environ is None else environ
    env_name = env_name or environ.get("CLINIC_ENV", "development")
    try:
        cls = CONFIGS[env_name]
    except KeyError:
        raise RuntimeError(
            f"CLINIC_ENV must be one of {', '.join(CONFIGS)}, not {env_name!r}"
        ) from None
    settings = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
    for key, default in list(settings.items()):
        if key in environ and key != "ENV_NAME":
            settings[key] = _coerce(environ[key], default)
    if "DATABASE_URL" in environ:
        settings["SQLALCHEMY_DATABASE_URI"] = environ["DATABASE_URL"]
    settings["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(
        settings["SQLALCHEMY_DATABASE_URI"]
    )
    return settings


def instance_secret(name: str, make: Callable[[], str]) -> str:
    """The secret kept in ``instance/<name>`` (development), written once with ``make()``
    (0600, never overwritten), so what it signs or encrypts survives restarts."""
    path = INSTANCE_DIR / name
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


def development_secret_key() -> str:
    """Generated once and kept under instance/, so sessions survive restarts."""
    return instance_secret("secret_key", lambda: secrets.token_hex(32))

"""The home page, the health check and the readiness check."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, render_template, url_for
from flask_login import current_user

from clinic.main import dashboards
from clinic.patients import access
from clinic.security import Role, authenticated, public

bp = Blueprint("main", __name__)


@bp.get("/")
@authenticated
def home():
    """The signed-in user's dashboard (``clinic.main.dashboards``): their role's tiles,
    each a count and its first few items linking to the full list. One ``view`` audit
    event per patient a tile names, as on the lists it summarises."""
    board = dashboards.dashboard_for(current_user)
    for patient in dashboards.shown_patients(board):
        access.record_view(patient, "home_dashboard", None)
    links = {}
    if current_user.role == Role.ADMIN:
        links = {"census": _report_url("census"), "admissions": _report_url("admissions")}
    return render_template("main/home.html", board=board, role=current_user.role.value, links=links)


def _report_url(slug: str) -> str | None:
    """A report's page, or the reports index while that report is not installed yet;
    None when the reports are not installed at all."""
    if "reports.index" not in current_app.view_functions:
        return None
    from clinic.reports.core import REPORTS

    if slug in REPORTS:
        return url_for("reports.show", slug=slug)
    return url_for("reports.index")


@bp.get("/healthz")
@public
def healthz():
    """200 when the database answers, 503 when it does not (or not within
    ``clinic.production.PROBE_TIMEOUT_SECONDS``). No login, no patient data."""
    from clinic.production import probe_connection

    try:
        with probe_connection(current_app) as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        current_app.logger.warning("health check: database unavailable")
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up"), 200


@bp.get("/readyz")
@public
def readyz():
    """Whether this app server can take traffic: 200 ``{"status": "ready", "database":
    "up", "migrations": "head", "redis": "up" | "not used"}``; 503 ``{"status": "not
    ready", ...}`` with ``"down"``/``"behind"``/``"unknown"`` on the check that failed.
    The database answers, its migrations are at the scripts' head
    (``clinic.production``), and Redis answers when the rate limits are kept there
    (``RATELIMIT_STORAGE_URI``). No login, no patient data; for the load balancer and the
    deployment's rollout (``/healthz`` stays the liveness check)."""
    from clinic.production import migrations_at_head, probe_connection

    checks = {"database": "up", "migrations": "head", "redis": redis_status()}
    try:
        with probe_connection(current_app) as connection:
            connection.execute(sa.text("SELECT 1"))
            if not migrations_at_head(current_app, connection):
                checks["migrations"] = "behind"
    except sa.exc.SQLAlchemyError:
        checks["database"] = "down"
        checks["migrations"] = "unknown"
    ready = checks["database"] == "up" and checks["migrations"] == "head"
    ready = ready and checks["redis"] in {"up", "not used"}
    if not ready:
        current_app.logger.warning("readiness check failed", extra={"fields": {"checks": checks}})
    return jsonify(status="ready" if ready else "not ready", **checks), 200 if ready else 503


def redis_status() -> str:
    """``"up"``, ``"down"``, or ``"not used"`` when the rate limits are not kept in a
    single Redis (``redis://``, ``rediss://``, ``redis+unix://``: the schemes of the
    ``limits`` package)."""
    uri = current_app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith("redis+unix://"):
        uri = uri.removeprefix("redis+")
    elif not uri.startswith(("redis://", "rediss://")):
        return "not used"
    import redis

    try:
        _redis_client(uri).ping()
    except redis.RedisError:
        return "down"
    return "up"


@functools.cache
def _redis_client(uri: str):  # type: ignore[no-untyped-def]
    """One client (and its connection pool) per URL, with short timeouts: a readiness
    probe must answer within the load balancer's own timeout."""
    import redis

    return redis.Redis.from_url(uri, socket_connect_timeout=1, socket_timeout=1)

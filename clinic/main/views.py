"""The home page and the health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, render_template, url_for
from flask_login import current_user

from clinic.extensions import db
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
    """200 when the database answers, 503 when it does not. No login, no patient data."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        db.session.rollback()
        current_app.logger.warning("health check: database unavailable")
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up"), 200

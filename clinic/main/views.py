"""The home page and the health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, render_template

from clinic.extensions import db
from clinic.security import authenticated, public

bp = Blueprint("main", __name__)


@bp.get("/")
@authenticated
def home():
    return render_template("main/home.html")


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

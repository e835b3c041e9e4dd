"""clinic: a treatment-program tracker for outpatient addiction clinics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

import config as config_module

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


class ClinicFlask(Flask):
    """Flask, logging an unhandled exception by its URL rule rather than its raw path."""

    def log_exception(self, exc_info) -> None:  # type: ignore[no-untyped-def, override]
        from clinic.logging import log_exception

        log_exception(self, exc_info)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application. ``config`` overrides settings (tests use it)."""
    overrides = dict(config or {})
    settings = config_module.load_config(overrides.pop("CLINIC_ENV", None))
    settings.update(overrides)

    app = ClinicFlask(
        __name__,
        template_folder=str(TEMPLATE_DIR),
        instance_path=str(config_module.INSTANCE_DIR),
    )
    app.config.from_mapping(settings)
    from clinic.converters import BoundedIntConverter

    # Before any blueprint adds a rule: every <int:...> is a bounded database id.
    app.url_map.converters["int"] = BoundedIntConverter
    app.jinja_env.add_extension("jinja2.ext.do")
    from clinic.sites.time import site_today

    app.jinja_env.globals["site_today"] = site_today
    _check_settings(app)

    from clinic import aftercare, cli, edge, errors, medications, reports, security, therapy
    from clinic import logging as request_logging
    from clinic.accounts import admin_views as user_admin_views
    from clinic.accounts import auth, mfa_secrets
    from clinic.accounts import views as account_views
    from clinic.audit import services as audit_services
    from clinic.audit import views as audit_views
    from clinic.main import views as main_views
    from clinic.patients import access as patient_access
    from clinic.patients import (
        enrollment_views,  # noqa: F401 (its routes join patient_views.bp)
        program_views,
    )
    from clinic.patients import views as patient_views

    request_logging.register(app)  # first: every request is timed and has an id
    edge.register(app)  # then the edge checks, before CSRF, the login gate and any view
    register_extensions(app)
    security.register(app)
    auth.register(app)
    errors.register(app)
    audit_services.register(app)
    mfa_secrets.configure(app)  # RuntimeError in production without MFA_ENCRYPTION_KEYS
    patient_access.register(app)  # after audit: a page shown again is recorded before commit
    cli.register(app)
    app.register_blueprint(main_views.bp)
    app.register_blueprint(account_views.bp)
    app.register_blueprint(user_admin_views.bp)
    app.register_blueprint(audit_views.bp)
    app.register_blueprint(patient_views.bp)
    app.register_blueprint(program_views.bp)
    medications.register(app)
    therapy.register(app)
    aftercare.register(app)
    reports.register(app)
    return app


def _check_settings(app: Flask) -> None:
    env = app.config["ENV_NAME"]
    if env != "development":
        # Debug (and its interactive debugger) is never on outside development.
        app.debug = False
        app.config["DEBUG"] = False
    from clinic.production import check_production_settings

    # Production: a strong SECRET_KEY and ALLOWED_HOSTS, whatever server runs the app.
    check_production_settings(app)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config_module.development_secret_key()


def register_extensions(app: Flask) -> None:
    # Import every model so metadata (and Alembic) sees the whole schema.
    from clinic import models  # noqa: F401
    from clinic.extensions import bootstrap, csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    bootstrap.init_app(app)

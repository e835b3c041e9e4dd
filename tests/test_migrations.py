"""The migrations build the schema the models describe, and undo it, on both engines."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from clinic.extensions import db


def _diff(app):
    with db.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(mc, db.metadata)


def test_upgrade_to_head_matches_models_and_downgrade_to_base_empties(app):
    with app.app_context():
        # The fixture's database is at head already: go down to nothing, and up again.
        downgrade(revision="base")
        tables = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade()
        assert _diff(app) == []
        tables = set(sa.inspect(db.engine).get_table_names())
        assert set(db.metadata.tables) <= tables

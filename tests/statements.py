"""Counting the SQL statements a piece of code runs (the no-N+1 assertions of the reports)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from clinic.extensions import db


def statement_count(run: Callable[[], object]) -> int:
    """The statements ``run()`` sends to the app's database (in an app context)."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        run()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)

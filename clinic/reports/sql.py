"""Date arithmetic that reads the same on SQLite and PostgreSQL, for report queries.

Reports count in days. ``day_number(d)`` turns a date column (or a bound date) into an
integer day count since 1970-01-01 on both engines, so differences, gaps and windows are
plain integer arithmetic inside one statement; ``from_day_number`` turns such a number
back into a ``date`` in Python. ``month_key(d)`` is the ``'YYYY-MM'`` of a date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

EPOCH = dt.date(1970, 1, 1)


class day_number(FunctionElement):
    """Integer days since 1970-01-01 of a date expression."""

    type = sa.Integer()
    inherit_cache = True
    name = "day_number"


@compiles(day_number)
def _day_number_sqlite(element: day_number, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"CAST(julianday({compiler.process(argument, **kw)}) - 2440587.5 AS INTEGER)"


@compiles(day_number, "postgresql")
def _day_number_postgresql(element: day_number, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"(CAST({compiler.process(argument, **kw)} AS DATE) - DATE '1970-01-01')"


class month_key(FunctionElement):
    """``'YYYY-MM'`` of a date expression."""

    type = sa.String()
    inherit_cache = True
    name = "month_key"


@compiles(month_key)
def _month_key_sqlite(element: month_key, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"strftime('%Y-%m', {compiler.process(argument, **kw)})"


@compiles(month_key, "postgresql")
def _month_key_postgresql(element: month_key, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"to_char(CAST({compiler.process(argument, **kw)} AS DATE), 'YYYY-MM')"


def days(value: dt.date) -> int:
    """The Python side of ``day_number``."""
    return (value - EPOCH).days


def from_day_number(number: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(number))


def date_param(value: dt.date, name: str | None = None) -> sa.BindParameter:
    """A bound date (typed, so both engines compare it with date columns correctly)."""
    return sa.bindparam(name, value, type_=sa.Date()) if name else sa.literal(value, sa.Date())

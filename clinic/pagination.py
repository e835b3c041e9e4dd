"""Sorting and pagination for list pages, read from the query string."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import request
from flask_sqlalchemy.pagination import Pagination

from clinic.extensions import db

PER_PAGE = 50


@dataclass
class SortSpec:
    columns: dict[str, sa.ColumnElement]
    default: str

    def resolve(self) -> tuple[str, bool]:
        """The sort key and direction the request asks for (an unknown key falls back)."""
        key = request.args.get("sort", self.default)
        if key not in self.columns:
            key = self.default
        return key, request.args.get("dir") == "desc"


def paginate_sorted(query: sa.Select, spec: SortSpec, *, tiebreak: sa.ColumnElement) -> Pagination:
    key, descending = spec.resolve()
    column = spec.columns[key]
    # Empty values last either way, the same on both engines (PostgreSQL and SQLite differ).
    direction = column.desc() if descending else column.asc()
    ordered = query.order_by(direction.nulls_last(), tiebreak)
    page = db.paginate(ordered, per_page=PER_PAGE, max_per_page=PER_PAGE, error_out=False)
    page.sort_key, page.sort_desc = key, descending
    return page

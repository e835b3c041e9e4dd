"""Sorting and pagination for list pages, read from the query string.

Two rules for input that arrives in the query string:

- ``?page=`` is clamped: anything but ASCII digits is page 1, and the page is at most
  ``MAX_PAGE``, so the offset always fits the database's integer range (a page past the
  end is an empty page, never an error).
- The sort and pager links are built from the page's *own* parameters, which its
  ``SortSpec`` declares (``params=("q", "show")``), plus ``sort``, ``dir`` and ``page``.
  Any other key of the query string is dropped: a key such as ``_method`` or ``_external``
  would otherwise reach ``url_for`` as one of its own options (a 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import request, url_for
from flask_sqlalchemy.pagination import SelectPagination

from clinic.converters import DATABASE_INT_MAX
from clinic.extensions import db

PER_PAGE = 50
# The last page whose offset ((page - 1) * PER_PAGE) still fits a 32-bit integer.
MAX_PAGE = DATABASE_INT_MAX // PER_PAGE
# The parameters every sortable list understands, besides its own.
LIST_PARAMS = ("sort", "dir", "page")


def requested_page() -> int:
    """``?page=`` as a page number from 1 to ``MAX_PAGE``: 1 when absent or not made of
    ASCII digits (``-1``, ``abc``, ``1e3``), ``MAX_PAGE`` when larger."""
    raw = request.args.get("page", "")
    if not (raw.isascii() and raw.isdigit()):
        return 1
    if len(raw) > len(str(MAX_PAGE)):  # no need to read a number of any length
        return MAX_PAGE
    return min(max(int(raw), 1), MAX_PAGE)


@dataclass(frozen=True)
class SortSpec:
    """How a list page sorts, and which query-string parameters are its own.

    ``columns``: sort key (as in ``?sort=``) -> column; ``default``: the key used when the
    request names none or an unknown one; ``params``: the page's filter parameters
    (e.g. ``("q",)``), kept in its sort and pager links — nothing else is.
    """

    columns: dict[str, sa.ColumnElement]
    default: str
    params: tuple[str, ...] = ()

    def resolve(self) -> tuple[str, bool]:
        """The sort key and direction the request asks for (an unknown key falls back)."""
        key = request.args.get("sort", self.default)
        if key not in self.columns:
            key = self.default
        return key, request.args.get("dir") == "desc"


class SortedPage(SelectPagination):
    """A page of a sorted list (what ``db.paginate`` returns), which also builds the links
    to the list's other pages and sorts."""

    sort_key: str = ""
    sort_desc: bool = False
    link_params: dict[str, str] | None = None

    def url(self, **changes: Any) -> str:
        """This list's URL with its own parameters (and the sort the request chose), then
        ``changes``."""
        args: dict[str, Any] = {**(self.link_params or {}), **changes}
        return url_for(request.endpoint or "", **(request.view_args or {}), **args)

    def sort_url(self, key: str) -> str:
        """The link of a column header: sort by ``key``, toggling the direction of the
        current key, from the first page."""
        descending = key == self.sort_key and not self.sort_desc
        return self.url(sort=key, dir="desc" if descending else "asc", page=1)

    def page_url(self, number: int) -> str:
        return self.url(page=number)


def paginate_sorted(query: sa.Select, spec: SortSpec, *, tiebreak: sa.ColumnElement) -> SortedPage:
    """One page (``PER_PAGE`` rows) of ``query``, sorted as the request asks (``spec``),
    then by ``tiebreak`` so pages never overlap."""
    key, descending = spec.resolve()
    column = spec.columns[key]
    # Empty values last either way, the same on both engines (PostgreSQL and SQLite differ).
    direction = column.desc() if descending else column.asc()
    ordered = query.order_by(direction.nulls_last(), tiebreak)
    # What db.paginate() builds, as a SortedPage; the page number is ours, clamped.
    page = SortedPage(
        select=ordered,
        session=db.session(),
        page=requested_page(),
        per_page=PER_PAGE,
        max_per_page=PER_PAGE,
        error_out=False,
    )
    page.sort_key, page.sort_desc = key, descending
    own = [p for p in spec.params if p not in LIST_PARAMS and p not in (request.view_args or {})]
    link_params = {p: request.args[p] for p in own if request.args.get(p)}
    # The sort the request chose (as resolved: an unknown key is not repeated).
    if "sort" in request.args:
        link_params["sort"] = key
    if "dir" in request.args:
        link_params["dir"] = "desc" if descending else "asc"
    page.link_params = link_params
    return page

"""Sorting and keyset (seek) pagination for list pages, read from the query string.

A page is the ``PER_PAGE`` rows that follow (``?after=<id>``) or precede
(``?before=<id>``) one row of the list, in the list's order: (sort column, then a unique
tiebreak column, usually the id). The database seeks to that row through an index and
reads one page plus one row (which says whether another page follows), so page 500 costs
what page 1 costs: no ``OFFSET`` (which reads and throws away every earlier row) and no
``COUNT`` of the whole list (which reads every row on every page).

What a page no longer knows is its number and the list's length. The pager offers First,
Previous and Next, and the page says what it knows for certain (``SortedPage.summary``):
the exact count when the whole list fits on the page, else the rows shown and whether
more follow.

The cursor is the tiebreak id of the boundary row, never its sort value: a sort value is
a name or a date of birth, which do not belong in URLs (they end up in browser histories,
proxy logs and ``Referer`` headers). The row's sort values are read back inside the page's
own statement, by a scalar subquery on the *list's own query* (its scope and filters) —
so a cursor naming a row outside the user's list (another site's patient, a forged or
stale id) finds nothing and the page starts from the beginning, and nothing about that
row can be learnt from where the list starts. Input rules:

- ``?after=`` / ``?before=`` are ASCII digits from 1 to ``DATABASE_INT_MAX``; anything
  else (empty, negative, NUL bytes, a thousand digits, a word) is ignored: the first page.
- ``?page=`` (old links and bookmarks) is accepted and ignored: the first page.
- The sort and pager links are built from the page's *own* parameters, which its
  ``SortSpec`` declares (``params=("q", "show")``), plus ``sort``, ``dir`` and a cursor.
  Any other key of the query string is dropped: a key such as ``_method`` or
  ``_external`` would otherwise reach ``url_for`` as one of its own options (a 500).
  Sort links carry no cursor: changing the sort (or a filter, a form without one)
  starts from the first page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from flask import request, url_for

from clinic.converters import DATABASE_INT_MAX
from clinic.extensions import db

PER_PAGE = 50
# The parameters every sortable list understands, besides its own.
LIST_PARAMS = ("sort", "dir", "after", "before", "page")
CURSOR_MAX_DIGITS = len(str(DATABASE_INT_MAX))

Way = Literal["after", "before"]


@dataclass(frozen=True)
class Cursor:
    """Continue the list ``after`` (Next) or ``before`` (Previous) the row whose tiebreak
    id is ``row_id``."""

    way: Way
    row_id: int


def requested_cursor() -> Cursor | None:
    """The cursor of the query string, or None (the first page) when there is none or it
    is not an id: ASCII digits, 1 to ``DATABASE_INT_MAX`` (``-1``, ``1e3``, ``٣``, a NUL
    byte or 10,000 digits are the first page, never an error). ``after`` wins over
    ``before`` when both are given."""
    for way in ("after", "before"):
        raw = request.args.get(way, "")
        if raw.isascii() and raw.isdigit() and len(raw) <= CURSOR_MAX_DIGITS:
            number = int(raw)
            if 1 <= number <= DATABASE_INT_MAX:
                return Cursor(way, number)  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class OrderKey:
    """One column of a list's order. NULLs come last in both directions (the same on
    both engines, which differ by default). ``nullable`` is read from a table column;
    an expression (``lower(name)``, a computed count) is taken as nullable."""

    column: sa.ColumnElement
    descending: bool = False

    @property
    def nullable(self) -> bool:
        column = getattr(self.column, "expression", self.column)
        return bool(getattr(column, "nullable", True))

    def reversed(self) -> _Step:
        return _Step(self.column, not self.descending, nulls_first=True, nullable=self.nullable)

    def forward(self) -> _Step:
        return _Step(self.column, self.descending, nulls_first=False, nullable=self.nullable)


@dataclass(frozen=True)
class _Step:
    """A key as one query reads it: forwards (NULLs last) or backwards (NULLs first)."""

    column: sa.ColumnElement
    descending: bool
    nulls_first: bool
    nullable: bool

    def order_by(self) -> sa.ColumnElement:
        ordered = self.column.desc() if self.descending else self.column.asc()
        # A NOT NULL column gets no NULLS clause, so that a plain index (or its backward
        # scan) serves the order on both engines; a nullable one needs the clause.
        if not self.nullable:
            return ordered
        return ordered.nulls_first() if self.nulls_first else ordered.nulls_last()

    def beyond(self, value: sa.ColumnElement) -> sa.ColumnElement:
        """Rows strictly past ``value`` (a non-NULL value) in this column's order."""
        return self.column < value if self.descending else self.column > value

    def reached(self, value: sa.ColumnElement) -> sa.ColumnElement:
        return self.column <= value if self.descending else self.column >= value


def _after(steps: Sequence[_Step], values: Sequence[sa.ColumnElement]) -> sa.ColumnElement:
    """The rows strictly after the row whose keys are ``values`` in the order ``steps``
    (the last key unique and NOT NULL). A value may be NULL (a row in the NULL section
    of a nullable key) and is only known to the database (a subquery), so both cases
    are written out: (c > v) OR (c = v AND rest), the NULLs after or before the others
    as ``nulls_first`` says."""
    step, value, rest = steps[0], values[0], steps[1:]
    tail = _after(rest, values[1:]) if rest else None
    same = sa.and_(step.column == value, tail) if tail is not None else sa.false()
    if not step.nullable:
        return sa.or_(step.beyond(value), same)
    if step.nulls_first:  # the NULLs come before every value
        non_null = sa.or_(step.beyond(value), same)
        null_section = sa.or_(step.column.is_not(None), sa.and_(step.column.is_(None), tail))
    else:  # the NULLs come after every value
        non_null = sa.or_(step.beyond(value), step.column.is_(None), same)
        null_section = sa.and_(step.column.is_(None), tail)
    return sa.or_(
        sa.and_(value.is_not(None), non_null),
        sa.and_(value.is_(None), null_section if tail is not None else sa.false()),
    )


def _seek(steps: Sequence[_Step], values: Sequence[sa.ColumnElement]) -> sa.ColumnElement:
    """``_after`` in a form each engine's planner turns into an index range. When every
    key is NOT NULL and runs the same way, a row-value comparison ``(c, id) > (v, i)``
    (an index condition on PostgreSQL, a range on SQLite); otherwise the expanded form,
    with the first key's bound (``c >= v``) repeated so that an index range starts at
    the cursor rather than at the start of the list."""
    if all(not s.nullable for s in steps) and len({s.descending for s in steps}) == 1:
        row = sa.tuple_(*(s.column for s in steps))
        cursor = sa.tuple_(*values)
        return row < cursor if steps[0].descending else row > cursor
    after = _after(steps, values)
    if not steps[0].nullable:
        return sa.and_(steps[0].reached(values[0]), after)
    return after


@dataclass
class KeysetPage:
    """One page of rows (in order: the entities of a one-entity query, else the
    ``sqlalchemy`` ``Row``s, which end with the cursor column) and whether rows come
    before and after it; ``first_id`` / ``last_id``: the tiebreak ids of its first
    and last rows (the Previous and Next cursors)."""

    rows: list[Any]
    has_prev: bool
    has_next: bool
    first_id: int | None
    last_id: int | None


CURSOR_LABEL = "keyset_cursor_id"


def keyset_page(
    query: sa.Select,
    order: Sequence[OrderKey],
    *,
    cursor: Cursor | None,
    per_page: int | None = None,
    options: Sequence[Any] = (),
) -> KeysetPage:
    """The page of ``query`` (unordered, unlimited) that ``cursor`` asks for, in
    ``order``, whose last key must be a unique NOT NULL integer column (the id).

    One statement: the page plus one row (is there more?). The cursor row's other keys
    are read by scalar subqueries on ``query`` itself (an id outside the list reads
    NULL, and matches nothing). Two statements only when a cursor finds nothing to show
    (a row since removed from the list, a forged id) — then the first page is read.
    ``options``: loader options of the page's entities (``selectinload(...)``), applied
    to the page's statement only (the cursor subqueries select single columns)."""
    per_page = per_page or PER_PAGE
    id_column = order[-1].column
    backwards = cursor is not None and cursor.way == "before"
    steps = [key.reversed() if backwards else key.forward() for key in order]
    statement = query.add_columns(id_column.label(CURSOR_LABEL))
    if options:
        statement = statement.options(*options)
    if cursor is not None:
        # max(): exactly one value (NULL when the row is not in the list) even if a join
        # of the list repeated the row, and no LIMIT (nor SQLite's "OFFSET 0") in it.
        values = [
            query.with_only_columns(sa.func.max(key.column), maintain_column_froms=True)
            .where(id_column == cursor.row_id)
            .scalar_subquery()
            for key in order[:-1]
        ]
        bound = sa.bindparam("keyset_cursor", cursor.row_id, type_=id_column.type)
        statement = statement.where(_seek(steps, [*values, bound]))
    statement = statement.order_by(*(s.order_by() for s in steps)).limit(per_page + 1)
    rows = list(db.session.execute(statement).unique())
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
    if cursor is not None and (not rows or (backwards and not more and len(rows) < per_page)):
        # Nothing past the cursor (it names no row of the list), or Previous reached the
        # start with a short page: the first page, as the First link shows it.
        return keyset_page(query, order, cursor=None, per_page=per_page, options=options)
    return KeysetPage(
        rows=[row[0] if len(row) == 2 else row for row in rows],
        has_prev=more if backwards else cursor is not None,
        has_next=True if backwards else more,
        first_id=rows[0][-1] if rows else None,
        last_id=rows[-1][-1] if rows else None,
    )


def list_page(
    rows: Sequence[Any],
    row_id: Callable[[Any], int],
    *,
    cursor: Cursor | None,
    per_page: int = PER_PAGE,
) -> KeysetPage:
    """``keyset_page`` for a list already sorted in memory (a computed sort such as an
    attendance rate): the page after or before the row whose ``row_id`` is the cursor's;
    an id not in the list is the first page, as in the database."""
    ids = [row_id(row) for row in rows]
    index = ids.index(cursor.row_id) if cursor is not None and cursor.row_id in ids else None
    start = 0
    if cursor is not None and index is not None:
        # Previous that reaches the start shows the first page, as First does.
        start = index + 1 if cursor.way == "after" else max(index - per_page, 0)
    end = start + per_page
    page = list(rows[start:end])
    if not page and start:  # past the end: the first page
        return list_page(rows, row_id, cursor=None, per_page=per_page)
    return KeysetPage(
        rows=page,
        has_prev=start > 0,
        has_next=start + len(page) < len(rows),
        first_id=ids[start] if page else None,
        last_id=ids[start + len(page) - 1] if page else None,
    )


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


class SortedPage:
    """A page of a sorted list: ``items`` (in order), ``has_prev`` / ``has_next``, the
    sort it was made with, and the links to the list's other pages and sorts (only the
    list's own parameters, ``link_params``)."""

    def __init__(
        self,
        keyset: KeysetPage,
        *,
        sort_key: str,
        sort_desc: bool,
        link_params: dict[str, str],
        items: list[Any] | None = None,
    ):
        self.items = keyset.rows if items is None else items
        self.has_prev = keyset.has_prev
        self.has_next = keyset.has_next
        self.first_id = keyset.first_id
        self.last_id = keyset.last_id
        self.sort_key = sort_key
        self.sort_desc = sort_desc
        self.link_params = link_params

    @property
    def complete(self) -> bool:
        """The whole list is on this page (so ``len(items)`` is its exact length)."""
        return not self.has_prev and not self.has_next

    @property
    def summary(self) -> str:
        """What the page knows for certain: the exact count when the whole list is shown,
        else the rows shown and where they are (counting the whole list would cost a
        read of every row on every page)."""
        shown = len(self.items)
        if self.complete:
            return f"{shown} in all."
        if not self.has_prev:
            return f"The first {shown}; more on the next page."
        if self.has_next:
            return f"{shown} on this page; more on the next page."
        return f"{shown} on this page, the end of the list."

    def url(self, **changes: Any) -> str:
        """This list's URL with its own parameters (and the sort the request chose), then
        ``changes`` (a None value drops a parameter)."""
        args: dict[str, Any] = {**self.link_params, **changes}
        args = {k: v for k, v in args.items() if v is not None}
        return url_for(request.endpoint or "", **(request.view_args or {}), **args)

    def sort_url(self, key: str) -> str:
        """The link of a column header: sort by ``key``, toggling the direction of the
        current key, from the first page."""
        descending = key == self.sort_key and not self.sort_desc
        return self.url(sort=key, dir="desc" if descending else "asc")

    def first_url(self) -> str:
        return self.url()

    def next_url(self) -> str | None:
        return self.url(after=self.last_id) if self.has_next and self.last_id else None

    def prev_url(self) -> str | None:
        return self.url(before=self.first_id) if self.has_prev and self.first_id else None


def sort_order(
    column: sa.ColumnElement, descending: bool, tiebreak: Sequence[sa.ColumnElement]
) -> list[OrderKey]:
    """The order of a sorted list: ``column`` as asked, then the ``tiebreak`` columns
    (the last one a unique id). A tiebreak given descending (``Referral.id.desc()``:
    newest first among equals) is read so for an ascending sort; a descending sort
    reverses the tiebreak too, so the whole order runs one way and one index (or its
    backward scan) serves both directions."""
    keys = [OrderKey(column, descending)]
    for element in tiebreak:
        modifier = getattr(element, "modifier", None)
        desc = modifier is sa.sql.operators.desc_op
        base = element.element if modifier is not None else element  # type: ignore[attr-defined]
        keys.append(OrderKey(base, desc != descending))
    return keys


def paginate_sorted(
    query: sa.Select,
    spec: SortSpec,
    *,
    tiebreak: Any,
    options: Sequence[Any] = (),
    items: Callable[[list[Any]], list[Any]] | None = None,
) -> SortedPage:
    """One page (``PER_PAGE`` rows) of ``query``, sorted as the request asks (``spec``),
    then by ``tiebreak`` (a column, or a list or tuple of them, the last one a unique id)
    so pages never overlap, by keyset
    from the request's cursor (``requested_cursor``). One statement for the page (plus
    whatever ``options`` load with it), whatever its depth.

    ``options``: loader options of the page's entities (``selectinload(...)``), applied
    to the page's statement only. ``items``: turns the page's rows into what the page
    shows (default: the rows; a one-entity query gives the entities)."""
    key, descending = spec.resolve()
    tiebreaks = list(tiebreak) if isinstance(tiebreak, list | tuple) else [tiebreak]
    order = sort_order(spec.columns[key], descending, tiebreaks)
    keyset = keyset_page(query, order, cursor=requested_cursor(), options=options)
    own = [p for p in spec.params if p not in LIST_PARAMS and p not in (request.view_args or {})]
    link_params = {p: request.args[p] for p in own if request.args.get(p)}
    # The sort the request chose (as resolved: an unknown key is not repeated).
    if "sort" in request.args:
        link_params["sort"] = key
    if "dir" in request.args:
        link_params["dir"] = "desc" if descending else "asc"
    return SortedPage(
        keyset,
        sort_key=key,
        sort_desc=descending,
        link_params=link_params,
        items=items(keyset.rows) if items is not None else None,
    )

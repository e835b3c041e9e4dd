"""Keyset pagination (clinic/pagination.py, issue 15): every page of a sorted list costs
what page 1 costs, walks the list exactly once in order both ways, and takes any cursor
from the query string without an error."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
import sqlalchemy as sa

from clinic import pagination
from clinic.accounts.models import User
from clinic.extensions import db
from clinic.pagination import Cursor, keyset_page, sort_order
from clinic.patients.models import Patient
from tests.conftest import ON_POSTGRES

PATIENT_SORTS = ("name", "mrn", "dob", "intake")
SORT_COLUMNS = {
    "name": Patient.last_key,
    "mrn": Patient.mrn,
    "dob": Patient.date_of_birth,
    "intake": Patient.intake_date,
}


@pytest.fixture
def crowd(make_patient):
    """Fourteen patients with ties on every sort but the MRN: three last names, three
    dates of birth, two intake dates, in an order unlike their ids."""
    names = ["Smith", "Adams", "Smith", "Zhou", "Adams", "Smith", "Zhou"] * 2
    born = [dt.date(1980, 4, 2), dt.date(1975, 1, 1), dt.date(1990, 12, 31)]
    return [
        make_patient(
            f"P{i:02d}",
            last,
            date_of_birth=born[i % 3],
            intake_date=dt.date(2026, 1, 5) if i % 2 else dt.date(2025, 6, 1),
        )
        for i, last in enumerate(names)
    ]


def rows_of(html: str) -> list[int]:
    table = html.split('data-testid="search-results"')[1].split("</table>")[0]
    return [int(i) for i in re.findall(r'href="/patients/(\d+)"', table)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    return unescape(found.group(1)) if found else None


def expected_order(app, sort: str, desc: bool) -> list[int]:
    """The whole list in the database's own order (its collation), read in one query."""
    with app.app_context():
        steps = [k.forward() for k in sort_order(SORT_COLUMNS[sort], desc, [Patient.id])]
        query = sa.select(Patient.id).order_by(*(s.order_by() for s in steps))
        return list(db.session.scalars(query))


@pytest.mark.parametrize("sort", PATIENT_SORTS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_next_walks_every_patient_once_in_order_and_previous_walks_back(
    app, client_as, crowd, monkeypatch, sort, direction
):
    monkeypatch.setattr(pagination, "PER_PAGE", 3)
    client = client_as("staff")
    url: str | None = f"/patients/?sort={sort}&dir={direction}"
    pages: list[list[int]] = []
    while url is not None:
        html = client.get(url).get_data(as_text=True)
        pages.append(rows_of(html))
        assert f"sort={sort}" in (link(html, "next") or url)
        url = link(html, "next")
    assert [len(page) for page in pages] == [3, 3, 3, 3, 2]
    walked = [pid for page in pages for pid in page]
    assert walked == expected_order(app, sort, direction == "desc")
    assert sorted(walked) == sorted(crowd)
    # Back from the last page with Previous: the same pages, in reverse.
    last_url = f"/patients/?sort={sort}&dir={direction}&after={pages[-2][-1]}"
    html = client.get(last_url).get_data(as_text=True)
    back = []
    while (url := link(html, "prev")) is not None:
        html = client.get(url).get_data(as_text=True)
        back.append(rows_of(html))
    assert back == pages[-2::-1]
    assert 'aria-disabled="true">Previous<' in html and 'aria-disabled="true">First<' in html


def test_a_deep_page_runs_the_statements_of_page_one_without_offset_or_count(
    app, client_as, crowd, monkeypatch
):
    monkeypatch.setattr(pagination, "PER_PAGE", 3)
    client = client_as("staff")
    ordered = expected_order(app, "dob", True)
    seen: list[tuple[str, tuple]] = []

    def listen(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, tuple(parameters or ())))

    def statements(url: str) -> list[tuple[str, tuple]]:
        seen.clear()
        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", listen)
            try:
                assert client.get(url).status_code == 200
            finally:
                sa.event.remove(db.engine, "before_cursor_execute", listen)
        return list(seen)

    first = statements("/patients/?sort=dob&dir=desc")
    deep = statements(f"/patients/?sort=dob&dir=desc&after={ordered[8]}")
    back = statements(f"/patients/?sort=dob&dir=desc&before={ordered[9]}")
    assert len(first) == len(deep) == len(back)
    for statement, parameters in first + deep + back:
        text = statement.upper()
        assert "COUNT(" not in text, statement
        if ON_POSTGRES:
            assert "OFFSET" not in text, statement
        elif "OFFSET" in text:  # SQLAlchemy always writes SQLite's LIMIT as "LIMIT ? OFFSET ?"
            assert text.count("OFFSET") == 1 and parameters[-1] == 0, statement


@pytest.mark.parametrize(
    "query",
    [
        "after=",
        "after=abc",
        "after=-3",
        "after=1e3",
        "after=" + "9" * 5000,
        "after=2147483648",
        "after=0",
        "after=%D9%A3",  # an Arabic-Indic digit three
        "after=999999",  # no such patient
        "before=999999",
        "page=2",
        "page=-1",
        "page=99999999999999999999",
        "sort=zzz&dir=up&after=abc",
        "_method=DELETE&_external=1&after=x",
    ],
)
def test_any_cursor_in_the_query_string_is_a_page_never_an_error(client_as, crowd, query):
    client = client_as("staff")
    first = client.get("/patients/").get_data(as_text=True)
    response = client.get(f"/patients/?{query}")
    assert response.status_code == 200
    assert rows_of(response.get_data(as_text=True)) == rows_of(first)


@pytest.mark.parametrize(
    "query", ["after=%00", "after=1%002", "before=%00%00", "sort=%00&dir=%00&after=%00"]
)
def test_a_nul_byte_in_a_cursor_is_refused_at_the_edge(client_as, crowd, query):
    assert client_as("staff").get(f"/patients/?{query}").status_code == 400


def test_a_cursor_outside_the_users_sites_is_the_first_page(
    app, client_as, make_patient, make_site, crowd, monkeypatch
):
    """The cursor row's sort values are read through the list's own query: a patient of
    another site (whose name would place the page) is no row of it."""
    monkeypatch.setattr(pagination, "PER_PAGE", 3)
    east = make_site("EAST")
    stranger = make_patient("Zed", "Mmmm", site_id=east)
    client = client_as("staff")
    first = rows_of(client.get("/patients/").get_data(as_text=True))
    placed = rows_of(client.get(f"/patients/?after={stranger}").get_data(as_text=True))
    assert placed == first


def test_the_search_and_the_sort_stay_across_pages_and_stray_keys_do_not(
    client_as, crowd, monkeypatch
):
    monkeypatch.setattr(pagination, "PER_PAGE", 2)
    client = client_as("staff")
    html = client.get("/patients/?q=smith&sort=dob&dir=desc&_method=DELETE&_external=1&x=1")
    html = html.get_data(as_text=True)
    following = link(html, "next")
    assert following is not None
    assert "q=smith" in following and "sort=dob" in following and "dir=desc" in following
    assert "_method" not in following and "_external" not in following and "x=1" not in following
    seen = rows_of(html)
    while following is not None:
        html = client.get(following).get_data(as_text=True)
        seen += rows_of(html)
        following = link(html, "next")
    assert len(seen) == len(set(seen)) == 6  # the six Smiths, each once
    # A sort header starts from the first page (no cursor), keeping the search.
    header = re.search(r'<th scope="col"[^>]*>\s*<a href="([^"]+)">Name', html)
    assert header is not None
    assert "after=" not in header.group(1) and "before=" not in header.group(1)
    assert "q=smith" in unescape(header.group(1))


def test_the_pager_says_what_it_knows(client_as, crowd, monkeypatch):
    client = client_as("staff")
    whole = client.get("/patients/").get_data(as_text=True)
    assert "14 in all." in whole and 'data-testid="pager"' not in whole
    monkeypatch.setattr(pagination, "PER_PAGE", 5)
    first = client.get("/patients/").get_data(as_text=True)
    assert "The first 5; more on the next page." in first
    nav = first.split('data-testid="pager"')[0].rsplit("<nav", 1)[1]
    assert 'aria-label="Pages of this list"' in nav
    middle = client.get(link(first, "next")).get_data(as_text=True)
    assert "5 on this page; more on the next page." in middle
    last = client.get(link(middle, "next")).get_data(as_text=True)
    assert "4 on this page, the end of the list." in last
    assert 'aria-disabled="true">Next<' in last
    assert re.search(r'href="/patients/">First</a>', last)


# --- the seek itself, with NULLs, on both engines -------------------------------------------


@pytest.fixture
def signed_in(app, make_user):
    """Twelve users, most of whom never signed in (NULL), with ties among the others."""
    moments = [None, dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC), None]
    moments += [dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)] * 2 + [None]
    ids = [make_user("staff", username=f"u{i:02d}") for i in range(12)]
    with app.app_context():
        for i, user_id in enumerate(ids):
            db.session.get(User, user_id).last_login_at = moments[i % len(moments)]
        db.session.commit()
    return ids


@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("tiebreak_desc", [False, True])
@pytest.mark.parametrize("per_page", [1, 2, 5, 12])
def test_the_seek_walks_a_nullable_column_both_ways(app, signed_in, desc, tiebreak_desc, per_page):
    tiebreak = User.id.desc() if tiebreak_desc else User.id
    order = sort_order(User.last_login_at, desc, [tiebreak])
    with app.app_context():
        query = sa.select(User)
        everyone = [
            u.id
            for u in db.session.scalars(query.order_by(*(k.forward().order_by() for k in order)))
        ]
        nulls = [u.id for u in db.session.scalars(query.where(User.last_login_at.is_(None)))]
        assert everyone[-len(nulls) :] and set(everyone[-len(nulls) :]) == set(nulls)
        pages = []
        cursor = None
        while True:
            page = keyset_page(query, order, cursor=cursor, per_page=per_page)
            pages.append([u.id for u in page.rows])
            assert page.has_prev == (len(pages) > 1)
            if not page.has_next:
                break
            cursor = Cursor("after", page.last_id)
        assert [pid for p in pages for pid in p] == everyone
        back = []
        while page.has_prev:
            page = keyset_page(
                query, order, cursor=Cursor("before", page.first_id), per_page=per_page
            )
            back.append([u.id for u in page.rows])
        assert back == pages[-2::-1]


def test_a_cursor_row_since_removed_from_the_list_gives_the_first_page(app, signed_in):
    order = sort_order(User.username, False, [User.id])
    with app.app_context():
        query = sa.select(User).where(User.username.like("u%"))
        first = keyset_page(query, order, cursor=None, per_page=5)
        admin = db.session.scalar(sa.select(User.id).where(User.username.not_like("u%")))
        for cursor in (Cursor("after", admin), Cursor("before", admin)):
            page = keyset_page(query, order, cursor=cursor, per_page=5)
            assert [u.id for u in page.rows] == [u.id for u in first.rows]
            assert not page.has_prev and page.has_next


# --- the plans: an index serves each sort, page 1 and a deep page ----------------------------


def _plan(statement: sa.Select) -> str:
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    if ON_POSTGRES:
        db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        db.session.execute(sa.text("SET LOCAL enable_sort = off"))
        return "\n".join(db.session.execute(sa.text(f"EXPLAIN {sql}")).scalars())
    return "\n".join(row[-1] for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))


@pytest.mark.parametrize("sort", PATIENT_SORTS)
@pytest.mark.parametrize("desc", [False, True])
def test_each_patient_sort_reads_an_index_in_order_on_page_one_and_deep(app, crowd, sort, desc):
    """No sort step (PostgreSQL "Sort", SQLite "TEMP B-TREE FOR ORDER BY") and no full
    scan of the table: the index gives the rows in order from the cursor on."""
    statements: list[sa.Select] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "keyset_cursor_id" in statement:
            statements.append(context.compiled.statement)

    order = sort_order(SORT_COLUMNS[sort], desc, [Patient.id])
    with app.app_context():
        query = sa.select(Patient).where(Patient.entered_in_error_at.is_(None))
        sa.event.listen(db.engine, "before_cursor_execute", capture)
        try:
            keyset_page(query, order, cursor=None, per_page=3)
            keyset_page(query, order, cursor=Cursor("after", crowd[5]), per_page=3)
            keyset_page(query, order, cursor=Cursor("before", crowd[5]), per_page=3)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", capture)
        assert len(statements) >= 3
        for statement in statements:
            plan = _plan(statement)
            db.session.rollback()
            if ON_POSTGRES:
                # The MRN is unique: its own index gives (mrn, id) in order, and PostgreSQL
                # only orders each one-row group of equal MRNs ("Presorted Key: mrn").
                nodes = [line.strip().removeprefix("->").strip() for line in plan.splitlines()]
                sorts = [node for node in nodes if re.match(r"(Incremental )?Sort  \(", node)]
                assert all(node.startswith("Incremental Sort") for node in sorts), plan
                assert not sorts or re.search(r"Presorted Key: (patient\.)?mrn$", plan, re.M), plan
                assert "Seq Scan on patient" not in plan and "Index Scan" in plan, plan
            else:
                assert "TEMP B-TREE" not in plan, plan
                assert any(
                    "patient USING" in line and "INDEX" in line for line in plan.splitlines()
                ), plan

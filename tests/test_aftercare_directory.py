"""The aftercare resource directory (issue 12, "Resource directory"): adding, changing,
deactivating and finding resources, its rules at the service, over HTTP and in the
database, CSV import (all or nothing, with a report of refused rows) and export (escaped
against formula injection, audited), who may do what, and a constant number of SQL
statements on the list page."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from html import unescape

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import directory
from clinic.aftercare.models import AftercareResource, ResourceKind, Tristate
from clinic.audit.models import AuditEvent
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db

TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
VERSION_RE = re.compile(r'name="version"[^>]*? value="([^"]+)"')
TODAY = dt.date(2026, 11, 20)


@contextlib.contextmanager
def count_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def residence(**changes) -> directory.ResourceData:
    values = {
        "name": "Harbor House",
        "kind": "recovery_residence",
        "narr_level": "II",
        "street": "12 Lake St",
        "city": "Chicago",
        "state": "il",
        "postal_code": "606011234",
        "phone": "312-555-0147",
        "email": "intake@harbor.example.org",
        "contact_name": "Rosa Diaz",
        "accepts_moud": "yes",
        "accepts_methadone": "yes",
        "beds_total": 8,
        "beds_available": 2,
        "beds_confirmed_on": TODAY,
        "gender_served": "women",
    }
    values.update(changes)
    return directory.ResourceData(**values)


def group(**changes) -> directory.ResourceData:
    values = {
        "name": "Tuesday NA",
        "kind": "support_group",
        "support_group_type": "na",
        "city": "Chicago",
        "meeting_times": "Tuesdays 7 pm",
    }
    values.update(changes)
    return directory.ResourceData(**values)


@pytest.fixture
def actor(app, make_user):
    user_id = make_user("staff", full_name="Sam Staff")
    return user_id


@pytest.fixture
def make_resource(app, actor):
    def make(data: directory.ResourceData | None = None, *, active: bool = True) -> int:
        with app.test_request_context():
            user = db.session.get(User, actor)
            resource = directory.create_resource(actor=user, data=data or residence())
            if not active:
                directory.set_active(
                    resource, actor=user, active=False, expected_version=resource.version
                )
            db.session.commit()
            return resource.id

    return make


def _events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent).where(
                    AuditEvent.action == action, AuditEvent.entity_type == "aftercare_resource"
                )
            )
        )


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(AftercareResource))


# --- the service ---------------------------------------------------------------------------


def test_a_residence_is_stored_normalised_and_audited(app, make_resource):
    resource_id = make_resource()
    with app.app_context():
        r = db.session.get(AftercareResource, resource_id)
        assert r.state == "IL"
        assert r.postal_code == "60601-1234"
        assert r.phone == "+13125550147"
        assert r.kind is ResourceKind.RECOVERY_RESIDENCE
        assert r.version == 1 and r.active
    assert [e.entity_id for e in _events(app, "create")] == [str(resource_id)]


def test_methadone_yes_means_moud_yes(app, make_resource):
    resource_id = make_resource(residence(accepts_moud="unknown", accepts_methadone="yes"))
    with app.app_context():
        assert db.session.get(AftercareResource, resource_id).accepts_moud is Tristate.YES


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (residence(name="   "), "name"),
        (residence(kind="castle"), "kind"),
        (group(narr_level="II"), "narr_level"),
        (residence(kind="halfway_house", narr_level="II"), "narr_level"),
        (group(support_group_type=None), "support_group_type"),
        (residence(narr_level=None, support_group_type="aa"), "support_group_type"),
        (residence(meeting_times="Mondays"), "meeting_times"),
        (residence(accepts_moud="no", accepts_methadone="yes"), "accepts_methadone"),
        (residence(beds_available=9), "beds_available"),
        (residence(beds_total=None), "beds_total"),
        (residence(beds_total=10**12), "beds_total"),
        (residence(beds_available=-1), "beds_available"),
        (residence(beds_confirmed_on=None), "beds_confirmed_on"),
        (residence(beds_confirmed_on=TODAY + dt.timedelta(days=1)), "beds_confirmed_on"),
        (group(beds_total=5), "beds_total"),
        (residence(phone="555-0100"), "phone"),
        (residence(postal_code="ABCDE"), "postal_code"),
        (residence(state="Illinois"), "state"),
        (residence(email="not an email"), "email"),
        (residence(name="Harbor\x00House"), "name"),
        (residence(notes="x" * 2001), "notes"),
        (residence(site_id=2**31 - 1), "site_id"),
    ],
)
def test_the_service_refuses_bad_input_by_the_field(app, data, field):
    with app.app_context(), pytest.raises(DomainError) as refused:
        directory.check_resource(data, today=TODAY)
    assert refused.value.field == field


def test_the_database_refuses_what_the_service_refuses(app, make_resource):
    """Every rule is a CHECK too: a write that skips the service is refused."""
    resource_id = make_resource()
    bad = [
        {"beds_available": 9},
        {"narr_level": "I", "kind": "halfway_house"},
        {"accepts_moud": "no", "accepts_methadone": "yes"},
        {"kind": "support_group"},  # no group type, and beds
        {"meeting_times": "Mondays"},
        {"beds_confirmed_on": None},
        {"state": "il"},
        {"name": " "},
    ]
    with app.app_context():
        for values in bad:
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(
                    sa.update(AftercareResource)
                    .where(AftercareResource.id == resource_id)
                    .values(**values)
                )
            db.session.rollback()


def test_update_changes_and_audits_field_names(app, make_resource, actor):
    resource_id = make_resource()
    with app.test_request_context():
        r = db.session.get(AftercareResource, resource_id)
        changed = directory.update_resource(
            r,
            actor=db.session.get(User, actor),
            data=residence(beds_available=0, beds_confirmed_on=TODAY),
            expected_version=1,
            today=TODAY,
        )
        db.session.commit()
        assert changed == ["beds_available"]
        assert r.version == 2
    [event] = _events(app, "update")
    assert "beds_available" in event.details and "0" not in event.details.replace("_", "")


def test_a_stale_version_is_a_conflict(app, make_resource, actor):
    resource_id = make_resource()
    with app.test_request_context():
        r = db.session.get(AftercareResource, resource_id)
        with pytest.raises(ConflictError):
            directory.update_resource(
                r, actor=db.session.get(User, actor), data=residence(), expected_version=7
            )
        with pytest.raises(ConflictError):
            directory.set_active(
                r, actor=db.session.get(User, actor), active=False, expected_version=None
            )


def test_deactivate_and_reactivate(app, make_resource, actor):
    resource_id = make_resource()
    with app.test_request_context():
        r = db.session.get(AftercareResource, resource_id)
        user = db.session.get(User, actor)
        directory.set_active(r, actor=user, active=False, expected_version=1)
        with pytest.raises(DomainError):
            directory.set_active(r, actor=user, active=False, expected_version=2)
        directory.set_active(r, actor=user, active=True, expected_version=2)
        db.session.commit()
    assert len(_events(app, "deactivate")) == 1
    assert len(_events(app, "reactivate")) == 1


def test_beds_are_stale_after_14_days(app, make_resource):
    with app.app_context():
        r = AftercareResource(beds_confirmed_on=TODAY - dt.timedelta(days=14))
        assert not directory.beds_stale(r, TODAY)
        r.beds_confirmed_on = TODAY - dt.timedelta(days=15)
        assert directory.beds_stale(r, TODAY)
        assert not directory.beds_stale(AftercareResource(), TODAY)


def test_search_filters(app, make_resource, make_site):
    east = make_site("EAST")
    ids = {
        "harbor": make_resource(),
        "no_moud": make_resource(
            residence(
                name="Oak Sober Living",
                accepts_moud="no",
                accepts_methadone="no",
                city="Evanston",
                site_id=east,
            )
        ),
        "no_methadone": make_resource(
            residence(name="Birch House", accepts_methadone="no", beds_available=0)
        ),
        "group": make_resource(group(notes="Family-friendly; 50% newcomers")),
        "closed": make_resource(residence(name="Closed House"), active=False),
    }

    def found(**filters) -> set[str]:
        with app.app_context():
            query = directory.search_query(directory.DirectoryFilters(**filters))
            names = {v: k for k, v in ids.items()}
            return {names[r.id] for r in db.session.scalars(query)}

    assert found() == {"harbor", "no_moud", "no_methadone", "group"}
    assert found(include_inactive=True) == set(ids)
    assert found(kind=ResourceKind.SUPPORT_GROUP) == {"group"}
    assert found(accepts_moud=Tristate.YES) == {"harbor", "no_methadone"}
    assert found(accepts_methadone=Tristate.YES) == {"harbor"}
    assert found(beds_available=True) == {"harbor", "no_moud"}
    assert found(city="evanston") == {"no_moud"}
    assert found(site_id=east) == {"no_moud"}
    assert found(text="ROSA") == {"harbor", "no_moud", "no_methadone"}  # the contact
    assert found(text="evans") == {"no_moud"}  # the city
    assert found(text="50%") == {"group"}  # a literal percent sign, not a wildcard
    assert found(text="_") == set()


# --- pages -------------------------------------------------------------------------------


def _token(html: str) -> str:
    match = TOKEN_RE.search(html)
    assert match, "no submission token on the page"
    return match.group(1)


def form_data(**changes) -> dict:
    values = {
        "name": "Harbor House",
        "kind": "recovery_residence",
        "narr_level": "II",
        "support_group_type": "",
        "street": "12 Lake St",
        "city": "Chicago",
        "state": "IL",
        "postal_code": "60601",
        "phone": "(312) 555-0147",
        "email": "",
        "contact_name": "Rosa Diaz",
        "accepts_moud": "yes",
        "accepts_methadone": "yes",
        "beds_total": "8",
        "beds_available": "1",
        "beds_confirmed_on": "2026-11-01",
        "meeting_times": "",
        "gender_served": "all",
        "notes": "",
        "site_id": "0",
    }
    values.update(changes)
    return values


def post_new(client, **changes):
    page = client.get("/aftercare/resources/new").get_data(as_text=True)
    data = form_data(**changes)
    data.setdefault("submission_token", _token(page))
    return client.submit("/aftercare/resources/new", data)


def test_staff_add_a_resource_and_see_it_listed(app, client_as):
    staff = client_as("staff")
    response = post_new(staff)
    assert response.status_code == 302
    location = response.headers["Location"]
    detail = staff.get(location).get_data(as_text=True)
    assert "Harbor House" in detail and "(312) 555-0147" in detail
    listing = staff.get("/aftercare/resources/?moud=yes&beds=y").get_data(as_text=True)
    assert "Harbor House" in listing
    assert 'data-testid="stale"' in listing  # confirmed on 1 Nov, more than 14 days ago


def test_a_double_submit_adds_the_resource_once(app, client_as):
    staff = client_as("staff")
    page = staff.get("/aftercare/resources/new").get_data(as_text=True)
    data = {**form_data(), "submission_token": _token(page)}
    first = staff.submit("/aftercare/resources/new", dict(data))
    second = staff.submit("/aftercare/resources/new", dict(data))
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert _count(app) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"beds_available": "9"}, "cannot be more than the total"),
        ({"beds_total": "99999999999999"}, "Enter a number of beds from 0 to 1000."),
        ({"kind": "support_group", "support_group_type": "na", "narr_level": ""},
         "Beds are recorded"),
        ({"kind": "support_group", "beds_total": "", "beds_available": "",
          "beds_confirmed_on": "", "narr_level": "II", "support_group_type": "na"},
         "NARR level is for sober-living homes"),
        ({"name": "Harbor\x00House"}, "control or invisible"),
        ({"notes": "x" * 2001}, "2000"),
        ({"accepts_moud": "no"}, "Methadone is a medication for opioid use disorder"),
        ({"site_id": "99999"}, "Not a valid choice"),
        ({"phone": "call me"}, "area code"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_by_the_field_and_kept(app, client_as, changes, message):
    staff = client_as("staff")
    response = post_new(staff, **changes)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in body
    assert 'value="Rosa Diaz"' in body  # the other input is kept
    assert _count(app) == 0


def test_every_wrong_contact_field_is_shown_at_once(app, client_as):
    staff = client_as("staff")
    response = post_new(staff, phone="555", postal_code="6060", state="Illinois")
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in ("area code", "5-digit ZIP code", "two-letter USPS code"):
        assert message in body
    assert _count(app) == 0


def test_edit_conflict_shows_both_values(app, client_as, make_resource):
    resource_id = make_resource()
    staff = client_as("staff")
    url = f"/aftercare/resources/{resource_id}/edit"
    page = staff.get(url).get_data(as_text=True)
    version = VERSION_RE.search(page).group(1)
    other = client_as("admin")
    other_page = other.get(url).get_data(as_text=True)
    saved = other.submit(
        url,
        {
            **form_data(name="Harbor House East", beds_confirmed_on="2026-11-20"),
            "version": VERSION_RE.search(other_page).group(1),
        },
    )
    assert saved.status_code == 302
    response = staff.submit(url, {**form_data(name="Harbor Home"), "version": version})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'data-testid="conflict"' in body and "Harbor House East" in body
    assert 'value="Harbor Home"' in body
    # Having looked, saving again goes through.
    again = staff.submit(
        url, {**form_data(name="Harbor Home"), "version": VERSION_RE.search(body).group(1)}
    )
    assert again.status_code == 302


def test_deactivate_asks_first_then_hides_the_resource(app, client_as, make_resource):
    resource_id = make_resource()
    staff = client_as("staff")
    url = f"/aftercare/resources/{resource_id}/deactivate"
    confirm = staff.get(url)
    assert confirm.status_code == 200 and 'data-testid="confirm"' in confirm.get_data(True)
    assert _count(app) == 1
    page = confirm.get_data(as_text=True)
    response = staff.submit(url, {"version": VERSION_RE.search(page).group(1)})
    assert response.status_code == 302
    assert 'data-testid="empty"' in staff.get("/aftercare/resources/").get_data(as_text=True)
    listed = staff.get("/aftercare/resources/?inactive=y").get_data(as_text=True)
    assert "Harbor House" in listed and "inactive" in listed
    # Sent again: already inactive, nothing recorded twice.
    assert staff.submit(url, {"version": "2"}, form_url="/").status_code == 302
    assert len(_events(app, "deactivate")) == 1


def test_an_unknown_or_huge_id_is_404_and_recorded(app, client_as):
    staff = client_as("staff")
    assert staff.get("/aftercare/resources/424242").status_code == 404
    assert staff.get("/aftercare/resources/99999999999999999999/edit").status_code == 404
    with app.app_context():
        denied = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "access_denied")
        ).all()
        assert {e.entity_id for e in denied} >= {"424242", "0"}


@pytest.mark.parametrize("role", ["staff", "admin", "clinician"])
def test_every_role_reads_the_directory(app, client_as, make_resource, role):
    resource_id = make_resource()
    client = client_as(role)
    assert client.get("/aftercare/resources/").status_code == 200
    assert client.get(f"/aftercare/resources/{resource_id}").status_code == 200
    assert client.get("/aftercare/resources/export.csv").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/aftercare/resources/new",
        "/aftercare/resources/{id}/edit",
        "/aftercare/resources/{id}/deactivate",
        "/aftercare/resources/import",
    ],
)
def test_clinicians_cannot_change_the_directory(app, client_as, make_resource, url):
    resource_id = make_resource()
    clinician = client_as("clinician")
    url = url.format(id=resource_id)
    assert clinician.get(url).status_code == 403
    assert clinician.submit(url, form_data(), form_url="/").status_code == 403
    body = clinician.get(f"/aftercare/resources/{resource_id}").get_data(as_text=True)
    assert "/edit" not in body and "Add a resource" not in body


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get("/aftercare/resources/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_invalid_filters_list_nothing_and_export_nothing(app, client_as, make_resource):
    make_resource()
    staff = client_as("staff")
    response = staff.get("/aftercare/resources/?kind=castle")
    assert response.status_code == 400
    assert "Harbor House" not in response.get_data(as_text=True)
    assert staff.get("/aftercare/resources/export.csv?kind=castle").status_code == 400
    assert staff.get("/aftercare/resources/?page=-1&sort=nope&dir=x").status_code == 200


def test_empty_states(app, client_as, make_resource):
    staff = client_as("staff")
    assert 'data-testid="empty"' in staff.get("/aftercare/resources/").get_data(True)
    make_resource()
    body = staff.get("/aftercare/resources/?q=nothing-like-this").get_data(as_text=True)
    assert 'data-testid="no-match"' in body


def test_sorting_and_pages(app, client_as, make_resource):
    for i in range(55):
        make_resource(group(name=f"Group {i:02d}", city="Zion" if i % 2 else "Aurora"))
    staff = client_as("staff")
    first = staff.get("/aftercare/resources/?sort=name&dir=desc").get_data(as_text=True)
    assert first.index("Group 54") < first.index("Group 53")
    assert "Group 00" not in first
    link = re.search(r'href="([^"]+)" rel="next"', first)
    assert link is not None and "sort=name" in link.group(1) and "dir=desc" in link.group(1)
    second = staff.get(unescape(link.group(1))).get_data(True)
    assert "Group 00" in second and "Group 05" not in second
    assert "5 on this page, the end of the list." in second


def test_the_list_takes_as_many_statements_for_50_rows_as_for_2(app, client_as, make_resource):
    staff = client_as("staff")

    def statements() -> int:
        with count_statements(app) as executed:
            response = staff.get("/aftercare/resources/")
            assert response.status_code == 200
        return len(executed)

    make_resource()
    make_resource(group())
    two = statements()
    for i in range(55):
        make_resource(residence(name=f"House {i}"))
    assert statements() == two


# --- the authorization matrix's directory rows, walked on their own ------------------------


@pytest.mark.parametrize("role", ["anonymous", "staff", "clinician", "admin"])
def test_the_directory_rows_of_the_matrix(app, role, client_as):
    """tests/test_security_routes.py walks every endpoint; this walks the directory's alone
    (same rows, same measure), so its rows are checked whatever the other domains do."""
    from flask import url_for

    from tests.conftest import directory_records
    from tests.test_security_routes import MATRIX, _outcome, _routes

    values = directory_records(app)
    mine = [r for r in _routes(app) if r[0].startswith("aftercare.directory_")]
    assert len(mine) == 13
    mismatches = []
    for endpoint, method, rule in mine:
        client = app.test_client() if role == "anonymous" else client_as(role)
        token = client.csrf_token("/login")
        with app.test_request_context():
            url = url_for(endpoint, **{k: values[k] for k in rule.arguments})
        if method == "GET":
            response = client.get(url)
        else:
            response = client.open(url, method=method, data={"csrf_token": token})
        got = _outcome(response)
        if got != MATRIX[(endpoint, method)][role]:
            mismatches.append(f"{method} {url}: {got} ({response.status_code})")
    assert mismatches == []


# --- the demo ------------------------------------------------------------------------------


def test_the_demo_directory_has_every_kind_and_runs_once(app, site, make_site):
    from clinic.aftercare import directory_demo
    from clinic.sites.models import Site
    from clinic.sites.time import site_today

    east = make_site("EAST")
    with app.test_request_context():
        main, other = db.session.get(Site, site), db.session.get(Site, east)
        added = directory_demo.seed(main, other)
        db.session.commit()
        assert 18 <= added <= 25
        assert directory_demo.seed(main, other) == 0
        everything = list(db.session.scalars(sa.select(AftercareResource)))
        assert {r.kind for r in everything} == set(ResourceKind)
        today = site_today(main)
        assert any(r.accepts_moud is Tristate.NO for r in everything)
        assert any(
            r.accepts_moud is Tristate.YES and r.accepts_methadone is Tristate.NO
            for r in everything
        )
        assert any(r.beds_available == 0 for r in everything)
        assert [r.name for r in everything if directory.beds_stale(r, today)] == [
            "Oak Hollow Recovery Home"
        ]
        found = db.session.scalars(
            directory.search_query(
                directory.DirectoryFilters(
                    kind=ResourceKind.RECOVERY_RESIDENCE,
                    accepts_methadone=Tristate.YES,
                    beds_available=True,
                )
            )
        ).all()
        assert directory_demo.HARBOR_HOUSE in {r.name for r in found}


def test_wild_query_strings_never_fail(app, client_as, make_resource):
    make_resource()
    staff = client_as("staff")
    for query in (
        "page=99999999999999999999&_external=1&_method=POST&_anchor=x&sort=beds&dir=desc",
        "page=2147483648&area=99999999999999999999",
        "q=%00&city=%E2%80%AE",
        "beds=maybe&inactive=1&moud=yes&methadone=no",
    ):
        response = staff.get(f"/aftercare/resources/?{query}")
        assert response.status_code in (200, 400), query
        export = staff.get(f"/aftercare/resources/export.csv?{query}")
        assert export.status_code in (200, 400), query
    assert staff.get("/aftercare/resources/?q=%00").status_code == 400
    refused = staff.get("/aftercare/resources/?q=Harbor%E2%80%AE")
    assert refused.status_code == 400
    assert "Harbor House</a>" not in refused.get_data(as_text=True)

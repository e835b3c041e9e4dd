"""The audit viewer, its CSV export and the emergency-access review: site scope in the
query, invalid filters failing closed, cursors and ids bounded, CSV cells a spreadsheet
would evaluate escaped, client addresses validated."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.csvsafe import csv_lines, escape_cell, safe_row
from clinic.audit.forms import DATE_FORMAT, DATE_MESSAGE, REVERSED_RANGE_MESSAGE
from clinic.audit.models import AuditEvent, BreakGlassGrant
from clinic.audit.reading import AuditScope
from clinic.audit.services import client_ip
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.patients.models import Patient
from tests.conftest import login

CASE_RE = re.compile(r"case&#34;:&#34;([\w-]+)&#34;")


def events(app, **where) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def mrn_of(app, patient_id: int) -> str:
    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def cases_on_page(response) -> set[str]:
    return set(CASE_RE.findall(response.get_data(as_text=True)))


def cases_in_csv(response) -> set[str]:
    found = set()
    for row in csv_rows(response):
        if '"case"' in row["details"]:
            found.add(re.search(r'"case":"([\w-]+)"', row["details"]).group(1))
    return found


@pytest.fixture
def org_admin(client_as):
    """An administrator of the whole organisation (all sites)."""
    return client_as("admin", all_sites=True, site_ids=[])


# --- site scope -----------------------------------------------------------------------------


@pytest.fixture
def two_sites(app, site, make_site, make_user, make_patient):
    """MAIN and EAST, a patient and a clinician at each, a clinician at both, and one
    event of each kind the scope rule distinguishes (``details.case`` names it)."""
    east = make_site("EAST")
    world = {
        "main": site,
        "east": east,
        "main_patient": make_patient(),
        "east_patient": make_patient("Ed", "Ng", site_id=east),
        "main_user": make_user("clinician", username="main-nurse"),
        "east_user": make_user("clinician", username="east-nurse", site_ids=[east]),
        "both_user": make_user("clinician", username="both-nurse", site_ids=[site, east]),
        "org_user": make_user("admin", username="director", all_sites=True, site_ids=[]),
    }
    w = world
    with app.app_context():

        def user(key):
            return db.session.get(User, w[key])

        cases = [
            ("main-patient", {"patient_id": w["main_patient"], "site_id": site}),
            ("east-patient", {"patient_id": w["east_patient"], "site_id": east}),
            # The patient decides, not the site the event was filed under.
            ("east-patient-filed-main", {"patient_id": w["east_patient"], "site_id": site}),
            ("main-site", {"entity_type": "program", "site_id": site}),
            ("east-site", {"entity_type": "program", "site_id": east}),
            ("about-main-user", {"entity_type": "user", "entity_id": w["main_user"]}),
            ("about-east-user", {"entity_type": "user", "entity_id": w["east_user"]}),
            ("about-both-user", {"entity_type": "user", "entity_id": w["both_user"]}),
            ("by-main-user", {"entity_type": "audit_log", "actor": "main_user"}),
            ("by-east-user", {"entity_type": "audit_log", "actor": "east_user"}),
            ("by-org-user", {"entity_type": "audit_log", "actor": "org_user"}),
            ("anonymous", {"entity_type": "login_page"}),
        ]
        for name, fields in cases:
            fields = dict(fields)
            actor = user(fields.pop("actor", "org_user" if "entity_id" in fields else "both_user"))
            if name == "anonymous":
                actor = None
            record(AuditAction.VIEW, actor=actor, details={"case": name}, **fields)
        db.session.commit()
    return world


MAIN_ADMIN_SEES = {
    "main-patient",
    "main-site",
    "about-main-user",
    "about-both-user",
    "by-main-user",
}
ALL_CASES = MAIN_ADMIN_SEES | {
    "east-patient",
    "east-patient-filed-main",
    "east-site",
    "about-east-user",
    "by-east-user",
    "by-org-user",
    "anonymous",
}


def test_site_administrator_reads_only_events_about_their_sites(client_as, two_sites):
    admin = client_as("admin")  # MAIN only
    assert cases_on_page(admin.get("/admin/audit/")) == MAIN_ADMIN_SEES
    assert cases_in_csv(admin.get("/admin/audit/export.csv")) == MAIN_ADMIN_SEES


def test_organisation_administrator_reads_every_event(org_admin, two_sites):
    assert cases_on_page(org_admin.get("/admin/audit/")) == ALL_CASES
    assert cases_in_csv(org_admin.get("/admin/audit/export.csv")) == ALL_CASES


def test_administrator_of_both_sites_reads_events_of_both(client_as, two_sites):
    admin = client_as("admin", site_ids=[two_sites["main"], two_sites["east"]])
    seen = cases_on_page(admin.get("/admin/audit/"))
    assert seen == ALL_CASES - {"by-org-user", "anonymous"}


@pytest.mark.parametrize(
    "url", ["/admin/audit/?patient={mrn}", "/admin/audit/export.csv?patient={mrn}"]
)
def test_filtering_by_a_patient_of_another_site_shows_nothing_and_is_refused_on_record(
    app, client_as, two_sites, url
):
    admin = client_as("admin")
    east_patient = two_sites["east_patient"]
    response = admin.get(url.format(mrn=mrn_of(app, east_patient)))
    assert response.status_code == 200
    if "csv" in url:
        assert csv_rows(response) == []
    else:
        assert cases_on_page(response) == set()
        assert "No events match these filters." in response.get_data(as_text=True)
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_type, e.entity_id, e.patient_id) for e in denied] == [
        ("patient", str(east_patient), east_patient)
    ]
    # The viewer's own event does not claim the refused patient.
    reading = events(app, entity_type="audit_log", user_id=admin.user_id)
    assert [e.patient_id for e in reading] == [None]


def test_filtering_by_a_patient_that_does_not_exist_is_refused_like_another_sites(
    app, client_as, two_sites
):
    admin = client_as("admin")
    response = admin.get("/admin/audit/?patient=MAIN-999999")
    assert response.status_code == 200
    assert "No patient at your sites has the MRN MAIN-999999." in response.get_data(as_text=True)
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_type, e.entity_id, e.patient_id) for e in denied] == [("patient", None, None)]


def test_filtering_by_a_patient_of_ones_own_site_lists_that_patients_events(
    app, client_as, org_admin, two_sites
):
    admin = client_as("admin")
    main_patient = two_sites["main_patient"]
    main_mrn = mrn_of(app, main_patient)
    assert cases_on_page(admin.get(f"/admin/audit/?patient={main_mrn}")) == {"main-patient"}
    assert cases_on_page(admin.get(f"/admin/audit/?patient={main_mrn.lower()}")) == {"main-patient"}
    assert events(app, action=AuditAction.ACCESS_DENIED) == []
    east_mrn = mrn_of(app, two_sites["east_patient"])
    east = org_admin.get(f"/admin/audit/export.csv?patient={east_mrn}")
    assert cases_in_csv(east) == {"east-patient", "east-patient-filed-main"}


@pytest.mark.parametrize(
    "url", ["/admin/audit/?user={name}", "/admin/audit/export.csv?user={name}"]
)
def test_filtering_by_a_user_of_another_site_shows_nothing_and_is_refused_on_record(
    app, client_as, two_sites, url
):
    admin = client_as("admin")
    response = admin.get(url.format(name="east-nurse"))
    assert response.status_code == 200
    if "csv" in url:
        assert csv_rows(response) == []
    else:
        assert cases_on_page(response) == set()
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_type, e.entity_id) for e in denied] == [("user", str(two_sites["east_user"]))]


def test_filtering_by_a_user_of_ones_own_site_lists_their_events(client_as, two_sites):
    admin = client_as("admin")
    assert cases_on_page(admin.get("/admin/audit/?user=main-nurse")) == {"by-main-user"}
    assert cases_on_page(admin.get("/admin/audit/?user=MAIN-NURSE")) == {"by-main-user"}


def test_a_scope_without_sites_selects_nothing(app, two_sites):
    with app.app_context():
        scope = AuditScope(frozenset())
        found = db.session.scalars(sa.select(AuditEvent).where(scope.event_clause())).all()
        assert found == []
        assert not scope.patient_visible(two_sites["main_patient"])
        assert not scope.user_visible("main-nurse")


# --- emergency-access review ---------------------------------------------------------------


@pytest.fixture
def grants(app, two_sites):
    now = dt.datetime.now(dt.UTC)
    made = {}
    with app.app_context():
        for key, patient, reason in [
            ("main", two_sites["main_patient"], "Main overdose, needs dose history"),
            ("east", two_sites["east_patient"], "East walk-in, confirm methadone dose"),
        ]:
            grant = BreakGlassGrant(
                user_id=two_sites["both_user"],
                patient_id=patient,
                reason=reason,
                granted_at=now,
                expires_at=now + dt.timedelta(minutes=60),
            )
            db.session.add(grant)
            db.session.flush()
            made[key] = (grant.id, reason)
        db.session.commit()
    return made


@pytest.mark.parametrize("query", ["", "?show=all"])
def test_site_administrator_reviews_only_emergency_access_to_their_patients(
    client_as, grants, query
):
    page = client_as("admin").get(f"/admin/audit/break-glass{query}").get_data(as_text=True)
    assert grants["main"][1] in page
    assert grants["east"][1] not in page


def test_organisation_administrator_reviews_every_emergency_access(org_admin, grants):
    page = org_admin.get("/admin/audit/break-glass").get_data(as_text=True)
    assert grants["main"][1] in page and grants["east"][1] in page


def _acknowledge(client, grant_id):
    return client.submit(
        f"/admin/audit/break-glass/{grant_id}/acknowledge",
        {"outcome": "appropriate", "confirm": "y"},
        form_url="/admin/audit/break-glass",
    )


def _acknowledged(app, grant_id) -> bool:
    with app.app_context():
        return db.session.get(BreakGlassGrant, grant_id).acknowledged_at is not None


def test_acknowledging_emergency_access_at_another_site_is_refused_on_record(
    app, client_as, grants, two_sites
):
    admin = client_as("admin")
    grant_id = grants["east"][0]
    response = _acknowledge(admin, grant_id)
    assert response.status_code == 404
    assert not _acknowledged(app, grant_id)
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_type, e.entity_id, e.patient_id) for e in denied] == [
        ("break_glass_grant", str(grant_id), two_sites["east_patient"])
    ]
    assert events(app, action=AuditAction.ACKNOWLEDGE) == []


@pytest.mark.parametrize("grant_id", ["424242", "2147483647", "2147483648", "99999999999999999999"])
def test_acknowledging_emergency_access_that_does_not_exist_is_refused_on_record(
    app, client_as, grants, grant_id
):
    admin = client_as("admin")
    response = _acknowledge(admin, grant_id)
    assert response.status_code == 404
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_type, e.patient_id) for e in denied] == [("break_glass_grant", None)]
    # An id beyond the database's range is never stored as typed.
    assert denied[0].entity_id == (grant_id if int(grant_id) <= 2**31 - 1 else "0")


def test_acknowledging_emergency_access_to_ones_own_patient_is_recorded(app, client_as, grants):
    admin = client_as("admin")
    grant_id = grants["main"][0]
    response = _acknowledge(admin, grant_id)
    assert response.status_code == 302
    assert _acknowledged(app, grant_id)
    assert [e.entity_id for e in events(app, action=AuditAction.ACKNOWLEDGE)] == [str(grant_id)]


def test_organisation_administrator_acknowledges_emergency_access_anywhere(app, org_admin, grants):
    assert _acknowledge(org_admin, grants["east"][0]).status_code == 302
    assert _acknowledged(app, grants["east"][0])


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_acknowledge_emergency_access(app, client_as, grants, role):
    client = client_as(role)
    token = client.csrf_token("/account")  # a valid token: the permission is what is refused
    response = client.post(
        f"/admin/audit/break-glass/{grants['main'][0]}/acknowledge", data={"csrf_token": token}
    )
    assert response.status_code == 403
    assert not _acknowledged(app, grants["main"][0])


# --- invalid filters fail closed -------------------------------------------------------------


@pytest.fixture
def some_events(app):
    with app.app_context():
        for i in range(3):
            record(AuditAction.VIEW, actor=None, entity_type="test", details={"case": f"e{i}"})
        db.session.commit()


INVALID_FILTERS = [
    ("user=nurse&date_from=abc", DATE_FORMAT),
    ("patient=" + "p" * 81, "Enter at most 80 characters."),
    ("date_from=2026-13-45", DATE_FORMAT),
    ("date_from=1999-12-31", DATE_MESSAGE),
    ("date_to=3000-01-01", DATE_MESSAGE),
    ("date_to=9999-12-31", DATE_MESSAGE),
    ("date_from=2026-02-02&date_to=2026-02-01", REVERSED_RANGE_MESSAGE),
    ("action=nonsense", "Not a valid choice."),
    ("user=" + "u" * 65, "Enter at most 64 characters."),
    ("entity=" + "e" * 33, "Enter at most 32 characters."),
]


@pytest.mark.parametrize(("query", "message"), INVALID_FILTERS)
def test_an_invalid_filter_shows_its_error_and_no_events(org_admin, some_events, query, message):
    response = org_admin.get(f"/admin/audit/?{query}")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert "no events are shown until they are valid" in page
    assert cases_on_page(response) == set()
    assert "Download CSV" not in page


def test_an_invalid_filter_keeps_the_other_input(org_admin, some_events):
    page = org_admin.get("/admin/audit/?user=nurse&date_from=abc").get_data(as_text=True)
    assert 'value="nurse"' in page and 'value="abc"' in page


@pytest.mark.parametrize(("query", "message"), INVALID_FILTERS)
def test_an_invalid_filter_exports_nothing(app, org_admin, some_events, query, message):
    response = org_admin.get(f"/admin/audit/export.csv?{query}")
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    assert "The filters are not valid, nothing was exported." in body
    assert message in body
    assert "seq," not in body and "e0" not in body
    assert events(app, action=AuditAction.EXPORT) == []


@pytest.mark.parametrize("query", ["user=ad%00min", "entity=pat%E2%80%AEient", "user=a%09b"])
@pytest.mark.parametrize("url", ["/admin/audit/?{query}", "/admin/audit/export.csv?{query}"])
def test_a_filter_with_control_characters_is_refused_and_shows_nothing(
    org_admin, some_events, url, query
):
    # The edge of the app refuses such a query string (clinic.edge) before the form
    # would (ClinicForm): either way a 400 with no events.
    response = org_admin.get(url.format(query=query))
    assert response.status_code == 400
    assert cases_on_page(response) == set()
    assert "seq," not in response.get_data(as_text=True)


def test_the_filter_form_itself_refuses_control_characters(app):
    from clinic.audit.forms import AuditFilterForm

    with app.test_request_context("/"):
        form = AuditFilterForm(MultiDict({"user": "ad\x00min", "entity": "pat\u202eient"}))
        assert not form.validate()
        assert form.errors == {
            "user": [CONTROL_CHARACTER_MESSAGE],
            "entity": [CONTROL_CHARACTER_MESSAGE],
        }


@pytest.mark.parametrize(
    "query",
    [
        "patient=" + "p" * 80,
        "date_from=2000-01-01",
        "date_to=2999-12-31",
        "date_from=2026-02-02&date_to=2026-02-02",
        "action=view",
        "user=" + "u" * 64,
        "entity=" + "e" * 32,
    ],
)
def test_filters_at_the_edge_of_their_range_are_accepted(org_admin, query):
    assert org_admin.get(f"/admin/audit/?{query}").status_code == 200
    assert org_admin.get(f"/admin/audit/export.csv?{query}").status_code == 200


@pytest.mark.parametrize("cursor", ["xyz", "-5", "1.5", "0x10", "1" * 31])
def test_a_cursor_that_is_not_a_position_is_a_bad_request(org_admin, some_events, cursor):
    assert org_admin.get(f"/admin/audit/?before={cursor}").status_code == 400


@pytest.mark.parametrize(
    ("cursor", "shown"),
    [
        ("99999999999999999999", 3),  # clamped to the largest position
        ("9223372036854775808", 3),
        ("9223372036854775807", 3),
        ("1", 0),
        ("0", 0),
    ],
)
def test_a_cursor_beyond_the_chain_is_clamped(org_admin, some_events, cursor, shown):
    response = org_admin.get(f"/admin/audit/?entity=test&before={cursor}")
    assert response.status_code == 200
    assert len(cases_on_page(response)) == shown


def test_pager_links_carry_only_the_filters(app, org_admin):
    with app.app_context():
        for i in range(105):
            record(AuditAction.VIEW, actor=None, entity_type="test", entity_id=i)
        db.session.commit()
    response = org_admin.get("/admin/audit/?entity=test&_method=DELETE&_external=1&sort=x")
    assert response.status_code == 200
    links = re.findall(r'href="(/admin/audit/[^"]*)"', response.get_data(as_text=True))
    older = [link for link in links if "before=" in link]
    assert len(older) == 1
    assert "entity=test" in older[0]
    assert not any("_method" in link or "_external" in link or "sort" in link for link in links)


# --- CSV cells a spreadsheet would evaluate ----------------------------------------------------


@pytest.mark.parametrize(
    "value", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
)
def test_a_cell_a_spreadsheet_would_evaluate_is_escaped(value):
    assert escape_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["nurse", "203.0.113.7", "::1", "1=1", "a-b", "", None, 5, -5])
def test_other_cells_are_kept(value):
    assert escape_cell(value) == value


def test_rows_escape_every_cell_and_write_dates_as_iso():
    moment = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    assert safe_row([moment, "=1", 3]) == ["2026-03-01T09:30:00+00:00", "'=1", 3]
    text = "".join(csv_lines(["=header"], [["@x", "y"]]))
    assert text == "'=header\r\n'@x,y\r\n"


def test_audit_csv_escapes_every_evaluable_cell(app, org_admin):
    with app.app_context():
        record(
            AuditAction.VIEW,
            actor=None,
            entity_type="=HYPERLINK(x)",
            entity_id="+1",
            details={"case": "csv"},
        )
        db.session.commit()
    rows = csv_rows(org_admin.get("/admin/audit/export.csv?entity=%3DHYPERLINK(x)"))
    assert [(r["entity_type"], r["entity_id"]) for r in rows] == [("'=HYPERLINK(x)", "'+1")]


# --- client addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("=cmd|' /C calc'!A0", None),
        ("203.0.113.7, 198.51.100.1", None),
        ("1" * 10_000, None),
        ("fe80::1%eth0", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_valid_ip_address_is_kept_as_the_client_address(raw, stored):
    assert client_ip(raw) == stored


@pytest.mark.parametrize("address", ["=cmd|' /C calc'!A0", "x" * 5000, "203.0.113.7\x00"])
def test_an_invalid_client_address_is_flagged_not_stored(app, address):
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": address}):
        record(AuditAction.VIEW, actor=None, entity_type="test")
        db.session.commit()
    (event,) = events(app, entity_type="test")
    assert event.ip is None
    assert event.details == '{"client_ip_invalid":true}'
    assert address not in event.details


@pytest.mark.parametrize("app_overrides", [{"PROXY_FIX_X_FOR": 1}])
def test_a_forged_forwarded_address_never_reaches_the_audit_csv(
    app, client, org_admin, make_user, username_of
):
    user = make_user("staff")
    forged = {"X-Forwarded-For": "=cmd|' /C calc'!A0"}
    response = login(client, username_of(user), headers=forged)
    assert response.status_code == 302
    stranger = app.test_client()
    response = login(stranger, "nobody", "wrong password", headers={"X-Forwarded-For": "9" * 5000})
    assert response.status_code == 200
    rows = csv_rows(org_admin.get("/admin/audit/export.csv"))
    assert rows
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())
        assert "cmd|" not in row["ip"]

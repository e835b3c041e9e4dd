"""Bad input at the edges never reaches the database raw, and never gives a 500.

Ids in URLs are bounded by the app-wide ``int`` converter, ``?page=`` is clamped, the
query string and form fields refuse control characters, links are built from each page's
own parameters, and the client address is an IP address or nothing.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import url_for

from clinic.converters import DATABASE_INT_MAX, NO_SUCH_ID, BoundedIntConverter
from clinic.edge import client_address
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.pagination import Cursor, requested_cursor
from clinic.security import AUTHENTICATED, PUBLIC, endpoint_access, role_can
from tests.conftest import ALL_FLAGS, login

URL_VALUES = {"filename": "clinic.css", "action": "unlock"}
BEYOND = ["2147483648", "99999999999999999999", "0"]
SENTINEL = 987654321


@pytest.fixture
def app_overrides():
    # One trusted proxy, as in production: X-Forwarded-For names the client.
    return {"PROXY_FIX_X_FOR": 1}


@pytest.fixture
def org_admin(client_as):
    """An administrator who works at every site."""
    return client_as("admin", all_sites=True, site_ids=[])


@pytest.fixture
def clients(org_admin, client_as):
    # A clinician with every clinician flag reaches every page the role may open.
    clinician = client_as("clinician", **ALL_FLAGS["clinician"])
    return {"admin": org_admin, "clinician": clinician}


@pytest.fixture
def records(route_records) -> dict[str, int]:
    """Every URL rule's variables (``route_records``: medications' included)."""
    return route_records


def _may(app, role: str, endpoint: str) -> bool:
    access = endpoint_access(app, endpoint)
    return access in (PUBLIC, AUTHENTICATED) or role_can(role, access)


def _audit_count(app, action: str) -> int:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def _int_rules(app):
    for rule in app.url_map.iter_rules():
        if any(isinstance(c, BoundedIntConverter) for c in rule._converters.values()):
            yield rule


def _url(app, rule, values: dict) -> str:
    with app.test_request_context():
        return url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})


# --- ids ------------------------------------------------------------------------------


def test_every_int_in_every_url_rule_is_a_bounded_id(app):
    rules = list(_int_rules(app))
    assert len(rules) >= 10
    plain = [
        r.rule
        for r in app.url_map.iter_rules()
        for c in r._converters.values()
        if type(c).__name__ == "IntegerConverter"
    ]
    assert plain == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1),
        (str(DATABASE_INT_MAX - 1), DATABASE_INT_MAX - 1),
        (str(DATABASE_INT_MAX), DATABASE_INT_MAX),  # the largest id the database holds
        (str(DATABASE_INT_MAX + 1), NO_SUCH_ID),
        ("99999999999999999999", NO_SUCH_ID),
        ("0", 0),
        ("0007", 7),
    ],
)
def test_the_id_converter_bounds_ids_at_the_database_integer_range(app, raw, expected):
    adapter = app.url_map.bind("localhost")
    endpoint, values = adapter.match(f"/patients/{raw}")
    assert endpoint == "patients.chart"
    assert values == {"patient_id": expected}


@pytest.mark.parametrize("raw", ["\u0661\u0662", "\uff11\uff12", "-1", "1.0", "+1"])
def test_an_id_that_is_not_ascii_digits_matches_no_page(client_as, raw):
    assert client_as("staff").get(f"/patients/{raw}").status_code == 404


@pytest.mark.parametrize("raw", BEYOND)
@pytest.mark.parametrize("role", ["admin", "clinician"])
def test_an_id_out_of_range_is_an_audited_not_found_on_every_route(
    app, clients, records, role, raw
):
    """Every <int:...> route, GET and POST (with a valid CSRF token): 404 with an
    access_denied event, or 403 where the role may not use the page at all."""
    client = clients[role]
    token = client.csrf_token("/")
    wrong = []
    for rule in _int_rules(app):
        ints = {n for n, c in rule._converters.items() if isinstance(c, BoundedIntConverter)}
        values = {**records, **URL_VALUES, **dict.fromkeys(ints, SENTINEL)}
        url = _url(app, rule, values).replace(str(SENTINEL), raw)
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            denied_before = _audit_count(app, "access_denied")
            data = {"csrf_token": token} if method == "POST" else None
            response = client.open(url, method=method, data=data)
            expected = 404 if _may(app, role, rule.endpoint) else 403
            recorded = _audit_count(app, "access_denied") - denied_before
            if response.status_code != expected or recorded != 1:
                wrong.append(f"{method} {url}: {response.status_code}, {recorded} recorded")
    assert wrong == []


def test_the_refusal_names_id_zero_never_the_digits_typed(app, clients):
    from clinic.audit.models import AuditEvent

    assert clients["admin"].get("/patients/99999999999999999999").status_code == 404
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
        ).one()
    assert (event.action, event.entity_type, event.entity_id) == ("access_denied", "patient", "0")
    assert "99999" not in repr(event.details)


# --- page numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("abc", None),
        ("-1", None),
        ("0", None),
        ("1", 1),
        ("2", 2),
        ("1e3", None),
        ("\uff12", None),  # a full-width digit two
        (" 2", None),
        ("2_0", None),
        (str(DATABASE_INT_MAX), DATABASE_INT_MAX),
        (str(DATABASE_INT_MAX + 1), None),
        ("99999999999999999999", None),
        ("9" * 10_000, None),
    ],
)
@pytest.mark.parametrize("way", ["after", "before"])
def test_list_cursors_are_database_ids_or_the_first_page(app, raw, expected, way):
    query = {} if raw is None else {way: raw, "page": "7"}
    with app.test_request_context("/patients/", query_string=query):
        found = requested_cursor()
    assert found == (None if expected is None else Cursor(way, expected))


def _get_rules(app):
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or set()) and not rule.endpoint.endswith("static"):
            yield rule


@pytest.mark.parametrize("page", ["99999999999999999999", "2147483648", "-1", "abc", "0"])
def test_no_page_fails_on_a_wild_page_number(app, org_admin, records, page):
    wrong = []
    for rule in _get_rules(app):
        url = _url(app, rule, {**records, **URL_VALUES})
        query = {"page": page, "after": page, "before": page}  # numbers and cursors
        response = org_admin.get(url, query_string=query)
        if response.status_code >= 500:
            wrong.append(f"{url}: {response.status_code}")
    assert wrong == []


@pytest.mark.parametrize("page", ["99999999999999999999", "-1", "abc"])
@pytest.mark.parametrize("url", ["/patients/", "/admin/users/"])
def test_paginated_lists_answer_a_wild_page_number(org_admin, records, url, page):
    for way in ("page", "after", "before"):
        response = org_admin.get(url, query_string={way: page})
        assert response.status_code == 200


# --- links built from the query string --------------------------------------------------

URL_FOR_OPTIONS = {
    "_method": "DELETE",
    "_external": "1",
    "_anchor": "x",
    "_scheme": "javascript",
    "endpoint": "main.home",
    "values": "x",
}


def test_patient_list_with_a_method_override_in_the_query_works(org_admin, records):
    response = org_admin.get("/patients/?_method=DELETE")
    assert response.status_code == 200
    assert "_method" not in response.get_data(as_text=True)


def test_no_page_fails_on_query_keys_that_are_url_for_options(app, org_admin, records):
    wrong = []
    for rule in _get_rules(app):
        url = _url(app, rule, {**records, **URL_VALUES})
        response = org_admin.get(url, query_string={**URL_FOR_OPTIONS, "sort": "name"})
        if response.status_code >= 500:
            wrong.append(f"{url}: {response.status_code}")
    assert wrong == []


@pytest.fixture
def long_lists(make_patient, make_user):
    """51 patients named Smith and 51 users named Mary: a second page on both lists."""
    for n in range(51):
        make_patient(f"Jo{chr(97 + n % 26)}{chr(97 + n // 26)}", "Smith")
        make_user("staff", f"mary-{n:02d}", full_name=f"Mary {n:02d}")


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("/patients/?q=smi", {"q": ["smi"]}),
        ("/admin/users/?q=mar&show=all", {"q": ["mar"], "show": ["all"]}),
    ],
)
def test_sort_and_pager_links_keep_only_the_pages_own_parameters(org_admin, long_lists, url, own):
    query = {**{k: v[0] for k, v in own.items()}, **URL_FOR_OPTIONS, "unknown": "1"}
    response = org_admin.get(url.split("?")[0], query_string=query)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    links = [
        html.unescape(h)
        for h in re.findall(r'href="([^"]*[?&](?:amp;)?(?:sort|after|before)=[^"]*)"', body)
    ]
    assert any("after=" in link for link in links), "no pager link"
    assert any("sort=" in link for link in links), "no sort link"
    path = url.split("?")[0]
    for link in links:
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.path) == ("", "", path), link
        args = parse_qs(parts.query)
        assert set(args) <= {*own, "sort", "dir", "after", "before"}, link
        assert {k: args[k] for k in own} == own, link


# --- control characters in the query string --------------------------------------------

CONTROL_QUERIES = [
    "/patients/?q=smi%00",
    "/patients/?q=smi%0Aj",
    "/patients/?q=smi%09",
    "/patients/?q=smi%7F",
    "/patients/?q=smi%C2%85",  # a C1 control (NEL)
    "/patients/?q=%E2%80%AEhtims",  # RIGHT-TO-LEFT OVERRIDE
    "/patients/?q=%E2%81%A6x",  # LEFT-TO-RIGHT ISOLATE
    "/patients/?q%00=smi",  # in a key
    "/admin/users/?q=mar%00",
    "/admin/users/?show=all%0D%0A",
    "/login?next=/%0D%0ASet-Cookie:x=1",
    "/patients/worklist?mine=1%00",
]


@pytest.mark.parametrize("url", CONTROL_QUERIES)
def test_control_characters_in_the_query_string_are_a_bad_request(app, org_admin, url):
    seq = _audit_count(app, "view")
    response = org_admin.get(url)
    assert response.status_code == 400
    assert "The request could not be understood." in response.get_data(as_text=True)
    assert _audit_count(app, "view") == seq  # the view never ran


@pytest.mark.parametrize("url", ["/patients/?q=smi%00", "/login?next=/%0D%0A"])
def test_control_characters_are_refused_before_the_login_gate(client, url):
    assert client.get(url).status_code == 400


@pytest.mark.parametrize(
    "url", ["/patients/?q=smi+j", "/patients/?q=S%C3%B8ren", "/patients/?q=%D0%98"]
)
def test_ordinary_searches_are_not_refused(org_admin, url):
    assert org_admin.get(url).status_code == 200


def test_the_refused_value_is_recorded_nowhere(app, org_admin):
    from clinic.audit.models import AuditEvent

    org_admin.get("/patients/?q=zzsecret%00")
    with app.app_context():
        details = list(db.session.scalars(sa.select(AuditEvent.details)))
    assert not any("zzsecret" in (d or "") for d in details)


def test_sign_in_with_a_control_character_in_the_user_agent_is_refused(
    app, client, make_user, username_of
):
    user_id = make_user("staff")
    response = login(client, username_of(user_id), headers={"User-Agent": "Mozilla\x00"})
    assert response.status_code == 400
    assert _sessions_of(app, user_id) == []


# --- control characters in form fields --------------------------------------------------

TEXT_INPUT = re.compile(
    r'<input(?=[^>]*\bname="([^"]+)")(?![^>]*type="(?:hidden|checkbox|radio|submit|date|time|number|file)")[^>]*>'
)
TEXTAREA = re.compile(r'<textarea[^>]*\bname="([^"]+)"')
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
ACTION = re.compile(r'\baction="([^"]*)"')


def _own_forms(html_text: str, url: str) -> str:
    """The forms of a page that post to the page itself (no action, or its own URL): a
    page may carry other forms (the dosing page's "hold instead", a flag's acknowledgement)
    that post elsewhere and are walked on their own pages."""
    own = []
    for attributes, body in FORM.findall(html_text):
        action = ACTION.search(attributes)
        if action is None or html.unescape(action.group(1)) in ("", url):
            own.append(body)
    return "".join(own)


# GET+POST pages that cannot be reached by a plain GET here, and where they are tested.
NOT_WALKED = {
    "accounts.second_factor": "needs a sign-in waiting for its code (test_accounts_mfa)",
    # The walk's session and note are another clinician's draft: only the session's
    # clinician records it, and a draft takes no addendum (test_therapy_views: NUL in a
    # row's note, an empty addendum).
    "therapy.record_session": "another clinician's session (test_therapy_views)",
    "therapy.add_addendum": "a draft takes no addendum (test_therapy_views)",
    # A confirmation with no text input; the walk's resource is active, so the page sends
    # the user back to it.
    "aftercare.directory_reactivate": "nothing to reactivate (test_aftercare_directory)",
}
# Form pages with no text input at all (choices, dates, a confirmation).
WITHOUT_TEXT = {
    "users.act",
    "patients.admit",
    "patients.discharge",
    "patients.transfer",
    "patients.deadlines",
    "patients.add_review",
    "therapy.sign_note",
    # In the walk's state these pages show no form: the enrollment is active (nothing to
    # undo), the order is not an injection. Their forms derive from ClinicForm like every
    # other (test_forms_text). (dosing.reverse is walked: the walk's take-home bottles can
    # be reversed, with a reason.)
    "patients.undo_discharge",
    "dosing.injection",
    # Issue 13: a collection is dates, times and choices; dispensing is a choice of days
    # and a confirmation; in the walk's state no bottle is due back (the returns form's note
    # is shown with bottles to check) and a call-back is started with a button (its
    # outcome's note is walked on the call-back's page). Their forms derive from ClinicForm;
    # their text fields' control characters are tested in test_take_home_bottles_views,
    # test_call_backs_pages and test_drug_tests_attacks.
    "drug_tests.record",
    "take_home_bottles.dispense",
    "take_home_bottles.returns",
    "call_backs.start",
    # A file upload: the CSV's cells are checked by the importer (test_aftercare_directory_csv).
    "aftercare.directory_import",
    # Confirmations and choices: archive, deactivate, grant or revoke a reader, reassign.
    "aftercare.archive_support_person",
    "aftercare.directory_deactivate",
    "therapy.counseling_readers",
    "therapy.revoke_counseling_reader",
    "therapy.inactive_drafts",
    # The printable consent form: a print of the new-consent form's entries (that form's
    # own page is walked); nothing on it is an input.
    "aftercare.consent_form",
    # The walk's referral has no consent: the page shows the refusal, not the form (its
    # text fields: test_aftercare_referrals).
    "aftercare.send_referral",
}


def _form_pages(app):
    for rule in app.url_map.iter_rules():
        if {"GET", "POST"} <= (rule.methods or set()):
            yield rule


def _role_for(app, endpoint: str) -> str:
    if endpoint_access(app, endpoint) == PUBLIC:
        return "anonymous"
    return next(r for r in ("admin", "clinician", "staff") if _may(app, r, endpoint))


@pytest.mark.parametrize(
    "bad",
    ["adm\x00in", "ad\u202emin", "a\x1bb", "Proga\u200bb", "Zeda\u2028b", "a\ufeffb", "a\u200eb"],
    ids=["NUL", "RLO", "ESC", "ZWSP", "LSEP", "BOM", "LRM"],
)
def test_every_text_input_of_every_form_refuses_control_characters(
    app, client, client_as, records, bad
):
    from tests.test_security_csrf_origin import _snapshot

    users = {"anonymous": client}
    for role in ("admin", "clinician", "staff"):
        users[role] = client_as(role, **ALL_FLAGS.get(role, {}))
    before = _snapshot(app)
    walked, without_text, wrong = set(), set(), []
    for rule in _form_pages(app):
        if rule.endpoint in NOT_WALKED:
            continue
        user = users[_role_for(app, rule.endpoint)]
        url = _url(app, rule, {**records, **URL_VALUES})
        page = user.get(url)
        html = page.get_data(as_text=True)
        forms = _own_forms(html, url)
        names = [n for n in TEXT_INPUT.findall(forms) + TEXTAREA.findall(forms) if n != "q"]
        token = re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html)
        if page.status_code != 200 or not token:
            wrong.append(f"{url}: no form ({page.status_code})")
            continue
        if not names:
            without_text.add(rule.endpoint)
            continue
        walked.add(rule.endpoint)
        data = {**dict.fromkeys(names, bad), "csrf_token": token.group(1)}
        response = user.post(url, data=data)
        body = response.get_data(as_text=True)
        shown = body.count(CONTROL_CHARACTER_MESSAGE)
        if response.status_code >= 500 or shown < len(set(names)):
            wrong.append(f"{url}: {response.status_code}, {shown} of {len(set(names))} refused")
    assert wrong == [], "\n".join(wrong)
    assert without_text == WITHOUT_TEXT
    assert walked == {r.endpoint for r in _form_pages(app)} - set(NOT_WALKED) - WITHOUT_TEXT
    assert _snapshot(app) == before  # nothing stored


@pytest.mark.parametrize("bad", ["adm\x00in", "adm\u202ein"], ids=["NUL", "RLO"])
def test_sign_in_with_a_control_character_is_a_form_error(client, make_user, bad):
    make_user("staff", "admin-user")
    response = login(client, bad)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert CONTROL_CHARACTER_MESSAGE in body
    assert client.get("/").status_code == 302


# --- the client address -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:DB8::1", "2001:db8::1"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
        (" ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", None),  # one character too long
        ("::ffff:192.0.2.7", "::ffff:c000:207"),
        ("fe80::1%eth0", None),
        ("=cmd|' /C calc'!A0", None),
        ("192.0.2.256", None),
        ("1" * 10_000, None),
        ("", None),
        (None, None),
    ],
)
def test_client_address_is_an_ip_address_or_nothing(raw, expected):
    assert client_address(raw) == expected


def _sessions_of(app, user_id: int) -> list:
    from clinic.accounts.models import UserSession

    with app.app_context():
        return list(
            db.session.scalars(sa.select(UserSession.ip).where(UserSession.user_id == user_id))
        )


def _last_login_ip(app, user_id: int):
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalars(
            sa.select(AuditEvent.ip)
            .where(AuditEvent.user_id == user_id, AuditEvent.action == "login")
            .order_by(AuditEvent.seq.desc())
        ).first()


@pytest.mark.parametrize(
    ("forwarded", "stored"),
    [
        ("=cmd|' /C calc'!A0", None),
        ("9" * 10_000, None),
        ('203.0.113.9, =HYPERLINK("http://evil.example")', None),  # the nearest proxy's value
        ("=HYPERLINK(1), 203.0.113.9", "203.0.113.9"),
        ("2001:DB8::7", "2001:db8::7"),
    ],
)
def test_a_forged_forwarded_for_never_reaches_the_database(
    app, client, make_user, username_of, forwarded, stored
):
    user_id = make_user("staff")
    response = login(client, username_of(user_id), headers={"X-Forwarded-For": forwarded})
    assert response.status_code == 302
    assert _sessions_of(app, user_id) == [stored]
    assert _last_login_ip(app, user_id) == stored


def test_a_forged_forwarded_for_on_a_refused_page_is_not_a_500(app, client_as):
    staff = client_as("staff")
    response = staff.get("/admin/users/", headers={"X-Forwarded-For": "x" * 10_000})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (str(DATABASE_INT_MAX - 1), True),
        (str(DATABASE_INT_MAX), True),
        (str(DATABASE_INT_MAX + 1), False),
        ("99999999999999999999", False),
        (str(-DATABASE_INT_MAX), True),
        (str(-DATABASE_INT_MAX - 2), False),
    ],
)
def test_every_whole_number_field_fits_the_database(app, raw, accepted):
    from wtforms import IntegerField

    from clinic.forms import NUMBER_TOO_LARGE_MESSAGE, ClinicForm

    class CountForm(ClinicForm):
        class Meta:
            csrf = False

        count = IntegerField("Count")

    with app.test_request_context("/", method="POST", data={"count": raw}):
        form = CountForm()
        assert form.validate() is accepted
        assert form.count.errors == ([] if accepted else [NUMBER_TOO_LARGE_MESSAGE])


def test_the_development_server_serves_and_logs_a_forged_forwarded_for(app, caplog):
    """``make run``'s server logs each request with the client address it saw."""
    import logging
    import threading
    import urllib.request

    from werkzeug.serving import make_server

    caplog.set_level(logging.INFO, logger="werkzeug")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/healthz",
            headers={"X-Forwarded-For": "=cmd|' /C calc'!A0"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310 (http:// loopback)
            assert response.status == 200
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert any("GET /healthz HTTP/1.1" in r.getMessage() for r in caplog.records)

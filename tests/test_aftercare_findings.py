"""What a new staff member hit walking the aftercare flow (issue 12, "Thursday") in a
browser, each fixed and held here: wide tables scroll in their own box at 200% zoom, typed
line breaks survive (the CSP drops inline styles), the packet's "sent" message is never
printed on the recipient's paper, a refused send says what to do with links, the dashboard
and the referral picker link what they list and mark stale beds and who a residence
serves, a blank consent lists every missing element at once, the consent form names the
clinic, the directory's help tells the truth about imports, and a page past the end of
the directory does not call it empty."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from clinic.aftercare.consent_models import Consent, SupportPerson
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import Disclosure, Referral
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.time import site_today
from tests.conftest import login
from tests.test_aftercare_directory import count_statements
from tests.test_aftercare_referrals import _hidden, _post_form, make_consent, make_referral
from tests.test_aftercare_referrals import aftercare as aftercare_fixture  # noqa: F401

STYLE_ATTR = re.compile(r"<[^>]+\sstyle=")


@pytest.fixture
def ids(aftercare_fixture):  # noqa: F811
    """``test_aftercare_referrals.aftercare``: a patient, two residences, a support person,
    staff (ids)."""
    return aftercare_fixture


@pytest.fixture
def desk(app, ids, username_of):
    """A client signed in as the ``ids`` staff member."""
    client = app.test_client()
    assert login(client, username_of(ids["staff"])).status_code == 302
    return client


def _today(app, patient_id: int) -> dt.date:
    with app.app_context():
        return site_today(db.session.get(Patient, patient_id).site)


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _table_is_wrapped(html: str, marker: str) -> bool:
    """The table carrying ``marker`` sits in a .table-responsive box (it scrolls there at
    200% zoom instead of widening the page)."""
    start = html.index(marker)
    table = html.rindex("<table", 0, start)
    return html[:table].rstrip().endswith('<div class="table-responsive">')


def _send(app, ids, desk, referral_id: int):
    url = f"/aftercare/referrals/{referral_id}/send"
    fields = _hidden(desk.get(url).get_data(as_text=True))
    fields["description"] = "Name, that she is in treatment, her medication."
    return desk.submit(url, fields)


# --- the directory ---------------------------------------------------------------------------


def test_the_directory_table_scrolls_in_its_own_box_at_200_percent_zoom(app, ids, desk):
    html = desk.get("/aftercare/resources/").get_data(as_text=True)
    assert _table_is_wrapped(html, 'data-testid="directory"')


def test_a_directory_page_past_the_end_is_the_first_page(app, ids, desk):
    first = desk.get("/aftercare/resources/?kind=recovery_residence").get_data(as_text=True)
    for query in ("page=7", "after=999999", "before=999999"):
        response = desk.get(f"/aftercare/resources/?kind=recovery_residence&{query}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert 'data-testid="resource-row"' in html
        assert "The directory is empty" not in html
        assert html.count('data-testid="resource-row"') == first.count('data-testid="resource-row"')


def test_the_import_help_says_rows_are_added_not_merged(app, ids, desk):
    html = desk.get("/aftercare/resources/import").get_data(as_text=True)
    assert "imports again as it is" not in html
    assert "Every row is added as a new resource" in html
    assert "<code>support_group_type</code> for a support group" in html


# --- a referral ------------------------------------------------------------------------------


def test_a_referrals_reason_and_notes_keep_their_line_breaks(app, ids, desk):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(
        app, ids, resource=ids["home"], reason="Needs housing.\nDoses at 7am."
    )
    assert _send(app, ids, desk, referral_id).status_code == 302
    detail_url = f"/aftercare/referrals/{referral_id}"
    response = _post_form(
        desk,
        f"{detail_url}/status",
        {"status": "accepted", "note": "Accepted by phone.\nMoves in Monday."},
        page=detail_url,
    )
    assert response.status_code == 302
    detail = desk.get(detail_url).get_data(as_text=True)
    assert "Needs housing.<br>Doses at 7am." in detail
    assert "Accepted by phone.<br>Moves in Monday." in detail
    packet = desk.get(f"{detail_url}/packet").get_data(as_text=True)
    assert "Needs housing.<br>Doses at 7am." in packet
    accounting = desk.get(f"/aftercare/patients/{ids['patient_id']}/disclosures")
    for html in (detail, packet, accounting.get_data(as_text=True)):
        assert not STYLE_ATTR.search(html.split("<main", 1)[1]), "inline style: the CSP drops it"


def test_the_sent_message_is_on_the_packets_screen_never_on_its_paper(app, ids, desk):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    sent = _send(app, ids, desk, referral_id)
    assert sent.headers["Location"].endswith(f"/referrals/{referral_id}/packet")
    packet = desk.get(sent.headers["Location"]).get_data(as_text=True)
    message = re.search(r'<div class="([^"]*)"[^>]*data-testid="sent-message"', packet)
    assert message and "no-print" in message.group(1).split()
    assert "alert-dismissible" not in packet  # no flashed alert: base.html prints those
    assert re.search(r"<button[^>]*data-print[^>]*>Print the packet</button>", packet)
    again = desk.get(sent.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="sent-message"' not in again  # said once
    assert _count(app, Disclosure) == 1


def test_the_packet_of_a_double_submitted_send_says_it_was_sent_once(app, ids, desk):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    url = f"/aftercare/referrals/{referral_id}/send"
    fields = _hidden(desk.get(url).get_data(as_text=True))
    fields["description"] = "Name and that she is in treatment."
    assert desk.submit(url, fields).status_code == 302
    again = desk.submit(url, fields)
    assert again.status_code == 302
    packet = desk.get(again.headers["Location"]).get_data(as_text=True)
    assert "sent once" in packet or "already" in packet
    assert _count(app, Disclosure) == 1


def test_the_accounting_has_a_print_button(app, ids, desk):
    html = desk.get(f"/aftercare/patients/{ids['patient_id']}/disclosures").get_data(as_text=True)
    assert re.search(r"<button[^>]*data-print", html)
    assert "Ctrl+P" not in html


def test_a_refused_send_links_to_the_consents_and_to_recording_one(app, ids, desk):
    referral_id = make_referral(app, ids, resource=ids["home"])
    pid = ids["patient_id"]
    html = desk.get(f"/aftercare/referrals/{referral_id}/send").get_data(as_text=True)
    advice = html.split('data-testid="send-refused-next"')[1].split("</p>")[0]
    assert f'href="/aftercare/patients/{pid}/consents"' in advice
    assert f'href="/aftercare/patients/{pid}/consents/new"' in advice
    assert "restriction request" in advice  # a consent alone does not lift a restriction
    assert _count(app, Disclosure) == 0


def test_the_referral_picker_shows_who_a_residence_serves_and_stale_beds(app, ids, desk):
    pid = ids["patient_id"]
    today = _today(app, pid)
    with app.app_context():
        home = db.session.get(AftercareResource, ids["home"])
        home.gender_served = "men"
        home.beds_confirmed_on = today - dt.timedelta(days=20)
        db.session.commit()
    html = desk.get(f"/aftercare/patients/{pid}/referrals/new?q=harbor").get_data(as_text=True)
    row = html.split("Harbor House", 1)[1].split("</tr>")[0]
    assert "Men" in row
    assert 'data-testid="stale"' in row
    assert _table_is_wrapped(html, "Resources matching the filters")


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_links_patients_and_residences_and_marks_stale_beds(app, ids, desk):
    pid = ids["patient_id"]
    today = _today(app, pid)
    referral_id = make_referral(app, ids, resource=ids["home"])
    with app.app_context():
        db.session.get(Referral, referral_id).follow_up_on = today
        db.session.get(AftercareResource, ids["home"]).beds_confirmed_on = today - dt.timedelta(
            days=15
        )
        db.session.commit()
    html = desk.get("/aftercare/dashboard").get_data(as_text=True)
    due = html.split('id="due-h"')[1].split("</section>")[0]
    assert f'href="/patients/{pid}"' in due
    beds = html.split('id="beds-h"')[1].split("</section>")[0]
    home_row = beds.split(f'href="/aftercare/resources/{ids["home"]}"')[1].split("</tr>")[0]
    assert 'data-testid="stale"' in home_row
    assert _table_is_wrapped(html, "Active residences accepting MOUD")


def test_the_dashboard_takes_as_many_statements_for_many_residences_as_for_two(app, ids, desk):
    def statements() -> int:
        with count_statements(app) as executed:
            assert desk.get("/aftercare/dashboard").status_code == 200
        return len(executed)

    two = statements()
    with app.app_context():
        for i in range(12):
            db.session.add(
                AftercareResource(
                    name=f"House {i}",
                    kind="recovery_residence",
                    accepts_moud="yes",
                    accepts_methadone="yes",
                    beds_total=4,
                    beds_available=1,
                    beds_confirmed_on=dt.date(2026, 10, 1),
                    gender_served="all",
                )
            )
        db.session.commit()
    assert statements() == two


# --- consents and the support network --------------------------------------------------------


# What a browser posts for an untouched consent form: every select on "Choose…", every
# box empty.
BLANK_CONSENT = dict.fromkeys(
    (
        "kind",
        "program_id",
        "information_description",
        "recipient_type",
        "resource_id",
        "support_person_id",
        "recipient_class",
        "purpose",
        "purpose_text",
        "right_to_revoke",
        "expiry_kind",
        "expires_on",
        "expiry_event",
        "redisclosure_statement",
        "signature_method",
        "paper_scan_reference",
        "electronic_signature_name",
        "signed_on",
    ),
    "",
)

CONSENT_MESSAGES = (
    "Choose the kind of consent.",
    "Choose the program that may disclose.",
    "Describe the information that may be disclosed",
    "Choose who may receive the information.",
    "Choose the purpose.",
    "Write the purpose of the disclosure.",
    "Choose when it expires.",
    "Choose how it was signed.",
)


def test_a_blank_consent_lists_every_missing_element_at_once(app, ids, desk):
    url = f"/aftercare/patients/{ids['patient_id']}/consents/new"
    response = _post_form(desk, url, BLANK_CONSENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in CONSENT_MESSAGES:
        assert message in html, message
    assert "Enter the date the patient signed." in html
    assert "State the patient&#39;s right to revoke" in html
    assert _count(app, Consent) == 0


def test_a_consents_missing_dependent_elements_are_listed_with_the_rest(app, ids, desk):
    url = f"/aftercare/patients/{ids['patient_id']}/consents/new"
    typed = "Enrollment in treatment and current medication"
    response = _post_form(
        desk,
        url,
        {
            **BLANK_CONSENT,
            "kind": "tpo",
            "information_description": typed,
            "recipient_type": "resource",
            "expiry_kind": "date",
            "signature_method": "paper",
            "redisclosure_statement": "",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in (
        "Choose the resource that may receive it.",
        "Enter the expiration date.",
        "Enter the reference of the signed paper&#39;s scan.",
        "A TPO consent carries its redisclosure statement.",
        "Choose the program that may disclose.",
    ):
        assert message in html, message
    assert typed in html  # the user's input is kept
    assert _count(app, Consent) == 0


def test_a_complete_consent_is_still_recorded(app, ids, desk):
    pid = ids["patient_id"]
    today = _today(app, pid)
    url = f"/aftercare/patients/{pid}/consents/new"
    response = _post_form(
        desk,
        url,
        {
            **BLANK_CONSENT,
            "right_to_revoke": "In writing, at the front desk",
            "kind": "specific_disclosure",
            "program_id": str(ids["program_id"]),
            "information_description": "That I am in treatment",
            "recipient_type": "resource",
            "resource_id": str(ids["home"]),
            "purpose": "aftercare_referral",
            "purpose_text": "Placement in a recovery residence",
            "expiry_kind": "date",
            "expires_on": (today + dt.timedelta(days=90)).isoformat(),
            "signature_method": "electronic",
            "electronic_signature_name": "Jo Smith",
            "signed_on": today.isoformat(),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _count(app, Consent) == 1


def test_a_nul_byte_in_a_consent_is_refused_by_its_field_with_the_others(app, ids, desk):
    url = f"/aftercare/patients/{ids['patient_id']}/consents/new"
    response = _post_form(
        desk, url, {**BLANK_CONSENT, "information_description": "Treatment\x00 dates"}
    )
    assert response.status_code == 400
    assert "Choose the kind of consent." in response.get_data(as_text=True)
    assert _count(app, Consent) == 0


def test_the_support_persons_relationship_is_asked_with_the_name(app, ids, desk):
    url = f"/aftercare/patients/{ids['patient_id']}/support-network/new"
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.count()).select_from(SupportPerson))
    response = _post_form(desk, url, {"name": "", "relationship": "", "notes": "Calls weekly"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter the person&#39;s name." in html
    assert "Choose the relationship." in html
    assert "Calls weekly" in html
    with app.app_context():
        after = db.session.scalar(sa.select(sa.func.count()).select_from(SupportPerson))
    assert after == before


def test_the_printed_consent_form_names_the_clinic_that_may_disclose(app, ids, desk):
    pid = ids["patient_id"]
    with app.app_context():
        site_name = db.session.get(Patient, pid).site.name
    html = desk.get(f"/aftercare/patients/{pid}/consents/print").get_data(as_text=True)
    item = html.split("Who may disclose:</strong>")[1].split("</li>")[0]
    assert site_name in item


# --- the chart -------------------------------------------------------------------------------


def test_clinicians_open_a_referral_from_the_chart_read_only(app, ids, make_user, username_of):
    make_consent(app, ids, resource=ids["home"])
    referral_id = make_referral(app, ids, resource=ids["home"])
    clinician = app.test_client()
    assert login(clinician, username_of(make_user("clinician"))).status_code == 302
    chart = clinician.get(f"/patients/{ids['patient_id']}").get_data(as_text=True)
    section = chart.split('data-testid="referrals-section"')[1].split("</section>")[0]
    assert f'href="/aftercare/referrals/{referral_id}"' in section
    assert "/referrals/new" not in section
    assert _table_is_wrapped(chart, "Latest aftercare referrals")
    assert _table_is_wrapped(chart, "Consents to disclose")
    detail = clinician.get(f"/aftercare/referrals/{referral_id}").get_data(as_text=True)
    assert "Send the referral" not in detail and "Change the status" not in detail


def test_filtering_the_picker_keeps_the_reason_typed_and_saves_nothing(app, ids, desk):
    pid = ids["patient_id"]
    url = f"/aftercare/patients/{pid}/referrals/new"
    response = _post_form(
        desk,
        url,
        {
            "kind": "recovery_residence",
            "q": "",
            "methadone": "y",
            "apply_filter": "1",
            "reason": "Needs a women's house near the clinic.",
            "purpose": "aftercare_referral",
            "follow_up_on": "",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Needs a women&#39;s house near the clinic." in html
    assert "Harbor House" in html and "Abstinence Lodge" not in html
    assert 'data-testid="moud-warning"' not in html and "invalid-feedback" not in html
    assert "?" not in html.split('<form method="post"')[1].split(">")[0]  # no reason in a URL
    assert _count(app, Referral) == 0


def test_creating_after_filtering_in_the_form_makes_one_referral(app, ids, desk):
    pid = ids["patient_id"]
    url = f"/aftercare/patients/{pid}/referrals/new"
    response = _post_form(
        desk,
        url,
        {
            "kind": "recovery_residence",
            "q": "harbor",
            "recipient": f"resource-{ids['home']}",
            "reason": "Housing after discharge",
            "purpose": "aftercare_referral",
            "follow_up_on": "",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _count(app, Referral) == 1

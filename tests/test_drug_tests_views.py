"""Drug test pages (issue 13): recording a collection and its results through the forms,
the history and the chart, who may open what (staff never see a result), another site's
patient, bad input (NUL bytes, a future time, an analyte twice, a result already recorded,
huge ids), double submits and the history's statement count."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.medications import drug_tests
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.sites.time import site_today
from tests.test_drug_tests_helpers import (
    at,
    collect,
    count_statements,
    enter,
    lab_fixture,  # noqa: F401
    selection,
    signed_in,
)

TOKEN = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')
MARCH_2 = dt.date(2026, 3, 2)


def tokens(client, url: str) -> dict:
    html = client.get(url).get_data(as_text=True)
    found = {"csrf_token": CSRF.search(html).group(1)}
    if match := TOKEN.search(html):
        found["submission_token"] = match.group(1)
    return found


def collection(**changes) -> dict:
    data = {
        "collected_on": "2026-03-02",
        "collected_time": "09:30",
        "specimen": "urine",
        "observed": "yes",
        "reason": "random",
        "temperature_in_range": "yes",
    }
    data.update(changes)
    return data


def results_data(*rows) -> dict:
    """Form fields for rows of (analyte, result, method[, other name])."""
    data = {}
    for i, row in enumerate(rows):
        analyte, result, method, *name = row
        data[f"rows-{i}-analyte"] = analyte
        data[f"rows-{i}-result"] = result
        data[f"rows-{i}-method"] = method
        data[f"rows-{i}-other_name"] = name[0] if name else ""
    return data


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def as_user(app, username_of):
    return lambda user_id: signed_in(app, username_of, user_id)


@pytest.fixture
def one_test(lab):
    """A test of the methadone patient with a presumptive negative methadone (a finding)."""
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("methadone", "negative", "presumptive"))
    return test_id


# --- recording through the forms --------------------------------------------------------------


def test_a_clinician_records_a_collection_then_its_results(app, lab, as_user):
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="collected_time"' in page.get_data(as_text=True)
    response = client.post(url, data={**tokens(client, url), **collection()})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        test = db.session.scalars(sa.select(DrugTest)).one()
        assert test.collected_at == dt.datetime(2026, 3, 2, 15, 30, tzinfo=dt.UTC)
        assert test.collected_on == MARCH_2
        test_id = test.id
    assert response.headers["Location"] == f"/drug-tests/{test_id}/results"
    results_url = f"/drug-tests/{test_id}/results"
    form = client.get(results_url).get_data(as_text=True)
    assert form.count('type="hidden" value="other"') + form.count('value="other"') >= 2
    data = results_data(
        ("methadone", "negative", "presumptive"),
        ("cocaine", "positive", "presumptive"),
        ("fentanyl", "", "presumptive"),  # left empty: not entered
    )
    response = client.post(results_url, data={**tokens(client, results_url), **data})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/drug-tests/{test_id}"
    assert count(app, DrugTestResult) == 2
    # The next results form offers the definitive results of those two.
    again = client.get(results_url).get_data(as_text=True)
    assert re.search(r'rows-0-analyte"[^>]*value="opioids"', again)
    definitive = re.findall(r'<option selected value="definitive">', again)
    assert len(definitive) == 2
    page = client.get(f"/drug-tests/{test_id}").get_data(as_text=True)
    assert "possible diversion" in page
    assert "data-print" in page


def test_a_random_selection_prefills_the_form(app, lab, as_user):
    with lab.ctx():
        today = site_today(lab.patient(lab.methadone).site)
        chosen = selection(lab, lab.methadone, today)
        other = selection(lab, lab.buprenorphine, today)
    client = as_user(lab.clinician)
    html = client.get(f"/drug-tests/patients/{lab.methadone}/new?selection={chosen}").get_data(
        as_text=True
    )
    assert f'name="selection_id" type="hidden" value="{chosen}"' in html
    assert 'data-testid="selection"' in html
    for wrong in (other, "99999999999", "x"):
        html = client.get(f"/drug-tests/patients/{lab.methadone}/new?selection={wrong}").get_data(
            as_text=True
        )
        assert 'data-testid="selection"' not in html


def test_the_same_collection_sent_twice_is_recorded_once(app, lab, as_user):
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    data = {**tokens(client, url), **collection()}
    first = client.post(url, data=data)
    second = client.post(url, data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count(app, DrugTest) == 1


def test_the_same_results_sent_twice_are_saved_once(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/results"
    data = {**tokens(client, url), **results_data(("cocaine", "negative", "presumptive"))}
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302
    assert count(app, DrugTestResult) == 2


@pytest.mark.parametrize(
    ("changes", "field_message"),
    [
        ({"collected_on": "2099-01-01"}, drug_tests.FUTURE_MESSAGE),
        ({"collected_on": "2025-12-31"}, "first admission (5 Jan 2026)"),
        ({"collected_on": "9999-12-31", "collected_time": "23:59"}, drug_tests.FUTURE_MESSAGE),
        ({"collected_on": "0001-01-01"}, "first admission (5 Jan 2026)"),
        ({"collected_on": "2026-13-40"}, "Not a valid date value."),
        ({"collected_time": "25:00"}, "Not a valid time value."),
        ({"specimen": "blood"}, "Not a valid choice."),
        ({"temperature_in_range": ""}, drug_tests.TEMPERATURE_NEEDED_MESSAGE),
        ({"selection_id": "99999999999"}, "out of date"),
    ],
)
def test_bad_collection_input_is_a_message_with_the_input_kept(
    app, lab, as_user, changes, field_message
):
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    response = client.post(url, data={**tokens(client, url), **collection(**changes)})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert field_message in body
    assert 'value="yes" selected' in body or 'selected value="yes"' in body
    assert count(app, DrugTest) == 0


def test_an_analyte_twice_is_a_message_on_its_row(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/results"
    data = results_data(
        ("cocaine", "negative", "presumptive"),
        ("cocaine", "positive", "presumptive"),
    )
    response = client.post(url, data={**tokens(client, url), **data})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "Cocaine (presumptive) is entered twice in this form." in body
    assert 'id="rows-1-result-error"' in body
    assert count(app, DrugTestResult) == 1


def test_a_result_already_recorded_is_a_message_not_a_500(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/results"
    data = results_data(("cocaine", "", "presumptive"), ("methadone", "positive", "presumptive"))
    response = client.post(url, data={**tokens(client, url), **data})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "A presumptive result for Methadone is already recorded" in body
    assert 'id="rows-1-result-error"' in body


def test_nul_bytes_in_an_other_substance_are_refused(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/results"
    data = results_data(("other", "positive", "presumptive", "Xyla\x00zine"))
    response = client.post(url, data={**tokens(client, url), **data})
    assert response.status_code == 400
    assert CONTROL_CHARACTER_MESSAGE in response.get_data(as_text=True)
    assert count(app, DrugTestResult) == 1


def test_a_tampered_analyte_is_refused_on_top_of_the_form(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/results"
    data = results_data(("heroin", "positive", "presumptive"))
    response = client.post(url, data={**tokens(client, url), **data})
    assert response.status_code == 400
    assert "out of date" in response.get_data(as_text=True)


def test_marking_a_test_entered_in_error_through_its_confirmation(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/entered-in-error"
    page = client.get(url).get_data(as_text=True)
    assert "This cannot be undone" in page
    empty = client.post(url, data={**tokens(client, url), "reason": ""})
    assert empty.status_code == 400
    data = {**tokens(client, url), "reason": "Specimen of another patient"}
    assert client.post(url, data=data).status_code == 302
    again = client.post(url, data=data)  # a double click: the first result
    assert again.status_code == 302
    with app.app_context():
        test = db.session.get(DrugTest, one_test)
        assert test.entered_in_error_reason == "Specimen of another patient"
    results = client.get(f"/drug-tests/{one_test}/results")
    assert results.status_code == 302
    history = client.get(f"/drug-tests/patients/{lab.methadone}").get_data(as_text=True)
    assert "text-decoration-line-through" in history
    assert "possible diversion" not in history


# --- who may open what -------------------------------------------------------------------------


def pages(lab, test_id: int) -> list[str]:
    return [
        f"/drug-tests/patients/{lab.methadone}",
        f"/drug-tests/patients/{lab.methadone}/new",
        f"/drug-tests/{test_id}",
        f"/drug-tests/{test_id}/results",
        f"/drug-tests/{test_id}/entered-in-error",
    ]


def test_staff_never_see_a_result_anywhere(app, lab, as_user, one_test):
    client = as_user(lab.staff)
    for url in pages(lab, one_test):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Methadone" not in response.get_data(as_text=True)
        if not url.endswith(str(one_test)) and not url.endswith(str(lab.methadone)):
            token = tokens(client, "/")
            assert client.post(url, data=token).status_code == 403
    chart = client.get(f"/patients/{lab.methadone}").get_data(as_text=True)
    assert chart and 'data-testid="drug-tests-section"' not in chart
    assert "possible diversion" not in chart and "Negative" not in chart


def test_administrators_read_results_but_do_not_record(app, lab, as_user, one_test):
    client = as_user(lab.admin)
    for url in (pages(lab, one_test)[0], pages(lab, one_test)[2]):
        assert client.get(url).status_code == 200, url
    for url in (pages(lab, one_test)[1], pages(lab, one_test)[3], pages(lab, one_test)[4]):
        assert client.get(url).status_code == 403, url
    chart = client.get(f"/patients/{lab.methadone}").get_data(as_text=True)
    assert 'data-testid="drug-tests-section"' in chart
    assert "possible diversion" in chart
    assert "Record a test" not in chart


def test_another_sites_patient_is_a_404_and_audited(app, lab, as_user):
    with lab.ctx():
        east_test = collect(lab, lab.other_site_patient, actor=lab.other_clinician)
    client = as_user(lab.clinician)
    urls = [
        f"/drug-tests/patients/{lab.other_site_patient}",
        f"/drug-tests/patients/{lab.other_site_patient}/new",
        f"/drug-tests/{east_test}",
        f"/drug-tests/{east_test}/results",
        f"/drug-tests/{east_test}/entered-in-error",
    ]
    for url in urls:
        with app.app_context():
            before = db.session.scalar(
                sa.select(sa.func.count()).where(AuditEvent.action == "access_denied")
            )
        response = client.get(url)
        assert response.status_code == 404, url
        with app.app_context():
            denied = db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action == "access_denied")
                .order_by(AuditEvent.seq.desc())
            ).all()
        assert len(denied) == before + 1
        assert denied[0].patient_id == lab.other_site_patient


@pytest.mark.parametrize("raw", ["2147483648", "99999999999999999999", "0"])
def test_a_huge_id_is_a_404(app, lab, as_user, raw):
    client = as_user(lab.clinician)
    for url in (f"/drug-tests/{raw}", f"/drug-tests/patients/{raw}", f"/drug-tests/{raw}/results"):
        assert client.get(url).status_code == 404
    assert client.get(f"/drug-tests/patients/{lab.methadone}?before={raw}").status_code == 200


def test_a_patient_entered_in_error_is_read_only(app, lab, as_user, one_test):
    from clinic.db import utcnow

    with lab.ctx():
        patient = lab.patient(lab.methadone)
        patient.entered_in_error_at = utcnow()
        patient.entered_in_error_reason = "Duplicate"
        patient.entered_in_error_by_id = lab.admin
        db.session.commit()
    client = as_user(lab.clinician)
    page = client.get(f"/drug-tests/patients/{lab.methadone}/new").get_data(as_text=True)
    assert 'data-testid="read-only"' in page and 'name="collected_on"' not in page
    results = client.get(f"/drug-tests/{one_test}/results").get_data(as_text=True)
    assert 'data-testid="read-only"' in results


# --- the history -------------------------------------------------------------------------------


def test_the_history_is_newest_first_in_keyset_pages(app, lab, as_user):
    with lab.ctx():
        ids = [
            collect(lab, when=at(dt.date(2026, 2, 1) + dt.timedelta(days=i)))
            for i in range(drug_tests.HISTORY_PAGE_SIZE + 2)
        ]
    client = as_user(lab.clinician)
    first = client.get(f"/drug-tests/patients/{lab.methadone}").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'data-test-id="(\d+)"', first)]
    assert shown == ids[::-1][: drug_tests.HISTORY_PAGE_SIZE]
    older = re.search(r'href="([^"]*before=\d+)"', first).group(1).replace("&amp;", "&")
    rest = client.get(older).get_data(as_text=True)
    assert [int(i) for i in re.findall(r'data-test-id="(\d+)"', rest)] == ids[1::-1]


@pytest.mark.parametrize("page", ["history", "chart"])
def test_the_history_and_chart_run_the_same_statements_for_2_or_25_tests(app, lab, as_user, page):
    client = as_user(lab.clinician)
    url = {
        "history": f"/drug-tests/patients/{lab.methadone}",
        "chart": f"/patients/{lab.methadone}",
    }[page]

    def statements_for(n: int) -> int:
        with lab.ctx():
            for i in range(n):
                test_id = collect(lab, when=at(dt.date(2026, 2, 1) + dt.timedelta(days=i)))
                enter(
                    lab,
                    test_id,
                    ("methadone", "negative", "presumptive"),
                    ("cocaine", "positive", "presumptive"),
                )
        with count_statements(app) as statements:
            assert client.get(url).status_code == 200
        return len(statements)

    few = statements_for(2)
    many = statements_for(23)
    assert few == many


def test_the_empty_history_and_chart_say_so(app, lab, as_user):
    client = as_user(lab.clinician)
    page = client.get(f"/drug-tests/patients/{lab.buprenorphine}").get_data(as_text=True)
    assert 'data-testid="history-empty"' in page
    chart = client.get(f"/patients/{lab.buprenorphine}").get_data(as_text=True)
    assert 'data-testid="drug-tests-empty"' in chart


# --- the patient's own medication (a positive is expected, a negative is the finding) ----------


def effective_items(html: str) -> dict[tuple[str, str], str]:
    """The effective results' list items, by (analyte, result)."""
    items = re.findall(
        r'<li class="list-inline-item[^"]*" data-analyte="([^"]+)" data-result="([^"]+)"'
        r"(.*?)</li>",
        html,
        re.S,
    )
    return {(analyte, result): rest for analyte, result, rest in items}


@pytest.mark.parametrize("page", ["history", "test", "chart"])
def test_the_own_medication_is_shown_as_such_not_as_an_illicit_positive(app, lab, as_user, page):
    with lab.ctx():
        expected = collect(lab, when=at(dt.date(2026, 3, 2)))
        enter(
            lab,
            expected,
            ("methadone", "positive", "presumptive"),
            ("cocaine", "positive", "presumptive"),
            ("fentanyl", "negative", "presumptive"),
        )
        missing = collect(lab, when=at(dt.date(2026, 3, 3)))
        enter(lab, missing, ("methadone", "negative", "presumptive"))
        # The buprenorphine patient's methadone is not their own medication.
        other = collect(lab, lab.buprenorphine, when=at(dt.date(2026, 3, 2)))
        enter(
            lab,
            other,
            ("methadone", "positive", "presumptive"),
            ("buprenorphine", "negative", "presumptive"),
        )
    client = as_user(lab.clinician)
    urls = {
        "history": [f"/drug-tests/patients/{lab.methadone}"],
        "test": [f"/drug-tests/{expected}", f"/drug-tests/{missing}"],
        "chart": [f"/patients/{lab.methadone}"],
    }[page]
    html = "".join(client.get(url).get_data(as_text=True) for url in urls)
    items = effective_items(html)
    own_positive = items[("methadone", "positive")]
    assert "(own medication)" in own_positive
    assert "text-bg-danger" not in own_positive
    own_negative = items[("methadone", "negative")]
    assert "Negative: finding" in own_negative and "(own medication)" in own_negative
    assert "text-bg-success" not in own_negative
    assert "text-bg-danger" in items[("cocaine", "positive")]
    assert "own medication" not in items[("cocaine", "positive")]
    assert "text-bg-success" in items[("fentanyl", "negative")]
    other_url = {
        "history": f"/drug-tests/patients/{lab.buprenorphine}",
        "test": f"/drug-tests/{other}",
        "chart": f"/patients/{lab.buprenorphine}",
    }[page]
    theirs = effective_items(client.get(other_url).get_data(as_text=True))
    assert "text-bg-danger" in theirs[("methadone", "positive")]
    assert "own medication" not in theirs[("methadone", "positive")]
    assert "Negative: finding" in theirs[("buprenorphine", "negative")]


def test_an_own_medication_negative_entered_in_error_is_no_finding(app, lab, as_user, one_test):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{one_test}/entered-in-error"
    response = client.post(url, data={**tokens(client, url), "reason": "Wrong patient's cup."})
    assert response.status_code == 302
    items = effective_items(client.get(f"/drug-tests/{one_test}").get_data(as_text=True))
    shown = items[("methadone", "negative")]
    assert "(own medication)" in shown
    assert "finding" not in shown and "text-bg-success" not in shown


# --- the collection form's defaults agree -------------------------------------------------------


def shown_option(html: str, name: str) -> tuple[str, str]:
    """(value, label) of the option a browser shows in select ``name``: the selected one,
    else the first."""
    select = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
    options = re.findall(r"<option([^>]*)>([^<]*)</option>", select)
    chosen = next((o for o in options if "selected" in o[0]), options[0])
    return re.search(r'value="([^"]*)"', chosen[0]).group(1), chosen[1]


def test_the_collection_form_defaults_do_not_contradict_each_other(app, lab, as_user):
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    html = client.get(url).get_data(as_text=True)
    assert shown_option(html, "specimen") == ("urine", "Urine")
    value, label = shown_option(html, "temperature_in_range")
    assert value == "" and "applicable" not in label  # urine: nothing preselected
    # Sending the form as shown (the two open questions answered): the temperature is
    # asked for in words, next to the field, with the rest of the input kept.
    shown = {
        "collected_on": "2026-03-02",
        "collected_time": "09:30",
        "specimen": shown_option(html, "specimen")[0],
        "temperature_in_range": value,
        "observed": "yes",
        "reason": "random",
    }
    response = client.post(url, data={**tokens(client, url), **shown})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert drug_tests.TEMPERATURE_NEEDED_MESSAGE in body
    assert shown_option(body, "observed")[0] == "yes"
    # With the form's other errors, in one round.
    response = client.post(url, data={**tokens(client, url), **shown, "observed": ""})
    body = response.get_data(as_text=True)
    assert drug_tests.TEMPERATURE_NEEDED_MESSAGE in body
    assert "Say whether the collection was observed." in body
    # "Not applicable" is refused for urine, accepted for oral fluid.
    response = client.post(
        url, data={**tokens(client, url), **collection(temperature_in_range="na")}
    )
    assert response.status_code == 400
    assert drug_tests.TEMPERATURE_NEEDED_MESSAGE in response.get_data(as_text=True)
    assert count(app, DrugTest) == 0
    response = client.post(
        url,
        data={
            **tokens(client, url),
            **collection(specimen="oral_fluid", temperature_in_range="na"),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        test = db.session.scalars(sa.select(DrugTest)).one()
        assert test.specimen == "oral_fluid" and test.temperature_in_range is None

"""Attacks on drug tests and the random draw (issue 13): another site's ids, staff looking
for results, NUL bytes, dates at the calendar's edges, a collection one minute in the
future at sites on either side of the date line, "other" analytes spelt two ways, stale
reads racing a colleague, a random selection recorded twice, a discharged patient on the
worklist, a patient whose order changed from methadone to buprenorphine, raw SQL against
the append-only tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import drug_tests, orders
from clinic.medications.drug_test_models import (
    DrugTest,
    DrugTestResult,
    RandomTestSelection,
)
from clinic.medications.models import MedicationOrder
from clinic.sites.models import Site
from tests.test_drug_tests_helpers import (
    at,
    collect,
    enter,
    lab_fixture,  # noqa: F401
    selection,
    signed_in,
)
from tests.test_drug_tests_views import collection, results_data, tokens

RESULT_WORDS = ("Positive", "Negative", "positive", "negative", "Presumptive", "Definitive")


@pytest.fixture
def as_user(app, username_of):
    return lambda user_id: signed_in(app, username_of, user_id)


@pytest.fixture
def tested(lab):
    """A test of the methadone patient: presumptive cocaine positive, methadone negative."""
    with lab.ctx():
        test_id = collect(lab)
        enter(
            lab,
            test_id,
            ("cocaine", "positive", "presumptive"),
            ("methadone", "negative", "presumptive"),
        )
    return test_id


def denied(app, entity_type: str, entity_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).where(
                AuditEvent.action == "access_denied",
                AuditEvent.entity_type == entity_type,
                AuditEvent.entity_id == str(entity_id),
            )
        )


# --- another site, other roles ------------------------------------------------------------


def test_another_sites_clinician_meets_404s_each_audited(app, lab, tested, as_user):
    client = as_user(lab.other_clinician)
    for url in (
        f"/drug-tests/{tested}",
        f"/drug-tests/{tested}/results",
        f"/drug-tests/{tested}/entered-in-error",
    ):
        before = denied(app, "drug_test", tested)
        assert client.get(url).status_code == 404, url
        assert denied(app, "drug_test", tested) == before + 1, url
    for url in (
        f"/drug-tests/patients/{lab.methadone}",
        f"/drug-tests/patients/{lab.methadone}/new",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
    posted = client.post(
        f"/drug-tests/{tested}/results",
        data=results_data(("fentanyl", "positive", "presumptive")),
    )
    assert posted.status_code in (400, 404)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTestResult)) == 2


def test_another_sites_draw_and_selection_are_404_and_audited(app, lab, as_user):
    with lab.ctx():
        chosen = selection(lab, lab.methadone, dt.date(2026, 3, 2))
        draw_id = db.session.get(RandomTestSelection, chosen).draw_id
    client = as_user(lab.other_clinician)
    assert client.get(f"/drug-tests/schedule/draws/{draw_id}").status_code == 404
    assert denied(app, "random_test_draw", draw_id) == 1
    assert client.post(f"/drug-tests/schedule/sites/{lab.site}/draw").status_code in (400, 404)
    # The other site's clinician using a MAIN selection on their own patient: refused.
    with lab.ctx(), pytest.raises(DomainError):
        drug_tests.record_test(
            lab.patient(lab.other_site_patient),
            actor=lab.user(lab.other_clinician),
            collected_at=at(dt.date(2026, 3, 2)),
            specimen="urine",
            observed=True,
            reason="random",
            temperature_in_range=True,
            adulteration_suspected=False,
            selection_id=chosen,
        )


def test_staff_never_see_a_result_anywhere(app, lab, tested, as_user):
    client = as_user(lab.staff)
    for url in (
        f"/drug-tests/{tested}",
        f"/drug-tests/{tested}/results",
        f"/drug-tests/{tested}/entered-in-error",
        f"/drug-tests/patients/{lab.methadone}",
        f"/drug-tests/patients/{lab.methadone}/new",
    ):
        response = client.get(url)
        assert response.status_code in (403, 404), url
        text = response.get_data(as_text=True)
        assert "Cocaine" not in text and "cocaine" not in text, url
        assert "possible diversion" not in text, url
    for url in (
        f"/patients/{lab.methadone}",
        "/drug-tests/schedule/",
        "/drug-tests/schedule/today",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.get_data(as_text=True)
        assert "Cocaine" not in text and "possible diversion" not in text, url
        assert f"/drug-tests/{tested}" not in text, url


# --- bad input ------------------------------------------------------------------------------


def test_a_nul_byte_in_the_in_error_reason_is_refused_by_the_service(app, lab, tested):
    with lab.ctx():
        test = db.session.get(DrugTest, tested)
        with pytest.raises(DomainError) as refused:
            drug_tests.mark_entered_in_error(
                test, actor=lab.user(lab.clinician), reason="wrong\x00patient"
            )
        assert refused.value.field == "reason"
        db.session.rollback()
        assert db.session.get(DrugTest, tested).entered_in_error_at is None


def test_a_nul_byte_in_other_name_is_refused_by_the_service(app, lab, tested):
    with lab.ctx():
        with pytest.raises(DomainError) as refused:
            drug_tests.record_results(
                db.session.get(DrugTest, tested),
                [drug_tests.ResultRow("other", "positive", "presumptive", "kra\x00tom")],
                actor=lab.user(lab.clinician),
            )
        assert refused.value.field == "rows-0-other_name"


def test_nul_bytes_through_the_forms_are_field_errors(app, lab, tested, as_user):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{tested}/results"
    data = results_data(("other", "positive", "presumptive", "kra\x00tom"))
    response = client.post(url, data={**tokens(client, url), **data})
    assert response.status_code == 400
    url = f"/drug-tests/{tested}/entered-in-error"
    response = client.post(url, data={**tokens(client, url), "reason": "oops\x00"})
    assert response.status_code == 400
    url = f"/drug-tests/patients/{lab.methadone}/new"
    response = client.post(url, data={**tokens(client, url), **collection(selection_id="1\x00")})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTest)) == 1
        assert db.session.get(DrugTest, tested).entered_in_error_at is None


@pytest.mark.parametrize("zone", ["Pacific/Honolulu", "Pacific/Kiritimati"])
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
@pytest.mark.parametrize("time", ["00:00", "23:59"])
def test_calendar_edges_at_both_ends_of_the_date_line(app, lab, as_user, zone, day, time):
    with app.app_context():
        db.session.get(Site, lab.site).timezone = zone
        db.session.commit()
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    response = client.post(
        url, data={**tokens(client, url), **collection(collected_on=day, collected_time=time)}
    )
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTest)) == 0


@pytest.mark.parametrize("zone", ["Pacific/Honolulu", "Pacific/Kiritimati"])
def test_one_minute_in_the_future_in_the_sites_zone(app, lab, as_user, zone):
    with app.app_context():
        db.session.get(Site, lab.site).timezone = zone
        db.session.commit()
    client = as_user(lab.clinician)
    url = f"/drug-tests/patients/{lab.methadone}/new"
    local = utcnow().astimezone(ZoneInfo(zone))
    ahead = (local + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)
    response = client.post(
        url,
        data={
            **tokens(client, url),
            **collection(
                collected_on=ahead.date().isoformat(), collected_time=ahead.strftime("%H:%M")
            ),
        },
    )
    assert response.status_code == 400
    assert drug_tests.FUTURE_MESSAGE in response.get_data(as_text=True)
    behind = (local - dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    response = client.post(
        url,
        data={
            **tokens(client, url),
            **collection(
                collected_on=behind.date().isoformat(), collected_time=behind.strftime("%H:%M")
            ),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        test = db.session.scalars(sa.select(DrugTest)).one()
        assert test.collected_on == behind.date()  # the site's day, not the server's


# --- results: spelling, order, races -------------------------------------------------------------


def test_other_analyte_spelt_two_ways_is_one_analyte(app, lab, tested):
    with lab.ctx():
        enter(lab, tested, ("other", "positive", "presumptive", "Kratom"))
        with pytest.raises(DomainError):
            enter(lab, tested, ("other", "negative", "presumptive", " kratom "))
        db.session.rollback()
        enter(lab, tested, ("other", "negative", "definitive", "  KRATOM"))
        test = db.session.get(DrugTest, tested)
        kratom = [e for e in drug_tests.effective_results([test])[tested] if e.analyte == "other"]
        assert len(kratom) == 1
        assert kratom[0].result == "negative" and kratom[0].method == "definitive"
        assert kratom[0].presumptive == "positive"
        # and a presumptive after that definitive, spelt a third way: refused
        with pytest.raises(DomainError):
            enter(lab, tested, ("other", "positive", "presumptive", "kRatom"))


def test_a_definitive_then_a_presumptive_is_refused(app, lab, tested):
    with lab.ctx():
        enter(lab, tested, ("fentanyl", "positive", "definitive"))
        with pytest.raises(DomainError) as refused:
            enter(lab, tested, ("fentanyl", "negative", "presumptive"))
        assert "definitive" in refused.value.message
        db.session.rollback()
        with pytest.raises(DomainError):  # definitive then presumptive in one form
            enter(
                lab,
                tested,
                ("opioids", "positive", "definitive"),
                ("opioids", "negative", "presumptive"),
            )


def _insert_behind_the_services_back(test_id: int, analyte: str, method: str, user_id: int):
    """A colleague's row arriving between our read of the results and our write."""
    db.session.execute(
        sa.insert(DrugTestResult).values(
            test_id=test_id,
            analyte=analyte,
            other_name="",
            result="positive",
            method=method,
            entered_by_id=user_id,
            entered_at=utcnow(),
        )
    )


def test_a_presumptive_racing_a_colleagues_definitive_is_refused(app, lab, tested):
    with lab.ctx():
        test = db.session.get(DrugTest, tested)
        assert len(test.results) == 2  # loaded: what the page read
        _insert_behind_the_services_back(tested, "fentanyl", "definitive", lab.prescriber)
        with pytest.raises(DomainError):
            drug_tests.record_results(
                test,
                [drug_tests.ResultRow("fentanyl", "negative", "presumptive")],
                actor=lab.user(lab.clinician),
            )


def test_the_same_analyte_racing_a_colleague_is_a_message_not_a_500(app, lab, tested):
    with lab.ctx():
        test = db.session.get(DrugTest, tested)
        assert len(test.results) == 2
        _insert_behind_the_services_back(tested, "fentanyl", "presumptive", lab.prescriber)
        with pytest.raises(DomainError):
            drug_tests.record_results(
                test,
                [drug_tests.ResultRow("fentanyl", "negative", "presumptive")],
                actor=lab.user(lab.clinician),
            )


def test_results_for_a_test_entered_in_error_are_refused(app, lab, tested, as_user):
    with lab.ctx():
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, tested), actor=lab.user(lab.clinician), reason="wrong cup"
        )
        db.session.commit()
        with pytest.raises(DomainError):
            enter(lab, tested, ("fentanyl", "positive", "presumptive"))
    client = as_user(lab.clinician)
    url = f"/drug-tests/{tested}/results"
    assert client.get(url).status_code == 302  # no form for a test entered in error
    token = tokens(client, f"/drug-tests/patients/{lab.methadone}/new")
    response = client.post(
        url, data={**token, **results_data(("fentanyl", "positive", "presumptive"))}
    )
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTestResult)) == 2


# --- the own-medication finding across a switch --------------------------------------------------


def test_own_medication_follows_a_switch_from_methadone_to_buprenorphine(app, lab):
    switch_on = dt.date(2026, 7, 1)
    with lab.ctx():
        order = db.session.get(MedicationOrder, lab.methadone_order)
        orders.switch_medication(
            order,
            actor=lab.user(lab.prescriber),
            data=orders.OrderInput(
                medication="buprenorphine_naloxone",
                product_form="sublingual_film",
                strength="8 mg/2 mg",
                dose_mg=Decimal("16"),
                schedule="daily",
                start_on=switch_on,
                reason="patient preference",
            ),
        )
        db.session.commit()
        march = collect(lab, when=at(dt.date(2026, 3, 2)))
        august = collect(lab, when=at(dt.date(2026, 8, 3), 9))
        for test_id in (march, august):
            enter(
                lab,
                test_id,
                ("methadone", "negative", "presumptive"),
                ("buprenorphine", "negative", "presumptive"),
            )
        tests = [db.session.get(DrugTest, t) for t in (march, august)]
        found = drug_tests.findings(tests)
        assert [f.analyte for f in found[march]] == ["methadone"]
        assert [f.analyte for f in found[august]] == ["buprenorphine"]
        # in August, methadone positive is unexpected; buprenorphine positive is not
        positives = drug_tests.unexpected_positives([lab.methadone], dt.date(2026, 1, 1))
        assert positives == {}


# --- raw SQL against the append-only tables ---------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE drug_test_result SET result = 'negative'",
        "DELETE FROM drug_test_result",
        "DELETE FROM drug_test",
        "UPDATE drug_test SET reason = 'random', collected_on = '2026-03-03'",
        "UPDATE drug_test SET patient_id = patient_id + 0, collected_by_id = {other}",
        "UPDATE random_test_draw SET seed = 'guessable'",
        "DELETE FROM random_test_draw",
        "UPDATE random_test_selection SET probability = 1000",
        "DELETE FROM random_test_selection",
    ],
)
def test_raw_sql_against_append_only_tables_is_refused(app, lab, tested, statement):
    with lab.ctx():
        selection(lab, lab.methadone, dt.date(2026, 3, 2))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.text(statement.format(other=lab.prescriber)))
        db.session.rollback()


def test_raw_sql_cannot_clear_an_error_mark(app, lab, tested):
    with lab.ctx():
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, tested), actor=lab.user(lab.clinician), reason="wrong cup"
        )
        db.session.commit()
        for statement in (
            "UPDATE drug_test SET entered_in_error_at = NULL, entered_in_error_by_id = NULL,"
            " entered_in_error_reason = NULL",
            "UPDATE drug_test SET entered_in_error_reason = 'other'",
        ):
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(sa.text(statement))
            db.session.rollback()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("fentanyl", "", "definitive"), ("fentanyl", "", "presumptive")),
        (("other", "Kratom", "presumptive"), ("other", "kratom", "presumptive")),
        (("other", "Kratom", "definitive"), ("other", "KRATOM", "presumptive")),
    ],
)
def test_the_database_backs_the_result_rules(app, lab, tested, first, second):
    def insert(analyte, name, method):
        db.session.execute(
            sa.insert(DrugTestResult).values(
                test_id=tested,
                analyte=analyte,
                other_name=name,
                result="positive",
                method=method,
                entered_by_id=lab.clinician,
                entered_at=utcnow(),
            )
        )

    with lab.ctx():
        insert(*first)
        with pytest.raises(sa.exc.IntegrityError, match="drug_test_result_order"):
            insert(*second)
        db.session.rollback()


# --- more edges ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "?before=99999999999999999999",
        "?before=-1",
        "?before=%00",
        "?before=1e3",
    ],
)
def test_history_cursor_junk_is_the_first_page(app, lab, tested, as_user, query):
    response = as_user(lab.clinician).get(f"/drug-tests/patients/{lab.methadone}{query}")
    if "%00" in query:
        assert response.status_code == 400  # the app refuses a NUL in any query string
        return
    assert response.status_code == 200
    assert f"/drug-tests/{tested}" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "url",
    [
        "/drug-tests/schedule/?page=99999999999999999999&sort=%00&dir=%00",
        "/drug-tests/schedule/?page=-5&sort=last&dir=asc",
        "/drug-tests/schedule/draws/99999999999999999999",
        "/drug-tests/99999999999999999999",
        "/drug-tests/2147483648/results",
        "/drug-tests/patients/{patient}/new?selection=99999999999999999999",
        "/drug-tests/patients/{patient}/new?selection=%00",
    ],
)
def test_huge_and_junk_numbers_are_never_a_500(app, lab, as_user, url):
    response = as_user(lab.clinician).get(url.format(patient=lab.methadone))
    assert response.status_code in ((400,) if "%00" in url else (200, 404))


def test_an_administrator_of_another_site_and_roles_that_may_not_record(
    app, lab, tested, make_user, as_user
):
    east_admin = make_user("admin", site_ids=[lab.other_site])
    assert as_user(east_admin).get(f"/drug-tests/{tested}").status_code == 404
    assert denied(app, "drug_test", tested) == 1
    admin = as_user(lab.admin)
    assert admin.get(f"/drug-tests/{tested}").status_code == 200
    for url in (f"/drug-tests/{tested}/results", f"/drug-tests/patients/{lab.methadone}/new"):
        assert admin.get(url).status_code in (403, 404), url
        assert admin.post(url, data=collection()).status_code in (400, 403, 404), url
    with lab.ctx():
        with pytest.raises(DomainError):
            enter(lab, tested, ("fentanyl", "positive", "presumptive"), actor=lab.admin)
        with pytest.raises(DomainError):
            enter(lab, tested, ("fentanyl", "positive", "presumptive"), actor=lab.other_clinician)


def test_the_database_refuses_a_result_for_a_test_entered_in_error(app, lab, tested):
    with lab.ctx():
        drug_tests.mark_entered_in_error(
            db.session.get(DrugTest, tested), actor=lab.user(lab.clinician), reason="wrong cup"
        )
        db.session.commit()
        with pytest.raises(sa.exc.IntegrityError, match="drug_test_result_order"):
            _insert_behind_the_services_back(tested, "fentanyl", "presumptive", lab.clinician)
        db.session.rollback()


def test_too_many_rows_and_huge_row_indices(app, lab, tested, as_user):
    client = as_user(lab.clinician)
    url = f"/drug-tests/{tested}/results"
    data = {**tokens(client, url)}
    for i in (*range(30), 10**20):
        data[f"rows-{i}-analyte"] = "other"
        data[f"rows-{i}-result"] = "positive"
        data[f"rows-{i}-method"] = "presumptive"
        data[f"rows-{i}-other_name"] = f"Substance {i}"
    response = client.post(url, data=data)
    assert response.status_code == 400  # not the first 20 saved and the rest dropped
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTestResult)) == 2

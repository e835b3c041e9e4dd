"""The take-home pages: the Wednesday flow (day 35, tests negative, attendance 97 %, 7 days
within the 28-day cap, the prescriber approves; day 12 asking 10 days refused with the cap),
every role allowed and refused, another site's records a 404, bad input kept with its
message, double submits, and the chart's Take-homes section."""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications import drug_tests, ledger
from clinic.medications.drug_tests import ResultRow
from clinic.medications.take_home_models import CRITERIA, TakeHomeDecision
from tests.conftest import login
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    CHICAGO,
    TODAY,
    make_world,
    site_noon,
)

TOKEN_RE = re.compile(r'name="submission_token"[^>]*value="([^"]+)"')


@pytest.fixture
def signed_in(app, username_of):
    def make(user_id: int):
        client = app.test_client()
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


def form_data(client, url: str, **fields) -> dict:
    page = client.get(url).get_data(as_text=True)
    token = TOKEN_RE.search(page)
    data = {
        "csrf_token": client.csrf_token(url),
        "submission_token": token.group(1) if token else "",
        "order_id": fields.pop("order_id", ""),
        "schedule_kind": "days",
        "start_on": TODAY.isoformat(),
        "days": "7",
        "storage_education_on": TODAY.isoformat(),
    }
    for name, label in CRITERIA:
        data[f"{name}_met"] = "y"
        data[f"{name}_note"] = f"{label}: documented."
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), CHICAGO).astimezone(dt.UTC)


def decisions_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(TakeHomeDecision))


def test_the_wednesday_flow(app, site_noon, make_world, make_user, signed_in):
    made = make_world(day=35, closed="")
    nurse = make_user("clinician", may_dispense=True)
    with app.test_request_context():
        from clinic.accounts.models import User

        actor = db.session.get(User, nurse)
        for n in range(35, 0, -1):
            if n != 20:  # one day missed of 35: 97 %
                ledger.record_dose(
                    made.patient, actor=actor, amount_mg="40", now=at(TODAY - dt.timedelta(n))
                )
                db.session.commit()
        test = drug_tests.record_test(
            made.patient,
            actor=made.user("clinician"),
            collected_at=at(TODAY - dt.timedelta(days=3)),
            specimen="urine",
            observed=True,
            reason="random",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test,
            [
                ResultRow("fentanyl", "negative", "presumptive"),
                ResultRow("cocaine", "positive", "presumptive"),
                ResultRow("cocaine", "negative", "definitive"),
                ResultRow("methadone", "positive", "presumptive"),
            ],
            actor=made.user("clinician"),
        )
        db.session.commit()
    clinician = signed_in(made.ids["clinician"])
    url = f"/take-homes/patients/{made.ids['patient']}"
    page = clinician.get(url).get_data(as_text=True)
    assert '<strong data-testid="attendance-percent">97 %</strong>' in page
    assert "34 of 35 due days" in page
    assert "Cocaine: <strong>negative</strong> (lab)" in page  # definitive supersedes
    assert "Approve now" not in page  # not a prescriber
    response = clinician.post(url, data=form_data(clinician, url, order_id=str(made.ids["order"])))
    assert response.status_code == 302, response.get_data(as_text=True)
    decision_url = response.headers["Location"]
    page = clinician.get(decision_url).get_data(as_text=True)
    assert "Awaiting a prescriber" in page
    assert "Day 35 in treatment: cap 28 days; 7 take-home days counted" in page
    prescriber = signed_in(made.ids["prescriber"])
    page = prescriber.get(decision_url).get_data(as_text=True)
    token = TOKEN_RE.search(page).group(1)
    approve = {"csrf_token": prescriber.csrf_token(decision_url), "submission_token": token}
    assert prescriber.post(f"{decision_url}/approve", data=approve).status_code == 302
    assert prescriber.post(f"{decision_url}/approve", data=approve).status_code == 302  # twice
    with app.app_context():
        decision = db.session.scalars(sa.select(TakeHomeDecision)).one()
        assert decision.approved_by_id == made.ids["prescriber"]
        assert (decision.treatment_day, decision.cap_days, decision.counted_days) == (35, 28, 7)
    chart = clinician.get(f"/patients/{made.ids['patient']}").get_data(as_text=True)
    assert 'data-testid="take-homes-section"' in chart
    assert "In force" in chart


def test_day_12_asking_10_days_is_refused_with_the_cap_and_the_input_kept(
    app, site_noon, make_world, signed_in
):
    made = make_world(day=12, closed="")
    prescriber = signed_in(made.ids["prescriber"])
    url = f"/take-homes/patients/{made.ids['patient']}"
    data = form_data(prescriber, url, days="10", approve="y", order_id=str(made.ids["order"]))
    data["behaviour_note"] = "Calm, engaged in group."
    response = prescriber.post(url, data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Day 12 in treatment — cap: 7 days" in page
    assert 'value="10"' in page
    assert "Calm, engaged in group." in page
    with app.app_context():
        assert decisions_count() == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"days": "0"}, "Enter at least 1 day."),
        ({"days": "60"}, "At most 28 days"),
        ({"days": "99999999999999"}, "Enter a smaller number."),
        ({"days": "ten"}, "Not a valid integer value."),
        ({"start_on": "2020-01-01"}, "before the admission"),
        ({"start_on": "2026-02-30"}, "Not a valid date value."),
        ({"other_note": "bad\x00note"}, "Remove the control"),
        ({"storage_met": None}, "is not met"),
        ({"attendance_note": ""}, "Write a note for"),
        (
            {"schedule_kind": "weekly", "weekdays": ["1", "2", "3", "4", "5", "6", "7"]},
            "run of days",
        ),
        ({"order_id": "999999999999999999999"}, "Not a valid choice."),
        ({"approve": "y"}, "Only a prescriber approves"),
    ],
)
def test_bad_input_is_refused_with_its_message_and_nothing_saved(
    app, site_noon, make_world, signed_in, fields, message
):
    made = make_world(day=35)
    clinician = signed_in(made.ids["clinician"])
    url = f"/take-homes/patients/{made.ids['patient']}"
    data = form_data(clinician, url, order_id=str(made.ids["order"]))
    data.update(fields)
    response = clinician.post(url, data={k: v for k, v in data.items() if v is not None})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert decisions_count() == 0


def test_a_double_submit_records_once(app, site_noon, make_world, signed_in):
    made = make_world(day=35)
    prescriber = signed_in(made.ids["prescriber"])
    url = f"/take-homes/patients/{made.ids['patient']}"
    data = form_data(prescriber, url, order_id=str(made.ids["order"]), approve="y")
    first = prescriber.post(url, data=data)
    second = prescriber.post(url, data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    with app.app_context():
        assert decisions_count() == 1


def test_roles(app, site_noon, make_world, signed_in, client_as):
    made = make_world(day=35)
    with app.test_request_context():
        pending = made.record(actor="clinician", approve=False)
        decision_url = f"/take-homes/decisions/{pending.id}"
    url = f"/take-homes/patients/{made.ids['patient']}"
    staff = signed_in(made.ids["staff"])
    for path in (url, decision_url, "/take-homes/review-list"):
        assert staff.get(path).status_code == 403
    chart = staff.get(f"/patients/{made.ids['patient']}").get_data(as_text=True)
    assert 'data-testid="take-homes-section"' not in chart  # staff: never decisions
    admin = signed_in(made.ids["admin"])
    page = admin.get(url).get_data(as_text=True)
    assert "Record a decision" not in page  # reads, never decides
    assert admin.get(decision_url).status_code == 200
    assert admin.post(url, data={"csrf_token": admin.csrf_token(url)}).status_code == 403
    clinician = signed_in(made.ids["clinician"])
    token = {"csrf_token": clinician.csrf_token(decision_url)}
    assert clinician.post(f"{decision_url}/approve", data=token).status_code == 403
    assert clinician.post(f"{decision_url}/decline", data=token).status_code == 403
    page = clinician.get(decision_url).get_data(as_text=True)
    assert 'data-testid="awaiting-approval"' in page


def test_another_sites_records_are_not_found(app, site_noon, make_world, make_site, client_as):
    made = make_world(day=35)
    with app.test_request_context():
        decision = made.record()
        decision_id = decision.id
    other_site = make_site("EAST")
    outsider = client_as("clinician", is_prescriber=True, site_ids=[other_site])
    assert outsider.get(f"/take-homes/patients/{made.ids['patient']}").status_code == 404
    assert outsider.get(f"/take-homes/decisions/{decision_id}").status_code == 404
    url = f"/take-homes/decisions/{decision_id}/review"
    data = {"csrf_token": outsider.csrf_token("/login"), "outcome": "end", "note": "x"}
    assert outsider.post(url, data=data).status_code == 404
    assert outsider.get("/take-homes/decisions/99999999").status_code == 404
    with app.app_context():
        assert db.session.get(TakeHomeDecision, decision_id).ended_at is None


def test_decline_end_and_review_through_the_pages(app, site_noon, make_world, signed_in):
    made = make_world(day=35)
    with app.test_request_context():
        pending = made.record(actor="clinician", approve=False)
        approved = made.record(start_on=TODAY + dt.timedelta(days=1))
        pending_url = f"/take-homes/decisions/{pending.id}"
        approved_url = f"/take-homes/decisions/{approved.id}"
    prescriber = signed_in(made.ids["prescriber"])
    token = TOKEN_RE.search(prescriber.get(pending_url).get_data(as_text=True)).group(1)
    base = {"csrf_token": prescriber.csrf_token(pending_url), "submission_token": token}
    blank = prescriber.post(f"{pending_url}/decline", data={**base, "reason": ""})
    assert blank.status_code == 400
    assert "Say why it is declined." in blank.get_data(as_text=True)
    done = prescriber.post(f"{pending_url}/decline", data={**base, "reason": "Later."})
    assert done.status_code == 302
    clinician = signed_in(made.ids["clinician"])
    page = clinician.get(approved_url).get_data(as_text=True)
    token = TOKEN_RE.search(page).group(1)
    base = {"csrf_token": clinician.csrf_token(approved_url), "submission_token": token}
    bad = clinician.post(f"{approved_url}/review", data={**base, "outcome": "x", "note": "n"})
    assert bad.status_code == 400
    ok = clinician.post(
        f"{approved_url}/review", data={**base, "outcome": "continue", "note": "ok"}
    )
    assert ok.status_code == 302
    page = clinician.get(approved_url).get_data(as_text=True)
    token = TOKEN_RE.findall(page)[-1]
    end = {
        "csrf_token": clinician.csrf_token(approved_url),
        "submission_token": token,
        "ended_on": "2020-01-01",
        "reason": "Stop",
    }
    refused = clinician.post(f"{approved_url}/end", data=end)
    assert refused.status_code == 400
    assert "A decision ends today or later." in refused.get_data(as_text=True)
    end["ended_on"] = TODAY.isoformat()
    assert clinician.post(f"{approved_url}/end", data=end).status_code == 302
    with app.app_context():
        assert db.session.get(TakeHomeDecision, pending.id).declined_reason == "Later."
        assert db.session.get(TakeHomeDecision, approved.id).ended_on == TODAY


def test_the_review_page_flags_a_negative_for_the_own_medication(
    app, site_noon, make_world, signed_in
):
    made = make_world(day=35, closed="")
    with app.test_request_context():
        test = drug_tests.record_test(
            made.patient,
            actor=made.user("clinician"),
            collected_at=at(TODAY - dt.timedelta(days=3)),
            specimen="urine",
            observed=True,
            reason="random",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test,
            [ResultRow("methadone", "negative", "presumptive")],
            actor=made.user("clinician"),
        )
        db.session.commit()
    page = signed_in(made.ids["clinician"]).get(f"/take-homes/patients/{made.ids['patient']}")
    html = page.get_data(as_text=True)
    assert "Methadone: <strong>negative</strong>" in html
    assert "(own medication missing)" in html and ">finding</span>" in html

"""Who sees and changes medication records (issue 10 "Who sees what"): staff see only
"On MOUD: yes — methadone" on the chart; clinicians and administrators the medication page;
only prescribers write orders; another site's patient is a 404; under emergency access
only the chart opens. The medication page is audited as a view and runs a constant number
of statements whatever the number of orders."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from tests.conftest import login

START = dt.date(2026, 1, 5)


@pytest.fixture
def chart(app, make_user, make_patient, make_program, make_enrollment, make_order):
    prescriber = make_user("clinician", is_prescriber=True)
    patient = make_patient()
    enrollment = make_enrollment(patient, make_program(), admitted_on=START)
    order = make_order(enrollment, prescriber, dose_mg="45")
    return {"prescriber": prescriber, "patient": patient, "enrollment": enrollment, "order": order}


def _client(app, username_of, user_id):
    client = app.test_client()
    assert login(client, username_of(user_id)).status_code == 302
    return client


def test_staff_see_only_whether_the_patient_is_on_moud(app, chart, client_as):
    staff = client_as("staff")
    body = staff.get(f"/patients/{chart['patient']}").get_data(as_text=True)
    assert "On MOUD: yes — methadone" in body
    assert "45 mg" not in body
    assert staff.get(f"/medications/patients/{chart['patient']}").status_code == 403


def test_staff_see_no_for_a_patient_without_an_order(app, client_as, make_patient):
    patient = make_patient("Al", "Other")
    body = client_as("staff").get(f"/patients/{patient}").get_data(as_text=True)
    assert "On MOUD: no" in body


@pytest.mark.parametrize("role", ["clinician", "admin"])
def test_clinicians_and_admins_see_orders_but_only_prescribers_write(app, chart, client_as, role):
    client = client_as(role)
    chart_body = client.get(f"/patients/{chart['patient']}").get_data(as_text=True)
    assert "45 mg" in chart_body
    page = client.get(f"/medications/patients/{chart['patient']}")
    assert page.status_code == 200
    assert "New order" not in page.get_data(as_text=True)
    assert client.get(f"/medications/patients/{chart['patient']}/orders/new").status_code == 403
    assert client.get(f"/medications/orders/{chart['order']}/change").status_code == 403
    assert client.get(f"/medications/orders/{chart['order']}/end").status_code == 403


def test_a_prescriber_opens_every_order_page(app, chart, username_of):
    client = _client(app, username_of, chart["prescriber"])
    assert "New order" in client.get(f"/medications/patients/{chart['patient']}").get_data(
        as_text=True
    )
    for url in (
        f"/medications/patients/{chart['patient']}/orders/new",
        f"/medications/orders/{chart['order']}/change",
        f"/medications/orders/{chart['order']}/switch",
        f"/medications/orders/{chart['order']}/end",
        f"/medications/patients/{chart['patient']}/holds/new",
        f"/medications/patients/{chart['patient']}/flags/new",
    ):
        assert client.get(url).status_code == 200, url


def test_the_medication_page_is_audited_as_one_view(app, chart, client_as):
    client = client_as("clinician")
    client.get(f"/medications/patients/{chart['patient']}")
    with app.app_context():
        events = db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "view", AuditEvent.entity_type == "medications"
            )
        ).all()
        assert len(events) == 1
        assert events[0].patient_id == chart["patient"]


def test_another_sites_patient_and_records_are_404_and_recorded(
    app, chart, make_site, make_user, username_of
):
    east = make_site("EAST")
    other = _client(app, username_of, make_user("clinician", is_prescriber=True, site_ids=[east]))
    for url in (
        f"/medications/patients/{chart['patient']}",
        f"/medications/patients/{chart['patient']}/orders/new",
        f"/medications/orders/{chart['order']}/change",
        f"/medications/orders/{chart['order']}/end",
        f"/medications/patients/{chart['patient']}/holds/new",
    ):
        assert other.get(url).status_code == 404, url
    with app.app_context():
        denied = db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(
                AuditEvent.action == "access_denied", AuditEvent.patient_id == chart["patient"]
            )
        )
        assert denied == 5


def test_break_glass_opens_the_chart_with_medication_but_no_medication_page(
    app, chart, make_site, make_user, username_of
):
    from clinic.audit.models import BreakGlassGrant

    east = make_site("EAST")
    user = make_user("clinician", is_prescriber=True, site_ids=[east])
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        db.session.add(
            BreakGlassGrant(
                user_id=user,
                patient_id=chart["patient"],
                reason="emergency at east",
                granted_at=now,
                expires_at=now + dt.timedelta(minutes=30),
            )
        )
        db.session.commit()
    client = _client(app, username_of, user)
    body = client.get(f"/patients/{chart['patient']}").get_data(as_text=True)
    assert "45 mg" in body
    assert client.get(f"/medications/patients/{chart['patient']}").status_code == 403
    assert client.get(f"/medications/orders/{chart['order']}/change").status_code == 403


@contextmanager
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


def test_the_medication_page_runs_a_constant_number_of_statements(app, chart, client_as, make_user):
    from clinic.accounts.models import User
    from clinic.medications import holds, orders

    client = client_as("clinician")
    url = f"/medications/patients/{chart['patient']}"
    client.get(url)
    with count_statements(app) as few:
        assert client.get(url).status_code == 200
    # Many more orders (each by another prescriber), holds and flags.
    order_id = chart["order"]
    for step in range(1, 16):
        prescriber = make_user("clinician", is_prescriber=True)
        with app.test_request_context():
            order = db.session.get(orders.MedicationOrder, order_id)
            order_id = orders.change_dose(
                order,
                actor=db.session.get(User, prescriber),
                data=orders.OrderInput(
                    medication="methadone",
                    product_form="oral_liquid",
                    strength="10 mg/mL",
                    dose_mg=str(45 + step),
                    schedule="daily",
                    start_on=START + dt.timedelta(days=step),
                ),
            ).id
            actor = db.session.get(User, prescriber)
            patient = order.patient
            hold = holds.place_hold(patient, actor=actor, reason="r", until_on=None)
            holds.lift_hold(hold, actor=actor, reason="ok")
            holds.add_flag(patient, actor=actor, category="info", text=f"flag {step}")
            db.session.commit()
    with count_statements(app) as many:
        body = client.get(url).get_data(as_text=True)
    assert "60 mg" in body
    assert len(many) == len(few)

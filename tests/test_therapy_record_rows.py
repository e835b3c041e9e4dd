"""The record form's attendee rows (issue 11) refuse control characters and NUL bytes by
the form itself (``clinic.forms.ClinicForm`` checks nested rows): the message beside the
field, the other input kept, nothing saved."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE, OUT_OF_DATE_FORM_MESSAGE
from clinic.therapy.models import ProgressNote, SessionAttendee, SessionStatus, TherapySession
from tests.test_therapy_admin import (
    _count,
    _error,
    _tokens,
    as_user_fixture,  # noqa: F401
)
from tests.test_therapy_helpers import plan, therapy_fixture  # noqa: F401


def _record_form(client, session_id: int, rows: list[dict]) -> tuple[str, dict]:
    url = f"/therapy/sessions/{session_id}/record"
    data = _tokens(client, url)
    for i, row in enumerate(rows):
        for name, value in row.items():
            data[f"attendees-{i}-{name}"] = value
    return url, data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("note", "Own\x00note", CONTROL_CHARACTER_MESSAGE),
        ("note", "Bidi \u202e override", CONTROL_CHARACTER_MESSAGE),
        ("minutes", "6\x000", "Not a valid integer value."),
        ("attendance", "attended\x00", "Not a valid choice."),
        ("patient_id", "{patient}\x00", OUT_OF_DATE_FORM_MESSAGE),
    ],
)
def test_a_nul_byte_in_an_attendee_row_is_refused_by_the_form(
    therapy, as_user, field, value, message
):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b])
    db.session.commit()
    client = as_user(therapy.dan)
    rows = [
        {"patient_id": str(a), "attendance": "attended", "minutes": "60", "note": "First."},
        {"patient_id": str(b), "attendance": "late", "minutes": "45", "note": "Kept note."},
    ]
    rows[0][field] = value.format(patient=a)
    url, data = _record_form(client, session.id, rows)

    response = client.post(url, data={**data, "group_note": "Kept group note."})

    html = response.get_data(as_text=True)
    assert response.status_code == 400
    if field == "patient_id":  # a hidden field: its message on top of the form
        assert message in html
    else:
        assert _error(html, f"attendees-0-{field}") == message, html
    assert re.search(r">\s*Kept note\.</textarea>", html)  # the other input kept
    assert re.search(r">\s*Kept group note\.</textarea>", html)
    assert 'value="45"' in html
    db.session.expire_all()
    assert db.session.get(TherapySession, session.id).status == SessionStatus.PLANNED
    assert _count(SessionAttendee, SessionAttendee.attendance.is_not(None)) == 0
    assert _count(ProgressNote) == 0


def test_the_record_form_still_records_clean_rows(therapy, as_user):
    a = therapy.patients[0]
    session = plan(therapy, [a], kind="individual")
    db.session.commit()
    client = as_user(therapy.dan)
    url, data = _record_form(
        client,
        session.id,
        [{"patient_id": str(a), "attendance": "attended", "minutes": "60", "note": "Line\r\n2"}],
    )
    assert client.post(url, data=data).status_code == 302
    note = db.session.scalars(sa.select(ProgressNote)).one()
    assert note.text == "Line\n2"

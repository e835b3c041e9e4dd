"""Matrix rows and walk records of the random-test schedule pages (tests/route_modules.py).

Everyone signed in with ``TESTS_DUE`` (staff, clinicians, administrators) sees who is due
and today's draw, and may make today's draw; nobody sees a result there."""

from __future__ import annotations

from tests.matrix_rows import ANY_USER

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {
    ("drug_test_schedule.worklist", "GET"): ANY_USER,
    ("drug_test_schedule.today", "GET"): ANY_USER,
    # The walk's site already has today's draw: the button shows it again (a redirect).
    ("drug_test_schedule.draw", "POST"): ANY_USER,
    ("drug_test_schedule.draw_page", "GET"): ANY_USER,
}


def route_records(app, merged: dict, make_user) -> dict:
    """Today's draw at the walk's patient's site (written directly: the site may be closed
    today), selecting that patient: ``draw_id``, ``selection_id``; ``site_id`` (that site)
    unless another module gave one."""
    import secrets

    from clinic.extensions import db
    from clinic.medications.drug_test_models import RandomTestDraw, RandomTestSelection
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    with app.app_context():
        site = db.session.get(Patient, merged["patient_id"]).site
        draw = RandomTestDraw(
            site_id=site.id, draw_on=site_today(site), seed=secrets.token_hex(32), eligible_count=1
        )
        db.session.add(draw)
        db.session.flush()
        selection = RandomTestSelection(
            draw_id=draw.id, patient_id=merged["patient_id"], probability=26
        )
        db.session.add(selection)
        db.session.commit()
        ids = {"draw_id": draw.id, "selection_id": selection.id}
        return ids if "site_id" in merged else {**ids, "site_id": site.id}

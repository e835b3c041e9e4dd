"""The take-home demo: decisions at treatment days 12, 20 and 35 for three methadone
patients, one awaiting approval, the site's label details and a holiday; run twice, it adds
nothing."""

from __future__ import annotations

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import demo as medication_demo
from clinic.medications import take_home_demo
from clinic.medications.take_home_models import TakeHomeDecision
from clinic.patients import demo as patient_demo
from clinic.sites.models import Site, SiteClosure


def test_the_demo_decisions(app, site, make_site, make_user):
    east = make_site("EAST")
    ids = {
        "prescriber": make_user("clinician", is_prescriber=True),
        "nurse": make_user("clinician"),
        "admin": make_user("admin"),
    }
    with app.test_request_context():
        users = {k: db.session.get(User, v) for k, v in ids.items()}
        main = db.session.get(Site, site)
        users["admin"].all_sites = True
        patient_demo.seed(
            main, db.session.get(Site, east), counselors=[users["nurse"]], actor=users["admin"]
        )
        medication_demo.seed(main, prescriber=users["prescriber"], nurse=users["nurse"])
        assert take_home_demo.seed(main, **users) == 4
        db.session.commit()
        assert take_home_demo.seed(main, **users) == 0
        db.session.commit()
        made = db.session.scalars(sa.select(TakeHomeDecision).order_by(TakeHomeDecision.id)).all()
        assert [(d.patient.last_name, d.treatment_day, d.cap_days) for d in made] == [
            ("Torres", 35, 28),
            ("Brown", 20, 14),
            ("Hernandez", 12, 7),
            ("Smith", 390, 28),  # 12 days ago, 14 days from 10 days ago: bottles back today
        ]
        assert made[3].start_on < made[0].start_on  # already begun
        assert [d.approved_at is not None for d in made] == [True, False, True, True]
        assert made[1].recorded_by_id == ids["nurse"]
        assert (main.address, main.phone) == (
            take_home_demo.DEMO_ADDRESS,
            take_home_demo.DEMO_PHONE,
        )
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SiteClosure)) == 1

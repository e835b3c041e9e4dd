"""The reports' demo history (issue 14: "all nine reports work from ``make run`` demo
data"): ``flask seed-demo`` loads two years of past and current patients at both sites,
and every report then has something to show with its default filters."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup
from werkzeug.datastructures import MultiDict

from clinic.accounts.models import User
from clinic.aftercare.referral_models import Referral, ReferralEvent
from clinic.extensions import db
from clinic.medications.models import DoseEntry, DoseKind, MedicationOrder
from clinic.patients.models import DischargeReason, Enrollment, Patient
from clinic.reports import filters as report_filters
from clinic.reports.core import REPORTS
from clinic.sites.models import Site
from clinic.sites.time import site_today
from clinic.therapy.models import SessionAttendee, TherapySession


@pytest.fixture
def seeded(app):
    """``flask seed-demo`` run as the ``flask`` program runs it (app context pushed)."""
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = app.test_cli_runner().invoke(cli, args=["seed-demo"])
    assert result.exit_code == 0, result.output
    return result.output


def _scalar(query):
    return db.session.scalar(query)


def _count(model, *where):
    return _scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_seed_demo_loads_two_years_of_history_for_the_reports(app, seeded):
    assert "Created two years of history for the reports: 120 past and current" in seeded
    with app.app_context():
        main = _scalar(sa.select(Site).where(Site.code == "MAIN"))
        today = site_today(main)
        two_years_ago = today - dt.timedelta(days=731)
        # Patients at both sites, admitted over the last two years.
        per_site = dict(
            db.session.execute(
                sa.select(Site.code, sa.func.count(Patient.id))
                .join(Patient, Patient.site_id == Site.id)
                .group_by(Site.code)
            ).all()
        )
        assert per_site["MAIN"] > 80 and per_site["EAST"] > 30
        assert _scalar(sa.select(sa.func.min(Enrollment.admitted_on))) >= two_years_ago
        months = db.session.scalars(sa.select(Enrollment.admitted_on)).all()
        assert len({(d.year, d.month) for d in months}) >= 23
        # Every TEDS-D discharge reason, lengths of stay of 89, 90 and 180 days.
        reasons = set(db.session.scalars(sa.select(Enrollment.discharge_reason).distinct()))
        assert {r.value for r in DischargeReason} <= reasons
        stays = {
            (e.discharged_on - e.admitted_on).days
            for e in db.session.scalars(
                sa.select(Enrollment).where(Enrollment.discharged_on.is_not(None))
            )
        }
        assert {89, 90, 180} <= stays
        # Transfers (the old enrollment discharged as transferred that day) and readmissions.
        transfers = db.session.scalars(
            sa.select(Enrollment).where(Enrollment.transferred_from_id.is_not(None))
        ).all()
        assert len(transfers) >= 2
        for enrollment in transfers:
            source = db.session.get(Enrollment, enrollment.transferred_from_id)
            assert source.discharge_reason == DischargeReason.TRANSFERRED
            assert source.discharged_on == enrollment.admitted_on
        readmitted = _scalar(
            sa.text(
                "SELECT count(DISTINCT e.patient_id) FROM enrollment e JOIN enrollment b"
                " ON b.patient_id = e.patient_id AND b.discharged_on < e.admitted_on"
                " WHERE e.transferred_from_id IS NULL"
            )
        )
        assert readmitted >= 3
        # A patient entered in error, with an enrollment and doses (every report skips them).
        wrong = db.session.scalars(
            sa.select(Patient).where(Patient.entered_in_error_at.is_not(None))
        ).all()
        assert len(wrong) == 1
        assert _count(Enrollment, Enrollment.patient_id == wrong[0].id) == 1
        assert _count(DoseEntry, DoseEntry.patient_id == wrong[0].id) > 50
        # The ledger: half a year and more of doses, injections, weekend take-home bottles,
        # a medication switch.
        assert _count(DoseEntry) > 10_000
        assert _scalar(sa.select(sa.func.min(DoseEntry.dispensed_on))) < today - dt.timedelta(
            days=600
        )
        assert _count(DoseEntry, DoseEntry.kind == DoseKind.INJECTION) > 20
        bottles = db.session.scalars(
            sa.select(DoseEntry.take_on).where(DoseEntry.kind == DoseKind.TAKE_HOME)
        ).all()
        assert {d.isoweekday() for d in bottles if d is not None} >= {6, 7}
        assert _count(
            MedicationOrder,
            MedicationOrder.reason == "Prefers buprenorphine",
            MedicationOrder.replaces_id.is_not(None),
        )
        since = dt.datetime.combine(today - dt.timedelta(days=92), dt.time(), dt.UTC)
        # A year of referrals sent under a consent, most of them placed weeks later.
        sent = db.session.scalars(
            sa.select(ReferralEvent.occurred_at).where(ReferralEvent.to_status == "sent")
        ).all()
        assert sum(1 for at in sent if at.date() < today - dt.timedelta(days=60)) >= 15
        a_month_ago = dt.datetime.combine(today - dt.timedelta(days=30), dt.time(), dt.UTC)
        placed = db.session.scalars(
            sa.select(Referral).where(
                Referral.status == "placed", Referral.created_at < a_month_ago
            )
        ).all()
        assert len(placed) >= 10
        # Counseling over the last three months: attended, no-shows, cancellations.
        attendance = set(
            db.session.scalars(
                sa.select(SessionAttendee.attendance)
                .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
                .where(TherapySession.starts_at >= since)
            )
        )
        assert {"attended", "no_show", "cancelled_by_patient"} <= {
            a.value for a in attendance if a is not None
        }


def _compute(slug: str, admin: User):
    """The report with the filters a request naming none gets (its defaults)."""
    report = REPORTS[slug]
    form = report_filters.form_for(admin, MultiDict())
    assert form.validate(), form.errors
    chosen = report_filters.resolve(form, report, admin)
    assert len(chosen.site_ids) == 2  # the demo director sees both sites
    return report.compute(chosen)


def test_every_report_has_something_to_show_from_the_demo_data(app, seeded):
    assert REPORTS, "no report is registered"
    with app.test_request_context():
        admin = _scalar(sa.select(User).where(User.username == "admin"))
        results, empty = {}, []
        for slug in REPORTS:
            result = _compute(slug, admin)
            results[slug] = result
            if not result.tables:
                empty.append(slug)
            empty += [f"{slug}: {t.title}" for t in result.tables if not t.rows]
        assert not empty, f"empty with the default filters: {empty}"
        if "retention" in results:
            cohorts = [
                row
                for table in results["retention"].tables
                for row in table.rows
                if row.get("share_90") is not None
            ]
            assert len(cohorts) >= 3
        if "continuity" in results:
            reached = [
                row.get("reached") or 0
                for table in results["continuity"].tables
                for row in [*table.rows, table.total or {}]
            ]
            assert max(reached) >= 1

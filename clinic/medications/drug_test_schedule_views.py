"""Random drug testing pages (42 CFR 8.12(f)(6); issue 13): the worklist of maintenance
patients falling behind on their 8 random tests a year, today's random selection at the
user's sites (and the button that draws it), a draw's page, and the chart's "Random
testing" section.

Everyone with ``TESTS_DUE`` (staff, clinicians, administrators) sees who is due and how
many tests were done — never a result: these pages read no ``DrugTestResult``. Each patient
listed is a ``view`` audit event (``clinic.patients.access.record_view``), as on the
therapy caseload. Services: ``clinic.medications.drug_test_schedule`` / ``drug_test_draw``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.forms import ClinicForm
from clinic.medications import drug_test_draw, drug_test_schedule
from clinic.medications.drug_test_models import DrugTest, RandomTestDraw, RandomTestSelection
from clinic.pagination import SortedPage, requested_cursor
from clinic.patients import access, common
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import site_today, user_today

bp = Blueprint("drug_test_schedule", __name__, url_prefix="/drug-tests/schedule")

# The test form of clinic.medications.drug_test_views (``?selection=`` links the test to
# the selection): the name agreed for it, then the name it has; the link is shown only
# when one of them is installed.
NEW_TEST_ENDPOINTS = ("drug_tests.new_test", "drug_tests.record")
SORT_LABELS = {
    "behind": "tests missing",
    "name": "patient",
    "last": "last random test",
    "admitted": "admission",
}


class DrawForm(ClinicForm):
    """The "Draw today's random tests" button: no field but the CSRF token (the draw is
    idempotent per site and day, so a double click returns the same draw)."""


def _user_sites(*, active_only: bool = True) -> list[Site]:
    """The (active) sites whose draws the user sees: theirs, or every site for an
    administrator of all sites."""
    ids = common.visible_site_ids(current_user)
    query = sa.select(Site).order_by(Site.code)
    if active_only:
        query = query.where(Site.active.is_(True))
    if ids is not None:
        query = query.where(Site.id.in_(ids or {-1}))
    return list(db.session.scalars(query))


def _visible_site_or_404(site_id: int) -> Site:
    ids = common.visible_site_ids(current_user)
    site = db.session.get(Site, site_id)
    if site is None or (ids is not None and site_id not in ids):
        record_denied("site", site_id)
        abort(404)
    return site


# --- the worklist ---------------------------------------------------------------------------


class WorklistLinks(SortedPage):
    """The worklist's page with the links the ``sort_th`` and ``pager`` macros build (only
    ``sort`` and ``dir``): a new column starts descending for "tests missing" (most
    behind first), ascending for the others."""

    def sort_url(self, key: str) -> str:
        descending = not (key == self.sort_key and self.sort_desc)
        if key != self.sort_key:
            descending = key == "behind"
        return self.url(sort=key, dir="desc" if descending else "asc")


def _links(page: drug_test_schedule.WorklistPage) -> WorklistLinks:
    return WorklistLinks(
        page.keyset,
        sort_key=page.sort_key,
        sort_desc=page.sort_desc,
        link_params={"sort": page.sort_key, "dir": "desc" if page.sort_desc else "asc"},
        items=page.items,
    )


@bp.get("/")
@require_permission(Permission.TESTS_DUE)
def worklist():
    """Maintenance patients at my sites behind on their random tests (required so far >
    done, pro-rated in the first year), most behind first; sortable, paginated. Counts
    only, never results. Each patient on the page is a view event."""
    sort = request.args.get("sort", "behind")
    if sort not in drug_test_schedule.WORKLIST_SORTS:
        sort = "behind"
    descending = request.args.get("dir", "desc" if sort == "behind" else "asc") == "desc"
    today = user_today(current_user)
    site_ids = common.visible_site_ids(current_user)
    # each site's own day (sites on either side of the date line are a day apart)
    days = {site.id: site_today(site) for site in _user_sites(active_only=False)}
    page = drug_test_schedule.worklist(
        site_ids,
        days,
        sort=sort,
        descending=descending,
        cursor=requested_cursor(),
    )
    for row in page.items:
        access.record_view(row.patient, "random_test_worklist", None)
    return render_template(
        "medications/drug_test_schedule/worklist.html",
        page=_links(page),
        today=today,
        sort_label=SORT_LABELS[sort],
        per_year=drug_test_schedule.TESTS_PER_YEAR,
    )


# --- today's selection -----------------------------------------------------------------------


def _collected(selection_ids: list[int]) -> set[int]:
    """The selections whose test was collected (not entered in error): one statement."""
    if not selection_ids:
        return set()
    return set(
        db.session.scalars(
            sa.select(DrugTest.selection_id).where(
                DrugTest.selection_id.in_(selection_ids), DrugTest.entered_in_error_at.is_(None)
            )
        )
    )


def _selections(draw_ids: list[int]) -> dict[int, list[RandomTestSelection]]:
    """The draws' selections with their patients (patients entered in error left out):
    one statement, plus one for the patients."""
    if not draw_ids:
        return {}
    rows = db.session.scalars(
        sa.select(RandomTestSelection)
        .join(RandomTestSelection.patient)
        .where(RandomTestSelection.draw_id.in_(draw_ids), Patient.entered_in_error_at.is_(None))
        .options(selectinload(RandomTestSelection.patient))
        .order_by(Patient.last_key, Patient.first_key, Patient.id)
    )
    grouped: dict[int, list[RandomTestSelection]] = {}
    for selection in rows:
        grouped.setdefault(selection.draw_id, []).append(selection)
    return grouped


def _show_selections(groups: dict[int, list[RandomTestSelection]]) -> set[int]:
    collected = _collected([s.id for group in groups.values() for s in group])
    for group in groups.values():
        for selection in group:
            access.record_view(selection.patient, "random_test_selection", selection.id)
    return collected


def _new_test_endpoint() -> str | None:
    """The test form's endpoint, when the user may record tests and it is installed."""
    if not current_user.can(Permission.DRUG_TESTS_RECORD):
        return None
    return next((e for e in NEW_TEST_ENDPOINTS if e in current_app.view_functions), None)


def _today_page(form: DrawForm, error_site: int | None = None, error: str | None = None):
    sites = _user_sites()
    days = {site.id: site_today(site) for site in sites}
    draws: dict[int, RandomTestDraw] = {}
    if sites:
        for draw in db.session.scalars(
            sa.select(RandomTestDraw).where(
                RandomTestDraw.site_id.in_(days), RandomTestDraw.draw_on.in_(set(days.values()))
            )
        ):
            if days[draw.site_id] == draw.draw_on:
                draws[draw.site_id] = draw
    groups = _selections([d.id for d in draws.values()])
    collected = _show_selections(groups)
    return render_template(
        "medications/drug_test_schedule/today.html",
        sites=sites,
        days=days,
        draws=draws,
        groups=groups,
        collected=collected,
        form=form,
        error_site=error_site,
        error=error,
        new_test_endpoint=_new_test_endpoint(),
    )


@bp.get("/today")
@require_permission(Permission.TESTS_DUE)
def today():
    """Today's random selection at each of my sites (each site's own day), whether each
    selected patient's test was collected, and a button to draw a site's tests when not
    drawn yet. Never a future day's, never a result. Each selected patient is a view."""
    return _today_page(DrawForm())


@bp.post("/sites/<int:site_id>/draw")
@require_permission(Permission.TESTS_DUE)
def draw(site_id: int):
    """Draw today's random tests at one of my sites (``drug_test_draw.draw_for_today``):
    once per site and day — a second press, or a colleague's at the same moment, shows
    the draw already made. A closed day or an inactive site is refused on the page."""
    site = _visible_site_or_404(site_id)
    form = DrawForm()
    if not form.validate_on_submit():
        return _today_page(form), 400
    made_before = drug_test_draw.draw_on_day(site, site_today(site)) is not None
    try:
        made = drug_test_draw.draw_for_today(site, actor=current_user)
        count = len(made.selections)
        db.session.commit()
    except DomainError as refusal:
        db.session.rollback()
        return _today_page(form, error_site=site.id, error=refusal.message), 400
    if made_before:
        flash(f"Today's random tests at {site.name} were already drawn.", "info")
    else:
        flash(
            f"Today's random tests at {site.name} are drawn: {count} of "
            f"{made.eligible_count} eligible patients selected.",
            "success",
        )
    return redirect(url_for("drug_test_schedule.today"))


@bp.get("/draws/<int:draw_id>")
@require_permission(Permission.TESTS_DUE)
def draw_page(draw_id: int):
    """One draw (today's or a past day's) at one of my sites: its day, when and by whom
    it was made, its seed (to check it), the eligible count and the selected patients with
    their probability. Another site's draw is a 404."""
    found = db.session.get(RandomTestDraw, draw_id)
    ids = common.visible_site_ids(current_user)
    if found is None or (ids is not None and found.site_id not in ids):
        record_denied("random_test_draw", draw_id)
        abort(404)
    groups = _selections([found.id])
    collected = _show_selections(groups)
    site = db.session.get(Site, found.site_id)
    drawn_by = db.session.get(User, found.drawn_by_id) if found.drawn_by_id else None
    return render_template(
        "medications/drug_test_schedule/draw.html",
        draw=found,
        site=site,
        drawn_by=drawn_by,
        selections=groups.get(found.id, []),
        collected=collected,
        is_today=found.draw_on == site_today(site),
        new_test_endpoint=_new_test_endpoint(),
    )


# --- the chart section -------------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict[str, Any] | None:
    """Random testing on the chart (TESTS_DUE): done / required in the last 12 months,
    due or not, selected today or not. Counts only, never results. Not shown for a
    patient outside maintenance treatment. Two statements."""
    if not current_user.can(Permission.TESTS_DUE):
        return None
    today = site_today(patient.site)
    found = drug_test_schedule.compliance([patient], today).get(patient.id)
    if found is None:
        return None
    selected_today = db.session.scalar(
        sa.select(RandomTestSelection.id)
        .join(RandomTestSelection.draw)
        .where(
            RandomTestSelection.patient_id == patient.id,
            RandomTestDraw.site_id == patient.site_id,
            RandomTestDraw.draw_on == today,
        )
        .limit(1)
    )
    return {
        "compliance": found,
        "per_year": drug_test_schedule.TESTS_PER_YEAR,
        "selected_today": selected_today is not None,
        "since": max(found.admitted_on, drug_test_schedule.window_start(today)),
        "today": today,
    }


def register_chart_sections(app: Flask) -> None:
    """Add the "Random testing" section to the patient chart."""
    register_chart_section(
        app,
        ChartSection(
            key="random_testing",
            template="medications/drug_test_schedule/_chart_section.html",
            context=_chart_context,
            order=24,
        ),
    )

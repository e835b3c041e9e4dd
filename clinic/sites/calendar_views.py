"""Site calendar pages (issue 13): a site administrator maintains the site's closed weekdays,
its holidays and the address and phone printed on take-home bottle labels.

Thin views over ``clinic.sites.calendar``; a site outside the administrator's sites is a
404 (with an access_denied event), like any record out of reach.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask_login import current_user
from wtforms import DateField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length

from clinic.accounts.forms import MultiCheckboxField
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.medications.take_home_forms import WEEKDAY_CHOICES
from clinic.patients.forms import CreateForm
from clinic.security import Permission, require_permission
from clinic.sites import calendar
from clinic.sites.models import ADDRESS_MAX, CLOSURE_NAME_MAX, PHONE_MAX, Site
from clinic.sites.time import site_today
from clinic.web import Once, already_sent, save

bp = Blueprint("calendar", __name__, url_prefix="/admin/sites")
HOLIDAY_REFUSALS = {
    "uq_site_closure_site_id_closed_on": DomainError(
        calendar.DUPLICATE_HOLIDAY_MESSAGE, field="closed_on"
    )
}


class WeekdaysForm(CreateForm):
    weekdays = MultiCheckboxField("Closed every week on", choices=WEEKDAY_CHOICES)


class LabelForm(CreateForm):
    address = TextAreaField(
        "Address (printed on bottle labels)",
        validators=[InputRequired(message="Enter the address."), Length(max=ADDRESS_MAX)],
        render_kw={"rows": 2},
    )
    phone = StringField(
        "Phone (printed on bottle labels)",
        validators=[InputRequired(message="Enter the phone number."), Length(max=PHONE_MAX)],
    )


class HolidayForm(CreateForm):
    closed_on = DateField("Day", validators=[InputRequired(message="Enter the day.")])
    name = StringField(
        "Name",
        validators=[InputRequired(message="Name the holiday."), Length(max=CLOSURE_NAME_MAX)],
    )


class RemoveHolidayForm(CreateForm):
    """The CSRF token and the submission token."""


def _status(form) -> int:
    if g.get("csrf_refused"):
        return 200
    return 400 if form.errors or form.form_errors else 200


def _site_or_404(site_id: int) -> Site:
    site = db.session.get(Site, site_id)
    if site is None or not calendar.may_manage(current_user, site):
        record_denied("site_calendar", site_id)
        abort(404)
    return site


@bp.get("/calendar")
@require_permission(Permission.CALENDAR_MANAGE)
def index():
    """The sites whose calendar the administrator maintains."""
    sites = calendar.managed_sites(current_user)
    if len(sites) == 1:
        return redirect(url_for("calendar.site", site_id=sites[0].id))
    return render_template("sites/calendar_index.html", sites=sites)


def _page(site: Site, code: int = 200, **forms: Any):
    today = site_today(site)
    return render_template(
        "sites/calendar.html",
        site=site,
        today=today,
        holidays=calendar.holidays(site, since=today - dt.timedelta(days=366)),
        weekdays_form=forms.get("weekdays_form")
        or WeekdaysForm(formdata=None, weekdays=list(site.closed_weekdays)),
        label_form=forms.get("label_form")
        or LabelForm(formdata=None, address=site.address, phone=site.phone),
        holiday_form=forms.get("holiday_form") or HolidayForm(formdata=None),
        remove_form=RemoveHolidayForm(formdata=None),
        remove_errors=forms.get("remove_errors", {}),
    ), code


@bp.get("/<int:site_id>/calendar")
@require_permission(Permission.CALENDAR_MANAGE)
def site(site_id: int):
    """The site's closed weekdays, holidays (the past year's and those ahead) and label
    details, with their forms."""
    return _page(_site_or_404(site_id))


def _once(form, kind: str, site_id: int) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=lambda _r: url_for("calendar.site", site_id=site_id),
    )


def _saved(form, action, kind: str, site_id: int, message: str, refusals=None):
    outcome = save(form, action, refusals=refusals, once=_once(form, kind, site_id))
    if outcome.saved:
        flash(message, "success")
        return redirect(outcome.repeated_url or url_for("calendar.site", site_id=site_id))
    return None


@bp.post("/<int:site_id>/calendar/weekdays")
@require_permission(Permission.CALENDAR_MANAGE)
def weekdays(site_id: int):
    found = _site_or_404(site_id)
    form = WeekdaysForm()
    if form.validate_on_submit():
        done = _saved(
            form,
            lambda: calendar.set_closed_weekdays(
                found, actor=current_user, weekdays="".join(form.weekdays.data or [])
            ),
            "site_weekdays",
            found.id,
            "Closed weekdays saved.",
        )
        if done is not None:
            return done
    return _page(found, _status(form), weekdays_form=form)


@bp.post("/<int:site_id>/calendar/label")
@require_permission(Permission.CALENDAR_MANAGE)
def label(site_id: int):
    found = _site_or_404(site_id)
    form = LabelForm()
    if form.validate_on_submit():
        done = _saved(
            form,
            lambda: calendar.set_label_details(
                found, actor=current_user, address=form.address.data, phone=form.phone.data
            ),
            "site_label",
            found.id,
            "Label details saved.",
        )
        if done is not None:
            return done
    return _page(found, _status(form), label_form=form)


@bp.post("/<int:site_id>/calendar/holidays")
@require_permission(Permission.CALENDAR_MANAGE)
def add_holiday(site_id: int):
    found = _site_or_404(site_id)
    form = HolidayForm()
    if form.validate_on_submit():
        done = _saved(
            form,
            lambda: calendar.add_holiday(
                found, actor=current_user, closed_on=form.closed_on.data, name=form.name.data
            ),
            "site_closure",
            found.id,
            "Holiday added.",
            refusals=HOLIDAY_REFUSALS,
        )
        if done is not None:
            return done
    return _page(found, _status(form), holiday_form=form)


@bp.post("/<int:site_id>/calendar/holidays/<int:closure_id>/remove")
@require_permission(Permission.CALENDAR_MANAGE)
def remove_holiday(site_id: int, closure_id: int):
    found = _site_or_404(site_id)
    form = RemoveHolidayForm()
    closure = calendar.holiday_for(current_user, found, closure_id)
    if closure is None:
        # Sent twice (a double click): the first post removed it; show where it led.
        first = already_sent(_once(form, "site_closure_removal", found.id))
        if first is not None:
            return redirect(first)
        record_denied("site_closure", closure_id)
        abort(404)
    if form.validate_on_submit():
        done = _saved(
            form,
            lambda: calendar.remove_holiday(closure, actor=current_user),
            "site_closure_removal",
            found.id,
            "Holiday removed.",
        )
        if done is not None:
            return done
        db.session.refresh(found)
    errors = form.form_errors or [m for f in form for m in f.errors]
    return _page(found, _status(form) if errors else 400, remove_errors={closure_id: errors})

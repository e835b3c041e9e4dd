"""Treatment programs and their per-program settings (administrators)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.patients import common, program_settings
from clinic.patients.forms import NewProgramForm, ProgramForm
from clinic.patients.models import Program, ProgramKind
from clinic.security import Permission, require_permission
from clinic.web import Once, conflict_rows, save

bp = Blueprint("programs", __name__, url_prefix="/admin/programs")


def _settings(form: ProgramForm) -> program_settings.ProgramSettings:
    return program_settings.ProgramSettings(
        name=form.name.data,
        kind=ProgramKind(form.kind.data),
        active=form.active.data,
        care_plan_review_days=form.care_plan_review_days.data,
        take_home_review_days=form.take_home_review_days.data,
        take_home_cap_days_0_14=form.take_home_cap_days_0_14.data,
        take_home_cap_days_15_30=form.take_home_cap_days_15_30.data,
        take_home_cap_days_31_plus=form.take_home_cap_days_31_plus.data,
        methadone_step_mg=form.methadone_step_mg.data,
        buprenorphine_step_mg=form.buprenorphine_step_mg.data,
    )


@bp.get("/")
@require_permission(Permission.PROGRAMS_MANAGE)
def index():
    return render_template(
        "patients/programs/index.html",
        programs=program_settings.programs_for(current_user),
        dose_steps=program_settings.DOSE_STEPS,
    )


@bp.route("/new", methods=["GET", "POST"])
@require_permission(Permission.PROGRAMS_MANAGE)
def create():
    form = NewProgramForm()
    sites = common.sites_for(current_user)
    form.site_id.choices = [SelectChoice(s.id, f"{s.code} — {s.name}") for s in sites]
    if form.validate_on_submit():

        def create_program() -> Program:
            site = common.chosen(sites, form.site_id.data)
            if site is None:
                raise DomainError("Choose one of your sites.", field="site_id")
            return program_settings.create_program(
                actor=current_user, site=site, settings=_settings(form)
            )

        outcome = save(
            form,
            create_program,
            refusals=common.DATABASE_REFUSALS,
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="program",
                result_url=lambda program: url_for("programs.index"),
            ),
        )
        if outcome.repeated_url:
            flash("This form had already been sent: it was saved once.", "info")
            return redirect(outcome.repeated_url)
        if outcome.saved:
            flash(f"Program {outcome.result.name} created.", "success")
            return redirect(url_for("programs.index"))
    return render_template(
        "patients/programs/form.html",
        form=form,
        program=None,
        dose_steps=_dose_steps_shown(form, None),
    )


def _program_or_404(program_id: int) -> Program:
    """A program of the user's sites; any other is not found, and the refusal recorded
    (as for patients)."""
    program = db.session.get(Program, program_id)
    sites = common.visible_site_ids(current_user)
    if program is None or (sites is not None and program.site_id not in sites):
        record_denied("program", program_id)
        abort(404)
    return program


@bp.route("/<int:program_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.PROGRAMS_MANAGE)
def edit(program_id: int):
    program = _program_or_404(program_id)
    form = ProgramForm(obj=program) if request.method == "GET" else ProgramForm()
    form.site_id.choices = [SelectChoice(program.site_id, program.site.name)]
    form.site_id.data = program.site_id
    # A form kept across a sign-in (clinic.accounts.drafts) shows what was typed, and
    # keeps the version it was built from: a change saved meanwhile is still a conflict.
    if request.method == "GET" and not form.restored:
        form.kind.data = program.kind.value
        form.version.data = program.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: program_settings.update_program(
                program,
                actor=current_user,
                settings=_settings(form),
                expected_version=form.version_number,
            ),
            refusals=common.DATABASE_REFUSALS,
            # A double click shows the first save's result, not a conflict with itself.
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="program_edit",
                result_url=lambda _result: url_for("programs.index"),
                required=False,
            ),
        )
        if outcome.repeated_url:
            flash("This form had already been sent: it was saved once.", "info")
            return redirect(outcome.repeated_url)
        if outcome.saved:
            flash("Saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("programs.index"))
        conflict = conflict_rows(outcome, form, program, _program_values)
    return render_template(
        "patients/programs/form.html",
        form=form,
        program=program,
        conflict=conflict,
        dose_steps=_dose_steps_shown(form, program),
    )


def _dose_steps_shown(form: ProgramForm, program: Program | None) -> set[str]:
    """The dose steps the page asks for: every one on a new program's form (each says
    which kinds it is for); on an edit, those of the program's kind or of the kind the
    user chose (so a refused step stays shown next to its message)."""
    kinds = {form.kind.data} | ({program.kind.value} if program is not None else set())
    return {
        step.column
        for step in program_settings.DOSE_STEPS
        if program is None or any(step.applies_to(kind) for kind in kinds)
    }


def _program_values(program: Program) -> dict[str, str]:
    """The settings as the edit form shows them, for a conflict's comparison."""

    def days(value: int | None) -> str:
        return "—" if value is None else str(value)

    return {
        "name": program.name,
        "kind": program.kind.label,
        "active": "yes" if program.active else "no",
        "care_plan_review_days": str(program.care_plan_review_days),
        "take_home_review_days": str(program.take_home_review_days),
        "take_home_cap_days_0_14": days(program.take_home_cap_days_0_14),
        "take_home_cap_days_15_30": days(program.take_home_cap_days_15_30),
        "take_home_cap_days_31_plus": days(program.take_home_cap_days_31_plus),
        # A step the program's kind has no use for is not shown on its form ("—").
        **{
            step.column: str(getattr(program, step.column))
            if step.applies_to(program.kind)
            else "—"
            for step in program_settings.DOSE_STEPS
        },
    }

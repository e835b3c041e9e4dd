"""Programs and their settings: kind, dose steps, take-home caps (42 CFR 8.12(i)), creating
and changing a program, and the lists of programs and counselors the pages offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.common import PROGRAM_NAME_TAKEN_MESSAGE, check_version, visible_site_ids
from clinic.patients.models import (
    DEFAULT_BUPRENORPHINE_STEP_MG,
    DEFAULT_METHADONE_STEP_MG,
    DEFAULT_TAKE_HOME_REVIEW_DAYS,
    Program,
    ProgramKind,
)
from clinic.security import Role
from clinic.sites.models import Site


@dataclass
class ProgramSettings:
    """A program's settings. The take-home caps (days) are an opioid treatment program's
    only: None for any other kind; for an OTP, None means the federal cap."""

    name: str
    kind: ProgramKind
    active: bool
    care_plan_review_days: int
    # A take-home decision older than this is due for review (issue 13).
    take_home_review_days: int = DEFAULT_TAKE_HOME_REVIEW_DAYS
    take_home_cap_days_0_14: int | None = None
    take_home_cap_days_15_30: int | None = None
    take_home_cap_days_31_plus: int | None = None
    # Dose steps in mg (text as typed, a Decimal or an int; None: the default), for the
    # kinds of program a step applies to (DOSE_STEPS); any other kind keeps the default.
    methadone_step_mg: Decimal | int | str | None = None
    buprenorphine_step_mg: Decimal | int | str | None = None


@dataclass(frozen=True)
class DoseStep:
    """A program's dose step: a change of a patient's dose larger than this asks the
    prescriber for a reason (DOMAIN.md, issue 10; clinic.medications.orders reads it)."""

    column: str
    medication: str
    kinds: frozenset[ProgramKind]
    default: int
    maximum: int  # the column's CHECK (methadone_step_range, buprenorphine_step_range)

    def applies_to(self, kind: ProgramKind | str | None) -> bool:
        return kind in {k.value for k in self.kinds}


# Methadone is dispensed by opioid treatment programs only (42 CFR 8.12); buprenorphine
# by an OTP or an office-based practice. Other kinds order neither, so they keep the
# default step: the safe one, should an order ever be written there.
DOSE_STEPS = (
    DoseStep(
        "methadone_step_mg",
        "methadone",
        frozenset({ProgramKind.METHADONE_OTP}),
        DEFAULT_METHADONE_STEP_MG,
        100,
    ),
    DoseStep(
        "buprenorphine_step_mg",
        "buprenorphine",
        frozenset({ProgramKind.METHADONE_OTP, ProgramKind.OFFICE_BUPRENORPHINE}),
        DEFAULT_BUPRENORPHINE_STEP_MG,
        32,
    ),
)


def parse_step_mg(value: Decimal | int | str | None, step: DoseStep) -> int | None:
    """A dose step typed in mg, read as an exact decimal (never a float): "10", "10.0"
    and "1e1" are 10 mg. None when empty. The step is stored in whole mg from 1 to the
    column's maximum: anything else is a DomainError next to the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    example = f"e.g. {step.default}"
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite():
        raise DomainError(
            f"Enter the {step.medication} step as a number of mg, {example}.",
            field=step.column,
        )
    if not 1 <= amount <= step.maximum:
        raise DomainError(f"Use 1 to {step.maximum} mg.", field=step.column)
    if amount != amount.to_integral_value():
        raise DomainError(
            f"Use whole milligrams (1 to {step.maximum} mg), {example}.", field=step.column
        )
    return int(amount)


def programs_for(
    user: User, *, site_id: int | None = None, active_only: bool = False
) -> list[Program]:
    query = (
        sa.select(Program)
        .options(selectinload(Program.site))
        .order_by(Program.site_id, Program.name)
    )
    sites = visible_site_ids(user)
    if sites is not None:
        query = query.where(Program.site_id.in_(sites or {-1}))
    if site_id is not None:
        query = query.where(Program.site_id == site_id)
    if active_only:
        query = query.where(Program.active)
    return list(db.session.scalars(query))


def _check_program(settings: ProgramSettings) -> ProgramSettings:
    """The settings as stored, or a DomainError naming the field.

    42 CFR 8.12(i) take-home caps belong to opioid treatment programs: for an OTP each is
    0 up to the federal cap (empty: the federal cap); any other kind has none (the CHECK
    ``take_home_caps_otp_only``). A caller that passes caps for another kind (a program
    changed from OTP to another kind keeps the old values in its settings) gets them
    dropped; the form refuses them where the user typed them.

    Dose steps (``DOSE_STEPS``): whole mg within the column's CHECK for the kinds a step
    applies to (empty: the default); any other kind keeps the default, whatever was
    passed (as for the caps, the form refuses a step typed for such a kind)."""
    from clinic.patients.models import FEDERAL_TAKE_HOME_CAPS

    caps = {
        "take_home_cap_days_0_14": FEDERAL_TAKE_HOME_CAPS["days_0_14"],
        "take_home_cap_days_15_30": FEDERAL_TAKE_HOME_CAPS["days_15_30"],
        "take_home_cap_days_31_plus": FEDERAL_TAKE_HOME_CAPS["days_31_plus"],
    }
    values = dict(vars(settings))
    try:
        kind = values["kind"] = ProgramKind(settings.kind)
    except ValueError:
        raise DomainError("Choose the kind of program.", field="kind") from None
    for name, federal in caps.items():
        value = values[name]
        if not kind.is_otp:
            values[name] = None
            continue
        if value is None:
            values[name] = federal
        elif not 0 <= value <= federal:
            raise DomainError(
                f"42 CFR 8.12(i) allows at most {federal} days here; a program may only "
                "set a lower cap.",
                field=name,
            )
    for step in DOSE_STEPS:
        value = parse_step_mg(values[step.column], step) if kind in step.kinds else None
        values[step.column] = step.default if value is None else value
    if not 1 <= settings.care_plan_review_days <= 365:
        raise DomainError("Use 1 to 365 days.", field="care_plan_review_days")
    if settings.take_home_review_days is None:
        values["take_home_review_days"] = DEFAULT_TAKE_HOME_REVIEW_DAYS
    elif not 1 <= settings.take_home_review_days <= 365:
        raise DomainError("Use 1 to 365 days.", field="take_home_review_days")
    if not settings.name.strip():
        raise DomainError("Enter a name.", field="name")
    values["name"] = settings.name.strip()
    return ProgramSettings(**values)


def create_program(*, actor: User, site: Site, settings: ProgramSettings) -> Program:
    settings = _check_program(settings)
    if visible_site_ids(actor) is not None and site.id not in actor.site_ids:
        raise DomainError("You can only add programs at your own sites.", field="site_id")
    _check_program_name_free(site.id, settings.name)
    program = Program(site_id=site.id, **vars(settings))
    db.session.add(program)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type="program",
        entity_id=program.id,
        site_id=site.id,
    )
    return program


def _check_program_name_free(site_id: int, name: str, exclude_id: int | None = None) -> None:
    query = sa.select(Program.id).where(
        Program.site_id == site_id, sa.func.lower(Program.name) == name.strip().lower()
    )
    if exclude_id is not None:
        query = query.where(Program.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise DomainError(PROGRAM_NAME_TAKEN_MESSAGE, field="name")


def update_program(
    program: Program, *, actor: User, settings: ProgramSettings, expected_version: int | None
) -> list[str]:
    """Change a program's settings. Saving over another administrator's newer change
    (``expected_version``, the version the form was built from; None for a form sent
    without it) is refused, not silently undone."""
    check_version(program.version, expected_version)
    settings = _check_program(settings)
    _check_program_name_free(program.site_id, settings.name, exclude_id=program.id)
    changed = []
    for name, value in vars(settings).items():
        value = value.strip() if isinstance(value, str) else value
        if getattr(program, name) != value:
            setattr(program, name, value)
            changed.append(name)
    if changed:
        db.session.flush()
        record(
            AuditAction.UPDATE,
            actor=actor,
            entity_type="program",
            entity_id=program.id,
            site_id=program.site_id,
            details={"fields": changed},
        )
    return changed


# --- enrollment ------------------------------------------------------------------------


def counselors_for(site_id: int) -> list[User]:
    """Clinicians working at the site: the choices for primary counselor."""
    return list(
        db.session.scalars(
            sa.select(User)
            .join(User.sites)
            .where(Site.id == site_id, User.role == Role.CLINICIAN, User.active)
            .order_by(User.full_name)
        )
    )


def programs_at(site_id: int, *, active_only: bool = True) -> list[Program]:
    query = sa.select(Program).where(Program.site_id == site_id).order_by(Program.name)
    if active_only:
        query = query.where(Program.active)
    return list(db.session.scalars(query))

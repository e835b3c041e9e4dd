"""Referrals: by resource kind and outcome, the median days from sent to placed, and the
consents on file (issue 14, report 7; DOMAIN.md "Aftercare referrals", "Consent and
disclosure" and "Measures": referral outcomes; 42 CFR 2.31).

Definitions:

- **Referrals of the period**: referrals created on a day of the period (the patient's
  site's local day), of patients of a site in scope (``Patient.site_id``), not entered in
  error. Each counts once, under its recipient's kind: the directory resource's kind, or
  **Support network** for a person of the patient's own network. Its **outcome** is its
  status today (draft, sent, accepted, waitlisted, declined, placed, closed).
- **Days from sent to placed**: from the referral's first "sent" event to its first
  "placed" event, in days (fractions of a day kept; instants, so time zones do not
  matter); the **median** over the placed referrals (the middle value, or the mean of the
  two middle values), computed in SQL with window functions on both engines.
- **Consents on file**, as of the period's last day (or today when the period ends
  later): 42 CFR Part 2 consents of patients of a site in scope, signed on or before that
  day and **active** — not revoked by then (a revocation counts from its date), not past
  their expiry date, and for an "end of treatment" consent, the treatment not ended (the
  consent module's rule: discharged with no enrollment left open, on or after the
  signature; a transfer is not an end). By kind and purpose, with the number of patients
  holding at least one.

Statements: the sites' time zones, the referrals by kind and status, the medians (two),
the consents (two): six, whatever the number of referrals.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from clinic.aftercare.consent_models import Consent, ConsentKind, ConsentPurpose, ExpiryKind
from clinic.aftercare.models import AftercareResource, ResourceKind
from clinic.aftercare.referral_models import Referral, ReferralEvent, ReferralStatus
from clinic.patients.models import Enrollment, Patient
from clinic.reports.core import (
    Chart,
    ChartKind,
    Column,
    FilterName,
    Kind,
    Report,
    ReportResult,
    Table,
    percent,
    register_report,
)
from clinic.reports.database import session
from clinic.reports.filters import ReportFilters, last_twelve_months
from clinic.reports.sql import date_param
from clinic.reports.zones import in_local_days, site_zones

SUPPORT_NETWORK = "support_network"
SUPPORT_NETWORK_LABEL = "Support network"
KIND_ORDER = [k.value for k in ResourceKind] + [SUPPORT_NETWORK]
STATUS_ORDER = (
    ReferralStatus.DRAFT,
    ReferralStatus.SENT,
    ReferralStatus.ACCEPTED,
    ReferralStatus.WAITLISTED,
    ReferralStatus.DECLINED,
    ReferralStatus.PLACED,
    ReferralStatus.CLOSED,
)


class epoch_days(FunctionElement):
    """Days (a real number) since 1970-01-01 00:00 UTC of a timestamp expression."""

    type = sa.Float()
    inherit_cache = True
    name = "epoch_days"


@compiles(epoch_days)
def _epoch_days_sqlite(element: epoch_days, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"(julianday({compiler.process(argument, **kw)}) - 2440587.5)"


@compiles(epoch_days, "postgresql")
def _epoch_days_postgresql(element: epoch_days, compiler: Any, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"(EXTRACT(EPOCH FROM {compiler.process(argument, **kw)}) / 86400.0)"


def _kind_label(kind: str) -> str:
    return SUPPORT_NETWORK_LABEL if kind == SUPPORT_NETWORK else ResourceKind(kind).label


def _as_of(filters: ReportFilters) -> dt.date:
    return min(filters.date_to, filters.today)


def _referrals(filters: ReportFilters) -> sa.CTE:
    """(referral id, kind key, status, days from first sent to first placed or NULL) of
    the period's referrals."""
    zones = site_zones(filters.site_ids)
    kind = sa.case(
        (Referral.support_person_id.is_not(None), sa.literal(SUPPORT_NETWORK, sa.String(24))),
        else_=sa.cast(AftercareResource.kind, sa.String(24)),
    )

    def first(status: ReferralStatus, name: str) -> sa.Label:
        return sa.func.min(
            sa.case((ReferralEvent.to_status == status, ReferralEvent.occurred_at))
        ).label(name)

    # One pass over the events (a GROUP BY), not a subquery per referral.
    times = (
        sa.select(
            ReferralEvent.referral_id,
            first(ReferralStatus.SENT, "sent_at"),
            first(ReferralStatus.PLACED, "placed_at"),
        )
        .where(ReferralEvent.to_status.in_((ReferralStatus.SENT, ReferralStatus.PLACED)))
        .group_by(ReferralEvent.referral_id)
        .subquery("referral_times")
    )
    inner = (
        sa.select(
            Referral.id.label("referral_id"),
            kind.label("kind"),
            sa.cast(Referral.status, sa.String(16)).label("status"),
            times.c.sent_at,
            times.c.placed_at,
        )
        .join(Patient, Patient.id == Referral.patient_id)
        .outerjoin(AftercareResource, AftercareResource.id == Referral.resource_id)
        .outerjoin(times, times.c.referral_id == Referral.id)
        .where(
            Patient.site_id.in_(filters.site_ids),
            Patient.entered_in_error_at.is_(None),
            in_local_days(
                Patient.site_id, Referral.created_at, zones, filters.date_from, filters.date_to
            ),
        )
        .subquery("period_referrals")
    )
    placed_days = sa.case(
        (
            sa.and_(inner.c.sent_at.is_not(None), inner.c.placed_at.is_not(None)),
            epoch_days(inner.c.placed_at) - epoch_days(inner.c.sent_at),
        ),
        else_=sa.null(),
    )
    return sa.select(
        inner.c.referral_id, inner.c.kind, inner.c.status, placed_days.label("days")
    ).cte("referrals")


def _by_kind_and_status(referrals: sa.CTE) -> dict[tuple[str, str], int]:
    rows = session.execute(
        sa.select(referrals.c.kind, referrals.c.status, sa.func.count().label("n")).group_by(
            referrals.c.kind, referrals.c.status
        )
    )
    return {(row.kind, row.status): int(row.n) for row in rows}


def _medians(referrals: sa.CTE, *, by_kind: bool) -> dict[str, tuple[float, int]]:
    """Median days from sent to placed and the number of placed referrals it is over,
    per kind (or ``"*"`` for all): the middle row(s) by a window's row number."""
    group = referrals.c.kind if by_kind else sa.literal_column("'*'", sa.String(24))
    ranked = (
        sa.select(
            group.label("grp"),
            referrals.c.days,
            sa.func.row_number()
            .over(partition_by=group, order_by=(referrals.c.days, referrals.c.referral_id))
            .label("rn"),
            sa.func.count().over(partition_by=group).label("n"),
        )
        .where(referrals.c.days.is_not(None))
        .subquery("ranked")
    )
    rows = session.execute(
        sa.select(ranked.c.grp, sa.func.avg(ranked.c.days).label("median"), sa.func.max(ranked.c.n))
        .where(
            sa.or_(
                ranked.c.rn == (ranked.c.n + 1) // 2,
                ranked.c.rn == (ranked.c.n + 2) // 2,
            )
        )
        .group_by(ranked.c.grp)
    )
    return {row[0]: (round(float(row[1]), 1), int(row[2])) for row in rows}


def _treatment_ended(on: dt.date) -> sa.ColumnElement[bool]:
    """SQL: the ``Consent`` row's patient's treatment ended on a day from its signature to
    ``on`` — discharged that day with no enrollment left open at its end — or no
    enrollment was open at the end of the signature day (the consent module's rule)."""
    ended, other = aliased(Enrollment), aliased(Enrollment)
    still_open = (
        sa.select(other.id)
        .where(
            other.patient_id == ended.patient_id,
            other.admitted_on <= ended.discharged_on,
            sa.or_(other.discharged_on.is_(None), other.discharged_on > ended.discharged_on),
        )
        .correlate(ended)
        .exists()
    )
    open_at_signature = (
        sa.select(other.id)
        .where(
            other.patient_id == Consent.patient_id,
            other.admitted_on <= Consent.signed_on,
            sa.or_(other.discharged_on.is_(None), other.discharged_on > Consent.signed_on),
        )
        .correlate(Consent)
        .exists()
    )
    discharged = (
        sa.select(ended.id)
        .where(
            ended.patient_id == Consent.patient_id,
            ended.discharged_on.is_not(None),
            ended.discharged_on >= Consent.signed_on,
            ended.discharged_on <= date_param(on),
            ~still_open,
        )
        .correlate(Consent)
        .exists()
    )
    return sa.or_(discharged, ~open_at_signature)


def _active_consents(filters: ReportFilters) -> sa.Select:
    on = date_param(_as_of(filters))
    return (
        sa.select(Consent.id, Consent.patient_id, Consent.kind, Consent.purpose)
        .join(Patient, Patient.id == Consent.patient_id)
        .where(
            Patient.site_id.in_(filters.site_ids),
            Patient.entered_in_error_at.is_(None),
            Consent.signed_on <= on,
            sa.or_(Consent.revoked_on.is_(None), Consent.revoked_on > on),
            sa.or_(Consent.expiry_kind != ExpiryKind.DATE, Consent.expires_on >= on),
            sa.or_(
                Consent.expiry_kind != ExpiryKind.EVENT,
                ~_treatment_ended(_as_of(filters)),
            ),
        )
        .subquery("active_consents")
    )


def _consents(filters: ReportFilters) -> tuple[list[dict], dict | None]:
    active = _active_consents(filters)
    rows = [
        {
            "kind": ConsentKind(row.kind).label,
            "purpose": ConsentPurpose(row.purpose).label,
            "consents": int(row.consents),
            "patients": int(row.patients),
        }
        for row in session.execute(
            sa.select(
                active.c.kind,
                active.c.purpose,
                sa.func.count().label("consents"),
                sa.func.count(sa.distinct(active.c.patient_id)).label("patients"),
            )
            .group_by(active.c.kind, active.c.purpose)
            .order_by(active.c.kind, active.c.purpose)
        )
    ]
    consents, patients = session.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(active.c.patient_id)))
    ).one()
    total = (
        {"kind": "All consents", "purpose": "", "consents": consents, "patients": patients}
        if rows
        else None
    )
    return rows, total


def compute(filters: ReportFilters) -> ReportResult:
    """Referrals by kind and outcome with the median days sent → placed (days, one
    decimal); the active consents on file by kind and purpose."""
    referrals = _referrals(filters)
    counts = _by_kind_and_status(referrals)
    medians = _medians(referrals, by_kind=True)
    overall = _medians(referrals, by_kind=False).get("*")
    kinds = [k for k in KIND_ORDER if any(key[0] == k for key in counts)]

    def row_for(label: str, selected: list[str], median: tuple[float, int] | None) -> dict:
        row: dict[str, Any] = {"kind": label}
        for status in STATUS_ORDER:
            row[status.value] = sum(counts.get((k, status.value), 0) for k in selected)
        row["referrals"] = sum(row[s.value] for s in STATUS_ORDER)
        row["placed_share"] = percent(row[ReferralStatus.PLACED.value], row["referrals"])
        row["median_days"] = median[0] if median else None
        return row

    rows = [row_for(_kind_label(k), [k], medians.get(k)) for k in kinds]
    total = row_for("All referrals", kinds, overall) if rows else None
    consent_rows, consent_total = _consents(filters)
    as_of = _as_of(filters)
    tables = [
        Table(
            "by_kind",
            "Referrals by kind and outcome",
            [
                Column("kind", "Resource kind"),
                Column("referrals", "Referrals", Kind.COUNT),
                *(Column(s.value, s.label, Kind.COUNT) for s in STATUS_ORDER),
                Column("placed_share", "Share placed", Kind.PERCENT, of="referrals"),
                # Over one placed referral, the median is that referral's own days.
                Column("median_days", "Median days sent → placed", Kind.NUMBER, of="placed"),
            ],
            rows,
            empty="No referrals were created in this period.",
            total=total,
        ),
        Table(
            "consents",
            f"Active consents on file on {as_of.isoformat()}",
            [
                Column("kind", "Consent kind"),
                Column("purpose", "Purpose"),
                Column("consents", "Active consents", Kind.COUNT),
                Column("patients", "Patients", Kind.COUNT),
            ],
            consent_rows,
            empty="No active consents on file.",
            total=consent_total,
        ),
    ]
    chart = Chart(
        ChartKind.STACKED_BAR,
        "Referrals by kind and outcome",
        [r["kind"] for r in rows],
        # Only the outcomes that occur: an empty series would only crowd the legend.
        [
            (s.label, [r[s.value] for r in rows])
            for s in STATUS_ORDER
            if any(r[s.value] for r in rows)
        ],
        x_label="Resource kind",
        y_label="Referrals",
    )
    notes = [
        "Referrals created in the period, by the kind of resource they were sent to (a "
        "person of the patient's own support network: “Support network”) and their "
        "status today.",
        "Share placed = placed referrals ÷ all referrals of the row.",
        "Median days sent → placed: from the first “sent” to the first “placed” status "
        "change, over the placed referrals (fractions of a day kept).",
        f"Active consents on {as_of.isoformat()}: signed by then, not revoked, not past their "
        "expiry date and, for an “end of treatment” consent, the treatment not ended. "
        "The total row counts each patient with at least one active consent once.",
        "Patients entered in error are never counted.",
    ]
    return ReportResult(tables, chart, notes)


REPORT = register_report(
    Report(
        slug="referrals",
        title="Referrals and consents",
        summary="Aftercare referrals by resource kind and outcome, median days from sent to "
        "placed, and the consents on file.",
        filters=frozenset({FilterName.SITE, FilterName.PERIOD}),
        compute=compute,
        default_period=last_twelve_months,
        order=70,
    )
)

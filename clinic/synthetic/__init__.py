"""Synthetic data for every table: ``flask seed-synthetic`` (issue 15, "Synthetic data").

A whole network generated from a seed and a fixed "today" (``DEFAULT_TODAY``, or any day:
the data keeps its shape, shifted), bulk-loaded into a migrated database on SQLite or
PostgreSQL. Named sizes (``SIZES``): **S** 10,000 patients at 1 site (~1 M dose rows),
**M** 100,000 patients at 10 sites (~11 M dose rows).

The design (``plan.py``, ``ledger.py``, ``care.py``, ``trail.py``), the same rows on both
engines for the same seed:

- sites ``S01``..., time zones varied (America/Chicago first), four programs each, the
  clinic calendar's holidays; per site the accounts ``s{k}-admin``, ``s{k}-nurse01``-``25``
  (clinicians who may dispense), ``s{k}-clinician01``-``10`` (01-03 prescribers, 04-09
  counselors, 10 a trainee under 04), ``s{k}-staff01``-``03``, all with one password;
- patients with names in several scripts (accents, hyphens, Cyrillic, Greek, CJK, Arabic),
  their search keys and name tokens computed by ``clinic.patients.names``; ~10 % in
  treatment today, readmissions, transfers (TEDS reason 4), a few entered in error;
- orders of the three medications (methadone, split methadone, buprenorphine-naloxone,
  XR buprenorphine, oral and XR naltrexone) with dose changes and switches; a ledger row
  per dose-day of each daily order (observed, split portions, take-home bottles for the
  closed Sunday or a weekly pick-up, missed days and relapse runs, held days, reversals)
  and the injections; take-home decisions, reviews, bottle returns, call-backs and
  diversion incidents; holds, flags and their acknowledgements, missed-dose reviews;
- a year of counseling (an individual session every two weeks per enrollment, intensive
  outpatient groups three times a week, a few family sessions), attendance, progress
  notes (signed, drafts, late, co-signed, addenda), SUD counseling notes and their readers;
- drug tests every ~6 weeks with their results (presumptive, some confirmed), the random
  draws of the last two months; care-plan reviews, enrollment corrections;
- support people, consents (TPO, specific, counseling notes; some revoked), restriction
  requests, referrals with their status events and disclosures; emergency accesses;
- the audit trail: sign-ins, chart and dosing-screen views, creations and signatures, a
  few events per patient-visit, hash-chained with the app's key (``flask audit verify``
  passes).

Patients with an open daily order can be dosed "today": their ledger stops yesterday, no
bottle covers today and no run of missed days reaches yesterday, except for a designed
few (a live stop-dose hold, a live warning flag, a relapse awaiting review: about 1 %).

Tables left empty, and why:

- ``alembic_version``: the migrations' own row, never data;
- ``recovery_code``: MFA recovery codes exist only for enrolled users, and the synthetic
  accounts have no MFA (a role in ``MFA_REQUIRED_ROLES`` is asked to enrol at sign-in);
- ``user_session``: a server-side login session is made by signing in, never loaded;
- ``saved_form_draft``: a form sent after a session ended, kept minutes for its owner;
- ``form_submission``: idempotency keys of form posts, written by the request they guard.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple


class Size(NamedTuple):
    patients: int
    sites: int
    years: int


SIZES: dict[str, Size] = {
    "S": Size(patients=10_000, sites=1, years=7),
    "M": Size(patients=100_000, sites=10, years=7),
}
DEFAULT_TODAY = dt.date(2026, 11, 18)  # a Wednesday
DEFAULT_SEED = 15


class SyntheticRefused(Exception):
    """The database holds real data (a patient, a user or an audit event) and the load was
    not forced: the message says what was found."""


def load(
    *,
    patients: int,
    sites: int,
    years: int,
    seed: int = DEFAULT_SEED,
    today: dt.date = DEFAULT_TODAY,
    password: str,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Generate and bulk-load a synthetic network into ``db.engine`` (in an app context).

    Returns ``{"tables": {name: rows inserted}, "seconds": {step: seconds},
    "total_seconds": float, "today": date, "engine": "sqlite" | "postgresql",
    "accounts": [usernames], "seed": int, "dosable_patients": [patient ids with an open
    daily order that can be dosed today, in id order]}``. Raises ``SyntheticRefused`` when
    the database holds a patient, a user or an audit event and ``force`` is false (forced:
    loaded alongside, ids after each table's largest, site codes, usernames and MRNs that
    do not collide), ``ValueError`` for sizes out of range. ``progress``: a bar per table on stderr.
    """
    from clinic.synthetic.loader import run

    return run(
        patients=patients,
        sites=sites,
        years=years,
        seed=seed,
        today=today,
        password=password,
        force=force,
        progress=progress,
    )


__all__ = ["DEFAULT_SEED", "DEFAULT_TODAY", "SIZES", "Size", "SyntheticRefused", "load"]

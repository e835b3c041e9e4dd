"""The demo aftercare directory for ``flask seed-demo`` (issue 12): about 20 resources of
every kind, for the Thursday scenario (SCENARIOS.md) and the consents and referrals demos
that follow it.

Among them: residences that do not accept MOUD, some that accept MOUD but not methadone,
some with no bed free, one whose beds were confirmed 20 days ago (shown stale), and
"Harbor House", a sober-living home that accepts methadone and has a bed free. Run twice,
it adds nothing (resources are looked up by name).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.aftercare import directory
from clinic.aftercare.models import AftercareResource
from clinic.extensions import db
from clinic.sites.models import Site
from clinic.sites.time import site_today

# The sober-living home the Thursday scenario finds: accepts methadone, a bed free.
HARBOR_HOUSE = "Harbor House Sober Living"


def _resources(today: dt.date, site: Site, east: Site | None) -> list[directory.ResourceData]:
    main_id = site.id
    east_id = east.id if east is not None else None
    recent = today - dt.timedelta(days=2)

    def home(name: str, **values) -> directory.ResourceData:
        values.setdefault("kind", "recovery_residence")
        values.setdefault("city", "Springfield")
        values.setdefault("state", "IL")
        values.setdefault("site_id", main_id)
        return directory.ResourceData(name=name, **values)

    def meeting(name: str, group_type: str, times: str, **values) -> directory.ResourceData:
        values.setdefault("city", "Springfield")
        values.setdefault("state", "IL")
        return directory.ResourceData(
            name=name,
            kind="support_group",
            support_group_type=group_type,
            meeting_times=times,
            **values,
        )

    return [
        home(
            HARBOR_HOUSE,
            narr_level="II",
            street="412 Lakeview Ave",
            postal_code="62701",
            phone="(217) 555-0142",
            email="intake@harborhouse.example.org",
            contact_name="Rosa Delgado",
            accepts_moud="yes",
            accepts_methadone="yes",
            beds_total=10,
            beds_available=2,
            beds_confirmed_on=recent,
            gender_served="women",
            notes="Residents dose at the clinic each morning; a house manager drives them.",
        ),
        home(
            "Maple Street Recovery Residence",
            narr_level="III",
            street="88 Maple St",
            postal_code="62702",
            phone="(217) 555-0177",
            contact_name="Terrence Hall",
            accepts_moud="yes",
            accepts_methadone="no",
            beds_total=12,
            beds_available=3,
            beds_confirmed_on=recent,
            gender_served="men",
            notes="Buprenorphine and naltrexone welcome; not methadone.",
        ),
        home(
            "Cedar House",
            narr_level="I",
            street="19 Cedar Ct",
            postal_code="62703",
            accepts_moud="no",
            accepts_methadone="no",
            beds_total=6,
            beds_available=1,
            beds_confirmed_on=recent,
            notes="Abstinence-only house: no residents on medication.",
        ),
        home(
            "Riverbend Sober Living",
            narr_level="II",
            street="7 River Rd",
            accepts_moud="yes",
            accepts_methadone="yes",
            beds_total=8,
            beds_available=0,
            beds_confirmed_on=recent,
            gender_served="women",
            notes="Full; keeps a waitlist.",
        ),
        home(
            "Oak Hollow Recovery Home",
            narr_level="IV",
            street="301 Oak Hollow Dr",
            phone="(217) 555-0190",
            accepts_moud="yes",
            accepts_methadone="unknown",
            beds_total=16,
            beds_available=4,
            beds_confirmed_on=today - dt.timedelta(days=20),  # stale: call first
        ),
        home(
            "Eastside Sober Living",
            narr_level="II",
            city="Decatur",
            site_id=east_id,
            accepts_moud="yes",
            accepts_methadone="yes",
            beds_total=6,
            beds_available=1,
            beds_confirmed_on=recent,
            gender_served="men",
        ),
        home(
            "Willow Women's Residence",
            accepts_moud="unknown",
            accepts_methadone="unknown",
            gender_served="women",
            notes="Not NARR-certified; MOUD policy not confirmed yet.",
        ),
        home(
            "New Start Halfway House",
            kind="halfway_house",
            street="1200 Jefferson St",
            phone="(217) 555-0105",
            accepts_moud="no",
            accepts_methadone="no",
            beds_total=20,
            beds_available=5,
            beds_confirmed_on=recent,
            gender_served="men",
        ),
        home(
            "Bridgeway Halfway House",
            kind="halfway_house",
            accepts_moud="yes",
            accepts_methadone="no",
            beds_total=14,
            beds_available=0,
            beds_confirmed_on=recent,
        ),
        home(
            "Eastside Transitional Housing",
            kind="halfway_house",
            city="Decatur",
            site_id=east_id,
            accepts_moud="yes",
            accepts_methadone="yes",
            beds_total=10,
            beds_available=2,
            beds_confirmed_on=recent,
        ),
        meeting("Tuesday Night NA", "na", "Tuesdays 7 pm, St. Mark's hall", accepts_moud="yes"),
        meeting("Downtown AA Big Book", "aa", "Mondays, Wednesdays, Fridays 12 noon"),
        meeting(
            "SMART Recovery Springfield",
            "smart_recovery",
            "Thursdays 6:30 pm, library room B",
            accepts_moud="yes",
            accepts_methadone="yes",
        ),
        meeting(
            "MAR Peer Group",
            "medication_assisted",
            "Saturdays 10 am",
            accepts_moud="yes",
            accepts_methadone="yes",
            notes="For people on methadone, buprenorphine or naltrexone.",
        ),
        meeting("Recovery Dharma Sangha", "recovery_dharma", "Sundays 5 pm", city="Decatur"),
        meeting("LifeRing Springfield", "lifering", "Wednesdays 7 pm"),
        meeting("Families in Recovery", "family_group", "Second Monday of the month, 6 pm"),
        directory.ResourceData(
            name="Springfield Continuing Care IOP",
            kind="outpatient_care",
            street="55 Capitol Ave",
            city="Springfield",
            state="IL",
            phone="(217) 555-0120",
            accepts_moud="yes",
            accepts_methadone="yes",
            site_id=main_id,
        ),
        directory.ResourceData(
            name="Decatur Outpatient Counseling",
            kind="outpatient_care",
            city="Decatur",
            state="IL",
            accepts_moud="yes",
            accepts_methadone="unknown",
            site_id=east_id,
        ),
        directory.ResourceData(
            name="Peer Recovery Coaches of Central Illinois",
            kind="peer_support",
            city="Springfield",
            state="IL",
            phone="(217) 555-0133",
            contact_name="Jamal Wright",
            accepts_moud="yes",
            accepts_methadone="yes",
        ),
    ]


def seed(site: Site, east: Site | None = None, *, actor: User | None = None) -> int:
    """Add the demo directory; returns how many resources were added (0 when they are
    there already)."""
    today = site_today(site)
    existing = set(db.session.scalars(sa.select(AftercareResource.name)))
    added = 0
    for data in _resources(today, site, east):
        if data.name in existing:
            continue
        directory.create_resource(actor=actor, data=data, today=today, source="demo")
        added += 1
    # One that closed: still on record, not listed.
    if "Sunrise House (closed)" not in existing:
        closed = directory.create_resource(
            actor=actor,
            data=directory.ResourceData(name="Sunrise House (closed)", kind="halfway_house"),
            source="demo",
        )
        directory.set_active(closed, actor=actor, active=False, expected_version=closed.version)
        added += 1
    db.session.flush()
    return added

"""Statement counts of the aftercare pages of one patient (support network, Part 2
consents and restrictions, referrals and the accounting of disclosures, their printable
forms): the same for a long history as for a short one (issue 15), and the exact number
each runs today.

The large history has more support people, consents (revoked and in force), restriction
requests, referrals sent and moved along, and so more disclosures and referral events
(tests/patient_history.py).
"""

from __future__ import annotations

from tests.query_counts import (  # noqa: F401
    Case,
    assert_flat,
    histories_database_uri,
    histories_fixture,
)

CASES: dict[str, Case] = {
    "aftercare.support_network": Case(statements=11, shows="Sponsor "),
    "aftercare.new_support_person": Case("staff", statements=10),
    "aftercare.edit_support_person": Case("staff", statements=12),
    "aftercare.archive_support_person": Case("staff", statements=12),
    "aftercare.consents": Case(statements=12, shows="Restriction "),
    "aftercare.consent": Case(statements=13),
    "aftercare.new_consent": Case("staff", statements=13),
    "aftercare.consent_form": Case("staff", statements=13),
    "aftercare.revoke_consent": Case("staff", statements=12),
    "aftercare.new_restriction": Case("staff", statements=12),
    "aftercare.lift_restriction": Case("staff", statements=13),
    "aftercare.patient_referrals": Case(statements=11, shows="Referral "),
    "aftercare.new_referral": Case("staff", statements=12, shows="Sponsor "),
    "aftercare.referral": Case(statements=12),
    "aftercare.send_referral": Case(
        "staff", ids={"referral_id": "draft_referral_id"}, statements=12
    ),
    "aftercare.referral_packet": Case("staff", statements=11),
    "aftercare.accounting": Case("staff", statements=11, shows="Lakeside"),
}


def test_the_aftercare_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)

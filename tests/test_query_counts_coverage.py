"""Every per-patient page has a statement-count case (issue 15: no N+1, ever): the set of
GET endpoints of the URL map that carry a patient's variable (tests/query_counts.py) is
the set the tests/test_query_counts_<domain>.py modules measure. A new per-patient page
fails here until a module measures it."""

from __future__ import annotations

import importlib
import pkgutil

import tests
from tests.query_counts import (
    OTHER_VARIABLES,
    PATIENT_VARIABLES,
    endpoint_of,
    per_patient_endpoints,
)

# Per-patient GET endpoints measured nowhere, each with its reason. Keep it short.
EXCLUDED: dict[str, str] = {}


def _case_modules():
    return [
        importlib.import_module(f"tests.{info.name}")
        for info in pkgutil.iter_modules(tests.__path__)
        if info.name.startswith("test_query_counts_") and info.name != __name__.rsplit(".")[-1]
    ]


def measured_endpoints() -> dict[str, str]:
    """Endpoint -> the module measuring it (``CASES`` and ``HELD_CASES``)."""
    found: dict[str, str] = {}
    for module in _case_modules():
        for name in ("CASES", "HELD_CASES"):
            for key in getattr(module, name, {}):
                endpoint = endpoint_of(key)
                assert found.get(endpoint, module.__name__) == module.__name__, (
                    f"{endpoint} measured in two modules"
                )
                found[endpoint] = module.__name__
    return found


def test_every_per_patient_page_has_a_statement_count_case(app):
    pages = per_patient_endpoints(app, "GET")
    measured = set(measured_endpoints())
    assert sorted(pages - measured - set(EXCLUDED)) == [], "add a Case to a query-counts module"
    assert sorted(measured - pages) == [], "a Case names no per-patient GET page"
    assert sorted(set(EXCLUDED) & measured) == [], "excluded and measured"


def test_every_url_variable_is_classified(app):
    """A new kind of record in a URL is declared a patient's or not, with a reason."""
    variables = set().union(*(rule.arguments for rule in app.url_map.iter_rules()))
    assert sorted(variables - PATIENT_VARIABLES - set(OTHER_VARIABLES)) == []


def test_the_pages_walked_include_the_ones_a_nurse_waits_on(app):
    """The issue's list: chart, dosing screen and dose history, session and drug-test
    history, take-home and aftercare pages, the access report, print layouts."""
    measured = set(measured_endpoints())
    for endpoint in (
        "patients.chart",
        "dosing.dose",
        "dosing.history",
        "therapy.patient_sessions",
        "drug_tests.history",
        "take_homes.patient",
        "take_home_bottles.labels",
        "aftercare.patient_referrals",
        "aftercare.consent_form",
        "audit.patient_access",
    ):
        assert endpoint in measured

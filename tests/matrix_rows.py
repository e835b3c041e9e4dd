"""The outcomes of the authorization matrix (tests/test_security_routes.py), shared with the
modules that add a domain's rows (tests/route_modules.py)."""

from __future__ import annotations

OK, DENY, LOGIN = "allowed", "403", "login"
# Never expected: the CSRF check refused the POST, so the permission was not measured.
CSRF_REFUSED = "refused by the CSRF check"
CSRF_REFUSALS = (
    "The form had expired, so nothing was saved.",
    "Your form expired or was sent without its security token.",
)
ROLES = ("anonymous", "staff", "clinician", "admin")


def row(anonymous=LOGIN, staff=OK, clinician=OK, admin=OK) -> dict[str, str]:
    return {"anonymous": anonymous, "staff": staff, "clinician": clinician, "admin": admin}


PUBLIC = row(anonymous=OK)
ANY_USER = row()
ADMIN_ONLY = row(staff=DENY, clinician=DENY)
NOT_CLINICIAN = row(clinician=DENY)
NOT_STAFF = row(staff=DENY)
CLINICIAN_ONLY = row(staff=DENY, admin=DENY)
# A permission the role grants only with a flag on the account (prescriber, may dispense).
NOBODY_WITHOUT_FLAG = row(staff=DENY, clinician=DENY, admin=DENY)
# A record the role may open, but not this one (another author's counseling note): 404.
NOT_FOUND = "404 (allowed, but not this record)"

"""The aftercare blueprint (issue 12). Its pages live in modules by use case, each adding
routes to ``bp``: ``directory_views`` (the resource directory, CSV import and export),
``consent_views`` (support network, consents, revocations, restriction requests) and
``referral_views`` (referrals, sending, the packet, the accounting of disclosures, the staff
dashboard). ``clinic.aftercare.register`` imports them before registering ``bp``.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("aftercare", __name__, url_prefix="/aftercare")

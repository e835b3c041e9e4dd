"""Imports every domain's models, so the metadata holds the whole schema."""

from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.audit.models import AuditChainHead, AuditEvent, BreakGlassGrant
from clinic.patients.models import CarePlanReview, Enrollment, Patient, Program
from clinic.sites.models import Site

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "BreakGlassGrant",
    "CarePlanReview",
    "Enrollment",
    "Patient",
    "Program",
    "RecoveryCode",
    "Site",
    "User",
    "UserSession",
]

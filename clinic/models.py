"""Imports every domain's models, so the metadata holds the whole schema."""

from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.audit.models import AuditChainHead, AuditEvent, BreakGlassGrant
from clinic.medications.models import (
    DoseEntry,
    FlagAcknowledgement,
    MedicationHold,
    MedicationOrder,
    MissedDoseReview,
    PatientFlag,
)
from clinic.patients.models import (
    CarePlanReview,
    Enrollment,
    Patient,
    PatientNameToken,
    Program,
)
from clinic.sites.models import Site
from clinic.submissions import FormSubmission

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "BreakGlassGrant",
    "CarePlanReview",
    "DoseEntry",
    "Enrollment",
    "FlagAcknowledgement",
    "FormSubmission",
    "MedicationHold",
    "MedicationOrder",
    "MissedDoseReview",
    "Patient",
    "PatientFlag",
    "PatientNameToken",
    "Program",
    "RecoveryCode",
    "Site",
    "User",
    "UserSession",
]

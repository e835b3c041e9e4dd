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
from clinic.therapy.models import (
    CounselingNote,
    NoteAddendum,
    ProgressNote,
    SessionAttendee,
    TherapySession,
)

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "BreakGlassGrant",
    "CarePlanReview",
    "CounselingNote",
    "DoseEntry",
    "Enrollment",
    "FlagAcknowledgement",
    "FormSubmission",
    "MedicationHold",
    "MedicationOrder",
    "MissedDoseReview",
    "NoteAddendum",
    "Patient",
    "PatientFlag",
    "PatientNameToken",
    "Program",
    "ProgressNote",
    "RecoveryCode",
    "SessionAttendee",
    "Site",
    "TherapySession",
    "User",
    "UserSession",
]

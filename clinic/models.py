"""Imports every domain's models, so the metadata holds the whole schema."""

from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.aftercare.consent_models import Consent, RestrictionRequest, SupportPerson
from clinic.aftercare.models import AftercareResource
from clinic.aftercare.referral_models import Disclosure, Referral, ReferralEvent
from clinic.audit.models import AuditChainHead, AuditEvent, BreakGlassGrant
from clinic.medications.drug_test_models import (
    DrugTest,
    DrugTestResult,
    RandomTestDraw,
    RandomTestSelection,
)
from clinic.medications.models import (
    DoseEntry,
    FlagAcknowledgement,
    MedicationHold,
    MedicationOrder,
    MissedDoseReview,
    PatientFlag,
)
from clinic.medications.take_home_models import (
    BottleReturn,
    CallBack,
    DiversionIncident,
    TakeHomeDecision,
    TakeHomeDispensing,
    TakeHomeReview,
)
from clinic.patients.models import (
    CarePlanReview,
    Enrollment,
    Patient,
    PatientNameToken,
    Program,
)
from clinic.sites.models import Site, SiteClosure
from clinic.submissions import FormSubmission
from clinic.therapy.models import (
    CounselingNote,
    CounselingNoteReader,
    NoteAddendum,
    ProgressNote,
    SessionAttendee,
    TherapySession,
)

__all__ = [
    "AftercareResource",
    "AuditChainHead",
    "AuditEvent",
    "BottleReturn",
    "BreakGlassGrant",
    "CallBack",
    "CarePlanReview",
    "Consent",
    "CounselingNote",
    "CounselingNoteReader",
    "Disclosure",
    "DiversionIncident",
    "DoseEntry",
    "DrugTest",
    "DrugTestResult",
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
    "RandomTestDraw",
    "RandomTestSelection",
    "RecoveryCode",
    "Referral",
    "ReferralEvent",
    "RestrictionRequest",
    "SessionAttendee",
    "Site",
    "SiteClosure",
    "SupportPerson",
    "TakeHomeDecision",
    "TakeHomeDispensing",
    "TakeHomeReview",
    "TherapySession",
    "User",
    "UserSession",
]

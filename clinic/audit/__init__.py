"""The audit trail. Every domain records through ``clinic.audit.record``."""

from clinic.audit.models import AuditAction, AuditOutcome
from clinic.audit.services import record

__all__ = ["AuditAction", "AuditOutcome", "record"]

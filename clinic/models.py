"""Imports every domain's models, so the metadata holds the whole schema."""

from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.audit.models import AuditChainHead, AuditEvent
from clinic.sites.models import Site

__all__ = ["AuditChainHead", "AuditEvent", "RecoveryCode", "Site", "User", "UserSession"]

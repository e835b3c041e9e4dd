"""Imports every domain's models, so the metadata holds the whole schema."""

from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.sites.models import Site

__all__ = ["RecoveryCode", "Site", "User", "UserSession"]

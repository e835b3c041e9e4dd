"""The audit trail: append-only, hash-chained events (HIPAA 164.312(b) audit controls).

Each event stores the hash of the event before it and its own HMAC-SHA256 over a canonical
encoding, keyed with a secret kept outside the database (``clinic/audit/keys.py``), so an
edited, removed or inserted row breaks the chain (``flask audit verify``) even for the
database's owner. Database triggers refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE) on
``audit_event``; the app's own database role may only INSERT and SELECT it
(``flask audit grant-app-role``).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db import Base

GENESIS_HASH = "0" * 64
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class AuditAction(StrEnum):
    VIEW = "view"
    CREATE = "create"
    UPDATE = "update"
    SIGN = "sign"
    ADDENDUM = "addendum"
    EXPORT = "export"
    PRINT = "print"
    DISCLOSE = "disclose"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOCKOUT = "lockout"
    LOGOUT = "logout"
    SESSION_EXPIRED = "session_expired"
    ACCESS_DENIED = "access_denied"
    BREAK_GLASS = "break_glass"
    PASSWORD_CHANGE = "password_change"  # noqa: S105 (an action name)
    MFA_CHANGE = "mfa_change"
    # ``flask mfa rotate-key``: every stored MFA secret re-encrypted under the newest key.
    MFA_KEYS_ROTATED = "mfa_keys_rotated"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    UNLOCK = "unlock"
    SESSIONS_ENDED = "sessions_ended"
    ACKNOWLEDGE = "acknowledge"
    # The migration to keyed hashes closes the unkeyed SHA-256 events with a keyed event.
    CHAIN_SEALED = "chain_sealed"


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


def _str_enum(enum: type[StrEnum], name: str, length: int, *, check: bool = True) -> sa.Enum:
    return sa.Enum(
        enum,
        native_enum=False,
        create_constraint=check,
        length=length,
        name=name,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_user_seq", "user_id", "seq"),
        sa.Index("ix_audit_event_patient_seq", "patient_id", "seq"),
        sa.Index("ix_audit_event_action_seq", "action", "seq"),
        sa.Index("ix_audit_event_entity_seq", "entity_type", "entity_id", "seq"),
        sa.CheckConstraint("seq > 0", name="seq_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Position in the chain: 1, 2, 3, ... with no gaps.
    seq: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    # Snapshots: what the user was called and could do at the time.
    username: Mapped[str | None] = mapped_column(sa.String(64))
    role: Mapped[str | None] = mapped_column(sa.String(16))
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("site.id"))
    # No CHECK on the action: every feature adds actions, and changing a CHECK would
    # make SQLite rebuild this table (and drop its append-only triggers).
    action: Mapped[AuditAction] = mapped_column(
        _str_enum(AuditAction, "audit_action", 32, check=False)
    )
    entity_type: Mapped[str | None] = mapped_column(sa.String(32))
    entity_id: Mapped[str | None] = mapped_column(sa.String(64))
    patient_id: Mapped[int | None]
    outcome: Mapped[AuditOutcome] = mapped_column(_str_enum(AuditOutcome, "audit_outcome", 16))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Canonical JSON: names of changed fields and other context, never clinical text.
    details: Mapped[str] = mapped_column(sa.Text, default="{}")
    # The key that signed ``hash`` (HMAC-SHA256); None for the plain SHA-256 events
    # written before keys existed, which a keyed "chain_sealed" event must follow.
    key_id: Mapped[str | None] = mapped_column(sa.String(16))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditChainHead(Base):
    """One row: the last link of the chain. Appenders lock it (UPDATE first), so
    concurrent requests queue for the moment of appending, never for a whole request."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_hash: Mapped[str] = mapped_column(sa.String(64))


class ReviewOutcome(StrEnum):
    """What the administrator who reviewed an emergency access concluded."""

    APPROPRIATE = "appropriate"
    ESCALATED = "escalated"

    @property
    def label(self) -> str:
        return {
            "appropriate": "Appropriate: the reason justified the access",
            "escalated": "Escalated: referred for follow-up (privacy officer)",
        }[self]

    @property
    def short_label(self) -> str:
        return {"appropriate": "Appropriate", "escalated": "Escalated"}[self]


REVIEW_NOTE_MAX = 1000
REVIEW_OUTCOME_VALUES = ", ".join(f"'{o.value}'" for o in ReviewOutcome)


class BreakGlassGrant(Base):
    """Emergency access (HIPAA 164.312(a)(2)(ii)): a clinician opens a patient outside their
    sites after giving a reason. It lasts a short time, is flagged in the audit trail and
    waits on an administrator's review list until acknowledged with an outcome
    (``ReviewOutcome``) and, for an escalation, a note saying why."""

    __tablename__ = "break_glass_grant"
    __table_args__ = (
        sa.CheckConstraint("length(reason) >= 10", name="reason_given"),
        sa.CheckConstraint("expires_at > granted_at", name="expires_after_grant"),
        sa.CheckConstraint(
            f"review_outcome IS NULL OR review_outcome IN ({REVIEW_OUTCOME_VALUES})",
            name="review_outcome_valid",
        ),
        # An acknowledged grant always says what the review concluded, and only then.
        sa.CheckConstraint(
            "(acknowledged_at IS NULL) = (review_outcome IS NULL)", name="review_complete"
        ),
        sa.CheckConstraint(
            "review_outcome IS NULL OR review_outcome <> 'escalated' "
            "OR (review_note IS NOT NULL AND length(trim(review_note)) > 0)",
            name="escalation_explained",
        ),
        sa.CheckConstraint(
            f"review_note IS NULL OR length(review_note) <= {REVIEW_NOTE_MAX}",
            name="review_note_length",
        ),
        sa.Index("ix_break_glass_grant_user_patient", "user_id", "patient_id", "expires_at"),
        sa.Index("ix_break_glass_grant_unacknowledged", "acknowledged_at", "granted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    reason: Mapped[str] = mapped_column(sa.String(500))
    granted_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    review_outcome: Mapped[ReviewOutcome | None] = mapped_column(
        _str_enum(ReviewOutcome, "review_outcome", 16, check=False)
    )
    # The reviewer's note: kept on the grant, never copied into the audit trail.
    review_note: Mapped[str | None] = mapped_column(sa.String(REVIEW_NOTE_MAX))

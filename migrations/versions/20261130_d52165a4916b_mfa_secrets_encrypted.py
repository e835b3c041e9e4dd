"""encrypt MFA secrets at rest; enrolment secret on the server

Revision ID: d52165a4916b
Revises: a1c4e7f09b3d
Create Date: 2026-11-30 04:00:00

Issue 16: ``app_user.mfa_secret`` holds a Fernet token of the TOTP secret under
``MFA_ENCRYPTION_KEYS`` (clinic/accounts/mfa_secrets.py), no longer the base32 secret:
the column widens from 64 to 255 characters (a token of a 32-character secret is 140) and
the upgrade encrypts every plain secret it finds with the newest key. The secret shown on
the enrolment page moves from the signed (readable) cookie to the session row:
``user_session.mfa_setup_secret`` (a token too) and ``mfa_setup_until``.

The keys come from the app this runs in (``flask db upgrade`` runs inside it, so
``MFA_ENCRYPTION_KEYS`` is read and checked at start-up; development generates one under
instance/). Without an app, an upgrade that finds plain secrets refuses with a message.
The downgrade decrypts the tokens back to plain secrets (refusing, and changing nothing,
if a token is under a key no longer listed) and narrows the column again.

On SQLite the type change rebuilds app_user (batch mode; env.py turns foreign keys off
for the migration, so rows referring to users are untouched); adding the nullable
columns to user_session is a plain ALTER TABLE.
"""

import re

import sqlalchemy as sa
from alembic import op

import clinic.db

# revision identifiers, used by Alembic.
revision = "d52165a4916b"
down_revision = "a1c4e7f09b3d"
branch_labels = None
depends_on = None

# A secret as pyotp makes it (RFC 4648 base32, upper case). A Fernet token starts "gAAAA"
# (lower case g: never base32), so the two cannot be confused.
PLAIN_SECRET = re.compile(r"[A-Z2-7]+=*")
SETTING = "MFA_ENCRYPTION_KEYS"


def _fernet():
    """The app's keys (a ``MultiFernet``: the newest encrypts, any decrypts)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    from clinic.accounts.mfa_secrets import mfa_keys

    return mfa_keys(current_app).fernet


def _user_secrets(bind):
    return bind.execute(
        sa.text("SELECT id, mfa_secret FROM app_user WHERE mfa_secret IS NOT NULL ORDER BY id")
    ).all()


def _set_secret(bind, user_id, value):
    bind.execute(
        sa.text("UPDATE app_user SET mfa_secret = :value WHERE id = :id"),
        {"value": value, "id": user_id},
    )


def upgrade() -> None:
    # Keys first, before any change: a refusal leaves the database as it was (SQLite
    # commits DDL as it goes).
    bind = op.get_bind()
    plain = [(i, s) for i, s in _user_secrets(bind) if PLAIN_SECRET.fullmatch(s)]
    fernet = _fernet() if plain else None
    if plain and fernet is None:
        raise RuntimeError(
            f"{len(plain)} two-step verification secret(s) are stored unencrypted and this "
            f"migration encrypts them with {SETTING}: run it with `flask db upgrade` and "
            f"{SETTING} set (see README, Production)"
        )

    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.alter_column(
            "mfa_secret",
            existing_type=sa.String(length=64),
            type_=sa.String(length=255),
            existing_nullable=True,
        )
    op.add_column("user_session", sa.Column("mfa_setup_secret", sa.String(255), nullable=True))
    op.add_column(
        "user_session",
        sa.Column("mfa_setup_until", clinic.db.UTCDateTime(timezone=True), nullable=True),
    )
    for user_id, secret in plain:
        _set_secret(bind, user_id, fernet.encrypt(secret.encode()).decode())


def downgrade() -> None:
    bind = op.get_bind()
    stored = [(i, s) for i, s in _user_secrets(bind) if not PLAIN_SECRET.fullmatch(s)]
    plain, unreadable = [], []
    if stored:
        fernet = _fernet()
        if fernet is None:
            raise RuntimeError(
                f"{len(stored)} two-step verification secret(s) are encrypted: run the "
                f"downgrade with `flask db downgrade` and {SETTING} set, so they are "
                "decrypted back"
            )
        from cryptography.fernet import InvalidToken

        for user_id, token in stored:
            try:
                secret = fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                unreadable.append(user_id)
            else:
                if len(secret) > 64:  # the old column's width; pyotp makes 32
                    unreadable.append(user_id)
                else:
                    plain.append((user_id, secret))
    if unreadable:
        raise RuntimeError(
            f"no key in {SETTING} decrypts the two-step verification secret of user id(s) "
            f"{', '.join(map(str, unreadable))} (or it is longer than 64 characters); "
            "nothing was changed"
        )
    for user_id, secret in plain:
        _set_secret(bind, user_id, secret)

    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.drop_column("mfa_setup_until")
        batch_op.drop_column("mfa_setup_secret")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.alter_column(
            "mfa_secret",
            existing_type=sa.String(length=255),
            type_=sa.String(length=64),
            existing_nullable=True,
        )

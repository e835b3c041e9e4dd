"""Two-step verification secrets, encrypted at rest with keys kept outside the database.

A TOTP secret is a password the server must be able to read back: whoever reads it can
make every code of that user. So the database holds only a Fernet token of it
(AES-128-CBC with HMAC-SHA256, from ``cryptography``), in ``app_user.mfa_secret`` and,
while an enrolment is pending, ``user_session.mfa_setup_secret``. A copy of the database
(a backup restored elsewhere, a DBA, an SQL injection) without the key yields no secret.
HIPAA 164.312(a)(2)(iv) encryption and decryption; 164.312(d) authentication.

``MFA_ENCRYPTION_KEYS`` lists Fernet keys, comma-separated, newest first::

    MFA_ENCRYPTION_KEYS="<44 characters>,<44 characters>"

A key is made with
``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
New secrets are encrypted with the first key; any listed key decrypts (``MultiFernet``).
To rotate: put a new key first (keeping the old one), restart every app server, run
``flask mfa rotate-key`` (every stored secret re-encrypted under the new key), then drop
the old key and restart again.

Production refuses to start without it (like ``SECRET_KEY``); development generates one
once into ``instance/mfa_encryption_keys``; testing uses a random one per process.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app

import config as config_module
from clinic.accounts.models import User, UserSession
from clinic.audit import AuditAction, record
from clinic.extensions import db

SETTING = "MFA_ENCRYPTION_KEYS"
DEVELOPMENT_KEY_FILE = "mfa_encryption_keys"
EXTENSION = "clinic_mfa_keys"


class MfaSecretUnreadable(Exception):
    """A stored value that none of the configured keys decrypts: the key that encrypted it
    was removed from ``MFA_ENCRYPTION_KEYS`` or is not this deployment's, or the value is
    not a token at all. The message never holds the value."""


@dataclass(frozen=True)
class MfaKeys:
    """The configured keys: the first encrypts, every one decrypts."""

    fernet: MultiFernet
    count: int

    def __repr__(self) -> str:  # never the keys
        return f"<MfaKeys {self.count} key(s)>"


def parse_keys(value: str) -> MfaKeys:
    """Read ``KEY[,KEY...]`` (newest first). Raises ``ValueError`` whose message names the
    position of the key at fault, never a key."""
    fernets = []
    seen = set()
    for position, item in enumerate(value.split(","), start=1):
        key = item.strip()
        try:
            fernet = Fernet(key)
        except ValueError:
            raise ValueError(
                f"{SETTING}: key {position} is not a Fernet key (32 url-safe base64-encoded "
                "bytes, as Fernet.generate_key() makes)"
            ) from None
        if key in seen:
            raise ValueError(f"{SETTING}: key {position} is listed twice")
        seen.add(key)
        fernets.append(fernet)
    return MfaKeys(MultiFernet(fernets), len(fernets))


def development_keys_value() -> str:
    """A key generated once under instance/, so secrets stay readable across restarts."""
    return config_module.instance_secret(
        DEVELOPMENT_KEY_FILE, lambda: Fernet.generate_key().decode()
    )


def configure(app: Flask) -> MfaKeys:
    """Load the keys at start-up. Raises ``RuntimeError`` in production without them, or
    when the setting is malformed (the app must not run with an unusable key)."""
    value = (app.config.get(SETTING) or "").strip()
    if not value:
        if app.config.get("ENV_NAME") == "production":
            raise RuntimeError(
                f"{SETTING} must be set in production: comma-separated Fernet keys, newest "
                "first (see README, Production)"
            )
        value = development_keys_value()
    try:
        keys = parse_keys(value)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    app.extensions[EXTENSION] = keys
    return keys


def mfa_keys(app: Flask | None = None) -> MfaKeys:
    """The keys of ``app`` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    keys = app.extensions.get(EXTENSION)
    return keys if keys is not None else configure(app)


def encrypt(secret: str) -> str:
    """The Fernet token (about 140 ASCII characters for a 32-character secret) of
    ``secret`` under the newest key."""
    return mfa_keys().fernet.encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    """The secret in ``token``, whichever listed key encrypted it. Raises
    ``MfaSecretUnreadable`` when none does."""
    try:
        return mfa_keys().fernet.decrypt(token.encode()).decode()
    except InvalidToken:
        raise MfaSecretUnreadable(f"no key in {SETTING} decrypts this secret") from None


# --- rotation --------------------------------------------------------------------------


@dataclass
class Rotation:
    rotated: int  # users' secrets re-encrypted under the newest key
    setups_dropped: int  # pending enrolments whose secret no key opens, forgotten


def rotate_stored_secrets() -> Rotation:
    """Re-encrypt every stored secret under the newest key (``MultiFernet.rotate``), so
    that older keys can be dropped from ``MFA_ENCRYPTION_KEYS``. Flushes; the caller
    commits once, so it is all or nothing.

    Raises ``MfaSecretUnreadable`` naming the user ids whose secret no listed key opens,
    having changed nothing: dropping the key that encrypted them would lock them out of
    their authenticator for good. A pending enrolment (``user_session.mfa_setup_secret``,
    ten minutes at most) that no key opens is simply forgotten: its user sees a new code
    to scan. Each row is written only if it still holds the token read (a user enrolling
    meanwhile keeps their new secret, which the app wrote under the newest key). Audited,
    with counts only.
    """
    keys = mfa_keys()
    fernet = keys.fernet
    users = db.session.execute(
        sa.select(User.id, User.mfa_secret).where(User.mfa_secret.is_not(None)).order_by(User.id)
    ).all()
    new_tokens, unreadable = {}, []
    for user_id, token in users:
        try:
            new_tokens[user_id] = (token, fernet.rotate(token.encode()).decode())
        except InvalidToken:
            unreadable.append(user_id)
    if unreadable:
        ids = ", ".join(str(i) for i in unreadable)
        raise MfaSecretUnreadable(
            f"no key in {SETTING} decrypts the two-step verification secret of user id(s) "
            f"{ids}; nothing was changed. Put back the key that encrypted them, or reset "
            "their two-step verification (Users, Reset two-step verification) and run "
            "this again."
        )
    rotated = 0
    for user_id, (old, new) in new_tokens.items():
        rotated += _swap(User, User.mfa_secret, user_id, old, {"mfa_secret": new})
    setups = db.session.execute(
        sa.select(UserSession.id, UserSession.mfa_setup_secret).where(
            UserSession.mfa_setup_secret.is_not(None)
        )
    ).all()
    dropped = 0
    for session_id, token in setups:
        try:
            values = {"mfa_setup_secret": fernet.rotate(token.encode()).decode()}
        except InvalidToken:
            values = {"mfa_setup_secret": None, "mfa_setup_until": None}
            dropped += 1
        _swap(UserSession, UserSession.mfa_setup_secret, session_id, token, values)
    db.session.flush()
    record(
        AuditAction.MFA_KEYS_ROTATED,
        actor=None,
        entity_type="mfa_keys",
        details={"rotated": rotated, "setups_dropped": dropped, "keys_configured": keys.count},
    )
    return Rotation(rotated=rotated, setups_dropped=dropped)


def _swap(
    model: type, column: sa.orm.InstrumentedAttribute, row_id: int, old: str, values: dict
) -> int:
    """Write ``values`` to row ``row_id`` of ``model`` if ``column`` still holds ``old``
    (compare-and-swap): 1 when written, else 0."""
    result = db.session.execute(
        sa.update(model)
        .where(model.id == row_id, column == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount

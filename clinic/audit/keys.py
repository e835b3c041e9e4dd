"""The secret keys of the audit chain's HMAC, kept outside the database.

The chain is only as strong as its key: whoever can write the database but does not hold
the key (the database owner, a backup restored elsewhere, a DBA) cannot recompute a
valid hash for an event they change, remove or insert.

``AUDIT_HMAC_KEYS`` lists the keys as comma-separated ``ID:SECRET`` pairs, newest first::

    AUDIT_HMAC_KEYS="2027a:<64 hex characters>,2026a:<64 hex characters>"

New events are signed with the first key and store its id (``audit_event.key_id``);
``flask audit verify`` checks each event with the key its id names, so a key is rotated
by putting a new one first and keeping the old ones listed for as long as their events
must be verified (for the life of the trail: HIPAA 164.316(b)(2) keeps documentation six
years). An id is 1-16 letters, digits, ``.``, ``_`` or ``-``; a secret is at least 32
characters (``python3 -c 'import secrets; print(secrets.token_hex(32))'``).

Production refuses to start without it (like ``SECRET_KEY``); development generates one
once into ``instance/audit_hmac_key``; testing uses a random one per process.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from flask import Flask, current_app

import config as config_module

SETTING = "AUDIT_HMAC_KEYS"
KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,16}")
MIN_SECRET_LENGTH = 32
DEVELOPMENT_KEY_FILE = "audit_hmac_key"
EXTENSION = "clinic_audit_keys"


@dataclass(frozen=True)
class AuditKeys:
    """The configured keys: ``current_id`` signs new events; every key verifies."""

    current_id: str
    secrets: Mapping[str, bytes] = field(repr=False)

    @property
    def current_secret(self) -> bytes:
        return self.secrets[self.current_id]

    def secret(self, key_id: str) -> bytes | None:
        return self.secrets.get(key_id)


def parse_keys(value: str) -> AuditKeys:
    """Read ``ID:SECRET[,ID:SECRET...]`` (newest first). Raises ``ValueError`` whose
    message names the key id at fault but never a secret."""
    pairs: dict[str, bytes] = {}
    current = None
    for position, item in enumerate(value.split(","), start=1):
        key_id, sep, secret = item.strip().partition(":")
        if not sep or not KEY_ID_RE.fullmatch(key_id):
            raise ValueError(
                f"{SETTING}: entry {position} is not ID:SECRET with an id of 1-16 letters, "
                "digits, '.', '_' or '-'"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{SETTING}: the secret of key {key_id!r} is shorter than "
                f"{MIN_SECRET_LENGTH} characters"
            )
        if key_id in pairs:
            raise ValueError(f"{SETTING}: key id {key_id!r} is listed twice")
        pairs[key_id] = secret.encode()
        current = current or key_id
    if current is None:  # pragma: no cover - split() always yields one item
        raise ValueError(f"{SETTING} is empty")
    return AuditKeys(current, pairs)


def development_keys_value() -> str:
    """A key generated once under instance/, so events stay verifiable across restarts."""
    return config_module.instance_secret(
        DEVELOPMENT_KEY_FILE, lambda: f"dev:{secrets.token_hex(32)}"
    )


def configure(app: Flask) -> AuditKeys:
    """Load the keys at start-up. Raises ``RuntimeError`` in production without them, or
    when the setting is malformed (the app must not run with an unusable key)."""
    value = (app.config.get(SETTING) or "").strip()
    if not value:
        if app.config.get("ENV_NAME") == "production":
            raise RuntimeError(f"{SETTING} must be set in production (see README, Security)")
        value = development_keys_value()
    try:
        keys = parse_keys(value)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    app.extensions[EXTENSION] = keys
    return keys


def audit_keys(app: Flask | None = None) -> AuditKeys:
    """The keys of ``app`` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    keys = app.extensions.get(EXTENSION)
    return keys if keys is not None else configure(app)

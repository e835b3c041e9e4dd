"""Password hashing (argon2id) and the password policy.

OWASP's Password Storage Cheat Sheet asks for argon2id with at least 19 MiB, 2 passes,
1 lane; argon2-cffi's default (RFC 9106 "low memory": 64 MiB, 3 passes, 4 lanes) is above
that and is what production uses. Tests use the OWASP minimum to stay quick.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from zxcvbn import zxcvbn

from clinic.forms import has_control_characters

MIN_LENGTH = 12
MAX_LENGTH = 128
MIN_ZXCVBN_SCORE = 3

_HASHERS = {
    "default": PasswordHasher(),
    "owasp-minimum": PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1),
}
_DUMMY_HASHES: dict[str, str] = {}


def _hasher() -> PasswordHasher:
    return _HASHERS[current_app.config["PASSWORD_HASH_PROFILE"]]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def spend_verification_time(password: str) -> None:
    """Verify against a throw-away hash, so an unknown username takes as long as a
    known one (no user enumeration by timing)."""
    profile = current_app.config["PASSWORD_HASH_PROFILE"]
    if profile not in _DUMMY_HASHES:
        _DUMMY_HASHES[profile] = _hasher().hash(secrets.token_urlsafe(16))
    verify_password(_DUMMY_HASHES[profile], password)


def password_problems(password: str, *, username: str, other_inputs: list[str] = ()) -> list[str]:
    """Why ``password`` is not acceptable (empty when it is).

    NIST SP 800-63B: length over composition rules, check against guessable passwords
    (zxcvbn score of at least 3), no truncation up to 128 characters.
    """
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters.")
    if has_control_characters(password):
        # Forms refuse these already; a password piped to the CLI is held to the same rule.
        problems.append("Do not use control or invisible formatting characters.")
    if username and username.lower() in password.lower():
        problems.append("Do not include your username.")
    if not problems:
        # zxcvbn refuses input over 72 characters; a longer password is strong by length.
        result = zxcvbn(password[:72], user_inputs=[username, *other_inputs])
        if result["score"] < MIN_ZXCVBN_SCORE:
            hint = result["feedback"].get("warning") or "It is too easy to guess."
            problems.append(f"{hint} Try a longer passphrase of unrelated words.".strip())
    return problems


def token_digest(token: str) -> str:
    """SHA-256 of a high-entropy random token (session ids, recovery codes)."""
    return hashlib.sha256(token.encode()).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def generate_password() -> str:
    """A temporary password an administrator hands over; it must be changed at login."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))

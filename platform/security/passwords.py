"""Password hashing with bcrypt.

bcrypt only reads the first 72 bytes of a password (bcrypt 5 raises past that). A
longer password is refused rather than truncated, so two passwords that differ after
byte 72 are never the same password; ``verify_password`` never hands bcrypt an
over-long input.
"""

from __future__ import annotations

import secrets
from functools import cache

import bcrypt

MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_CHARS = 8


class PasswordRejected(ValueError):
    """The password cannot be used; the message says why (never echoes it)."""


def check_password_policy(password: str) -> bytes:
    encoded = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordRejected(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(f"password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return encoded


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(check_password_policy(password), bcrypt.gensalt(rounds)).decode("ascii")


@cache
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds))


def verify_password(password: str, hashed: str | None, rounds: int = 12) -> bool:
    """Check ``password``; with no hash (unknown user) spend the same bcrypt work anyway."""
    encoded = password.encode("utf-8")
    too_long = len(encoded) > MAX_PASSWORD_BYTES
    candidate = encoded[:MAX_PASSWORD_BYTES]
    if hashed is None or too_long:
        bcrypt.checkpw(candidate, hashed.encode("ascii") if hashed else _dummy_hash(rounds))
        return False
    return bcrypt.checkpw(candidate, hashed.encode("ascii"))


def generate_password() -> str:
    return secrets.token_urlsafe(18)

"""Per-recipient keyed pseudonyms (ENISA: keyed MAC, unlinkable across recipients).

key_r = HKDF-SHA256(pseudonym secret, salt = "minimeter/pseudonym/v1", info = recipient id);
pseudonym = first 16 bytes of HMAC-SHA256(key_r, meter id), as 32 lowercase hex digits.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from minimeter.errors import ConfigError

SALT = b"minimeter/pseudonym/v1"
PSEUDONYM_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def recipient_key(secret: bytes, recipient_id: str) -> bytes:
    if len(secret) < 32:
        raise ConfigError("the pseudonym secret must be at least 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=recipient_id.encode()).derive(
        secret
    )


def pseudonym(key: bytes, meter: str) -> str:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(meter.encode())
    return mac.finalize()[:16].hex()


OFFSET_INFO = b"minimeter/register-offset/v1:"
MAX_OFFSET_WH = 10**9
"""Offsets lie in [0, 1 GWh): far beyond any household's register, exact in a double."""


def offset_key(secret: bytes, recipient_id: str) -> bytes:
    """The key of a recipient's register offsets (HKDF, apart from its pseudonym key)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=SALT, info=OFFSET_INFO + recipient_id.encode()
    ).derive(secret)


def register_offset(key: bytes, meter: str, obis: str) -> float:
    """The secret offset of one meter's register for one recipient: cumulative values shifted
    by it no longer join with another recipient's (differences, i.e. consumption, are kept)."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(f"{meter}\0{obis}".encode())
    return float(int.from_bytes(mac.finalize()[:8], "big") % MAX_OFFSET_WH)

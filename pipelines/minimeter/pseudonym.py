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

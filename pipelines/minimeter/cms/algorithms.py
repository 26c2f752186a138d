"""Algorithm tables for CMS: digests, signatures, ECDH KDF schemes, key wrap, content ciphers.

The content-cipher table is open for registration (``register_content_cipher``): an OID that is
known but whose construction is not available here (the BSI ``id-aes-CBC-CMAC-*`` family) is
registered without an implementation and reported as ``unsupported-algorithm``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from minimeter.cms._asn1 import GcmParameters
from minimeter.cms._read import read_gcm_parameters
from minimeter.errors import CmsError

# --- digests -----------------------------------------------------------------------------------

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1,
    "2.16.840.1.101.3.4.2.4": hashes.SHA224,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
DIGEST_NAMES: dict[str, str] = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
DIGEST_OIDS: dict[str, str] = {name: oid for oid, name in DIGEST_NAMES.items()}
#: Digests accepted for signatures and message digests (SHA-1 and SHA-224 are refused).
SIGNATURE_DIGESTS: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})


@functools.lru_cache(maxsize=32)
def digest_for(oid: str, *, purpose: str) -> hashes.HashAlgorithm:
    """The (stateless, shared) hash algorithm an OID names, if signatures may use it."""
    cls = DIGESTS.get(oid)
    if cls is None or DIGEST_NAMES[oid] not in SIGNATURE_DIGESTS:
        raise CmsError("unsupported-algorithm", f"{purpose} digest {oid} is not supported")
    return cls()


# --- signature algorithms ----------------------------------------------------------------------

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"

#: signatureAlgorithm OID -> (family, digest name or None when the digestAlgorithm decides).
SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
    OID_EC_PUBLIC_KEY: ("ecdsa", None),
    "1.2.840.113549.1.1.11": ("rsa-pkcs1v15", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa-pkcs1v15", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa-pkcs1v15", "sha512"),
    OID_RSA_ENCRYPTION: ("rsa-pkcs1v15", None),
    OID_RSASSA_PSS: ("rsa-pss", None),
}
ECDSA_OIDS: dict[str, str] = {
    "sha256": "1.2.840.10045.4.3.2",
    "sha384": "1.2.840.10045.4.3.3",
    "sha512": "1.2.840.10045.4.3.4",
}
RSA_PKCS1_OIDS: dict[str, str] = {
    "sha256": "1.2.840.113549.1.1.11",
    "sha384": "1.2.840.113549.1.1.12",
    "sha512": "1.2.840.113549.1.1.13",
}

# --- ECDH key agreement (RFC 5753 / RFC 8418 schemes) --------------------------------------------

#: keyEncryptionAlgorithm of a KeyAgreeRecipientInfo -> X9.63 KDF hash.
ECDH_SCHEMES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,  # dhSinglePass-stdDH-sha224kdf-scheme
    "1.3.132.1.11.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
}
ECDH_SCHEME_OIDS: dict[str, str] = {
    name: oid
    for oid, name in (
        ("1.3.133.16.840.63.0.2", "sha1"),
        ("1.3.132.1.11.0", "sha224"),
        ("1.3.132.1.11.1", "sha256"),
        ("1.3.132.1.11.2", "sha384"),
        ("1.3.132.1.11.3", "sha512"),
    )
}
#: Known, but not implemented here: BSI ECKA-EG with X9.63 KDF (TR-03111); construction not public.
KNOWN_UNSUPPORTED_KEY_AGREEMENT: dict[str, str] = {
    "0.4.0.127.0.7.1.1.5.1.1.1": "ecka-eg-X963KDF-SHA1",
    "0.4.0.127.0.7.1.1.5.1.1.2": "ecka-eg-X963KDF-SHA224",
    "0.4.0.127.0.7.1.1.5.1.1.3": "ecka-eg-X963KDF-SHA256",
    "0.4.0.127.0.7.1.1.5.1.1.4": "ecka-eg-X963KDF-SHA384",
    "0.4.0.127.0.7.1.1.5.1.1.5": "ecka-eg-X963KDF-SHA512",
}

#: AES key wrap (RFC 3394) OID -> key-encryption-key length in bytes.
KEY_WRAPS: dict[str, int] = {
    "2.16.840.1.101.3.4.1.5": 16,
    "2.16.840.1.101.3.4.1.25": 24,
    "2.16.840.1.101.3.4.1.45": 32,
}
KEY_WRAP_OIDS: dict[int, str] = {size: oid for oid, size in KEY_WRAPS.items()}

# --- content encryption ------------------------------------------------------------------------

Decryptor = Callable[[bytes, bytes | None, bytes | memoryview, bytes | None, bytes], bytes]
"""(content key, DER of the parameters or None, ciphertext, mac or None, additional authenticated
data) -> plaintext."""

Encryptor = Callable[[bytes, bytes], tuple[core.Asn1Value, bytes, bytes | None]]
"""(content key, plaintext) -> (parameters, ciphertext, mac or None)."""


@dataclass(frozen=True)
class ContentCipher:
    """A content-encryption algorithm as it appears in (Auth)EnvelopedData."""

    oid: str
    name: str
    key_size: int
    aead: bool
    decrypt: Decryptor | None = None
    encrypt: Encryptor | None = None


CONTENT_CIPHERS: dict[str, ContentCipher] = {}


def register_content_cipher(cipher: ContentCipher) -> None:
    """Add (or replace) a content-encryption algorithm in the table."""
    CONTENT_CIPHERS[cipher.oid] = cipher


def content_cipher(oid: str) -> ContentCipher:
    cipher = CONTENT_CIPHERS.get(oid)
    if cipher is None:
        raise CmsError("unsupported-algorithm", f"content encryption {oid} is unknown")
    if cipher.decrypt is None:
        raise CmsError(
            "unsupported-algorithm", f"content encryption {cipher.name} ({oid}) is not implemented"
        )
    return cipher


def content_cipher_by_name(name: str) -> ContentCipher:
    for cipher in CONTENT_CIPHERS.values():
        if cipher.name == name and cipher.encrypt is not None:
            return cipher
    raise CmsError("unsupported-algorithm", f"content encryption {name} is unknown")


def _gcm_decrypt(
    key: bytes, params: bytes | None, ciphertext: bytes | memoryview, mac: bytes | None, aad: bytes
) -> bytes:
    if params is None or mac is None:
        raise CmsError("malformed", "AES-GCM without parameters or authentication tag")
    nonce, icv_len = read_gcm_parameters(params)
    if icv_len not in (12, 13, 14, 15, 16) or len(mac) != icv_len:
        raise CmsError("malformed", "AES-GCM tag length does not match its parameters")
    if not 8 <= len(nonce) <= 128:
        raise CmsError("malformed", "AES-GCM nonce length out of range")
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(nonce, mac, min_tag_length=icv_len)
    ).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise CmsError("decryption-failed", "AES-GCM authentication failed") from None


def _gcm_encrypt(key: bytes, plaintext: bytes) -> tuple[core.Asn1Value, bytes, bytes | None]:
    nonce = os.urandom(12)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    params = GcmParameters({"nonce": nonce, "icv_len": 16})
    return params, ciphertext, encryptor.tag


def _cbc_decrypt(
    key: bytes, params: bytes | None, ciphertext: bytes | memoryview, mac: bytes | None, aad: bytes
) -> bytes:
    if params is None:
        raise CmsError("malformed", "AES-CBC without an IV")
    iv = core.OctetString.load(params).native
    if len(iv) != 16 or len(ciphertext) % 16 or not ciphertext:
        raise CmsError("malformed", "AES-CBC IV or ciphertext length is wrong")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CmsError("decryption-failed", "AES-CBC padding is invalid") from None


def _cbc_encrypt(key: bytes, plaintext: bytes) -> tuple[core.Asn1Value, bytes, bytes | None]:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return core.OctetString(iv), encryptor.update(padded) + encryptor.finalize(), None


for _bits, _gcm_oid, _cbc_oid in (
    (128, "2.16.840.1.101.3.4.1.6", "2.16.840.1.101.3.4.1.2"),
    (192, "2.16.840.1.101.3.4.1.26", "2.16.840.1.101.3.4.1.22"),
    (256, "2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.42"),
):
    register_content_cipher(
        ContentCipher(_gcm_oid, f"aes{_bits}-gcm", _bits // 8, True, _gcm_decrypt, _gcm_encrypt)
    )
    register_content_cipher(
        ContentCipher(_cbc_oid, f"aes{_bits}-cbc", _bits // 8, False, _cbc_decrypt, _cbc_encrypt)
    )

# BSI TR-03109 id-aes-CBC-CMAC-128/192/256: known OIDs, construction not public here.
for _bits, _oid in (
    (128, "0.4.0.127.0.7.1.3.1.1.2"),
    (192, "0.4.0.127.0.7.1.3.1.1.3"),
    (256, "0.4.0.127.0.7.1.3.1.1.4"),
):
    register_content_cipher(ContentCipher(_oid, f"bsi-aes{_bits}-cbc-cmac", _bits // 8, True))

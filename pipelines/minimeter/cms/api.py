"""The CMS core's entry points: open, re-sign, and make SMGW-style messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from minimeter.cms._read import EnvelopeParts
from minimeter.cms.envelope import (
    IdentifierKind,
    MatchedRecipient,
    RecipientKey,
    addressed_to,
    decrypt_parts,
    encrypt_envelope,
    read_econtent_envelope,
    strip_envelope,
)
from minimeter.cms.signed import (
    DEFAULT_MAX_SIZE,
    ENVELOPE_TYPES,
    OID_DATA,
    SignerKey,
    VerifiedSignedData,
    make_signed_data,
    read_signed_parts,
    verify_signed_data,
)
from minimeter.cms.trust import TrustStore
from minimeter.errors import CmsError


@dataclass(frozen=True)
class OpenedMessage:
    """A verified and decrypted gateway message."""

    payload: bytes
    signer: x509.Certificate
    signing_time: datetime
    signed_content_type: str
    """eContentType of the SignedData (AuthEnvelopedData or EnvelopedData OID)."""
    payload_content_type: str
    """Content type inside the envelope (normally id-data)."""
    cipher: str
    recipient: MatchedRecipient
    econtent_wrapped: bool
    """True when the eContent was a whole ContentInfo rather than the bare envelope."""


def verify_detached(
    signature: bytes, content: bytes, *, trust: TrustStore, at: datetime
) -> VerifiedSignedData:
    """Verify a detached SignedData (e.g. a manifest's ``.p7s``) over ``content``."""
    return verify_signed_data(read_signed_parts(signature, detached=content), trust=trust, at=at)


def verify_message(
    data: bytes, *, trust: TrustStore, at: datetime, max_size: int = DEFAULT_MAX_SIZE
) -> VerifiedSignedData:
    """Verify the gateway's signature; the eContent must be an envelope (fail closed)."""
    verified = verify_signed_data(read_signed_parts(data, max_size=max_size), trust=trust, at=at)
    if verified.econtent_type not in ENVELOPE_TYPES:
        raise CmsError(
            "not-encrypted", f"signed content {verified.econtent_type} is not an encrypted envelope"
        )
    return verified


def _decrypt(
    verified: VerifiedSignedData,
    recipient_key: RecipientKey,
    recipient_cert: x509.Certificate,
    envelope: tuple[EnvelopeParts, bool] | None = None,
) -> OpenedMessage:
    """Decrypt a verified message; ``envelope`` is its envelope when already read."""
    parts, wrapped = envelope or read_econtent_envelope(verified.econtent, verified.econtent_type)
    decrypted = decrypt_parts(
        parts,
        verified.econtent_type,
        recipient_key=recipient_key,
        recipient_cert=recipient_cert,
    )
    return OpenedMessage(
        payload=decrypted.content,
        signer=verified.signer,
        signing_time=verified.signing_time,
        signed_content_type=verified.econtent_type,
        payload_content_type=decrypted.content_type,
        cipher=decrypted.cipher,
        recipient=decrypted.recipient,
        econtent_wrapped=wrapped,
    )


def open_message(
    data: bytes,
    *,
    recipient_key: RecipientKey,
    recipient_cert: x509.Certificate,
    trust: TrustStore,
    at: datetime,
    max_size: int = DEFAULT_MAX_SIZE,
) -> OpenedMessage:
    """Verify a gateway's SignedData against ``trust`` and decrypt its envelope for us.

    Raises only :class:`~minimeter.errors.CmsError`.
    """
    verified = verify_message(data, trust=trust, at=at, max_size=max_size)
    return _decrypt(verified, recipient_key, recipient_cert)


def _resign(
    verified: VerifiedSignedData,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    at: datetime | None,
) -> bytes:
    return _resign_stripped(verified, signer_key, signer_cert, chain, at)[0]


def _resign_stripped(
    verified: VerifiedSignedData,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    at: datetime | None,
) -> tuple[bytes, tuple[str, ...]]:
    """The new SignedData, and what relay hygiene removed from the envelope: originatorInfo and
    unprotected attributes go (they can name the gateway); nothing else of the eContent
    changes, and an envelope without them stays byte-identical."""
    econtent, stripped = strip_envelope(verified.econtent, verified.econtent_type)
    return make_signed_data(
        econtent,
        verified.econtent_type,
        signer_key=signer_key,
        signer_cert=signer_cert,
        chain=tuple(chain),
        at=at,
        known_digests=() if stripped else verified.econtent_digests,
    ), stripped


def resign(
    data: bytes,
    *,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    trust: TrustStore,
    at: datetime,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """Replace the gateway's signature by ours (TR-03109 pseudonymisation).

    The gateway's signature is verified first (no decryption). The result is a new SignedData
    with the same eContentType and byte-identical eContent, one SignerInfo by ``signer_key``,
    and only ``signer_cert`` + ``chain`` as certificates: nothing of the gateway survives.
    """
    verified = verify_message(data, trust=trust, at=at, max_size=max_size)
    return _resign(verified, signer_key, signer_cert, chain, at)


def open_and_resign(
    data: bytes,
    *,
    recipient_key: RecipientKey,
    recipient_cert: x509.Certificate,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    trust: TrustStore,
    at: datetime,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[OpenedMessage, bytes]:
    """Both of the above with one signature verification."""
    verified = verify_message(data, trust=trust, at=at, max_size=max_size)
    opened = _decrypt(verified, recipient_key, recipient_cert)
    return opened, _resign(verified, signer_key, signer_cert, chain, at)


def seal_message(
    payload: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    at: datetime | None = None,
    cipher: str = "aes128-gcm",
    kdf_hash: str = "sha256",
    identifier: IdentifierKind = "issuer-and-serial",
) -> bytes:
    """Encrypt ``payload`` to ``recipients`` and sign the bare envelope: an SMGW-shaped message."""
    content_type, envelope = encrypt_envelope(
        payload, recipients, cipher=cipher, kdf_hash=kdf_hash, identifier=identifier
    )
    return make_signed_data(
        envelope,
        content_type,
        signer_key=signer_key,
        signer_cert=signer_cert,
        chain=tuple(chain),
        at=at,
    )


@dataclass(frozen=True)
class Relayed:
    """A message for a forward recipient: verified, re-signed, never decrypted."""

    recipient: str
    message: bytes
    signing_time: datetime
    stripped: tuple[str, ...] = ()
    """Envelope fields relay hygiene removed (``originator_info``, unprotected attributes)."""


@dataclass(frozen=True)
class HanExport:
    """A gateway's HAN export: SignedData over the plain payload (id-data), verified; no
    encryption (the gateway handed it to the consumer)."""

    payload: bytes
    signer: x509.Certificate
    signing_time: datetime


def open_han_export(
    data: bytes, *, trust: TrustStore, at: datetime, max_size: int = DEFAULT_MAX_SIZE
) -> HanExport:
    """Verify a HAN export exactly like a WAN message's signature; its content must be id-data."""
    verified = verify_signed_data(read_signed_parts(data, max_size=max_size), trust=trust, at=at)
    if verified.econtent_type != OID_DATA:
        raise CmsError(
            "not-signed", f"signed content {verified.econtent_type} is not a HAN export (id-data)"
        )
    return HanExport(bytes(verified.econtent), verified.signer, verified.signing_time)


def open_or_relay(
    data: bytes,
    *,
    recipient_key: RecipientKey,
    recipient_cert: x509.Certificate,
    forward: Sequence[tuple[str, x509.Certificate]],
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    trust: TrustStore,
    at: datetime,
    max_size: int = DEFAULT_MAX_SIZE,
    accept_han_export: bool = False,
) -> OpenedMessage | Relayed | HanExport:
    """The data hub's routing: a message for us is opened; one for a forward recipient is
    re-signed and relayed unread; anything else is ``not-a-recipient``. With
    ``accept_han_export``, a signed-only message over id-data is a ``HanExport`` (verified like
    the others); without it, it is ``not-encrypted``."""
    verified = verify_signed_data(read_signed_parts(data, max_size=max_size), trust=trust, at=at)
    if accept_han_export and verified.econtent_type == OID_DATA:
        return HanExport(bytes(verified.econtent), verified.signer, verified.signing_time)
    if verified.econtent_type not in ENVELOPE_TYPES:
        raise CmsError(
            "not-encrypted", f"signed content {verified.econtent_type} is not an encrypted envelope"
        )
    envelope = read_econtent_envelope(verified.econtent, verified.econtent_type)
    certs = [recipient_cert, *(cert for _, cert in forward)]
    hits = addressed_to(envelope[0], certs)
    if 0 in hits or not hits:  # _decrypt raises not-a-recipient if no entry names us
        return _decrypt(verified, recipient_key, recipient_cert, envelope)
    recipient_id = forward[hits[0] - 1][0]
    message, stripped = _resign_stripped(verified, signer_key, signer_cert, chain, at)
    return Relayed(recipient_id, message, verified.signing_time, stripped)

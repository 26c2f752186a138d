"""The CMS core's entry points: open, re-sign, and make SMGW-style messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from minimeter.cms._read import EnvelopeParts
from minimeter.cms.envelope import (
    EnvelopeRecipient,
    IdentifierKind,
    MatchedRecipient,
    RecipientIdentity,
    RecipientKey,
    addressed_to,
    encrypt_envelope,
    read_econtent_envelope,
    strip_envelope,
)
from minimeter.cms.signed import (
    DEFAULT_MAX_SIZE,
    ENVELOPE_TYPES,
    OID_DATA,
    CmsSigner,
    SignerKey,
    VerifiedSignedData,
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
    recipient: EnvelopeRecipient,
    envelope: tuple[EnvelopeParts, bool] | None = None,
) -> OpenedMessage:
    """Decrypt a verified message; ``envelope`` is its envelope when already read."""
    parts, wrapped = envelope or read_econtent_envelope(verified.econtent, verified.econtent_type)
    decrypted = recipient.decrypt(parts, verified.econtent_type)
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
    return _decrypt(verified, EnvelopeRecipient(recipient_key, recipient_cert))


def _resign(verified: VerifiedSignedData, signer: CmsSigner, at: datetime | None) -> bytes:
    return _resign_stripped(verified, signer, at)[0]


def _resign_stripped(
    verified: VerifiedSignedData, signer: CmsSigner, at: datetime | None
) -> tuple[bytes, tuple[str, ...]]:
    """The new SignedData, and what relay hygiene removed from the envelope: originatorInfo and
    unprotected attributes go (they can name the gateway); nothing else of the eContent
    changes, and an envelope without them stays byte-identical."""
    econtent, stripped = strip_envelope(verified.econtent, verified.econtent_type)
    return signer.sign(
        econtent,
        verified.econtent_type,
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
    return _resign(verified, CmsSigner(signer_key, signer_cert, chain), at)


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
    opened = _decrypt(verified, EnvelopeRecipient(recipient_key, recipient_cert))
    return opened, _resign(verified, CmsSigner(signer_key, signer_cert, chain), at)


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
    return CmsSigner(signer_key, signer_cert, chain).sign(envelope, content_type, at=at)


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
    """``Hub.open_or_relay`` for one message (prepare a ``Hub`` to route many). The signer is
    prepared first: a signer key that does not match its certificate is refused even for a
    message addressed to us."""
    hub = Hub(
        recipient=EnvelopeRecipient(recipient_key, recipient_cert),
        signer=CmsSigner(signer_key, signer_cert, chain),
        trust=trust,
        forward=forward,
        max_size=max_size,
        accept_han_export=accept_han_export,
    )
    return hub.open_or_relay(data, at=at)


class Hub:
    """The data hub's CMS side, prepared once (e.g. in ``DoFn.setup()``): our envelope key and
    certificate, the pseudonymiser's signer, the trust store, and the forward recipients'
    certificates. Each object keeps the caches of what it owns (the trust store its checked
    links, the recipient its identifier answers and key-agreement checks, the signer its DER
    template); nothing is remembered process-wide. Time is given per call (``at=``). A hub is
    not shared between threads (Beam calls one DoFn instance from one thread at a time)."""

    def __init__(
        self,
        *,
        recipient: EnvelopeRecipient,
        signer: CmsSigner,
        trust: TrustStore,
        forward: Sequence[tuple[str, x509.Certificate]] = (),
        max_size: int = DEFAULT_MAX_SIZE,
        accept_han_export: bool = False,
    ) -> None:
        self.recipient = recipient
        self.signer = signer
        self.trust = trust
        self._forward_ids = tuple(rid for rid, _ in forward)
        self._addressees = (recipient.identity, *(RecipientIdentity(c) for _, c in forward))
        self.max_size = max_size
        self.accept_han_export = accept_han_export

    def _verify_signature(self, data: bytes, *, at: datetime) -> VerifiedSignedData:
        """The gateway's signature and path only (any eContent type)."""
        return verify_signed_data(
            read_signed_parts(data, max_size=self.max_size), trust=self.trust, at=at
        )

    def open_or_relay(self, data: bytes, *, at: datetime) -> OpenedMessage | Relayed | HanExport:
        """The data hub's routing: a message for us is opened; one for a forward recipient is
        re-signed and relayed unread; anything else is ``not-a-recipient``. With
        ``accept_han_export``, a signed-only message over id-data is a ``HanExport`` (verified
        like the others); without it, it is ``not-encrypted``."""
        verified = self._verify_signature(data, at=at)
        if self.accept_han_export and verified.econtent_type == OID_DATA:
            return HanExport(bytes(verified.econtent), verified.signer, verified.signing_time)
        if verified.econtent_type not in ENVELOPE_TYPES:
            raise CmsError(
                "not-encrypted",
                f"signed content {verified.econtent_type} is not an encrypted envelope",
            )
        envelope = read_econtent_envelope(verified.econtent, verified.econtent_type)
        hits = addressed_to(envelope[0], self._addressees)
        if 0 in hits or not hits:  # _decrypt raises not-a-recipient if no entry names us
            return _decrypt(verified, self.recipient, envelope)
        recipient_id = self._forward_ids[hits[0] - 1]
        message, stripped = _resign_stripped(verified, self.signer, at)
        return Relayed(recipient_id, message, verified.signing_time, stripped)

    def open(self, data: bytes, *, at: datetime) -> OpenedMessage:
        """Verify a gateway's message and decrypt its envelope for us."""
        verified = verify_message(data, trust=self.trust, at=at, max_size=self.max_size)
        return _decrypt(verified, self.recipient)

    def resign(self, data: bytes, *, at: datetime) -> bytes:
        """Verify a gateway's message and replace its signature by ours (no decryption)."""
        verified = verify_message(data, trust=self.trust, at=at, max_size=self.max_size)
        return _resign(verified, self.signer, at)

    def open_and_resign(self, data: bytes, *, at: datetime) -> tuple[OpenedMessage, bytes]:
        """Verify once, decrypt for us and re-sign."""
        verified = verify_message(data, trust=self.trust, at=at, max_size=self.max_size)
        return _decrypt(verified, self.recipient), _resign(verified, self.signer, at)

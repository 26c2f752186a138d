"""CMS core: open, verify, decrypt and re-sign Smart Meter Gateway messages.

Plain Python on asn1crypto (structures) and pyca/cryptography (every primitive); no Beam.
"""

from __future__ import annotations

from minimeter.cms.algorithms import ContentCipher, register_content_cipher
from minimeter.cms.api import (
    HanExport,
    Hub,
    OpenedMessage,
    Relayed,
    open_and_resign,
    open_han_export,
    open_message,
    open_or_relay,
    resign,
    seal_message,
    verify_detached,
    verify_message,
)
from minimeter.cms.envelope import EnvelopeRecipient, MatchedRecipient, encrypt_envelope
from minimeter.cms.signed import DEFAULT_MAX_SIZE, CmsSigner, make_signed_data
from minimeter.cms.trust import TrustStore, load_certificates

__all__ = [
    "DEFAULT_MAX_SIZE",
    "CmsSigner",
    "ContentCipher",
    "EnvelopeRecipient",
    "HanExport",
    "Hub",
    "MatchedRecipient",
    "OpenedMessage",
    "Relayed",
    "TrustStore",
    "encrypt_envelope",
    "load_certificates",
    "make_signed_data",
    "open_and_resign",
    "open_han_export",
    "open_message",
    "open_or_relay",
    "register_content_cipher",
    "resign",
    "seal_message",
    "verify_detached",
    "verify_message",
]

"""EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083): open and make.

Recipients: KeyAgreeRecipientInfo with ephemeral-static ECDH (RFC 5753 schemes, X9.63 KDF,
AES key wrap) and KeyTransRecipientInfo with RSA PKCS#1 v1.5 or RSAES-OAEP. Every primitive is
pyca/cryptography's; every structure is asn1crypto's or declared in ``_asn1``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, cms, core, keys, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from minimeter.cms import algorithms as alg
from minimeter.cms._asn1 import (
    CONTEXT,
    TAG_INTEGER,
    TAG_OID,
    TAG_SEQUENCE,
    UNIVERSAL,
    EccCmsSharedInfo,
    Octets,
    child_tags,
    first_child_tag,
    outer_header,
    same_name,
)
from minimeter.cms._read import (
    OID_AUTH_ENVELOPED_DATA,
    OID_ENVELOPED_DATA,
    EnvelopeParts,
    KariParts,
    KtriParts,
    RecipientParts,
    read_envelope,
    read_envelope_fast,
)
from minimeter.cms.signed import OID_DATA
from minimeter.errors import CmsError

RecipientKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
RecipientKind = Literal["kari", "ktri"]
IdentifierKind = Literal["issuer-and-serial", "subject-key-identifier"]


@dataclass(frozen=True)
class MatchedRecipient:
    """Which recipient entry of the envelope was ours."""

    index: int
    """Position of the RecipientInfo in recipientInfos."""
    kind: RecipientKind
    identifier: IdentifierKind
    key_index: int = 0
    """Position among a KeyAgreeRecipientInfo's recipientEncryptedKeys."""


@dataclass(frozen=True)
class DecryptedContent:
    content: bytes
    content_type: str
    cipher: str
    recipient: MatchedRecipient


_ANSWERS_LIMIT = 1024
"""Recipient identifiers a prepared object remembers answers for (then it starts afresh)."""


class RecipientIdentity:
    """A certificate as recipient entries name it (issuer and serial, subject key identifier),
    prepared once, with the answers for the identifiers seen so far: a fleet's messages name
    the same few certificates over and over."""

    def __init__(self, cert: x509.Certificate) -> None:
        a_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
        self.cert = cert
        self.issuer: asn1_x509.Name = a_cert.issuer
        self.serial: int = a_cert.serial_number
        self.ski: bytes | None = a_cert.key_identifier
        self._answers: dict[tuple[bytes, bool], IdentifierKind | None] = {}

    def named_by(self, rid_der: bytes, *, kari: bool) -> IdentifierKind | None:
        """Whether a recipient identifier names this certificate, and how."""
        key = (rid_der, kari)
        if key in self._answers:
            return self._answers[key]
        answer = self._compare(rid_der, kari=kari)
        if len(rid_der) > 1024:  # no real identifier is this long: not worth keeping
            return answer
        if len(self._answers) >= _ANSWERS_LIMIT:
            self._answers.clear()
        self._answers[key] = answer
        return answer

    def _compare(self, rid_der: bytes, *, kari: bool) -> IdentifierKind | None:
        try:
            spec = cms.KeyAgreementRecipientIdentifier if kari else cms.RecipientIdentifier
            rid = spec.load(rid_der)
            if rid.name == "issuer_and_serial_number":
                chosen = rid.chosen
                if chosen["serial_number"].native == self.serial and same_name(
                    chosen["issuer"], self.issuer
                ):
                    return "issuer-and-serial"
                return None
            ski = rid.chosen["subject_key_identifier"].native if kari else rid.chosen.native
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise CmsError("malformed", "a RecipientInfo is invalid") from None
        if self.ski is not None and ski == self.ski:
            return "subject-key-identifier"
        return None


_Agreement = tuple[ec.EllipticCurve, hashes.HashAlgorithm, int]


class EnvelopeRecipient:
    """Our key and certificate, prepared to open envelopes: the certificate's identity and, per
    key-agreement algorithm set seen, the checked curve, KDF hash and KEK size (every message
    of a fleet repeats them). Build it once (e.g. in ``DoFn.setup()``) and reuse it."""

    def __init__(self, key: RecipientKey, cert: x509.Certificate) -> None:
        self.key = key
        self.identity = RecipientIdentity(cert)
        self._agreements: dict[tuple[object, ...], _Agreement] = {}

    @property
    def cert(self) -> x509.Certificate:
        return self.identity.cert

    def agreement(self, kari: KariParts) -> _Agreement:
        key = (kari.scheme, kari.wrap, kari.originator, kari.key_algorithm, kari.curve)
        found = self._agreements.get(key)
        if found is None:
            found = _agreement(kari, self.key)
            if len(self._agreements) >= _ANSWERS_LIMIT:
                self._agreements.clear()
            self._agreements[key] = found
        return found

    def decrypt(self, parts: EnvelopeParts, envelope_type: str) -> DecryptedContent:
        """Decrypt an envelope already read into parts."""
        return decrypt_parts(parts, envelope_type, recipient=self)


def unwrap_envelope(econtent: Octets, econtent_type: str) -> tuple[Octets, bool]:
    """The bare (Auth)EnvelopedData DER inside an eContent, and whether it was ContentInfo-wrapped.

    RFC 5652 puts the bare structure in eContent; ``openssl cms -sign`` of an encrypted file puts
    the whole ContentInfo there. The two are told apart by the first element of the outer
    SEQUENCE: a version INTEGER (bare) or a content-type OID (ContentInfo).
    """
    try:
        class_, _method, tag, contents = outer_header(econtent)
        if class_ != UNIVERSAL or tag != TAG_SEQUENCE:
            raise CmsError("malformed", "eContent is not a SEQUENCE")
        child_class, child_tag = first_child_tag(contents)
    except CmsError:
        raise
    except (ValueError, TypeError):
        raise CmsError("malformed", "eContent is not DER") from None
    if child_class == UNIVERSAL and child_tag == TAG_INTEGER:
        return econtent, False
    if child_class == UNIVERSAL and child_tag == TAG_OID:
        try:
            info = cms.ContentInfo.load(bytes(econtent), strict=True)
            inner_type = info["content_type"].dotted
            inner = bytes(contents)
            explicit = inner[parser.peek(inner) :]
            ctx_class, _m, ctx_tag, bare = outer_header(explicit)
            if ctx_class != CONTEXT or ctx_tag != 0 or len(explicit) != parser.peek(explicit):
                raise CmsError("malformed", "wrapped envelope has no [0] content")
        except CmsError:
            raise
        except (ValueError, TypeError, KeyError):
            raise CmsError("malformed", "wrapped envelope ContentInfo is invalid") from None
        if inner_type != econtent_type:
            raise CmsError("malformed", "wrapped envelope's content type differs from eContentType")
        return bare, True
    raise CmsError("malformed", "eContent is neither an envelope nor a ContentInfo")


def decrypt_parts(
    parts: EnvelopeParts,
    envelope_type: str,
    *,
    recipient: EnvelopeRecipient,
) -> DecryptedContent:
    """Decrypt an envelope already read into parts."""
    if parts.ciphertext is None:
        raise CmsError("malformed", "envelope has no encrypted content (detached)")
    cipher = alg.content_cipher(parts.cipher)
    if cipher.aead != (envelope_type == OID_AUTH_ENVELOPED_DATA):
        raise CmsError(
            "unsupported-algorithm",
            f"{cipher.name} cannot be used in this envelope type",
        )
    matched, cek = _recover_content_key(parts.recipients, recipient)
    if len(cek) != cipher.key_size:
        raise CmsError("decryption-failed", "content key length does not fit the cipher")
    assert cipher.decrypt is not None  # content_cipher() guarantees it
    try:
        plaintext = cipher.decrypt(cek, parts.cipher_params, parts.ciphertext, parts.mac, parts.aad)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", f"{cipher.name} parameters are invalid") from None
    return DecryptedContent(plaintext, parts.content_type, cipher.name, matched)


def read_econtent_envelope(econtent: Octets, econtent_type: str) -> tuple[EnvelopeParts, bool]:
    """The envelope an eContent holds, read into parts, and whether it was ContentInfo-wrapped.

    The usual eContent is the bare envelope, which the fast reader takes as it is (its first
    field is the version INTEGER, so ``unwrap_envelope`` would hand it back unchanged).
    """
    parts = read_envelope_fast(econtent, econtent_type)
    if parts is not None:
        return parts, False
    envelope, wrapped = unwrap_envelope(econtent, econtent_type)
    return read_envelope_fast(envelope, econtent_type) or read_envelope(
        envelope, econtent_type
    ), wrapped


_REMOVABLE = {
    OID_AUTH_ENVELOPED_DATA: ("originator_info", "unauth_attrs"),
    OID_ENVELOPED_DATA: ("originator_info", "unprotected_attrs"),
}
_REMOVABLE_TAGS = {  # their [n] IMPLICIT context tags among the envelope's top-level fields
    OID_AUTH_ENVELOPED_DATA: frozenset({0, 2}),
    OID_ENVELOPED_DATA: frozenset({0, 1}),
}


def strip_envelope(econtent: Octets, econtent_type: str) -> tuple[bytes, tuple[str, ...]]:
    """The eContent without the envelope's originatorInfo (certificates, CRLs) and unprotected
    attributes, and the names of the fields removed. Neither is covered by the envelope's MAC
    or needed to decrypt; both can carry the gateway's identity. An envelope without them is
    returned byte-identical; otherwise every other field keeps its encoding. An envelope that
    does not read as one is ``malformed``: nothing broken is re-signed."""
    if econtent_type not in _REMOVABLE:
        return bytes(econtent), ()
    read_econtent_envelope(econtent, econtent_type)  # fail closed (the fast reader: ~0.1 ms)
    bare, wrapped = unwrap_envelope(econtent, econtent_type)
    try:  # the usual case, nothing to strip, told from the top-level tags (no parse of the rest)
        tags = _REMOVABLE_TAGS[econtent_type]
        if not any(c == CONTEXT and t in tags for c, t in child_tags(outer_header(bare)[3])):
            return bytes(econtent), ()
    except ValueError:
        pass  # asn1crypto's classes below refuse it as malformed
    spec = cms.AuthEnvelopedData if econtent_type == OID_AUTH_ENVELOPED_DATA else cms.EnvelopedData
    try:
        env = spec.load(bytes(bare))
        removable = _REMOVABLE[econtent_type]
        present = tuple(f for f in removable if not isinstance(env[f], core.Void))
        if not present:
            return bytes(econtent), ()
        kept = spec(
            {
                name: env[name]
                for name, *_ in spec._fields
                if name not in removable and not isinstance(env[name], core.Void)
            }
        )
        der = bytes(kept.dump())
    except (ValueError, TypeError, KeyError):
        raise CmsError("malformed", "the envelope cannot be read to strip it") from None
    if not wrapped:
        return der, present
    name = (
        "authenticated_enveloped_data"
        if econtent_type == OID_AUTH_ENVELOPED_DATA
        else "enveloped_data"
    )
    info = cms.ContentInfo({"content_type": name, "content": spec.load(der)})
    return bytes(info.dump()), present


def addressed_to(parts: EnvelopeParts, identities: Sequence[RecipientIdentity]) -> list[int]:
    """Indices of ``identities`` that some recipient entry of the envelope names (no
    decryption)."""
    rids: list[tuple[bytes, bool]] = []
    for recipient in parts.recipients:
        if isinstance(recipient, KariParts):
            rids += [(rid, True) for rid, _key in recipient.keys]
        elif isinstance(recipient, KtriParts):
            rids.append((recipient.rid, False))
    return [
        i
        for i, identity in enumerate(identities)
        if any(identity.named_by(r, kari=k) for r, k in rids)
    ]


def _recover_content_key(
    recipients: Sequence[RecipientParts], us: EnvelopeRecipient
) -> tuple[MatchedRecipient, bytes]:
    for index, recipient in enumerate(recipients):
        if isinstance(recipient, KariParts):
            for key_index, (rid, wrapped) in enumerate(recipient.keys):
                ident = us.identity.named_by(rid, kari=True)
                if ident is not None:
                    matched = MatchedRecipient(index, "kari", ident, key_index)
                    return matched, _kari_unwrap(recipient, wrapped, us)
        elif isinstance(recipient, KtriParts):
            ident = us.identity.named_by(recipient.rid, kari=False)
            if ident is not None:
                return MatchedRecipient(index, "ktri", ident), _ktri_decrypt(recipient, us.key)
    raise CmsError("not-a-recipient", "no recipient entry matches our certificate")


@functools.lru_cache(maxsize=64)
def _key_wrap(wrap_der: bytes) -> tuple[str, int | None]:
    """(OID, key-encryption-key size or None when unsupported) of a key-wrap algorithm."""
    try:
        wrap_oid = cms.KeyEncryptionAlgorithm.load(wrap_der)["algorithm"].dotted
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", "the key-wrap algorithm is invalid") from None
    return wrap_oid, alg.KEY_WRAPS.get(wrap_oid)


@functools.lru_cache(maxsize=64)
def _curve_name(oid: str) -> str | None:
    try:
        return ec.get_curve_for_oid(x509.ObjectIdentifier(oid))().name
    except (LookupError, ValueError):
        return None


def _kari_unwrap(kari: KariParts, wrapped: bytes, us: EnvelopeRecipient) -> bytes:
    curve, kdf_hash, kek_size = us.agreement(kari)
    key = us.key
    wrap, point = kari.wrap, kari.point
    if wrap is None or point is None or not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CmsError("malformed", "key agreement entry is incomplete")  # _agreement refuses these
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        shared = key.exchange(ec.ECDH(), peer)
    except (ValueError, UnsupportedAlgorithm):
        raise CmsError(
            "decryption-failed", "originator public key is not a point on our curve"
        ) from None
    kek = _derive_kek(shared, kdf_hash, wrap, kek_size, kari.ukm)
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise CmsError("decryption-failed", "AES key unwrap failed") from None


def _agreement(kari: KariParts, key: RecipientKey) -> _Agreement:
    """Our curve, the KDF hash and the KEK size for a key agreement entry, once its algorithms
    are checked (``EnvelopeRecipient.agreement`` remembers them per algorithm set)."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CmsError("decryption-failed", "key agreement entry but our key is not an EC key")
    kdf_hash = alg.ECDH_SCHEMES.get(kari.scheme)
    if kdf_hash is None:
        name = alg.KNOWN_UNSUPPORTED_KEY_AGREEMENT.get(kari.scheme, kari.scheme)
        raise CmsError("unsupported-algorithm", f"key agreement {name} is not supported")
    if kari.wrap is None:
        raise CmsError("malformed", "key agreement without a key-wrap algorithm")
    wrap_oid, kek_size = _key_wrap(kari.wrap)
    if kek_size is None:
        raise CmsError("unsupported-algorithm", f"key wrap {wrap_oid} is not supported")
    if kari.originator != "originator_key":
        raise CmsError("unsupported-algorithm", "static-static ECDH (originator certificate)")
    if kari.key_algorithm != alg.OID_EC_PUBLIC_KEY or kari.point is None:
        raise CmsError("unsupported-algorithm", "originator key is not an EC public key")
    curve = key.curve
    if kari.curve is not None:
        named = _curve_name(kari.curve)
        if named is None:
            raise CmsError("unsupported-algorithm", "originator key curve is unknown")
        if named != curve.name:
            raise CmsError("decryption-failed", "originator key is on another curve than ours")
    return curve, kdf_hash(), kek_size


def _derive_kek(
    shared: bytes, kdf_hash: hashes.HashAlgorithm, wrap_der: bytes, kek_size: int, ukm: bytes | None
) -> bytes:
    shared_info = _shared_info(wrap_der, kek_size, ukm)
    return X963KDF(algorithm=kdf_hash, length=kek_size, sharedinfo=shared_info).derive(shared)


@functools.lru_cache(maxsize=256)
def _shared_info(wrap_der: bytes, kek_size: int, ukm: bytes | None) -> bytes:
    """DER of the ECC-CMS-SharedInfo (RFC 5753 7.2) the KDF takes."""
    info = {"key_info": core.Any.load(wrap_der), "supp_pub_info": (kek_size * 8).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return bytes(EccCmsSharedInfo(info).dump())


def _ktri_decrypt(ktri: KtriParts, key: RecipientKey) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CmsError("decryption-failed", "key transport entry but our key is not an RSA key")
    try:
        kea = cms.KeyEncryptionAlgorithm.load(ktri.algorithm)
        oid = kea["algorithm"].dotted
        if oid == alg.OID_RSAES_OAEP:
            params = kea["parameters"]
            hash_oid = params["hash_algorithm"]["algorithm"].dotted
            mgf = params["mask_gen_algorithm"]
            mgf_oid = mgf["algorithm"].dotted
            mgf_hash_oid = mgf["parameters"]["algorithm"].dotted
            label = params["p_source_algorithm"]["parameters"].native or None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise CmsError("malformed", "a RecipientInfo is invalid") from None
    wrapped = ktri.encrypted_key
    if oid == alg.OID_RSA_ENCRYPTION:
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif oid == alg.OID_RSAES_OAEP:
        if mgf_oid != "1.2.840.113549.1.1.8":
            raise CmsError("unsupported-algorithm", "RSAES-OAEP mask generation is not MGF1")
        if hash_oid not in alg.DIGESTS or mgf_hash_oid not in alg.DIGESTS:
            raise CmsError("unsupported-algorithm", "RSAES-OAEP digest is not supported")
        pad = padding.OAEP(
            mgf=padding.MGF1(alg.DIGESTS[mgf_hash_oid]()),
            algorithm=alg.DIGESTS[hash_oid](),
            label=label,
        )
    else:
        raise CmsError("unsupported-algorithm", f"key transport {oid} is not supported")
    try:
        return key.decrypt(wrapped, pad)
    except ValueError:
        raise CmsError("decryption-failed", "RSA key transport decryption failed") from None


# --- making envelopes ----------------------------------------------------------------------------


def encrypt_envelope(
    plaintext: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: str = "aes128-gcm",
    kdf_hash: str = "sha256",
    key_wrap_bits: int | None = None,
    identifier: IdentifierKind = "issuer-and-serial",
    oaep: bool = False,
) -> tuple[str, bytes]:
    """Encrypt to each recipient certificate; returns (content type OID, bare envelope DER).

    AEAD ciphers make an AuthEnvelopedData, others an EnvelopedData. EC recipients get a
    KeyAgreeRecipientInfo (ephemeral-static ECDH, X9.63 KDF with ``kdf_hash``, AES key wrap of the
    content key's size unless ``key_wrap_bits``), RSA recipients a KeyTransRecipientInfo.
    """
    spec = alg.content_cipher_by_name(cipher)
    assert spec.encrypt is not None
    cek = os.urandom(spec.key_size)
    params, ciphertext, mac = spec.encrypt(cek, plaintext)
    infos = [
        _recipient_info(cert, cek, kdf_hash, key_wrap_bits or spec.key_size * 8, identifier, oaep)
        for cert in recipients
    ]
    eci = {
        "content_type": OID_DATA,
        "content_encryption_algorithm": {"algorithm": spec.oid, "parameters": params},
        "encrypted_content": ciphertext,
    }
    if spec.aead:
        env = cms.AuthEnvelopedData(
            {
                "version": "v0",
                "recipient_infos": infos,
                "auth_encrypted_content_info": eci,
                "mac": mac,
            }
        )
        return OID_AUTH_ENVELOPED_DATA, bytes(env.dump())
    version = "v2" if any(i.name == "kari" for i in infos) else "v0"
    env = cms.EnvelopedData(
        {"version": version, "recipient_infos": infos, "encrypted_content_info": eci}
    )
    return OID_ENVELOPED_DATA, bytes(env.dump())


def _rid(
    cert: x509.Certificate, identifier: IdentifierKind, *, kari: bool
) -> cms.RecipientIdentifier:
    me = RecipientIdentity(cert)
    if identifier == "subject-key-identifier":
        if me.ski is None:
            raise CmsError("malformed", "recipient certificate has no subjectKeyIdentifier")
        if kari:
            return cms.KeyAgreementRecipientIdentifier(
                {"r_key_id": {"subject_key_identifier": me.ski}}
            )
        return cms.RecipientIdentifier({"subject_key_identifier": me.ski})
    ias = {"issuer": me.issuer, "serial_number": me.serial}
    if kari:
        return cms.KeyAgreementRecipientIdentifier({"issuer_and_serial_number": ias})
    return cms.RecipientIdentifier({"issuer_and_serial_number": ias})


def _recipient_info(
    cert: x509.Certificate,
    cek: bytes,
    kdf_hash: str,
    wrap_bits: int,
    identifier: IdentifierKind,
    oaep: bool,
) -> cms.RecipientInfo:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        ephemeral = ec.generate_private_key(public.curve)
        shared = ephemeral.exchange(ec.ECDH(), public)
        wrap = cms.KeyEncryptionAlgorithm({"algorithm": alg.KEY_WRAP_OIDS[wrap_bits // 8]})
        wrap_der = wrap.dump()
        hash_cls = alg.DIGESTS[alg.DIGEST_OIDS[kdf_hash]]
        kek = _derive_kek(shared, hash_cls(), wrap_der, wrap_bits // 8, None)
        point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        kari = {
            "version": "v3",
            "originator": cms.OriginatorIdentifierOrKey(
                {
                    "originator_key": keys.PublicKeyInfo(
                        {"algorithm": {"algorithm": "ec"}, "public_key": point}
                    )
                }
            ),
            "key_encryption_algorithm": {
                "algorithm": alg.ECDH_SCHEME_OIDS[kdf_hash],
                "parameters": core.Any.load(wrap_der),
            },
            "recipient_encrypted_keys": [
                {"rid": _rid(cert, identifier, kari=True), "encrypted_key": aes_key_wrap(kek, cek)}
            ],
        }
        return cms.RecipientInfo({"kari": kari})
    if isinstance(public, rsa.RSAPublicKey):
        if oaep:
            pad: padding.AsymmetricPadding = padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
            )
            kea = {
                "algorithm": alg.OID_RSAES_OAEP,
                "parameters": algos.RSAESOAEPParams(
                    {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "mask_gen_algorithm": {
                            "algorithm": "mgf1",
                            "parameters": {"algorithm": "sha256"},
                        },
                    }
                ),
            }
        else:
            pad = padding.PKCS1v15()
            kea = {"algorithm": alg.OID_RSA_ENCRYPTION}
        ktri = {
            "version": "v2" if identifier == "subject-key-identifier" else "v0",
            "rid": _rid(cert, identifier, kari=False),
            "key_encryption_algorithm": kea,
            "encrypted_key": public.encrypt(cek, pad),
        }
        return cms.RecipientInfo({"ktri": ktri})
    raise CmsError("unsupported-algorithm", "recipient key type is not supported")

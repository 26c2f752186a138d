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
    as_set_of,
    first_child_tag,
    outer_header,
    present,
    same_name,
)
from minimeter.cms.signed import OID_AUTH_ENVELOPED_DATA, OID_DATA, OID_ENVELOPED_DATA
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


@dataclass(frozen=True)
class _OurIdentity:
    issuer: asn1_x509.Name
    serial: int
    ski: bytes | None


@functools.lru_cache(maxsize=64)
def _identity(cert: x509.Certificate) -> _OurIdentity:
    a_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    return _OurIdentity(a_cert.issuer, a_cert.serial_number, a_cert.key_identifier)


def unwrap_envelope(econtent: bytes, econtent_type: str) -> tuple[bytes, bool]:
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
            info = cms.ContentInfo.load(econtent, strict=True)
            inner_type = info["content_type"].dotted
            explicit = contents[parser.peek(contents) :]
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


def decrypt_envelope(
    envelope_der: bytes,
    envelope_type: str,
    *,
    recipient_key: RecipientKey,
    recipient_cert: x509.Certificate,
) -> DecryptedContent:
    """Decrypt a bare EnvelopedData / AuthEnvelopedData for our certificate and key."""
    try:
        if envelope_type == OID_AUTH_ENVELOPED_DATA:
            env: core.Sequence = cms.AuthEnvelopedData.load(envelope_der, strict=True)
            eci = env["auth_encrypted_content_info"]
            mac: bytes | None = env["mac"].native
            auth_attrs = env["auth_attrs"]
            aad = as_set_of(auth_attrs.contents) if present(auth_attrs) else b""
        elif envelope_type == OID_ENVELOPED_DATA:
            env = cms.EnvelopedData.load(envelope_der, strict=True)
            eci = env["encrypted_content_info"]
            mac, aad = None, b""
        else:
            raise CmsError("not-encrypted", f"eContentType {envelope_type} is not an envelope")
        recipient_infos = list(env["recipient_infos"])
        content_type = eci["content_type"].dotted
        cipher_oid = eci["content_encryption_algorithm"]["algorithm"].dotted
        cipher_params = eci["content_encryption_algorithm"]["parameters"]
        encrypted = eci["encrypted_content"]
        ciphertext = encrypted.native if present(encrypted) else None
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise CmsError("malformed", "envelope structure is invalid") from None
    if ciphertext is None:
        raise CmsError("malformed", "envelope has no encrypted content (detached)")
    cipher = alg.content_cipher(cipher_oid)
    if cipher.aead != (envelope_type == OID_AUTH_ENVELOPED_DATA):
        raise CmsError(
            "unsupported-algorithm",
            f"{cipher.name} cannot be used in this envelope type",
        )
    me = _identity(recipient_cert)
    matched, cek = _recover_content_key(recipient_infos, me, recipient_key)
    if len(cek) != cipher.key_size:
        raise CmsError("decryption-failed", "content key length does not fit the cipher")
    assert cipher.decrypt is not None  # content_cipher() guarantees it
    try:
        plaintext = cipher.decrypt(cek, cipher_params, ciphertext, mac, aad)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", f"{cipher.name} parameters are invalid") from None
    return DecryptedContent(plaintext, content_type, cipher.name, matched)


def addressed_to(
    envelope_der: bytes, envelope_type: str, certs: Sequence[x509.Certificate]
) -> list[int]:
    """Indices of ``certs`` that some recipient entry of the envelope names (no decryption)."""
    try:
        spec = (
            cms.AuthEnvelopedData if envelope_type == OID_AUTH_ENVELOPED_DATA else cms.EnvelopedData
        )
        infos = list(spec.load(envelope_der, strict=True)["recipient_infos"])
        rids = []
        for info in infos:
            if info.name == "kari":
                rids += [(rek["rid"], True) for rek in info.chosen["recipient_encrypted_keys"]]
            elif info.name == "ktri":
                rids.append((info.chosen["rid"], False))
        identities = [_identity(c) for c in certs]
        return [
            i for i, me in enumerate(identities) if any(_matches(r, me, kari=k) for r, k in rids)
        ]
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise CmsError("malformed", "envelope structure is invalid") from None


def _recover_content_key(
    recipient_infos: Sequence[cms.RecipientInfo], me: _OurIdentity, key: RecipientKey
) -> tuple[MatchedRecipient, bytes]:
    try:
        for index, info in enumerate(recipient_infos):
            if info.name == "kari":
                kari = info.chosen
                for key_index, rek in enumerate(kari["recipient_encrypted_keys"]):
                    ident = _matches(rek["rid"], me, kari=True)
                    if ident is not None:
                        matched = MatchedRecipient(index, "kari", ident, key_index)
                        return matched, _kari_unwrap(kari, rek["encrypted_key"].native, key)
            elif info.name == "ktri":
                ktri = info.chosen
                ident = _matches(ktri["rid"], me, kari=False)
                if ident is not None:
                    return MatchedRecipient(index, "ktri", ident), _ktri_decrypt(ktri, key)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise CmsError("malformed", "a RecipientInfo is invalid") from None
    raise CmsError("not-a-recipient", "no recipient entry matches our certificate")


def _matches(rid: core.Choice, me: _OurIdentity, *, kari: bool) -> IdentifierKind | None:
    if rid.name == "issuer_and_serial_number":
        chosen = rid.chosen
        if chosen["serial_number"].native == me.serial and same_name(chosen["issuer"], me.issuer):
            return "issuer-and-serial"
        return None
    ski = rid.chosen["subject_key_identifier"].native if kari else rid.chosen.native
    if me.ski is not None and ski == me.ski:
        return "subject-key-identifier"
    return None


def _kari_unwrap(kari: cms.KeyAgreeRecipientInfo, wrapped: bytes, key: RecipientKey) -> bytes:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CmsError("decryption-failed", "key agreement entry but our key is not an EC key")
    scheme = kari["key_encryption_algorithm"]["algorithm"].dotted
    kdf_hash = alg.ECDH_SCHEMES.get(scheme)
    if kdf_hash is None:
        name = alg.KNOWN_UNSUPPORTED_KEY_AGREEMENT.get(scheme, scheme)
        raise CmsError("unsupported-algorithm", f"key agreement {name} is not supported")
    wrap_any = kari["key_encryption_algorithm"]["parameters"]
    if not present(wrap_any) or isinstance(wrap_any, core.Null):
        raise CmsError("malformed", "key agreement without a key-wrap algorithm")
    wrap_der = wrap_any.dump()
    wrap_oid = cms.KeyEncryptionAlgorithm.load(wrap_der)["algorithm"].dotted
    kek_size = alg.KEY_WRAPS.get(wrap_oid)
    if kek_size is None:
        raise CmsError("unsupported-algorithm", f"key wrap {wrap_oid} is not supported")
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise CmsError("unsupported-algorithm", "static-static ECDH (originator certificate)")
    orig_key = originator.chosen
    if orig_key["algorithm"]["algorithm"].dotted != alg.OID_EC_PUBLIC_KEY:
        raise CmsError("unsupported-algorithm", "originator key is not an EC public key")
    curve_param = orig_key["algorithm"]["parameters"]
    if present(curve_param) and curve_param.name == "named":
        try:
            named = ec.get_curve_for_oid(x509.ObjectIdentifier(curve_param.chosen.dotted))
        except LookupError:
            raise CmsError("unsupported-algorithm", "originator key curve is unknown") from None
        if named().name != key.curve.name:
            raise CmsError("decryption-failed", "originator key is on another curve than ours")
    point = bytes(orig_key["public_key"])
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
        shared = key.exchange(ec.ECDH(), peer)
    except (ValueError, UnsupportedAlgorithm):
        raise CmsError(
            "decryption-failed", "originator public key is not a point on our curve"
        ) from None
    ukm = kari["ukm"].native if present(kari["ukm"]) else None
    kek = _derive_kek(shared, kdf_hash(), wrap_der, kek_size, ukm)
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise CmsError("decryption-failed", "AES key unwrap failed") from None


def _derive_kek(
    shared: bytes, kdf_hash: hashes.HashAlgorithm, wrap_der: bytes, kek_size: int, ukm: bytes | None
) -> bytes:
    info = {"key_info": core.Any.load(wrap_der), "supp_pub_info": (kek_size * 8).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    shared_info = EccCmsSharedInfo(info).dump()
    return X963KDF(algorithm=kdf_hash, length=kek_size, sharedinfo=shared_info).derive(shared)


def _ktri_decrypt(ktri: cms.KeyTransRecipientInfo, key: RecipientKey) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CmsError("decryption-failed", "key transport entry but our key is not an RSA key")
    kea = ktri["key_encryption_algorithm"]
    oid = kea["algorithm"].dotted
    wrapped = ktri["encrypted_key"].native
    if oid == alg.OID_RSA_ENCRYPTION:
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif oid == alg.OID_RSAES_OAEP:
        params = kea["parameters"]
        hash_oid = params["hash_algorithm"]["algorithm"].dotted
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].dotted != "1.2.840.113549.1.1.8":
            raise CmsError("unsupported-algorithm", "RSAES-OAEP mask generation is not MGF1")
        mgf_hash_oid = mgf["parameters"]["algorithm"].dotted
        label = params["p_source_algorithm"]["parameters"].native or None
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
    me = _identity(cert)
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

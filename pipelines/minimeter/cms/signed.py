"""SignedData (RFC 5652 section 5): reading, verifying, and making a fresh one."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import algos, cms, core, pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from minimeter.cms import algorithms as alg
from minimeter.cms._asn1 import (
    CONSTRUCTED,
    CONTEXT,
    PRIMITIVE,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    UNIVERSAL,
    Octets,
    OpaqueContentInfo,
    as_set_of,
    enclose,
    outer_header,
    present,
    same_name,
    tlv,
)
from minimeter.cms._memo import IdentityMemo
from minimeter.cms._read import (
    OID_AUTH_ENVELOPED_DATA,
    OID_ENVELOPED_DATA,
    OID_SIGNED_DATA,
    SignedParts,
    read_signed,
    read_signed_fast,
)
from minimeter.cms.trust import TrustStore
from minimeter.errors import CmsError

DEFAULT_MAX_SIZE = 16 * 1024 * 1024

OID_DATA = "1.2.840.113549.1.7.1"
ENVELOPE_TYPES = frozenset({OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA})

SignerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class VerifiedSignedData:
    """A SignedData whose single signature verified under a trusted path."""

    econtent_type: str
    econtent: Octets
    signer: x509.Certificate
    path: tuple[x509.Certificate, ...]
    signing_time: datetime
    econtent_digests: tuple[tuple[str, bytes], ...]
    """Digests of ``econtent`` already computed while verifying (name, value)."""


def message_der(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The DER of a message given as DER or PEM (``CMS`` / ``PKCS7`` armour), size-capped."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CmsError("malformed", "input is not bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise CmsError("payload-too-large", f"input of {len(data)} bytes exceeds {max_size}")
    if not data.strip():
        raise CmsError("malformed", "input is empty")
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            armour, _headers, data = pem.unarmor(stripped)
        except (ValueError, TypeError):
            raise CmsError("malformed", "PEM armour is broken") from None
        if armour not in ("CMS", "PKCS7"):
            raise CmsError("malformed", f"PEM block {armour!r} is not CMS or PKCS7")
    return data


def read_content_info(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> OpaqueContentInfo:
    """Parse DER or PEM (``CMS`` / ``PKCS7`` armour) into a ContentInfo, size-capped."""
    return _content_info(message_der(data, max_size=max_size))


def _content_info(data: bytes) -> OpaqueContentInfo:
    try:
        class_, _method, tag, _contents = outer_header(data)
        if class_ != UNIVERSAL or tag != TAG_SEQUENCE:
            raise CmsError("malformed", "input is not a DER SEQUENCE")
        info = OpaqueContentInfo.load(data, strict=True)
        info["content_type"].dotted  # noqa: B018 - forces the parse of the header
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError("malformed", "input is not a CMS ContentInfo") from None
    assert isinstance(info, OpaqueContentInfo)
    return info


def read_signed_parts(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, detached: bytes | None = None
) -> SignedParts:
    """The parts of a message's SignedData: the fast reader for the usual shape, else
    asn1crypto's classes (which decide, and name, every problem). ``detached``: the content of
    a detached signature (read by asn1crypto's classes only)."""
    der = message_der(data, max_size=max_size)
    if detached is not None:
        return read_signed(_content_info(der), detached)
    return read_signed_fast(der) or read_signed(_content_info(der))


DEFAULT_MAX_SKEW = timedelta(minutes=5)
"""How far a signing time may lie after the processing time (clocks differ a little)."""


def verify_signed_data(
    parts: SignedParts,
    *,
    trust: TrustStore,
    at: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> VerifiedSignedData:
    """Verify the one SignerInfo of a SignedData and its certification path.

    ``at`` is the processing time, the caller's: the core never reads a clock. The signer's
    path must be valid at the signing time (the signedAttrs' signingTime, or ``at`` when there
    is none), and a signing time may not lie after ``at`` plus ``max_skew``: the message's own
    claim never overrides the caller's time."""
    embedded, signer_cert = trust.signers.get(
        parts.signer_id,
        (parts.certificates, trust),
        lambda: _resolve_signer(parts.signer_id, parts.certificates, trust),
    )
    sig_oid, sig_params = _signature_algorithm(parts.signature_algorithm)
    digest = alg.digest_for(parts.digest_algorithm, purpose="message")
    content_digest = _digest(digest, parts.econtent)
    if parts.signed_attrs is not None:
        if (
            len(parts.content_types) != 1
            or len(parts.message_digests) != 1
            or len(parts.signing_times) > 1
        ):
            raise CmsError(
                "malformed", "signed attributes need exactly one contentType and one messageDigest"
            )
        if parts.content_types[0] != parts.econtent_type:
            raise CmsError("signature-invalid", "contentType attribute differs from eContentType")
        if not hmac.compare_digest(parts.message_digests[0], content_digest):
            raise CmsError("signature-invalid", "messageDigest does not match the content")
        to_verify: Octets = as_set_of(parts.signed_attrs)
        signing_time = parts.signing_times[0] if parts.signing_times else None
    else:
        to_verify = parts.econtent
        signing_time = None
    _verify_signature(
        trust.verifiers,
        signer_cert,
        sig_oid,
        sig_params,
        parts.digest_algorithm,
        to_verify,
        parts.signature,
    )
    if signing_time is not None and signing_time > at + max_skew:
        raise CmsError(
            "untrusted-signer",
            "the signing time lies after the processing time "
            f"(more than {int(max_skew.total_seconds())} s ahead)",
        )
    when = signing_time or at
    path = trust.validate(signer_cert, embedded, when)
    return VerifiedSignedData(
        econtent_type=parts.econtent_type,
        econtent=parts.econtent,
        signer=signer_cert,
        path=path,
        signing_time=when,
        econtent_digests=((digest.name, content_digest),),
    )


def _digest(algorithm: hashes.HashAlgorithm, data: Octets) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _resolve_signer(
    signer_id: bytes, certificates: tuple[bytes, ...], trust: TrustStore
) -> tuple[tuple[x509.Certificate, ...], x509.Certificate]:
    """(the message's certificates, the signer's) — remembered per certificate set: the fast
    reader hands out one tuple object per distinct set."""
    embedded = tuple(trust.parse_certificate(der) for der in certificates)
    try:
        sid = cms.SignerIdentifier.load(signer_id)
        return embedded, _find_signer(sid, (*embedded, *trust.intermediates))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", "the signer identifier or a certificate is invalid") from None


@functools.lru_cache(maxsize=64)
def _signature_algorithm(der: bytes) -> tuple[str, bytes | None]:
    """(OID, DER of the parameters or None) of a signatureAlgorithm."""
    try:
        value = algos.SignedDigestAlgorithm.load(der)
        params = value["parameters"]
        return value["algorithm"].dotted, params.dump() if present(params) else None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", "the signature algorithm is invalid") from None


def _find_signer(
    sid: cms.SignerIdentifier, candidates: Sequence[x509.Certificate]
) -> x509.Certificate:
    """The certificate ``sid`` names, among the message's and the configured ones."""
    kind = sid.name
    wanted = sid.chosen
    if kind == "issuer_and_serial_number":
        issuer, serial = wanted["issuer"], wanted["serial_number"].native
        issuer_der = issuer.dump()
        for cert in candidates:
            if cert.serial_number == serial:
                cert_issuer = _name_der(cert.issuer)
                if cert_issuer == issuer_der or same_name(asn1_x509.Name.load(cert_issuer), issuer):
                    return cert
    elif kind == "subject_key_identifier":
        ski = wanted.native
        for cert in candidates:
            if _ski(cert) == ski:
                return cert
    raise CmsError("untrusted-signer", "the signer certificate is not in the message")


def _name_der(name: x509.Name) -> bytes:
    return name.public_bytes()


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


Verifier = Callable[[bytes, Octets], None]


def _verify_signature(
    verifiers: IdentityMemo[Verifier],
    cert: x509.Certificate,
    sig_oid: str,
    sig_params: bytes | None,
    digest_oid: str,
    data: Octets,
    signature: bytes,
) -> None:
    verify = verifiers.get(
        (sig_oid, sig_params, digest_oid),
        (cert,),
        lambda: _verifier(cert, sig_oid, sig_params, digest_oid),
    )
    try:
        verify(signature, data)
    except InvalidSignature:
        raise CmsError("signature-invalid", "the signature does not verify") from None
    except UnsupportedAlgorithm:
        raise CmsError("unsupported-algorithm", "the signature cannot be checked here") from None


def _verifier(
    cert: x509.Certificate, sig_oid: str, sig_params: bytes | None, digest_oid: str
) -> Verifier:
    """The check of a signature by ``cert`` with this algorithm (remembered per certificate)."""
    spec = alg.SIGNATURE_ALGORITHMS.get(sig_oid)
    if spec is None:
        raise CmsError("unsupported-algorithm", f"signature algorithm {sig_oid} is not supported")
    family, digest_name = spec
    try:
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CmsError(
            "unsupported-algorithm", "the signer's public key type is not supported"
        ) from None
    if family == "ecdsa":
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CmsError("signature-invalid", "ECDSA signature with a non-EC signer key")
        digest = (
            _named_digest(digest_name)
            if digest_name
            else alg.digest_for(digest_oid, purpose="signature")
        )
        ecdsa = ec.ECDSA(digest)
        ec_key = public_key
        return lambda signature, data: ec_key.verify(signature, data, ecdsa)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError("signature-invalid", "RSA signature with a non-RSA signer key")
    rsa_key = public_key
    if family == "rsa-pkcs1v15":
        digest = (
            _named_digest(digest_name)
            if digest_name
            else alg.digest_for(digest_oid, purpose="signature")
        )
        pkcs1 = padding.PKCS1v15()
        return lambda signature, data: rsa_key.verify(signature, bytes(data), pkcs1, digest)
    pss, pss_digest = _pss_padding(sig_params)  # rsa-pss
    return lambda signature, data: rsa_key.verify(signature, bytes(data), pss, pss_digest)


def _named_digest(name: str) -> hashes.HashAlgorithm:
    return alg.digest_for(alg.DIGEST_OIDS[name], purpose="signature")


def _pss_padding(params: bytes | None) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    if params is None:
        raise CmsError("malformed", "RSA-PSS parameters are missing")
    try:
        pss = algos.RSASSAPSSParams.load(params)
        hash_oid = pss["hash_algorithm"]["algorithm"].dotted
        mgf = pss["mask_gen_algorithm"]
        if mgf["algorithm"].dotted != "1.2.840.113549.1.1.8":
            raise CmsError("unsupported-algorithm", "RSA-PSS mask generation is not MGF1")
        mgf_hash_oid = mgf["parameters"]["algorithm"].dotted
        salt = pss["salt_length"].native
        if pss["trailer_field"].native not in (1, "trailer_field_bc"):
            raise CmsError("unsupported-algorithm", "RSA-PSS trailer field is not 1")
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", "RSA-PSS parameters are invalid") from None
    digest = alg.digest_for(hash_oid, purpose="signature")
    mgf_digest = alg.digest_for(mgf_hash_oid, purpose="signature")
    return padding.PSS(mgf=padding.MGF1(mgf_digest), salt_length=salt), digest


# --- making SignedData ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignerTemplate:
    """DER of everything in a SignedData that depends only on the signer, made once with asn1crypto."""

    digest: hashes.HashAlgorithm
    digest_algorithm: bytes
    signature_algorithm: bytes
    sid: bytes
    digest_algorithms: bytes
    """The SignedData's digestAlgorithms: a SET OF with ``digest_algorithm``."""
    certificates: bytes
    """The SignedData's certificates field: the CertificateSet as [0] IMPLICIT."""


def _make_template(
    signer_cert: x509.Certificate, chain: tuple[x509.Certificate, ...], rsa_key: bool
) -> _SignerTemplate:
    public = signer_cert.public_key()
    if rsa_key != isinstance(public, rsa.RSAPublicKey):
        raise CmsError("unsupported-algorithm", "signer key and certificate do not match")
    if isinstance(public, ec.EllipticCurvePublicKey):
        size = public.curve.key_size
        digest: hashes.HashAlgorithm = (
            hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()
        )
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": alg.ECDSA_OIDS[digest.name]})
    else:
        digest = hashes.SHA256()
        sig_alg = algos.SignedDigestAlgorithm(
            {"algorithm": alg.RSA_PKCS1_OIDS[digest.name], "parameters": core.Null()}
        )
    a_cert = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    sid = cms.SignerIdentifier(
        {
            "issuer_and_serial_number": {
                "issuer": a_cert.issuer,
                "serial_number": a_cert.serial_number,
            }
        }
    )
    digest_algorithm = algos.DigestAlgorithm({"algorithm": alg.DIGEST_OIDS[digest.name]}).dump()
    certificates = cms.CertificateSet(
        [a_cert] + [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in chain]
    )
    return _SignerTemplate(
        digest=digest,
        digest_algorithm=digest_algorithm,
        signature_algorithm=sig_alg.dump(),
        sid=sid.dump(),
        digest_algorithms=as_set_of(digest_algorithm),
        certificates=_ctx(0, certificates.contents),
    )


def _seq(*parts: bytes) -> bytes:
    return tlv(UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE, b"".join(parts))


def _ctx(tag: int, contents: bytes) -> bytes:
    return tlv(CONTEXT, CONSTRUCTED, tag, contents)


def _octet_string(value: bytes) -> bytes:
    return tlv(UNIVERSAL, PRIMITIVE, TAG_OCTET_STRING, value)


_V1 = core.Integer(1).dump()
_V3 = core.Integer(3).dump()
_OID_SIGNED_DATA = core.ObjectIdentifier(OID_SIGNED_DATA).dump()
_ATTR_CONTENT_TYPE = core.ObjectIdentifier("1.2.840.113549.1.9.3").dump()
_ATTR_MESSAGE_DIGEST = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
_ATTR_SIGNING_TIME = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()


def _attribute(oid_der: bytes, value_der: bytes) -> bytes:
    return _seq(oid_der, as_set_of(value_der))


@functools.lru_cache(maxsize=64)
def _content_type(econtent_type: str) -> tuple[bytes, bytes]:
    """(DER of the OID, DER of the contentType attribute) for an eContentType."""
    type_der = core.ObjectIdentifier(econtent_type).dump()
    return type_der, _attribute(_ATTR_CONTENT_TYPE, type_der)


@functools.lru_cache(maxsize=16)
def _signing_time(when: datetime) -> bytes:
    """DER of the signingTime attribute (UTCTime until 2049, then GeneralizedTime)."""
    value = core.UTCTime(when) if 1950 <= when.year < 2050 else core.GeneralizedTime(when)
    return _attribute(_ATTR_SIGNING_TIME, value.dump())


class CmsSigner:
    """A signing key with its certificate and chain, prepared once: the DER of everything in a
    SignedData that depends only on the signer (digest and signature algorithms, signer
    identifier, certificate set) is made when the object is built, and ``sign`` adds the
    per-message parts. Build it once (e.g. in ``DoFn.setup()``) and reuse it."""

    def __init__(
        self,
        key: SignerKey,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        self.key = key
        self.cert = cert
        self.chain = tuple(chain)
        self._template = _make_template(cert, self.chain, isinstance(key, rsa.RSAPrivateKey))

    def sign(
        self,
        econtent: Octets,
        econtent_type: str,
        *,
        at: datetime | None = None,
        known_digests: tuple[tuple[str, bytes], ...] = (),
        detached: bool = False,
    ) -> bytes:
        """A DER ContentInfo(SignedData) over ``econtent`` with one SignerInfo by this signer.

        ``detached`` leaves the eContent out (a detached signature over ``econtent``).

        Signed attributes are contentType, messageDigest and signingTime; the certificate set
        is the signer certificate followed by the chain. ``known_digests`` lets a caller reuse a
        digest of ``econtent`` it already computed. ``econtent`` is carried as opaque bytes,
        byte for byte.

        Every element is encoded by asn1crypto: the signer-dependent ones once, when the signer
        is built, the per-message ones here, and asn1crypto's header encoder puts the TLVs
        together (building the whole tree as asn1crypto objects costs more than the signature);
        the eContent is copied once, into the result.
        """
        return _sign(self.key, self._template, econtent, econtent_type, at, known_digests, detached)


def make_signed_data(
    econtent: Octets,
    econtent_type: str,
    *,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: tuple[x509.Certificate, ...] = (),
    at: datetime | None = None,
    known_digests: tuple[tuple[str, bytes], ...] = (),
    detached: bool = False,
) -> bytes:
    """One SignedData by a signer used once (see ``CmsSigner.sign``; prepare a ``CmsSigner``
    to sign many)."""
    return CmsSigner(signer_key, signer_cert, chain).sign(
        econtent, econtent_type, at=at, known_digests=known_digests, detached=detached
    )


def _sign(
    signer_key: SignerKey,
    tpl: _SignerTemplate,
    econtent: Octets,
    econtent_type: str,
    at: datetime | None,
    known_digests: tuple[tuple[str, bytes], ...],
    detached: bool,
) -> bytes:
    when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    digest = tpl.digest
    content_digest = dict(known_digests).get(digest.name) or _digest(digest, econtent)
    type_der, type_attribute = _content_type(econtent_type)
    attributes = sorted(  # DER: a SET OF is sorted by the encodings of its elements
        [
            type_attribute,
            _signing_time(when),
            _attribute(_ATTR_MESSAGE_DIGEST, _octet_string(content_digest)),
        ]
    )
    attrs_contents = b"".join(attributes)
    to_sign = as_set_of(attrs_contents)
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(to_sign, ec.ECDSA(digest))
    else:
        signature = signer_key.sign(to_sign, padding.PKCS1v15(), digest)
    signer_info = _seq(
        _V1,
        tpl.sid,
        tpl.digest_algorithm,
        _ctx(0, attrs_contents),  # signedAttrs [0] IMPLICIT SET OF
        tpl.signature_algorithm,
        _octet_string(signature),
    )
    encap: list[Octets] = [type_der]
    if not detached:  # eContent [0] EXPLICIT OCTET STRING
        encap += enclose(
            CONTEXT, CONSTRUCTED, 0, enclose(UNIVERSAL, PRIMITIVE, TAG_OCTET_STRING, [econtent])
        )
    signed: list[Octets] = [
        _V1 if econtent_type == OID_DATA else _V3,
        tpl.digest_algorithms,
        *enclose(UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE, encap),
        tpl.certificates,
        as_set_of(signer_info),
    ]
    content_info: list[Octets] = [
        _OID_SIGNED_DATA,
        *enclose(CONTEXT, CONSTRUCTED, 0, enclose(UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE, signed)),
    ]
    return b"".join(enclose(UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE, content_info))

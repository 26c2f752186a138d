"""SignedData (RFC 5652 section 5): reading, verifying, and making a fresh one."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from minimeter.cms import algorithms as alg
from minimeter.cms._asn1 import TAG_SEQUENCE, UNIVERSAL, as_set_of, outer_header, present
from minimeter.cms.trust import TrustStore
from minimeter.errors import CmsError

DEFAULT_MAX_SIZE = 16 * 1024 * 1024

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
ENVELOPE_TYPES = frozenset({OID_ENVELOPED_DATA, OID_AUTH_ENVELOPED_DATA})

SignerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class VerifiedSignedData:
    """A SignedData whose single signature verified under a trusted path."""

    econtent_type: str
    econtent: bytes
    signer: x509.Certificate
    path: tuple[x509.Certificate, ...]
    signing_time: datetime
    econtent_digests: tuple[tuple[str, bytes], ...]
    """Digests of ``econtent`` already computed while verifying (name, value)."""


def read_content_info(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> cms.ContentInfo:
    """Parse DER or PEM (``CMS`` / ``PKCS7`` armour) into a ContentInfo, size-capped."""
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
    try:
        class_, _method, tag, _contents = outer_header(data)
        if class_ != UNIVERSAL or tag != TAG_SEQUENCE:
            raise CmsError("malformed", "input is not a DER SEQUENCE")
        info = cms.ContentInfo.load(data, strict=True)
        info["content_type"].dotted  # noqa: B018 - forces the parse of the header
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError("malformed", "input is not a CMS ContentInfo") from None
    return info


def verify_signed_data(
    info: cms.ContentInfo, *, trust: TrustStore, at: datetime | None = None
) -> VerifiedSignedData:
    """Verify the one SignerInfo of a SignedData and its certification path."""
    content_type = info["content_type"].dotted
    if content_type != OID_SIGNED_DATA:
        raise CmsError("not-signed", f"content type {content_type} is not SignedData")
    try:
        signed = info["content"]
        if not isinstance(signed, cms.SignedData):
            raise CmsError("malformed", "SignedData has no content")
        eci = signed["encap_content_info"]
        econtent_type = eci["content_type"].dotted
        if not isinstance(eci["content"], cms.ParsableOctetString | core.OctetString):
            raise CmsError("malformed", "detached signature: no encapsulated content")
        econtent = bytes(eci["content"])
        signer_infos = list(signed["signer_infos"])
        if len(signer_infos) != 1:
            raise CmsError("malformed", f"expected one SignerInfo, found {len(signer_infos)}")
        signer_info = signer_infos[0]
        embedded = _embedded_certificates(signed)
        sid = signer_info["sid"]
        digest_oid = signer_info["digest_algorithm"]["algorithm"].dotted
        sig_alg = signer_info["signature_algorithm"]
        sig_oid = sig_alg["algorithm"].dotted
        sig_params = sig_alg["parameters"]
        signature = signer_info["signature"].native
        signed_attrs = signer_info["signed_attrs"]
        has_attrs = present(signed_attrs)
        attrs = _read_signed_attrs(signed_attrs) if has_attrs else None
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise CmsError("malformed", "SignedData structure is invalid") from None

    try:
        found = _find_signer(sid, embedded, trust)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CmsError("malformed", "the signer identifier or a certificate is invalid") from None
    pool = [trust.parse_certificate(a_cert.dump()) for a_cert in embedded]
    signer_cert = pool[found] if isinstance(found, int) else found
    digest = alg.digest_for(digest_oid, purpose="message")
    content_digest = _digest(digest, econtent)
    if attrs is not None:
        attr_type, attr_digest, attr_time = attrs
        if attr_type != econtent_type:
            raise CmsError("signature-invalid", "contentType attribute differs from eContentType")
        if not hmac.compare_digest(attr_digest, content_digest):
            raise CmsError("signature-invalid", "messageDigest does not match the content")
        to_verify = as_set_of(signed_attrs.contents)
        signing_time = attr_time
    else:
        to_verify = econtent
        signing_time = None
    _verify_signature(signer_cert, sig_oid, sig_params, digest_oid, to_verify, signature)
    when = signing_time or at or datetime.now(UTC)
    path = trust.validate(signer_cert, pool, when)
    return VerifiedSignedData(
        econtent_type=econtent_type,
        econtent=econtent,
        signer=signer_cert,
        path=path,
        signing_time=when,
        econtent_digests=((digest.name, content_digest),),
    )


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _embedded_certificates(signed: cms.SignedData) -> list[asn1_x509.Certificate]:
    certs = signed["certificates"]
    if not present(certs):
        return []
    return [choice.chosen for choice in certs if choice.name == "certificate"]


def _read_signed_attrs(attrs: cms.CMSAttributes) -> tuple[str, bytes, datetime | None]:
    content_types: list[str] = []
    digests: list[bytes] = []
    times: list[datetime] = []
    for attr in attrs:
        kind = attr["type"].dotted
        values = list(attr["values"])
        if kind == "1.2.840.113549.1.9.3":
            content_types += [v.dotted for v in values]
        elif kind == "1.2.840.113549.1.9.4":
            digests += [v.native for v in values]
        elif kind == "1.2.840.113549.1.9.5":
            times += [v.native for v in values]
    if len(content_types) != 1 or len(digests) != 1 or len(times) > 1:
        raise CmsError(
            "malformed", "signed attributes need exactly one contentType and one messageDigest"
        )
    when = times[0] if times else None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return content_types[0], digests[0], when


def _find_signer(
    sid: cms.SignerIdentifier, embedded: list[asn1_x509.Certificate], trust: TrustStore
) -> int | x509.Certificate:
    """Index of the signer among ``embedded``, or a configured intermediate that matches."""
    kind = sid.name
    wanted = sid.chosen
    if kind == "issuer_and_serial_number":
        issuer, serial = wanted["issuer"], wanted["serial_number"].native
        for i, a_cert in enumerate(embedded):
            if a_cert.serial_number == serial and a_cert.issuer == issuer:
                return i
        for cert in trust.intermediates:
            if cert.serial_number == serial and _name_der(cert.issuer) == issuer.dump():
                return cert
    elif kind == "subject_key_identifier":
        ski = wanted.native
        for i, a_cert in enumerate(embedded):
            if a_cert.key_identifier == ski:
                return i
        for cert in trust.intermediates:
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


def _verify_signature(
    cert: x509.Certificate,
    sig_oid: str,
    sig_params: object,
    digest_oid: str,
    data: bytes,
    signature: bytes,
) -> None:
    spec = alg.SIGNATURE_ALGORITHMS.get(sig_oid)
    if spec is None:
        raise CmsError("unsupported-algorithm", f"signature algorithm {sig_oid} is not supported")
    family, digest_name = spec
    try:
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CmsError("unsupported-algorithm", "the signer's public key type is not supported") from None
    try:
        if family == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise CmsError("signature-invalid", "ECDSA signature with a non-EC signer key")
            digest = _named_digest(digest_name) if digest_name else alg.digest_for(digest_oid, purpose="signature")
            public_key.verify(signature, data, ec.ECDSA(digest))
        elif family == "rsa-pkcs1v15":
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise CmsError("signature-invalid", "RSA signature with a non-RSA signer key")
            digest = _named_digest(digest_name) if digest_name else alg.digest_for(digest_oid, purpose="signature")
            public_key.verify(signature, data, padding.PKCS1v15(), digest)
        else:  # rsa-pss
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise CmsError("signature-invalid", "RSA-PSS signature with a non-RSA signer key")
            pss, digest = _pss_padding(sig_params)
            public_key.verify(signature, data, pss, digest)
    except InvalidSignature:
        raise CmsError("signature-invalid", "the signature does not verify") from None
    except UnsupportedAlgorithm:
        raise CmsError("unsupported-algorithm", "the signature cannot be checked here") from None


def _named_digest(name: str) -> hashes.HashAlgorithm:
    return alg.digest_for(alg.DIGEST_OIDS[name], purpose="signature")


def _pss_padding(params: object) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    try:
        pss = algos.RSASSAPSSParams.load(params.dump())  # type: ignore[attr-defined]
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


def signature_digest_for(key: SignerKey) -> hashes.HashAlgorithm:
    """The digest that matches a signing key's strength."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()
    return hashes.SHA256()


def make_signed_data(
    econtent: bytes,
    econtent_type: str,
    *,
    signer_key: SignerKey,
    signer_cert: x509.Certificate,
    chain: tuple[x509.Certificate, ...] = (),
    at: datetime | None = None,
    known_digests: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """A DER ContentInfo(SignedData) over ``econtent`` with one SignerInfo by ``signer_key``.

    Signed attributes are contentType, messageDigest and signingTime; the certificate set is the
    signer certificate followed by ``chain``. ``known_digests`` lets a caller reuse a digest of
    ``econtent`` it already computed.
    """
    when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    digest = signature_digest_for(signer_key)
    content_digest = dict(known_digests).get(digest.name) or _digest(digest, econtent)
    time_choice = "utc_time" if 1950 <= when.year < 2050 else "general_time"
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": [econtent_type]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({time_choice: when})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
    ]
    attrs.sort(key=lambda a: a.dump())  # DER: SET OF sorted by encoding
    signed_attrs = cms.CMSAttributes(attrs)
    to_sign = signed_attrs.dump()
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(to_sign, ec.ECDSA(digest))
        sig_alg = {"algorithm": alg.ECDSA_OIDS[digest.name]}
    elif isinstance(signer_key, rsa.RSAPrivateKey):
        signature = signer_key.sign(to_sign, padding.PKCS1v15(), digest)
        sig_alg = {"algorithm": alg.RSA_PKCS1_OIDS[digest.name], "parameters": None}
    else:  # pragma: no cover - guarded by the type
        raise CmsError("unsupported-algorithm", "signer key type is not supported")
    cert_der = signer_cert.public_bytes(Encoding.DER)
    a_cert = asn1_x509.Certificate.load(cert_der)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": a_cert.issuer,
                        "serial_number": a_cert.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": alg.DIGEST_OIDS[digest.name]},
            "signed_attrs": signed_attrs,
            "signature_algorithm": sig_alg,
            "signature": signature,
        }
    )
    certificates = [a_cert] + [
        asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in chain
    ]
    signed = cms.SignedData(
        {
            "version": "v1" if econtent_type == OID_DATA else "v3",
            "digest_algorithms": [{"algorithm": alg.DIGEST_OIDS[digest.name]}],
            "encap_content_info": {
                "content_type": econtent_type,
                "content": cms.ParsableOctetString(econtent),
            },
            "certificates": certificates,
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())

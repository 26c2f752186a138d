"""Reading SignedData and (Auth)EnvelopedData into plain parts, two ways.

The cryptographic checks in ``signed`` and ``envelope`` work on the parts declared here (OIDs as
dotted strings, the DER of sub-structures, byte strings), not on ASN.1 objects. Two readers make
them:

* the *full* readers use asn1crypto's classes (``cms.SignerInfo``, ``cms.AuthEnvelopedData``, ...)
  and accept everything asn1crypto accepts; they are the authority and raise ``CmsError``;
* the *fast* readers walk the same structures element by element with asn1crypto's DER parser
  (``parser._parse`` on a memoryview: no copies of the large eContent) and decode every value
  with asn1crypto's classes, remembered by its encoding. asn1crypto's classes build one Python
  object per element, about 10 µs each on a 2-core machine, and an SMGW message needs some sixty
  of them: more than the ECDSA verification costs. The fast readers handle the usual shapes only
  (definite lengths, primitive OCTET STRINGs, no CRLs, no originatorInfo, key agreement entries)
  and answer ``None`` for anything else, so the full readers decide every unusual or broken
  message.

Tests check, on OpenSSL-made and mutated messages, that whenever the fast reader answers, its
parts equal the full reader's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, parser

from minimeter.cms._asn1 import (
    CONSTRUCTED,
    CONTEXT,
    PRIMITIVE,
    TAG_OID,
    TAG_SEQUENCE,
    TAG_SET,
    UNIVERSAL,
    GcmParameters,
    Octets,
    OpaqueContentInfo,
    OpaqueSignedData,
    present,
)
from minimeter.errors import CmsError

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"

_TAG_INTEGER = 2
_TAG_BIT_STRING = 3
_TAG_OCTET_STRING = 4
_TAG_NULL = 5
_TAG_UTC_TIME = 23
_TAG_GENERALIZED_TIME = 24


# --- parts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedParts:
    """What verifying a SignedData needs, read from the message."""

    econtent_type: str
    econtent: Octets
    """The eContent octets (a view into the message on the fast path)."""
    certificates: tuple[bytes, ...]
    """DER of each ``certificate`` choice of the CertificateSet (other choices are skipped)."""
    signer_id: bytes
    """DER of the SignerIdentifier."""
    digest_algorithm: str
    signature_algorithm: bytes
    """DER of the signatureAlgorithm AlgorithmIdentifier."""
    signature: bytes
    signed_attrs: bytes | None
    """Content octets of the signedAttrs [0] SET, None when there are none."""
    content_types: tuple[str, ...] = ()
    message_digests: tuple[bytes, ...] = ()
    signing_times: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class KariParts:
    """A KeyAgreeRecipientInfo (RFC 5652 6.2.2)."""

    scheme: str
    """keyEncryptionAlgorithm OID (the ECDH + KDF scheme)."""
    wrap: bytes | None
    """DER of the scheme's parameters (the key-wrap AlgorithmIdentifier); None if absent or NULL."""
    originator: str
    """asn1crypto's name of the originator choice (``originator_key`` for ephemeral-static)."""
    key_algorithm: str | None
    curve: str | None
    """Named-curve OID of the originator key, None when the parameters are not a named curve."""
    point: bytes | None
    ukm: bytes | None
    keys: tuple[tuple[bytes, bytes], ...]
    """(DER of the KeyAgreeRecipientIdentifier, encryptedKey) per recipientEncryptedKey."""


@dataclass(frozen=True, slots=True)
class KtriParts:
    """A KeyTransRecipientInfo (RFC 5652 6.2.1)."""

    rid: bytes
    """DER of the RecipientIdentifier."""
    algorithm: bytes
    """DER of the keyEncryptionAlgorithm AlgorithmIdentifier."""
    encrypted_key: bytes


@dataclass(frozen=True, slots=True)
class OtherRecipient:
    """A recipient entry of another kind (password, KEK, other): never ours."""

    kind: str


RecipientParts = KariParts | KtriParts | OtherRecipient


@dataclass(frozen=True, slots=True)
class EnvelopeParts:
    """What decrypting an EnvelopedData or AuthEnvelopedData needs."""

    recipients: tuple[RecipientParts, ...]
    content_type: str
    cipher: str
    cipher_params: bytes | None
    """DER of the content-encryption parameters (GCMParameters, CBC IV), None if absent."""
    ciphertext: Octets | None
    mac: bytes | None
    aad: bytes
    """Additional authenticated data: the authAttrs as a SET OF, empty without them."""


# --- values, decoded by asn1crypto and remembered by their encoding ----------------------------


@functools.lru_cache(maxsize=1024)
def _dotted(contents: bytes) -> str:
    der = bytes(parser.emit(UNIVERSAL, PRIMITIVE, TAG_OID, contents))
    return str(core.ObjectIdentifier.load(der).dotted)


@functools.lru_cache(maxsize=256)
def _algorithm_oid(der: bytes) -> str:
    return str(algos.DigestAlgorithm.load(der)["algorithm"].dotted)


def _time(der: bytes, tag: int) -> datetime:
    value = (core.UTCTime if tag == _TAG_UTC_TIME else core.GeneralizedTime).load(der).native
    if not isinstance(value, datetime):
        raise _Unusual
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- the fast readers ----------------------------------------------------------------------------


class _Unusual(Exception):
    """The input is not one of the shapes the fast readers handle."""


_parse = parser._parse  # asn1crypto's TLV parser, with a start offset (parser.parse has none)

# asn1crypto's parse of one element: (class, method, tag, header, content octets, trailer)
_Element = tuple[int, int, int, memoryview, memoryview, bytes]


def _elements(data: memoryview) -> list[_Element]:
    """The consecutive elements of ``data`` (definite lengths only), without copying."""
    out: list[_Element] = []
    append = out.append
    pos, end = 0, len(data)
    while pos < end:
        element, pos = _parse(data, end, pos)
        if element[5]:  # indefinite length: BER, left to asn1crypto's classes
            raise _Unusual
        append(element)
    return out


def _only(data: memoryview, class_: int, method: int, tag: int) -> _Element:
    """The single element ``data`` holds, which must have this class, method and tag."""
    element, end = _parse(data, len(data), 0)
    if end != len(data) or element[5]:
        raise _Unusual
    return _want(element, class_, method, tag)


def _want(element: _Element, class_: int, method: int, tag: int) -> _Element:
    if element[2] != tag or element[0] != class_ or element[1] != method:
        raise _Unusual
    return element


def _der(element: _Element) -> bytes:
    """The whole encoding of an element."""
    return bytes(element[3]) + bytes(element[4])


def _oid(element: _Element) -> str:
    if element[2] != TAG_OID or element[0] != UNIVERSAL or element[1] != PRIMITIVE:
        raise _Unusual
    return _dotted(bytes(element[4]))


def _octets(element: _Element) -> bytes:
    if element[2] != _TAG_OCTET_STRING or element[0] != UNIVERSAL or element[1] != PRIMITIVE:
        raise _Unusual
    return bytes(element[4])


@functools.lru_cache(maxsize=256)
def _certificate_ders(contents: bytes) -> tuple[bytes, ...]:
    """The DER of each certificate in a CertificateSet's content octets (remembered: a gateway
    sends the same set with every message)."""
    return tuple(
        _der(_want(c, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE))
        for c in _elements(memoryview(contents))
    )


def read_signed_fast(der: bytes) -> SignedParts | None:
    """The parts of a DER ContentInfo(SignedData) of the usual shape, else None."""
    try:
        return _read_signed(memoryview(der))
    except (_Unusual, ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None


def _read_signed(data: memoryview) -> SignedParts:
    info = _elements(_only(data, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(info) != 2 or _oid(info[0]) != OID_SIGNED_DATA:
        raise _Unusual
    signed = _only(_want(info[1], CONTEXT, CONSTRUCTED, 0)[4], UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)
    fields = _elements(signed[4])
    if len(fields) == 5:
        _version, digests, encap, certs, infos = fields
        certificates = _certificate_ders(bytes(_want(certs, CONTEXT, CONSTRUCTED, 0)[4]))
    elif len(fields) == 4:
        _version, digests, encap, infos = fields
        certificates = ()
    else:
        raise _Unusual
    _want(_version, UNIVERSAL, PRIMITIVE, _TAG_INTEGER)
    _want(digests, UNIVERSAL, CONSTRUCTED, TAG_SET)
    eci = _elements(_want(encap, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(eci) != 2:
        raise _Unusual
    econtent_type = _oid(eci[0])
    econtent = _only(_want(eci[1], CONTEXT, CONSTRUCTED, 0)[4], UNIVERSAL, PRIMITIVE, 4)[4]
    signer_infos = _elements(_want(infos, UNIVERSAL, CONSTRUCTED, TAG_SET)[4])
    if len(signer_infos) != 1:
        raise _Unusual
    si = _elements(_want(signer_infos[0], UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(si) != 6:
        raise _Unusual
    _si_version, sid, digest_alg, attrs, sig_alg, signature = si
    _want(_si_version, UNIVERSAL, PRIMITIVE, _TAG_INTEGER)
    if (sid[0], sid[1], sid[2]) not in (
        (UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE),
        (CONTEXT, PRIMITIVE, 0),
    ):
        raise _Unusual
    _want(digest_alg, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)
    _want(attrs, CONTEXT, CONSTRUCTED, 0)
    _want(sig_alg, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)
    content_types: list[str] = []
    digests_seen: list[bytes] = []
    times: list[datetime] = []
    for attribute in _elements(attrs[4]):
        attribute_types, attribute_digests, attribute_times = _signed_attribute(_der(attribute))
        content_types += attribute_types
        digests_seen += attribute_digests
        times += attribute_times
    return SignedParts(
        econtent_type=econtent_type,
        econtent=econtent,
        certificates=certificates,
        signer_id=_der(sid),
        digest_algorithm=_algorithm_oid(_der(digest_alg)),
        signature_algorithm=_der(sig_alg),
        signature=_octets(signature),
        signed_attrs=bytes(attrs[4]),
        content_types=tuple(content_types),
        message_digests=tuple(digests_seen),
        signing_times=tuple(times),
    )


@functools.lru_cache(maxsize=512)
def _signed_attribute(
    der: bytes,
) -> tuple[tuple[str, ...], tuple[bytes, ...], tuple[datetime, ...]]:
    """The contentType, messageDigest and signingTime values one signed attribute holds (other
    attributes hold none of them). Remembered: contentType, and often signingTime, repeat from
    message to message."""
    pair = _elements(_only(memoryview(der), UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(pair) != 2:
        raise _Unusual
    kind = _oid(pair[0])
    values = _elements(_want(pair[1], UNIVERSAL, CONSTRUCTED, TAG_SET)[4])
    if kind == _ATTR_CONTENT_TYPE:
        return tuple(_oid(v) for v in values), (), ()
    if kind == _ATTR_MESSAGE_DIGEST:
        return (), tuple(_octets(v) for v in values), ()
    if kind == _ATTR_SIGNING_TIME:
        for v in values:
            if v[0] != UNIVERSAL or v[2] not in (_TAG_UTC_TIME, _TAG_GENERALIZED_TIME):
                raise _Unusual
        return (), (), tuple(_time(_der(v), v[2]) for v in values)
    return (), (), ()


def read_envelope_fast(der: Octets, envelope_type: str) -> EnvelopeParts | None:
    """The parts of a bare EnvelopedData / AuthEnvelopedData of the usual shape, else None."""
    if envelope_type not in (OID_AUTH_ENVELOPED_DATA, OID_ENVELOPED_DATA):
        return None
    try:
        return _read_envelope(memoryview(der), envelope_type == OID_AUTH_ENVELOPED_DATA)
    except (_Unusual, ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None


def _read_envelope(data: memoryview, authenticated: bool) -> EnvelopeParts:
    fields = _elements(_only(data, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(fields) < 3:
        raise _Unusual
    _want(fields[0], UNIVERSAL, PRIMITIVE, _TAG_INTEGER)
    recipients = tuple(
        _read_kari(_want(r, CONTEXT, CONSTRUCTED, 1))
        for r in _elements(_want(fields[1], UNIVERSAL, CONSTRUCTED, TAG_SET)[4])
    )
    eci = _elements(_want(fields[2], UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    rest = fields[3:]
    aad, mac = b"", None
    if authenticated:
        if rest and rest[0][:3] == (CONTEXT, CONSTRUCTED, 1):
            aad = bytes(parser.emit(UNIVERSAL, CONSTRUCTED, TAG_SET, bytes(rest[0][4])))
            rest = rest[1:]
        if len(rest) != 1:
            raise _Unusual
        mac = _octets(rest[0])
    elif rest:
        raise _Unusual
    if len(eci) != 3:
        raise _Unusual
    algorithm = _elements(_want(eci[1], UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(algorithm) not in (1, 2):
        raise _Unusual
    return EnvelopeParts(
        recipients=recipients,
        content_type=_oid(eci[0]),
        cipher=_oid(algorithm[0]),
        cipher_params=_der(algorithm[1]) if len(algorithm) == 2 else None,
        ciphertext=_want(eci[2], CONTEXT, PRIMITIVE, 0)[4],
        mac=mac,
        aad=aad,
    )


def _read_kari(element: _Element) -> KariParts:
    fields = _elements(element[4])
    if len(fields) == 5:
        _version, originator, ukm_field, kea, reks = fields
        ukm: bytes | None = _octets(
            _only(_want(ukm_field, CONTEXT, CONSTRUCTED, 1)[4], UNIVERSAL, PRIMITIVE, 4)
        )
    elif len(fields) == 4:
        _version, originator, kea, reks = fields
        ukm = None
    else:
        raise _Unusual
    _want(_version, UNIVERSAL, PRIMITIVE, _TAG_INTEGER)
    key = _elements(
        _only(_want(originator, CONTEXT, CONSTRUCTED, 0)[4], CONTEXT, CONSTRUCTED, 1)[4]
    )
    if len(key) != 2:
        raise _Unusual
    curve = _ec_curve(_der(_want(key[0], UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)))
    _want(key[1], UNIVERSAL, PRIMITIVE, _TAG_BIT_STRING)
    point = bytes(core.ParsableOctetBitString(contents=bytes(key[1][4])))
    scheme, wrap = _key_agreement(_der(_want(kea, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)))
    keys = []
    for rek in _elements(_want(reks, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4]):
        pair = _elements(_want(rek, UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
        if len(pair) != 2:
            raise _Unusual
        rid = pair[0]
        if rid[:3] not in ((UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE), (CONTEXT, CONSTRUCTED, 0)):
            raise _Unusual
        keys.append((_der(rid), _octets(pair[1])))
    return KariParts(
        scheme=scheme,
        wrap=wrap,
        originator="originator_key",
        key_algorithm=OID_EC_PUBLIC_KEY,
        curve=curve,
        point=point,
        ukm=ukm,
        keys=tuple(keys),
    )


@functools.lru_cache(maxsize=64)
def _ec_curve(der: bytes) -> str | None:
    """The named curve of an id-ecPublicKey AlgorithmIdentifier (None without parameters)."""
    algorithm = _elements(_only(memoryview(der), UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(algorithm) not in (1, 2) or _oid(algorithm[0]) != OID_EC_PUBLIC_KEY:
        raise _Unusual
    return _oid(algorithm[1]) if len(algorithm) == 2 else None


@functools.lru_cache(maxsize=64)
def _key_agreement(der: bytes) -> tuple[str, bytes | None]:
    """(scheme OID, DER of the key-wrap algorithm or None) of a keyEncryptionAlgorithm."""
    scheme = _elements(_only(memoryview(der), UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
    if len(scheme) not in (1, 2):
        raise _Unusual
    wrap = None
    if len(scheme) == 2 and scheme[1][:3] != (UNIVERSAL, PRIMITIVE, _TAG_NULL):
        wrap = _der(scheme[1])
    return _oid(scheme[0]), wrap


def read_gcm_parameters(der: bytes) -> tuple[bytes, int]:
    """(nonce, ICV length) of RFC 5084 GCMParameters: the fast walk for the usual shape, else
    asn1crypto's class."""
    try:
        fields = _elements(_only(memoryview(der), UNIVERSAL, CONSTRUCTED, TAG_SEQUENCE)[4])
        if len(fields) == 1:
            return _octets(fields[0]), 12
        if len(fields) == 2:
            return _octets(fields[0]), _integer(
                _der(_want(fields[1], UNIVERSAL, PRIMITIVE, _TAG_INTEGER))
            )
    except (_Unusual, ValueError, TypeError, IndexError, OverflowError):
        pass
    gcm = GcmParameters.load(der)
    return gcm["nonce"].native, gcm["icv_len"].native


@functools.lru_cache(maxsize=64)
def _integer(der: bytes) -> int:
    return int(core.Integer.load(der).native)


# --- the full readers (asn1crypto's classes) -----------------------------------------------------


def read_signed(info: OpaqueContentInfo, detached: bytes | None = None) -> SignedParts:
    """The parts of any SignedData asn1crypto can read; raises ``CmsError``.

    ``detached`` is the content of a detached signature: the SignedData must then carry none."""
    content_type = info["content_type"].dotted
    if content_type != OID_SIGNED_DATA:
        raise CmsError("not-signed", f"content type {content_type} is not SignedData")
    try:
        signed = info["content"]
        if not isinstance(signed, OpaqueSignedData):
            raise CmsError("malformed", "SignedData has no content")
        eci = signed["encap_content_info"]
        econtent_type = eci["content_type"].dotted
        content = eci["content"]
        if detached is not None:
            if present(content):
                raise CmsError("malformed", "a detached signature must not carry content")
            econtent: Octets = detached
        elif not present(content):
            raise CmsError("malformed", "detached signature: no encapsulated content")
        else:
            econtent = content.contents if content.method == 0 else bytes(content)
        certs = signed["certificates"]
        certificates = (
            tuple(c.chosen.dump() for c in certs if c.name == "certificate")
            if present(certs)
            else ()
        )
        signer_infos = list(signed["signer_infos"])
        if len(signer_infos) != 1:
            raise CmsError("malformed", f"expected one SignerInfo, found {len(signer_infos)}")
        signer_info = signer_infos[0]
        signed_attrs = signer_info["signed_attrs"]
        content_types: list[str] = []
        digests: list[bytes] = []
        times: list[datetime] = []
        if present(signed_attrs):
            for attr in signed_attrs:
                kind = attr["type"].dotted
                if kind == _ATTR_CONTENT_TYPE:
                    content_types += [v.dotted for v in attr["values"]]
                elif kind == _ATTR_MESSAGE_DIGEST:
                    digests += [v.native for v in attr["values"]]
                elif kind == _ATTR_SIGNING_TIME:
                    times += [
                        t if t.tzinfo is not None else t.replace(tzinfo=UTC)
                        for t in (v.native for v in attr["values"])
                    ]
        return SignedParts(
            econtent_type=econtent_type,
            econtent=econtent,
            certificates=certificates,
            signer_id=signer_info["sid"].dump(),
            digest_algorithm=signer_info["digest_algorithm"]["algorithm"].dotted,
            signature_algorithm=signer_info["signature_algorithm"].dump(),
            signature=signer_info["signature"].native,
            signed_attrs=signed_attrs.contents if present(signed_attrs) else None,
            content_types=tuple(content_types),
            message_digests=tuple(digests),
            signing_times=tuple(times),
        )
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise CmsError("malformed", "SignedData structure is invalid") from None


def read_envelope(der: Octets, envelope_type: str) -> EnvelopeParts:
    """The parts of any bare (Auth)EnvelopedData asn1crypto can read; raises ``CmsError``."""
    der = bytes(der)
    try:
        if envelope_type == OID_AUTH_ENVELOPED_DATA:
            env: core.Sequence = cms.AuthEnvelopedData.load(der, strict=True)
            eci = env["auth_encrypted_content_info"]
            mac: bytes | None = env["mac"].native
            auth_attrs = env["auth_attrs"]
            aad = (
                bytes(parser.emit(UNIVERSAL, CONSTRUCTED, TAG_SET, auth_attrs.contents))
                if present(auth_attrs)
                else b""
            )
        elif envelope_type == OID_ENVELOPED_DATA:
            env = cms.EnvelopedData.load(der, strict=True)
            eci = env["encrypted_content_info"]
            mac, aad = None, b""
        else:
            raise CmsError("not-encrypted", f"eContentType {envelope_type} is not an envelope")
        recipients = tuple(_recipient_parts(info) for info in env["recipient_infos"])
        algorithm = eci["content_encryption_algorithm"]
        params = algorithm["parameters"]
        encrypted = eci["encrypted_content"]
        return EnvelopeParts(
            recipients=recipients,
            content_type=eci["content_type"].dotted,
            cipher=algorithm["algorithm"].dotted,
            cipher_params=params.dump() if present(params) else None,
            ciphertext=encrypted.native if present(encrypted) else None,
            mac=mac,
            aad=aad,
        )
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise CmsError("malformed", "envelope structure is invalid") from None


def _recipient_parts(info: cms.RecipientInfo) -> RecipientParts:
    if info.name == "ktri":
        ktri = info.chosen
        return KtriParts(
            ktri["rid"].dump(),
            ktri["key_encryption_algorithm"].dump(),
            ktri["encrypted_key"].native,
        )
    if info.name != "kari":
        return OtherRecipient(info.name)
    kari = info.chosen
    kea = kari["key_encryption_algorithm"]
    wrap_any = kea["parameters"]
    wrap = wrap_any.dump() if present(wrap_any) and not isinstance(wrap_any, core.Null) else None
    originator = kari["originator"]
    key_algorithm = curve = point = None
    if originator.name == "originator_key":
        orig_key = originator.chosen
        key_algorithm = orig_key["algorithm"]["algorithm"].dotted
        if key_algorithm == OID_EC_PUBLIC_KEY:
            curve_param = orig_key["algorithm"]["parameters"]
            if present(curve_param) and curve_param.name == "named":
                curve = curve_param.chosen.dotted
            point = bytes(orig_key["public_key"])
    ukm = kari["ukm"]
    return KariParts(
        scheme=kea["algorithm"].dotted,
        wrap=wrap,
        originator=originator.name,
        key_algorithm=key_algorithm,
        curve=curve,
        point=point,
        ukm=ukm.native if present(ukm) else None,
        keys=tuple(
            (rek["rid"].dump(), rek["encrypted_key"].native)
            for rek in kari["recipient_encrypted_keys"]
        ),
    )

"""ASN.1 declarations asn1crypto lacks (RFC 5753 ECC-CMS-SharedInfo, RFC 5084 GCMParameters),
and small helpers on top of asn1crypto's own parser."""

from __future__ import annotations

import functools

from asn1crypto import cms, core, parser

Octets = bytes | memoryview
"""Bytes, or a read-only view into a message (large contents are not copied while reading)."""


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 section 7.2: the KDF's SharedInfo for ECDH key agreement in CMS."""

    _fields = [
        ("key_info", core.Any),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


class GcmParameters(core.Sequence):
    """RFC 5084 section 3.2: AES-GCM parameters."""

    _fields = [
        ("nonce", core.OctetString),
        ("icv_len", core.Integer, {"default": 12}),
    ]


UNIVERSAL = 0
CONTEXT = 2
PRIMITIVE = 0
CONSTRUCTED = 1
TAG_INTEGER = 2
TAG_OID = 6
TAG_OCTET_STRING = 4
TAG_SEQUENCE = 16
TAG_SET = 17


def present(value: object) -> bool:
    """Whether an OPTIONAL field is there (asn1crypto returns ``Void`` for absent ones)."""
    return value is not None and not isinstance(value, core.Void)


def same_name(a: core.Asn1Value, b: core.Asn1Value) -> bool:
    """X.501 Name equality: identical encodings first (the usual case, cheap), then asn1crypto's
    RFC 5280 comparison (string preparation, expensive)."""
    return bool(a.dump() == b.dump() or a == b)


def as_set_of(contents: bytes) -> bytes:
    """Re-tag the content octets of an IMPLICIT [n] attribute set as a universal SET OF.

    Signatures over signed attributes (RFC 5652 5.4) and the AAD of AuthEnvelopedData
    (RFC 5083 2.2) are computed over this encoding, not over the [n]-tagged one.
    """
    return tlv(UNIVERSAL, CONSTRUCTED, TAG_SET, contents)


class _Sized:
    """Stands for content octets of a known length (asn1crypto's header encoder only takes len)."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


@functools.lru_cache(maxsize=1024)
def header(class_: int, method: int, tag: int, length: int) -> bytes:
    """Identifier and length octets for ``length`` bytes of content, encoded by asn1crypto."""
    return bytes(parser._dump_header(class_, method, tag, _Sized(length)))


def tlv(class_: int, method: int, tag: int, contents: bytes) -> bytes:
    """A whole element: ``contents`` behind its header."""
    return header(class_, method, tag, len(contents)) + contents


def enclose(class_: int, method: int, tag: int, parts: list[Octets]) -> list[Octets]:
    """``parts`` (the content octets, in pieces) behind their header: nesting without copying
    the content at every level (a message's eContent is copied once, by the final join)."""
    return [header(class_, method, tag, sum(map(len, parts))), *parts]


def outer_header(data: bytes | memoryview) -> tuple[int, int, int, memoryview]:
    """Class, method, tag and contents (a view, not a copy) of the first element of ``data``.

    asn1crypto checks the declared length against the data before slicing, so a length
    beyond the input is refused here without allocating for it.
    """
    view = memoryview(data)
    (class_, method, tag, _header, contents, _trailer), _end = parser._parse(view, len(view))
    return class_, method, tag, contents


def child_tags(sequence_contents: bytes | memoryview) -> list[tuple[int, int]]:
    """(class, tag) of every element inside a SEQUENCE's content octets, in order, without
    copying their contents (asn1crypto's parser; raises ``ValueError`` on a broken TLV)."""
    view = memoryview(sequence_contents)
    tags: list[tuple[int, int]] = []
    pos, end = 0, len(view)
    while pos < end:
        (class_, _method, tag, _header, _contents, _trailer), pos = parser._parse(view, end, pos)
        tags.append((class_, tag))
    return tags


def first_child_tag(sequence_contents: bytes | memoryview) -> tuple[int, int]:
    """(class, tag) of the first element inside a SEQUENCE's content octets."""
    class_, _method, tag, _contents = outer_header(sequence_contents)
    return class_, tag


# SignedData with an opaque eContent. asn1crypto's own EncapsulatedContentInfo parses eContent by
# its content type (as AuthEnvelopedData, ...) whenever one is built or read, which costs time and
# breaks on eContents that are a whole ContentInfo (OpenSSL) or not DER at all. Minimeter treats
# eContent as the bytes the signature covers and parses it separately.


class OpaqueEncapsulatedContentInfo(core.Sequence):
    _fields = [
        ("content_type", cms.ContentType),
        ("content", core.OctetString, {"explicit": 0, "optional": True}),
    ]


class OpaqueSignedData(core.Sequence):
    _fields = [
        ("version", cms.CMSVersion),
        ("digest_algorithms", cms.DigestAlgorithms),
        ("encap_content_info", OpaqueEncapsulatedContentInfo),
        ("certificates", cms.CertificateSet, {"implicit": 0, "optional": True}),
        ("crls", cms.RevocationInfoChoices, {"implicit": 1, "optional": True}),
        ("signer_infos", cms.SignerInfos),
    ]


class OpaqueContentInfo(core.Sequence):
    _fields = [
        ("content_type", cms.ContentType),
        ("content", core.Any, {"explicit": 0, "optional": True}),
    ]
    _oid_pair = ("content_type", "content")
    _oid_specs = {"signed_data": OpaqueSignedData}

"""What every payload decoder shares: size caps, zlib, hardened XML parsing, cheap sniffing.

Nothing here quotes payload content in an error: details name the rule that was broken.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from lxml import etree

from minimeter.errors import PayloadError

MAX_XML_BYTES = 32 * 1024 * 1024
"""The largest payload (after inflating) any decoder reads."""
MAX_DEPTH = 12
MAX_READINGS = 200_000
"""The most readings one message may hold (``decode_payload``'s default)."""
FAR_FUTURE_US = 253_402_300_799_999_999
"""9999-12-31T23:59:59.999999Z: the latest capture time when the caller gives no bound."""
EARLIEST_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z: no smart meter gateway reading is older."""

_ZLIB_CMF = 0x78


def inflate_if_zlib(payload: bytes, *, limit: int = MAX_XML_BYTES) -> bytes:
    """Inflate a zlib stream (RFC 1950 header detected), refusing to grow beyond ``limit``,
    a truncated stream and anything after the stream's end."""
    if len(payload) < 2 or payload[0] != _ZLIB_CMF or (payload[0] * 256 + payload[1]) % 31:
        return payload
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, limit + 1)
    except zlib.error:
        raise PayloadError("zlib stream is corrupt") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadError(f"inflated payload exceeds {limit} bytes")
    if not inflater.eof:
        raise PayloadError("zlib stream is truncated")
    if inflater.unused_data:
        raise PayloadError("zlib stream is followed by trailing data")
    return out


FORBIDDEN = re.compile(rb"<!(?i:doctype|entity)")


def check_xml_bytes(xml: bytes) -> None:
    """The byte-level refusals that come before any XML parser sees a document."""
    if b"\0" in xml:
        raise PayloadError("XML refused (not an ASCII-compatible encoding)")
    if b"!" in xml and FORBIDDEN.search(xml):  # memchr first: most documents have no "!"
        raise PayloadError("XML refused (DTD or entity declaration)")


def parse_xml(xml: bytes) -> Any:
    """Well-formed XML without a DTD, entity declarations or external references.

    The document is read as UTF-8 (no NUL bytes, so no UTF-16 that could hide markup from the byte
    check); a DOCTYPE or ENTITY declaration anywhere refuses it; only then does libxml2 (lxml)
    build the tree, with entity resolution, DTD loading and network access off and its default
    limits on depth and text size. Without a DTD every entity reference except the five
    predefined ones is an error, so nothing can expand. Comments and processing instructions are
    dropped, as ElementTree does; so is whitespace between elements (pretty-printing).
    """
    check_xml_bytes(xml)
    parser = etree.XMLParser(  # one per document: lxml parsers are not shared between threads
        # The encoding is forced to UTF-8, whatever the document declares: a declared codec such as
        # UTF-7 could otherwise smuggle markup past the byte check above.
        encoding="utf-8",
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise PayloadError(f"not well-formed XML (line {exc.lineno})") from None
    except (LookupError, UnicodeError, ValueError):
        raise PayloadError("not well-formed XML (encoding)") from None
    if root is None:
        raise PayloadError("not well-formed XML (no root element)")
    return root


def depth_ok(root: Any, limit: int) -> bool:
    """No element deeper than ``limit`` (root = 1): XPath (in C) looks for one at ``limit + 1``."""
    return not root.xpath("boolean(" + "/".join(["*"] * limit) + ")")


# --- sniffing ------------------------------------------------------------------------------------

SNIFF_BYTES = 64 * 1024
"""How far into a payload sniffing looks for the root element."""

_PROLOG = re.compile(
    rb"(?:\s+|<\?.*?\?>|<!--.*?-->|<!(?i:doctype)[^\[>]*(?:\[.*?\])?\s*>)*", re.DOTALL
)
_START_TAG = re.compile(
    rb"<([A-Za-z_][\w.\-]*)(?::([A-Za-z_][\w.\-]*))?"
    rb"((?:\s+[^\s=<>/]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*/?>"
)
_XMLNS = re.compile(rb"""\sxmlns(?::([A-Za-z_][\w.\-]*))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_BOMS = (b"\xef\xbb\xbf",)


def looks_like_xml(data: bytes) -> bool:
    """Does the payload start (after a UTF-8 BOM and whitespace) with markup?"""
    head = data[:64]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
    return head.lstrip().startswith(b"<")


def xml_root(data: bytes) -> tuple[str, str] | None:
    """``(namespace URI, local name)`` of the document element, read from the first bytes
    without parsing the document (prefixes resolved through the root's own ``xmlns``
    declarations; ``""`` for no namespace). ``None`` when the head is not XML or the root
    tag cannot be found in the first ``SNIFF_BYTES``."""
    head = data[:SNIFF_BYTES]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
    prolog = _PROLOG.match(head)
    at = prolog.end() if prolog else 0
    tag = _START_TAG.match(head, at)
    if tag is None:
        return None
    first, second, attributes = tag.group(1), tag.group(2), tag.group(3)
    prefix, local = (first, second) if second is not None else (b"", first)
    for declared in _XMLNS.finditer(attributes):
        if (declared.group(1) or b"") == prefix:
            uri = declared.group(2) if declared.group(2) is not None else declared.group(3)
            return uri.decode("utf-8", "replace"), local.decode("ascii")
    if prefix:  # an undeclared prefix: not a namespace-well-formed document
        return None
    return "", local.decode("ascii")

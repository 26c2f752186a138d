"""The payload decoders' seam: a small open table of formats, chosen by content type or sniffing.

A format registers itself (``register_decoder``) with a name, a ``sniff`` that looks at the
first bytes only, and a ``decode``; a format Minimeter recognises but cannot read yet (a
VDE-AR-E 2418-6 document, a DSMR P1 telegram, a gateway's plain-text answer) is registered
without one, so that it is refused by name as ``payload-unsupported``, as the CMS core does with
known but unimplemented content ciphers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from minimeter.errors import PayloadError, PayloadUnsupported
from minimeter.payload.base import (
    MAX_READINGS,
    MAX_XML_BYTES,
    check_xml_bytes,
    inflate_if_zlib,
    looks_like_xml,
)
from minimeter.readings import DecodedProfile


class Decode(Protocol):
    def __call__(self, payload: bytes, *, latest_us: int, max_readings: int) -> DecodedProfile: ...


@dataclass(frozen=True)
class PayloadDecoder:
    name: str
    """Short, stable name (also accepted as a content-type hint)."""
    description: str
    """What the format is, for the refusal detail of a format without ``decode``."""
    sniff: Callable[[bytes], bool]
    """Does this (inflated) payload look like this format? Cheap: the first bytes only."""
    decode: Decode | None = None
    content_types: tuple[str, ...] = ()
    """Media types (lower case, without parameters) that name this format."""


DECODERS: dict[str, PayloadDecoder] = {}


def register_decoder(decoder: PayloadDecoder) -> None:
    """Add (or replace) a payload format; formats are sniffed in registration order (those
    with a ``decode`` first)."""
    DECODERS.pop(decoder.name, None)
    DECODERS[decoder.name] = decoder


def _by_content_type(content_type: str | None) -> PayloadDecoder | None:
    if not content_type:
        return None
    hint = content_type.split(";", 1)[0].strip().lower()
    for decoder in DECODERS.values():
        if hint == decoder.name or hint in decoder.content_types:
            return decoder
    return None


def find_decoder(data: bytes, content_type: str | None = None) -> PayloadDecoder | None:
    """The format of an (inflated) payload: the one its content type names, else the first
    whose sniff accepts it, formats Minimeter reads before those it only names."""
    named = _by_content_type(content_type)
    if named is not None:
        return named
    for readable in (True, False):
        for decoder in DECODERS.values():
            if (decoder.decode is not None) == readable and decoder.sniff(data):
                return decoder
    return None


def decode_payload(
    payload: bytes,
    *,
    latest_us: int,
    max_readings: int = MAX_READINGS,
    content_type: str | None = None,
) -> DecodedProfile:
    """One message's payload (zlib-compressed or not) as readings. Raises ``PayloadError``
    (``payload-invalid``: a known format, broken) or its subclass ``PayloadUnsupported``
    (``payload-unsupported``: no format Minimeter reads)."""
    data = inflate_if_zlib(payload, limit=MAX_XML_BYTES)
    if len(data) > MAX_XML_BYTES:
        raise PayloadError(f"payload exceeds {MAX_XML_BYTES} bytes")
    if not data or data.isspace():  # (no copy of the payload)
        raise PayloadError("payload is empty")
    xml = looks_like_xml(data)
    if xml:  # hostile XML (a DTD, entities, a hidden UTF-16) is refused whatever its root
        check_xml_bytes(data)
    decoder = find_decoder(data, content_type)
    if decoder is None:
        kind = "an XML document of no known format" if xml else "no known format"
        raise PayloadUnsupported(f"payload is {kind}")
    if decoder.decode is None:
        raise PayloadUnsupported(f"payload is {decoder.description}, which Minimeter does not read")
    return decoder.decode(data, latest_us=latest_us, max_readings=max_readings)

"""DKE K461 ``profile_generic`` XML, as SMGWs put it inside their CMS messages.

Shape (formats.md 1.8): ``ns1:object class_id="7"``; ``attributes/capture_objects/capture_object``
whose ``logical_name`` is the 12-hex OBIS code + ``.`` + meter id + ``.sm``; and
``attributes/buffer/simple_data/column`` (one per capture object, same ``id``) of
``entry_gateway_signed`` entries with ``capture_time`` (UTC, ``Z``), ``value/long64``, ``scaler``,
``unit`` (DLMS unit code) and ``status``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from lxml import etree

from minimeter.errors import MinimeterError, PayloadError
from minimeter.obis import DLMS_UNITS, obis_from_hex, obis_to_hex, scale
from minimeter.readings import DecodedProfile, DecodedSeries, ReadingStatus

NS_PROFILE = "urn:k461-dke-de:profile_generic-1"
NS_EXTENSION = "urn:k461-dke-de:extension-1"


@dataclass(frozen=True)
class Series:
    """One capture object's column: raw integer values as the gateway sends them."""

    obis: str
    scaler: int
    dlms_unit: int
    capture_times: Sequence[datetime]
    values: Sequence[int]
    statuses: Sequence[int] | None = None


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_profile(
    meter: str, series: Iterable[Series], *, profile_obis: str = "1-0:99.1.0"
) -> bytes:
    """The K461 XML document for one meter's profile (UTF-8 bytes)."""
    series = list(series)
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<ns1:object xmlns:ns1="{NS_PROFILE}" xmlns:ns2="{NS_EXTENSION}" class_id="7">\n',
        f"<ns1:logical_name>{obis_to_hex(profile_obis)}.{meter}.sm</ns1:logical_name>\n",
        "<ns1:attributes>\n<ns1:capture_objects>\n",
    ]
    for i, s in enumerate(series, start=1):
        out.append(
            f'<ns1:capture_object id="{i}"><ns2:class_id>3</ns2:class_id>'
            f"<ns2:logical_name>{obis_to_hex(s.obis)}.{meter}.sm</ns2:logical_name>"
            "<ns2:attribute_index>2</ns2:attribute_index></ns1:capture_object>\n"
        )
    out.append("</ns1:capture_objects>\n<ns1:buffer>\n<ns1:simple_data>\n")
    for i, s in enumerate(series, start=1):
        out.append(f'<ns1:column id="{i}">\n')
        statuses = s.statuses or [0] * len(s.values)
        tail = f"</ns2:long64></ns2:value><ns2:scaler>{s.scaler}</ns2:scaler><ns2:unit>{s.dlms_unit}</ns2:unit><ns2:status>"
        out.extend(
            f"<ns1:entry_gateway_signed><ns2:capture_time>{_time(t)}</ns2:capture_time>"
            f"<ns2:value><ns2:long64>{v}{tail}{st}</ns2:status></ns1:entry_gateway_signed>\n"
            for t, v, st in zip(s.capture_times, s.values, statuses, strict=True)
        )
        out.append("</ns1:column>\n")
    out.append("</ns1:simple_data>\n</ns1:buffer>\n</ns1:attributes>\n</ns1:object>\n")
    return "".join(out).encode()


# --- decoding ---------------------------------------------------------------------------------

MAX_XML_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 12
_ZLIB_CMF = 0x78


def inflate_if_zlib(payload: bytes, *, limit: int = MAX_XML_BYTES) -> bytes:
    """Inflate a zlib stream (RFC 1950 header detected), refusing to grow beyond ``limit``."""
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
    return out


_FORBIDDEN = re.compile(rb"<!(?i:doctype|entity)")


def _parse_xml(xml: bytes) -> Any:
    """Well-formed XML without a DTD, entity declarations or external references.

    The document is read as UTF-8 (no NUL bytes, so no UTF-16 that could hide markup from the byte
    check); a DOCTYPE or ENTITY declaration anywhere refuses it; only then does libxml2 (lxml)
    build the tree, with entity resolution, DTD loading and network access off and its default
    limits on depth and text size. Without a DTD every entity reference except the five
    predefined ones is an error, so nothing can expand. Comments and processing instructions are
    dropped, as ElementTree does.
    """
    if b"\0" in xml:
        raise PayloadError("XML refused (not an ASCII-compatible encoding)")
    if _FORBIDDEN.search(xml):
        raise PayloadError("XML refused (DTD or entity declaration)")
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


def _depth_ok(root: Any, limit: int) -> bool:
    """No element deeper than ``limit`` (root = 1): XPath (in C) looks for one at ``limit + 1``."""
    return not root.xpath("boolean(" + "/".join(["*"] * limit) + ")")


def _times_us(texts: list[str]) -> np.ndarray:
    """UTC ``YYYY-MM-DDThh:mm:ss[.f]Z`` strings to epoch microseconds (numpy parses them in C)."""
    stripped = [t.strip() for t in texts]
    if not all(t.endswith("Z") and "T" in t for t in stripped):
        raise ValueError("capture_time must be UTC, written with Z")
    return np.array([t[:-1] for t in stripped], dtype="datetime64[us]").astype(np.int64)


def _scaled(raw: list[int], scaler: int) -> np.ndarray:
    """``scale(v, scaler)`` of every value. Vectorised when the values and the power of ten are
    exact doubles (|v| < 2**53, |scaler| <= 22): one IEEE multiplication or division of exact
    operands rounds exactly as ``scale`` does."""
    if raw and max(raw) < 2**53 and min(raw) > -(2**53) and abs(scaler) <= 22:
        values = np.array(raw, dtype=np.float64)
        return values * float(10**scaler) if scaler >= 0 else values / float(10**-scaler)
    return np.array([scale(v, scaler) for v in raw], dtype=np.float64)


def decode_profile(
    payload: bytes, *, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_DEPTH
) -> DecodedProfile:
    """Parse a (possibly zlib-compressed) K461 profile. Raises only ``PayloadError``.

    XML is refused with a DTD or entity declarations, after a size cap, and parsed by libxml2;
    the tree depth is capped too. Error texts never quote payload content.
    """
    xml = inflate_if_zlib(payload, limit=max_bytes)
    if len(xml) > max_bytes:
        raise PayloadError(f"payload exceeds {max_bytes} bytes")
    root = _parse_xml(xml)
    if not _depth_ok(root, max_depth):
        raise PayloadError(f"XML nested deeper than {max_depth} levels")
    if root.tag != f"{{{NS_PROFILE}}}object" or root.get("class_id") != "7":
        raise PayloadError("not a K461 profile_generic object (class_id 7)")
    p, e = f"{{{NS_PROFILE}}}", f"{{{NS_EXTENSION}}}"
    objects = root.findall(f"{p}attributes/{p}capture_objects/{p}capture_object")
    columns = {
        c.get("id"): c for c in root.findall(f"{p}attributes/{p}buffer/{p}simple_data/{p}column")
    }
    if not objects:
        raise PayloadError("profile has no capture objects")
    meters: set[str] = set()
    series = []
    for obj in objects:
        name = (obj.findtext(f"{e}logical_name") or "").strip()
        parts = name.split(".")
        if len(parts) != 3 or parts[2] != "sm" or not parts[1]:
            raise PayloadError("capture object logical_name is not <obis>.<meter>.sm")
        try:
            obis = obis_from_hex(parts[0])
        except MinimeterError:
            raise PayloadError("capture object has an invalid OBIS code") from None
        meters.add(parts[1])
        column = columns.get(obj.get("id"))
        if column is None:
            raise PayloadError(f"no buffer column for capture object {obj.get('id')!r}")
        series.append(_column(column, obis, e, p))
    if len(meters) != 1:
        raise PayloadError("capture objects name more than one meter")
    return DecodedProfile(meters.pop(), tuple(series))


def _texts(column: Any, tag: str) -> list[str]:
    return [el.text or "" for el in column.iter(tag)]


def _column(column: Any, obis: str, e: str, p: str) -> DecodedSeries:
    n = len(column.findall(f"{p}entry_gateway_signed"))
    fields = [
        _texts(column, f"{e}{name}")
        for name in ("capture_time", "long64", "scaler", "unit", "status")
    ]
    if any(len(f) != n for f in fields):
        raise PayloadError(f"entries of {obis} miss a capture_time, value, scaler, unit or status")
    times_text, raw_text, scaler_text, unit_text, status_text = fields
    try:
        times = _times_us(times_text)
        scalers = {int(x) for x in set(scaler_text)}
        raw = list(map(int, raw_text))
        units = {int(x) for x in set(unit_text)}
        statuses = list(map(int, status_text))
    except (ValueError, OverflowError):
        raise PayloadError(
            f"an entry of {obis} has an invalid time, value, scaler, unit or status"
        ) from None
    if len(units) > 1 or len(scalers) > 1:
        raise PayloadError(f"entries of {obis} use more than one unit or scaler")
    scaler = scalers.pop() if scalers else 0
    if not -9 <= scaler <= 9:
        raise PayloadError(f"scaler of {obis} is out of range")
    unit_code = units.pop() if units else 0
    t = times
    order = np.argsort(t, kind="stable")
    t = t[order]
    if len(t) > 1 and (np.diff(t) == 0).any():
        raise PayloadError(f"entries of {obis} repeat a capture time")
    step = 0
    if len(t) > 1:  # the most common spacing (np.unique: no allocation sized by the values)
        spacings, counts = np.unique(np.diff(t), return_counts=True)
        step = int(spacings[counts.argmax()])
    raw_status = np.array(statuses, dtype=np.uint64)[order]
    codes = np.full(len(raw_status), ReadingStatus.UNKNOWN, dtype=np.uint8)
    for word, status in (
        (0, ReadingStatus.VALID),
        (3, ReadingStatus.NOT_PRESENT),
        (4, ReadingStatus.INVALID),
    ):
        codes[raw_status == word] = status
    return DecodedSeries(
        obis=obis,
        unit=DLMS_UNITS.get(unit_code, f"dlms-{unit_code}"),
        times_us=t,
        values=_scaled(raw, scaler)[order],
        status=codes,
        status_raw=raw_status,
        captured_us=t.copy(),
        step_us=step,
    )

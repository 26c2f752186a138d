"""DKE K461 ``profile_generic`` XML, as Smart Meter Gateways put it inside their messages.

The shape (formats.md 1.8; gateway-data-real.md 1 for what real gateways write): a root
``object`` with ``class_id="7"`` (COSEM Profile Generic) in namespace
``urn:k461-dke-de:profile_generic-1`` (``p``), fields in ``urn:k461-dke-de:extension-1``
(``e``); only the namespace URIs count, never the prefixes. ``attributes/capture_objects`` holds
one ``capture_object`` per column whose ``e:logical_name`` is the 12-hex OBIS code + ``.`` +
meter id + ``.sm`` (any ``class_id``: 32822 real, 3 old; other children ignored);
``attributes/buffer/simple_data/column`` (same ``id``) holds ``entry_gateway_signed`` entries,
in any order (real gateways: newest first), each with ``value/long64``, ``scaler``, ``unit``
(DLMS unit code), ``status`` (a bare integer, ``<unsigned>`` or ``<octet-string>``: see
``minimeter.payload.status``), ``capture_time`` (UTC, ``Z``) and, from real gateways, an
``smgw_signature`` that is never read. The profile's own ``logical_name`` sits at the root
(old shape) or under ``attributes`` (real). ``id`` and ``count`` attributes are ignored.

Two styles are written for synth and tests: ``simple`` (the old shape, exactly) and ``real``
(as PPC gateways write it: wrapped status, class 32822, newest first, pretty-printed,
per-entry signatures).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from lxml import etree

from minimeter.errors import MinimeterError, PayloadError, PayloadUnsupported
from minimeter.obis import DLMS_UNITS, obis_from_hex, obis_to_hex, scale
from minimeter.payload.base import (
    EARLIEST_US,
    FAR_FUTURE_US,
    MAX_READINGS,
    MAX_XML_BYTES,
    depth_ok,
    inflate_if_zlib,
    parse_xml,
    xml_root,
)
from minimeter.payload.registry import PayloadDecoder, register_decoder
from minimeter.payload.status import fnn_status, ppc_status
from minimeter.payload.timing import STANDARD_PERIODS_US, attribute, detect_periods, window_bounds
from minimeter.readings import DELIVERABLE, DecodedProfile, DecodedSeries

NS_PROFILE = "urn:k461-dke-de:profile_generic-1"
NS_EXTENSION = "urn:k461-dke-de:extension-1"
K461_NAMESPACE_PREFIX = "urn:k461-dke-de:"
NS = {"p": NS_PROFILE, "e": NS_EXTENSION}

STYLES = ("simple", "real")
REAL_PROFILE_HEX = "01005e31803c"
"""The profile OBIS of a PPC gateway's 15-minute load profile (1-0:94.49.128*60)."""

# --- encoding (synth, tests) --------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One capture object's column: raw integer values as the gateway sends them."""

    obis: str
    scaler: int
    dlms_unit: int
    capture_times: Sequence[datetime]
    """The period ends (the grid)."""
    values: Sequence[int]
    statuses: Sequence[int] | None = None
    """Raw statuses: PPC integers, or for ``status_form="octet-string"`` the 8 bytes of the
    FNN word as a little-endian integer (default: all 0)."""
    sent_times: Sequence[datetime] | None = None
    """The capture times as the gateway writes them (default: ``capture_times``)."""


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_profile(
    meter: str,
    series: Iterable[Series],
    *,
    profile_obis: str = "1-0:99.1.0",
    style: str = "simple",
    gateway_key: bytes | None = None,
    status_form: str = "unsigned",
) -> bytes:
    """The K461 XML document for one meter's profile (UTF-8 bytes).

    ``style="simple"`` writes the old shape exactly (profile ``logical_name`` at the root,
    ``class_id`` 3, oldest first, bare status, one entry a line). ``style="real"`` writes what
    PPC gateways write: the profile name (``01005e31803c``) as root ``id`` and under
    ``attributes``, ``class_id`` 32822 with ``class_version``, ``attr_reference`` and
    ``index_reference``, entries newest first, pretty-printed, the status wrapped
    (``<unsigned>``, or ``<octet-string>`` with ``status_form="octet-string"``), and a per-entry
    ``smgw_signature``: 64 bytes that look random (derived from ``gateway_key`` and the entry)
    followed by the 64 bytes of ``gateway_key`` (the gateway's public key, stable per gateway;
    default: derived from the meter id).
    """
    if style == "simple":
        return _encode_simple(meter, list(series), profile_obis)
    if style != "real":
        raise ValueError(f"unknown K461 style {style!r} (one of {', '.join(STYLES)})")
    if status_form not in ("unsigned", "octet-string"):
        raise ValueError(f"unknown status form {status_form!r}")
    key = gateway_key if gateway_key is not None else hashlib.sha512(meter.encode()).digest()
    if len(key) != 64:
        raise ValueError("gateway_key must be 64 bytes")
    return _encode_real(meter, list(series), key, status_form)


def _encode_simple(meter: str, series: list[Series], profile_obis: str) -> bytes:
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
        times = s.sent_times or s.capture_times
        tail = f"</ns2:long64></ns2:value><ns2:scaler>{s.scaler}</ns2:scaler><ns2:unit>{s.dlms_unit}</ns2:unit><ns2:status>"
        out.extend(
            f"<ns1:entry_gateway_signed><ns2:capture_time>{_time(t)}</ns2:capture_time>"
            f"<ns2:value><ns2:long64>{v}{tail}{st}</ns2:status></ns1:entry_gateway_signed>\n"
            for t, v, st in zip(times, s.values, statuses, strict=True)
        )
        out.append("</ns1:column>\n")
    out.append("</ns1:simple_data>\n</ns1:buffer>\n</ns1:attributes>\n</ns1:object>\n")
    return "".join(out).encode()


def _encode_real(meter: str, series: list[Series], key: bytes, status_form: str) -> bytes:
    """One element a line, indented by a tab a level (real exports are pretty-printed)."""
    name = f"{REAL_PROFILE_HEX}.{meter}.sm"
    public = key.hex()
    i2, i3, i4, i5, i6, i7 = ("\t" * k for k in range(2, 8))
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<ns1:object xmlns:ns1="{NS_PROFILE}" xmlns:ns2="{NS_EXTENSION}" '
        f'class_id="7" class_version="1" id="{name}">\n',
        '\t<ns1:attributes count="3">\n',
        f'{i2}<ns2:logical_name id="1">{name}</ns2:logical_name>\n',
        f'{i2}<ns1:capture_objects id="2" count="{len(series)}">\n',
    ]
    for c, s in enumerate(series, start=1):
        out.append(
            f'{i3}<ns1:capture_object id="{c}">\n'
            f"{i4}<ns2:logical_name>{obis_to_hex(s.obis)}.{meter}.sm</ns2:logical_name>\n"
            f"{i4}<ns2:class_id>32822</ns2:class_id>\n"
            f"{i4}<ns2:class_version>0</ns2:class_version>\n"
            f"{i4}<ns2:attr_reference>2</ns2:attr_reference>\n"
            f"{i4}<ns2:index_reference>0</ns2:index_reference>\n"
            f"{i3}</ns1:capture_object>\n"
        )
    out.append(
        f'{i2}</ns1:capture_objects>\n{i2}<ns1:buffer id="3">\n'
        f'{i3}<ns1:simple_data count="{len(series)}">\n'
    )
    for c, s in enumerate(series, start=1):
        n = len(s.values)
        statuses = list(s.statuses) if s.statuses else [0] * n
        times = list(s.sent_times or s.capture_times)
        out.append(f'{i4}<ns1:column id="{c}" count="{n}">\n')
        head = hashlib.blake2b(key=key[:32], digest_size=32, person=b"k461-entry")
        for k in range(n - 1, -1, -1):  # newest first, id 1 = the latest reading
            t = _time(times[k])
            st = statuses[k]
            status = (
                f"<ns2:unsigned>{st}</ns2:unsigned>"
                if status_form == "unsigned"
                else f"<ns2:octet-string>{st.to_bytes(8, 'little').hex().upper()}</ns2:octet-string>"
            )
            h = head.copy()
            h.update(f"{s.obis}|{t}|{s.values[k]}|{st}".encode())
            first = h.digest()  # 64 bytes that look random, then the gateway's 64
            signature = first.hex() + hashlib.sha256(first).hexdigest() + public
            out.append(
                f'{i5}<ns1:entry_gateway_signed id="{n - k}">\n'
                f"{i6}<ns2:value>\n{i7}<ns2:long64>{s.values[k]}</ns2:long64>\n{i6}</ns2:value>\n"
                f"{i6}<ns2:scaler>{s.scaler}</ns2:scaler>\n"
                f"{i6}<ns2:unit>{s.dlms_unit}</ns2:unit>\n"
                f"{i6}<ns2:status>\n{i7}{status}\n{i6}</ns2:status>\n"
                f"{i6}<ns2:capture_time>{t}</ns2:capture_time>\n"
                f"{i6}<ns2:smgw_signature>{signature}</ns2:smgw_signature>\n"
                f"{i5}</ns1:entry_gateway_signed>\n"
            )
        out.append(f"{i4}</ns1:column>\n")
    out.append(f"{i3}</ns1:simple_data>\n{i2}</ns1:buffer>\n\t</ns1:attributes>\n</ns1:object>\n")
    return "".join(out).encode()


# --- decoding -----------------------------------------------------------------------------------

_NAME = re.compile(r"^([0-9a-fA-F]{12})\.([0-9A-Za-z_-]{1,64})\.sm$")
_TIMES = re.compile(r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z\n)*", re.ASCII)
_INTS = re.compile(r"[0-9+\-\n]*")
"""The characters of decimal integers (each text is then converted, and checked, by int())."""
_UINTS = re.compile(r"[0-9+\n]*")
_HEX16 = re.compile(r"(?:[0-9A-Fa-f]{16}\n)*")
_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"\+?[0-9]+")
_TIME_CHARS = re.compile(r"[0-9TZ:\-\n]*")
_TIME_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_TIME_MARKS = ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "Z"))


def _plain_times(texts: list[str]) -> bool:
    """Are all texts exactly ``YYYY-MM-DDThh:mm:ssZ``? (The usual case, checked by slicing the
    joined texts at fixed offsets instead of a regular expression a text.)"""
    n, joined = len(texts), "\n".join(texts)
    if len(joined) != 21 * n - 1 or _TIME_CHARS.fullmatch(joined) is None:
        return False
    if joined[20::21] != "\n" * (n - 1):
        return False
    return all(joined[k::21] == mark * n for k, mark in _TIME_MARKS) and all(
        joined[k::21].isdigit() for k in _TIME_DIGITS
    )


_E = "p:attributes/p:buffer/p:simple_data/p:column/p:entry_gateway_signed"
_PATHS = {
    "columns": "p:attributes/p:buffer/p:simple_data/p:column",
    "objects": "p:attributes/p:capture_objects/p:capture_object",
    "object_name": "e:logical_name/text()",
    "profile_name": (
        "p:logical_name/text() | p:attributes/p:logical_name/text()"
        " | p:attributes/e:logical_name/text()"
    ),
    "column_entries": "count(p:entry_gateway_signed)",
    # Each field is the first text of the first such child of each entry: at most one text an
    # entry, so a list of ``total`` texts is aligned with the entries. The counts below refuse
    # entries with repeated or other children.
    "time": f"{_E}/e:capture_time[1]/text()[1]",
    "value": f"{_E}/e:value[1]/e:long64[1]/text()[1]",
    "scaler": f"{_E}/e:scaler[1]/text()[1]",
    "unit": f"{_E}/e:unit[1]/text()[1]",
    "status_bare": f"{_E}/e:status[1]/text()[1]",
    "status_unsigned": f"{_E}/e:status[1]/e:unsigned[1]/text()[1]",
    "status_octets": f"{_E}/e:status[1]/e:octet-string[1]/text()[1]",
    "children": f"count({_E}/*)",
    "first_wrapped": "boolean(p:entry_gateway_signed[1]/e:status/*)",
}
_local = threading.local()

_FIELDS = 5
"""value, scaler, unit, status, capture_time (and, from real gateways, smgw_signature)."""
_DELIVERABLE = np.zeros(256, dtype=bool)
_DELIVERABLE[[int(s) for s in DELIVERABLE]] = True
_PPC_DIGITS = ppc_status(np.arange(10, dtype=np.uint64))
"""``ppc_status`` of the single-digit statuses, as a table."""
_TIME_TEMPLATE = np.frombuffer(b"0000-00-00T00:00:00Z\n", dtype=np.uint8)
_TIME_LIMIT = np.where(_TIME_TEMPLATE == ord("0"), 9, 0).astype(np.uint8)
"""A ``YYYY-MM-DDThh:mm:ssZ`` text and its separator, byte by byte: ``byte - template`` (mod
256) is at most 9 where a digit belongs and 0 where a mark does."""
_PERIOD_LOW, _PERIOD_HIGH = window_bounds()


def _fast_times(texts: list[str]) -> np.ndarray | None:
    """Epoch microseconds of capture times that are all exactly ``YYYY-MM-DDThh:mm:ssZ`` (the
    usual case), checked and converted in numpy without a Python step a text; ``None`` when
    any text has another form (the caller then takes the general path, which gives the
    precise refusal). Accepts exactly what ``_plain_times`` accepts and converts as
    ``_Fields._times`` does (numpy's parser, on the same 19 characters)."""
    joined = "\n".join(texts) + "\n"
    if len(joined) != 21 * len(texts) or not texts or not joined.isascii():
        return None
    grid = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, 21)
    # a separator after every 20 characters and no other one: every text has 20 characters
    if not ((grid - _TIME_TEMPLATE) <= _TIME_LIMIT).all():
        return None
    stamps = np.ascontiguousarray(grid[:, :19]).view("S19").ravel()
    try:
        return stamps.astype("datetime64[us]").astype(np.int64)
    except ValueError:
        raise PayloadError("a capture time is out of range (no such date or time)") from None


def _uniform_period(captured: np.ndarray, starts: list[int], usable: np.ndarray) -> int:
    """The capture period every column has when all spacings between usable readings of every
    column match one standard period (the usual case): what ``detect_periods`` gives each
    column then, found with a few array operations. 0 when that is not the case (a column
    with fewer than two readings or no usable pair, spacings of several periods or of none):
    the caller then runs ``detect_periods``. ``captured`` is sorted within each column."""
    total = len(captured)
    if total < 2 or any(b - a < 2 for a, b in itertools.pairwise(starts)):
        return 0
    pairs = usable[1:] & usable[:-1]
    pairs[[b - 1 for b in starts[1:-1]]] = False  # no pair across two columns
    if not np.logical_or.reduceat(pairs, starts[:-1]).all():
        return 0  # a column without a usable pair
    spacing = (captured[1:] - captured[:-1])[pairs]
    low, high = int(spacing.min()), int(spacing.max())
    for period, lo, hi in zip(STANDARD_PERIODS_US, _PERIOD_LOW, _PERIOD_HIGH, strict=True):
        if lo <= low and high <= hi:
            return period
    return 0


def _xpath() -> dict[str, Any]:
    """Compiled XPaths (plain strings as results), one set per thread: lxml's XPath evaluators
    are not shared across threads."""
    compiled = getattr(_local, "xpaths", None)
    if compiled is None:
        compiled = {
            k: etree.XPath(v, namespaces=NS, smart_strings=False, regexp=False)
            for k, v in _PATHS.items()
        }
        _local.xpaths = compiled
    return compiled


def decode_profile(
    payload: bytes,
    *,
    latest_us: int = FAR_FUTURE_US,
    max_readings: int = MAX_READINGS,
    max_bytes: int = MAX_XML_BYTES,
    max_depth: int | None = None,
) -> DecodedProfile:
    """Parse a (possibly zlib-compressed) K461 profile. Raises only ``PayloadError``:
    ``PayloadUnsupported`` when the document is not a K461 profile_generic object at all.

    XML is refused with a DTD or entity declarations, after a size cap, and parsed by libxml2
    (whose own nesting limit applies; ``max_depth`` checks a lower one). The number of readings
    (``max_readings``) is counted before any array is built. Capture times must lie between
    2000-01-01 and ``latest_us``. One pass: one XPath a field over the whole document, numpy
    parsing of the texts. Error texts never quote payload content.
    """
    xml = inflate_if_zlib(payload, limit=max_bytes)
    if len(xml) > max_bytes:
        raise PayloadError(f"payload exceeds {max_bytes} bytes")
    root = parse_xml(xml)
    if max_depth is not None and not depth_ok(root, max_depth):
        raise PayloadError(f"XML nested deeper than {max_depth} levels")
    _check_root(root)
    x = _xpath()
    columns = x["columns"](root)
    counts = [int(x["column_entries"](c)) for c in columns]
    total = sum(counts)
    if total > max_readings:
        raise PayloadError(f"profile holds more than {max_readings} readings")
    meter, order = _capture_objects(root, columns, x)
    column_obis = [""] * len(columns)
    for obis, c in order:
        column_obis[c] = obis
    fields = _Fields(root, x, columns, counts, column_obis)
    return DecodedProfile(meter, fields.series(order, latest_us))


def decode(payload: bytes, *, latest_us: int, max_readings: int) -> DecodedProfile:
    """The K461 decoder of the payload seam."""
    return decode_profile(payload, latest_us=latest_us, max_readings=max_readings)


def _check_root(root: Any) -> None:
    tag = root.tag if isinstance(root.tag, str) else ""
    namespace = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
    if tag != f"{{{NS_PROFILE}}}object":
        if namespace.startswith(K461_NAMESPACE_PREFIX):
            raise PayloadUnsupported("payload is a K461 document of another kind, not a profile")
        raise PayloadUnsupported("payload is not a K461 profile_generic object")
    class_id = (root.get("class_id") or "").strip()
    if class_id.isascii() and class_id.isdigit() and len(class_id) < 8:
        if int(class_id) == 7:
            return
        raise PayloadUnsupported("payload is a K461 object of another class, not profile_generic")
    raise PayloadError("K461 object has no valid class_id (profile_generic is 7)")


def _capture_objects(
    root: Any, columns: list[Any], x: dict[str, Any]
) -> tuple[str, list[tuple[str, int]]]:
    """The meter id (as written) and, per capture object in document order, its OBIS code and
    the index of its buffer column."""
    objects = x["objects"](root)
    if not objects:
        raise PayloadError("profile has no capture objects")
    column_index: dict[str | None, int] = {}
    for i, column in enumerate(columns):
        if column.get("id") in column_index:
            raise PayloadError("two buffer columns share a column id")
        column_index[column.get("id")] = i
    meter: str | None = None
    seen_obis: set[str] = set()
    order: list[tuple[str, int]] = []
    used: set[int] = set()
    for n, obj in enumerate(objects, start=1):
        names = x["object_name"](obj)
        if len(names) != 1:
            raise PayloadError(f"capture object {n} has no single logical_name")
        parsed = _NAME.match(str(names[0]).strip())
        if parsed is None:
            raise PayloadError(f"capture object {n} logical_name is not <obis>.<meter>.sm")
        try:
            obis = obis_from_hex(parsed.group(1))
        except MinimeterError:
            raise PayloadError(f"capture object {n} has an invalid OBIS code") from None
        if meter is None:
            meter = parsed.group(2)
        elif parsed.group(2).casefold() != meter.casefold():
            raise PayloadError("capture objects name more than one meter")
        if obis in seen_obis:
            raise PayloadError(f"capture objects name {obis} twice")
        seen_obis.add(obis)
        c = column_index.get(obj.get("id"))
        if c is None:
            raise PayloadError(f"no buffer column for capture object {n}")
        if c in used:
            raise PayloadError(f"capture object {n} reuses another capture object's column")
        used.add(c)
        order.append((obis, c))
    if len(used) != len(columns):
        raise PayloadError("a buffer column has no capture object")
    assert meter is not None
    for profile_name in x["profile_name"](root):
        parsed = _NAME.match(str(profile_name).strip())
        if parsed is None:
            raise PayloadError("profile logical_name is not <obis>.<meter>.sm")
        if parsed.group(2).casefold() != meter.casefold():
            raise PayloadError("profile logical_name names another meter than its capture objects")
    return meter, order


class _Fields:
    """Every entry's fields over the whole document (columns in document order), checked and
    parsed into arrays at once; ``series`` sorts, attributes and cuts them into columns."""

    def __init__(
        self,
        root: Any,
        x: dict[str, Any],
        columns: list[Any],
        counts: list[int],
        obis: list[str],
    ) -> None:
        self.columns = [c for c, n in zip(columns, counts, strict=True) if n]
        self.bounds = [0, *itertools.accumulate(counts)]
        """Where each column's entries start (and, last, the number of entries)."""
        self.total = self.bounds[-1]
        self.obis_by_column = obis
        self._structure(root, x)
        times = x["time"](root)
        if len(times) != self.total:
            raise PayloadError("an entry has an empty capture_time")
        fast = _fast_times(times)
        self.times = (
            fast if fast is not None else self._times(self._field(times, "capture_time", _TIMES))
        )
        values = self._field(x["value"](root), "value", _INTS)
        try:  # numpy converts (with int()) the texts of ASCII digits and signs
            self.values = np.array(values, dtype=np.int64)
        except (OverflowError, ValueError):
            self._refuse_ints(values, "value", signed=True, bits=63)
            raise  # pragma: no cover - _refuse_ints always raises
        self.scalers = self._field(x["scaler"](root), "scaler", _INTS)
        self.units = self._field(x["unit"](root), "unit", _INTS)
        self.status_raw, self.status = self._statuses(root, x)

    # -- checks and error details

    def _obis(self, index: int) -> str:
        """The OBIS code of the column holding entry ``index`` (document order)."""
        c = bisect.bisect_right(self.bounds, index) - 1
        return self.obis_by_column[c] if 0 <= c < len(self.obis_by_column) else "a column"

    def _structure(self, root: Any, x: dict[str, Any]) -> None:
        """Each entry holds one value, scaler, unit, status and capture_time (the field lists,
        read from each entry's first such child, each have ``total`` texts), and the entries
        hold no more elements than these and a signature each: counted over the whole document
        (one count, so a repeated field in one entry that lacks its signature passes, read by
        its first occurrence). Inside a field only its first text counts (a field that also
        held elements would be read by that text: no gateway writes one, and it cannot shift a
        value onto another entry)."""
        # one status form in a document: the first entry's tells
        self._wrapped = bool(self.columns) and bool(x["first_wrapped"](self.columns[0]))
        if int(x["children"](root)) not in (_FIELDS * self.total, (_FIELDS + 1) * self.total):
            raise PayloadError(
                "an entry lacks or repeats a value, scaler, unit, status or capture_time,"
                " or holds other elements"
            )

    def _field(self, texts: list[str], what: str, pattern: re.Pattern[str]) -> list[str]:
        """The ``total`` texts of one field, checked by one regular expression over all of
        them (``pattern`` matches texts each ended by a newline); whitespace around a text is
        dropped, none may be empty or hold whitespace inside."""
        if len(texts) != self.total:
            raise PayloadError(f"an entry has an empty {what}")
        if not texts or (
            _plain_times(texts)
            if pattern is _TIMES
            else pattern.fullmatch("\n".join(texts) + "\n") is not None
        ):
            tokens = texts
        else:
            tokens = " ".join(texts).split()
            if len(tokens) != self.total:
                raise PayloadError(f"an entry has an empty or malformed {what}")
            if pattern.fullmatch("\n".join(tokens) + "\n") is None:
                self._refuse(tokens, what, pattern)
        return tokens

    def _refuse_ints(self, tokens: list[str], what: str, *, signed: bool, bits: int) -> None:
        """The precise refusal of the first text that is no integer of ``bits`` bits."""
        form, kind = (_INT, "an integer") if signed else (_UINT, "a non-negative integer")
        for i, t in enumerate(tokens):
            obis = self._obis(i)
            if form.fullmatch(t) is None:
                raise PayloadError(f"a {what} of {obis} is not {kind}")
            if len(t) > 64:  # Python refuses to convert more than 4300 digits
                raise PayloadError(f"a {what} of {obis} has too many digits")
            if not -(2**bits) <= int(t) < 2**bits:
                size = "long64" if signed else "64 bits"
                raise PayloadError(f"a {what} of {obis} does not fit {size}")
        raise AssertionError("no text to refuse")  # pragma: no cover

    def _refuse(self, tokens: list[str], what: str, pattern: re.Pattern[str]) -> None:
        bad = next(i for i, t in enumerate(tokens) if pattern.fullmatch(t + "\n") is None)
        t, obis = tokens[bad], self._obis(bad)
        if pattern is _TIMES:
            if t.upper().startswith("NAT"):
                raise PayloadError(f"a capture time of {obis} is not a time (NaT)")
            if not t.endswith("Z"):
                raise PayloadError(f"a capture time of {obis} is not UTC (no Z)")
            raise PayloadError(f"a capture time of {obis} is not YYYY-MM-DDThh:mm:ssZ")
        if pattern is _HEX16:
            raise PayloadError(f"an octet-string status of {obis} is not 16 hex digits")
        self._refuse_ints(tokens, what, signed=pattern is _INTS, bits=64)

    def _times(self, tokens: list[str]) -> np.ndarray:
        """Checked UTC ``YYYY-MM-DDThh:mm:ss[.f]Z`` to epoch microseconds (numpy parses them
        in C; it refuses dates and times that do not exist)."""
        try:
            parsed = np.array(
                "\n".join(tokens).replace("Z", "").split("\n"), dtype="datetime64[us]"
            )
        except ValueError:
            raise PayloadError("a capture time is out of range (no such date or time)") from None
        return parsed.astype(np.int64) if tokens else np.zeros(0, dtype=np.int64)

    def _statuses(self, root: Any, x: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Raw status words (uint64) and ``ReadingStatus`` codes. One form in a document: bare
        or ``<unsigned>`` PPC integers, or ``<octet-string>`` FNN words."""
        if not self._wrapped:
            return self._ppc(self._field(x["status_bare"](root), "status", _UINTS))
        unsigned = x["status_unsigned"](root)
        if len(unsigned) == self.total:
            return self._ppc(self._field(unsigned, "status", _UINTS))
        octets = x["status_octets"](root)
        if len(octets) != self.total:
            raise PayloadError("entries mix status forms or use an unknown one")
        hexes = self._field(octets, "status", _HEX16)
        raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype="<u8").astype(np.uint64)
        return raw, fnn_status(raw)

    def _ppc(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        digits = "".join(tokens)
        if len(digits) == len(tokens) and digits.isascii() and digits.isdigit():  # the usual
            small = np.frombuffer(digits.encode(), dtype=np.uint8) - 48
            return small.astype(np.uint64), _PPC_DIGITS[small]
        try:  # numpy converts strings only below 2**63: larger words go through int()
            raw = np.array(tokens, dtype=np.int64).astype(np.uint64)
        except (OverflowError, ValueError):
            try:
                raw = np.array(list(map(int, tokens)), dtype=np.uint64)
            except (OverflowError, ValueError):
                self._refuse_ints(tokens, "status", signed=False, bits=64)
                raise  # pragma: no cover - _refuse_ints always raises
        return raw, ppc_status(raw)

    # -- one column

    @staticmethod
    def _distinct(tokens: list[str], what: str, obis: str) -> set[int]:
        """The distinct integers of a column's scalers or units (texts of ASCII digits and
        signs, checked one by one here: there are few)."""
        distinct = set(tokens)
        for t in distinct:
            if _INT.fullmatch(t) is None:
                raise PayloadError(f"a {what} of {obis} is not an integer")
            if len(t) > 64:  # Python refuses to convert more than 4300 digits
                raise PayloadError(f"a {what} of {obis} has too many digits")
        return set(map(int, distinct))

    def series(self, order: list[tuple[str, int]], latest_us: int) -> tuple[DecodedSeries, ...]:
        """The series of the capture objects (``order``: OBIS code and column index), every
        column sorted by capture time, its period detected and its times attributed, all
        columns at once."""
        bounds, total = self.bounds, self.total
        counts = [b - a for a, b in itertools.pairwise(bounds)]
        times = self.times
        if total and int(times.min()) < EARLIEST_US:
            obis = self._obis(int(times.argmin()))
            raise PayloadError(f"a capture time of {obis} is before 2000-01-01")
        if total and int(times.max()) > latest_us:
            obis = self._obis(int(times.argmax()))
            raise PayloadError(f"a capture time of {obis} is after the latest plausible time")
        scalers, units = [], []
        for c, obis in enumerate(self.obis_by_column):
            cut = slice(bounds[c], bounds[c + 1])
            scaler_set = self._distinct(self.scalers[cut], "scaler", obis)
            unit_set = self._distinct(self.units[cut], "unit", obis)
            if len(unit_set) > 1 or len(scaler_set) > 1:
                raise PayloadError(f"entries of {obis} use more than one unit or scaler")
            scaler = scaler_set.pop() if scaler_set else 0
            unit = unit_set.pop() if unit_set else 0
            if not -9 <= scaler <= 9:
                raise PayloadError(f"scaler of {obis} is out of range (-9..9)")
            if not 0 <= unit <= 255:
                raise PayloadError(f"unit of {obis} is not a DLMS unit code (0..255)")
            scalers.append(scaler)
            units.append(unit)
        column = np.repeat(np.arange(len(counts)), counts)
        sort = np.lexsort((times, column))  # by column (already grouped), then by time
        captured = times[sort]
        codes, raw, values = self.status[sort], self.status_raw[sort], self.values[sort]
        usable = _DELIVERABLE[codes]
        uniform = _uniform_period(captured, bounds, usable)
        if uniform:  # one period for all columns, as detect_periods would find it
            steps = [uniform] * len(counts)
            attributed = attribute(captured, uniform)
        else:
            found = detect_periods(captured, column, len(counts), usable)
            _fill_missing_steps(found, np.array(counts, dtype=np.int64))
            same = len(found) and (found == found[0]).all()  # usually one period for all
            attributed = attribute(captured, int(found[0]) if same else found[column])
            steps = [int(v) for v in found]
        repeated = (attributed[1:] == attributed[:-1]) & (column[1:] == column[:-1])
        if repeated.any():
            obis = self._obis(int(repeated.argmax()) + 1)
            raise PayloadError(f"two entries of {obis} are attributed to the same time")
        scaled = _scaled_columns(values, bounds, scalers)
        out = []
        for obis, c in order:
            cut = slice(bounds[c], bounds[c + 1])
            out.append(
                DecodedSeries(
                    obis=obis,
                    unit=DLMS_UNITS.get(units[c], f"dlms-{units[c]}"),
                    times_us=attributed[cut],
                    values=scaled[c],
                    status=codes[cut],
                    status_raw=raw[cut],
                    captured_us=captured[cut],
                    step_us=steps[c],
                )
            )
        return tuple(out)


def _scaled_columns(values: np.ndarray, bounds: list[int], scalers: list[int]) -> list[np.ndarray]:
    """``_scaled`` of every column (``bounds``: where each starts), with one conversion to
    doubles for all when every value and power of ten is exact (the usual case)."""
    if not (
        len(values)
        and int(values.max()) < 2**53
        and int(values.min()) > -(2**53)
        and all(abs(s) <= 22 for s in scalers)
    ):
        return [
            _scaled(values[a:b], s)
            for (a, b), s in zip(itertools.pairwise(bounds), scalers, strict=True)
        ]
    exact = values.astype(np.float64)
    out = []
    for (a, b), s in zip(itertools.pairwise(bounds), scalers, strict=True):
        part = exact[a:b]
        out.append(part if s == 0 else part * float(10**s) if s > 0 else part / float(10**-s))
    return out


def _scaled(raw: np.ndarray | Sequence[int], scaler: int) -> np.ndarray:
    """``scale(v, scaler)`` of every value. Vectorised when the values and the power of ten are
    exact doubles (|v| < 2**53, |scaler| <= 22): one IEEE multiplication or division of exact
    operands rounds exactly as ``scale`` does."""
    values = np.asarray(raw, dtype=np.int64) if len(raw) else np.zeros(0, dtype=np.int64)
    if len(values) == 0:
        return np.zeros(0, dtype=np.float64)
    if int(values.max()) < 2**53 and int(values.min()) > -(2**53) and abs(scaler) <= 22:
        exact = values.astype(np.float64)
        return exact * float(10**scaler) if scaler >= 0 else exact / float(10**-scaler)
    return np.array([scale(int(v), scaler) for v in values], dtype=np.float64)


def _fill_missing_steps(steps: np.ndarray, counts: np.ndarray) -> None:
    """A column too short to tell its capture period (a single reading) takes the period most
    of the profile's other columns have (ties: the shorter): a profile generic captures all
    its columns together. Its time is then attributed on that grid."""
    if steps.all():
        return
    known = steps[steps > 0]
    if len(known) == 0:
        return
    values, tally = np.unique(known, return_counts=True)
    steps[(steps == 0) & (counts < 2)] = values[tally.argmax()]


def sniff(data: bytes) -> bool:
    """Is the document element a K461 ``profile_generic`` object (by namespace URI)?"""
    root = xml_root(data)
    return root is not None and root[0] == NS_PROFILE


register_decoder(
    PayloadDecoder(
        name="k461",
        description="a DKE K461 profile_generic document",
        sniff=sniff,
        decode=decode,
    )
)

__all__ = [
    "NS_EXTENSION",
    "NS_PROFILE",
    "Series",
    "decode_profile",
    "encode_profile",
    "inflate_if_zlib",
]

"""DKE K461 ``profile_generic`` XML, as SMGWs put it inside their CMS messages.

Shape (formats.md 1.8): ``ns1:object class_id="7"``; ``attributes/capture_objects/capture_object``
whose ``logical_name`` is the 12-hex OBIS code + ``.`` + meter id + ``.sm``; and
``attributes/buffer/simple_data/column`` (one per capture object, same ``id``) of
``entry_gateway_signed`` entries with ``capture_time`` (UTC, ``Z``), ``value/long64``, ``scaler``,
``unit`` (DLMS unit code) and ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from minimeter.obis import obis_to_hex

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

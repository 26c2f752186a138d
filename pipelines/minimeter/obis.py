"""OBIS codes (IEC 62056-6-1) Minimeter knows: one declarative table, separate from any parser.

``kind`` drives how a reading is coarsened to a recipient's interval:
``register`` (cumulative: keep the last value at or before each interval end), ``interval``
(energy over the capture period: sum), ``instantaneous`` (a momentary value: mean and max).
Sources: ../shared/docs/formats.md section 3 (dsmr_parser ``obis_references``, Lobaro, KBR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from minimeter.errors import MinimeterError

Kind = Literal["register", "interval", "instantaneous"]

OBIS_PATTERN = re.compile(r"^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
HEX_PATTERN = re.compile(r"^[0-9a-fA-F]{12}$")


class ObisError(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("obis-invalid", detail)


@dataclass(frozen=True)
class ObisCode:
    code: str
    """``A-B:C.D.E`` (F = 255 implied)."""
    name: str
    unit: str
    """Physical unit after applying the scaler (``Wh``, ``W``, ``V``, ``A``, ``varh``)."""
    dlms_unit: int
    """DLMS/COSEM unit code as gateways send it (30 = Wh, 27 = W, 35 = V, 33 = A, 32 = varh)."""
    kind: Kind
    data_class: str
    """What the value reveals, for DPIAs: ``energy``, ``tariff-energy``, ``power``, ``grid-quality``."""


OBIS_TABLE: dict[str, ObisCode] = {
    o.code: o
    for o in (
        ObisCode(
            "1-0:1.8.0", "Active energy import (A+), total register", "Wh", 30, "register", "energy"
        ),
        ObisCode(
            "1-0:1.8.1",
            "Active energy import (A+), tariff 1 register",
            "Wh",
            30,
            "register",
            "tariff-energy",
        ),
        ObisCode(
            "1-0:1.8.2",
            "Active energy import (A+), tariff 2 register",
            "Wh",
            30,
            "register",
            "tariff-energy",
        ),
        ObisCode(
            "1-0:2.8.0", "Active energy export (A-), total register", "Wh", 30, "register", "energy"
        ),
        ObisCode(
            "1-0:2.8.1",
            "Active energy export (A-), tariff 1 register",
            "Wh",
            30,
            "register",
            "tariff-energy",
        ),
        ObisCode(
            "1-0:2.8.2",
            "Active energy export (A-), tariff 2 register",
            "Wh",
            30,
            "register",
            "tariff-energy",
        ),
        ObisCode(
            "1-0:3.8.0",
            "Reactive energy import (R+), total register",
            "varh",
            32,
            "register",
            "energy",
        ),
        ObisCode(
            "1-0:4.8.0",
            "Reactive energy export (R-), total register",
            "varh",
            32,
            "register",
            "energy",
        ),
        ObisCode(
            "1-0:1.29.0",
            "Active energy import (A+) in the capture period",
            "Wh",
            30,
            "interval",
            "energy",
        ),
        ObisCode(
            "1-0:2.29.0",
            "Active energy export (A-) in the capture period",
            "Wh",
            30,
            "interval",
            "energy",
        ),
        ObisCode(
            "1-0:1.7.0",
            "Active power import (A+), instantaneous",
            "W",
            27,
            "instantaneous",
            "power",
        ),
        ObisCode(
            "1-0:2.7.0",
            "Active power export (A-), instantaneous",
            "W",
            27,
            "instantaneous",
            "power",
        ),
        ObisCode(
            "1-0:21.7.0", "Active power import L1, instantaneous", "W", 27, "instantaneous", "power"
        ),
        ObisCode(
            "1-0:41.7.0", "Active power import L2, instantaneous", "W", 27, "instantaneous", "power"
        ),
        ObisCode(
            "1-0:61.7.0", "Active power import L3, instantaneous", "W", 27, "instantaneous", "power"
        ),
        ObisCode(
            "1-0:32.7.0", "Voltage L1, instantaneous", "V", 35, "instantaneous", "grid-quality"
        ),
        ObisCode(
            "1-0:52.7.0", "Voltage L2, instantaneous", "V", 35, "instantaneous", "grid-quality"
        ),
        ObisCode(
            "1-0:72.7.0", "Voltage L3, instantaneous", "V", 35, "instantaneous", "grid-quality"
        ),
        ObisCode(
            "1-0:31.7.0", "Current L1, instantaneous", "A", 33, "instantaneous", "grid-quality"
        ),
        ObisCode(
            "1-0:51.7.0", "Current L2, instantaneous", "A", 33, "instantaneous", "grid-quality"
        ),
        ObisCode(
            "1-0:71.7.0", "Current L3, instantaneous", "A", 33, "instantaneous", "grid-quality"
        ),
    )
}

DLMS_UNITS: dict[int, str] = {27: "W", 30: "Wh", 32: "varh", 33: "A", 35: "V"}


def parse_obis(text: str) -> str:
    """Normalise ``A-B:C.D.E`` (optionally ``*255`` / ``*F`` suffixed) to ``A-B:C.D.E``."""
    value = text.strip()
    if "*" in value:
        value, f = value.split("*", 1)
        if f != "255":
            raise ObisError(f"{text!r}: only the current value (F = 255) is supported")
    match = OBIS_PATTERN.match(value)
    if not match or any(int(g) > 255 for g in match.groups()):
        raise ObisError(f"{text!r} is not an OBIS code A-B:C.D.E")
    return "{}-{}:{}.{}.{}".format(*(int(g) for g in match.groups()))


def obis_from_hex(hex_code: str) -> str:
    """``0100010800ff`` -> ``1-0:1.8.0`` (the logical_name form gateways write)."""
    if not HEX_PATTERN.match(hex_code):
        raise ObisError(f"{hex_code!r} is not a 6-byte hex OBIS code")
    a, b, c, d, e, f = bytes.fromhex(hex_code)
    if f != 255:
        raise ObisError(f"{hex_code!r}: only the current value (F = 255) is supported")
    return f"{a}-{b}:{c}.{d}.{e}"


def obis_to_hex(code: str) -> str:
    match = OBIS_PATTERN.match(parse_obis(code))
    assert match is not None
    return bytes([*(int(g) for g in match.groups()), 255]).hex()


def describe(code: str) -> ObisCode | None:
    return OBIS_TABLE.get(code)


def scale(value: int, scaler: int) -> float:
    """``value * 10**scaler`` as the float nearest the exact decimal (e.g. 2301, -1 -> 230.1)."""
    return float(value * 10**scaler) if scaler >= 0 else value / 10 ** (-scaler)

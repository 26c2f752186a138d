"""Reading status as gateways send it -> ``ReadingStatus``: two declarative tables.

**PPC integer statuses** (``<status>N</status>`` or ``<status><unsigned>N</unsigned></status>``).
PPC gateways write small integers that follow the PTB-A 50.8 status scale (``StatusPTB``:
0 no error, 1 warning, 2 temporary error, 3 critical temporary error, 4 fatal error), as seen in
real exports (0 valid, 3 a placeholder that repeats the previous value, 4 invalid;
ha-ppc-smgw-han ``cms_parser.py``) and defined in PTB TRuDI (``TRuDI.Models.BasicData.StatusPTB``).

- 0 -> ``VALID``.
- 1 -> ``WARNING``: PTB "warning, no action needed, the measured value is valid".
- 2 -> ``INVALID``: PTB "temporary error, the sent value is *marked invalid*; the backend may use
  it as a substitute value (VDE 4400 / G 685)". TRuDI's own consumption checks only skip
  statuses >= 3, but a substitute value is the meter operator's to form, never a measurement
  Minimeter may deliver as measured: so 2 is not deliverable.
- 3 -> ``NOT_PRESENT``: PTB "critical temporary error, the value cannot serve as a substitute";
  PPC uses it for the placeholder of a missing quarter hour (it repeats the previous value).
- 4 -> ``INVALID``: PTB "fatal error (meter defective)"; PPC's "invalid".
- anything else -> ``UNKNOWN``.

**FNN combined status word** (``<status><octet-string>16 hex digits</octet-string></status>``,
TAF-10 exports): 8 bytes, the SMGW status word (4 bytes) then the meter's (FNN "BZ") status word
(4 bytes). The FNN (Lastenheft SMGW) fixes the bit order "least significant bit first": bit 0 of
a word is the most significant bit of its first byte (PTB TRuDI ``StatusFNN``: each 8-hex half
is read as a 32-bit number and bit-reversed; its tests: ``A000000020000000`` = the two
identification patterns, no error). ``status_raw`` keeps the 8 bytes as sent, as a little-endian
uint64 (``raw.to_bytes(8, "little").hex()`` gives the octet string back).

Bits used (TRuDI ``SmgwStatusWord``, ``BzStatusWord`` and ``StatusFNN.MapToStatusPtb``; the bit
names of BSI TR-03109-1 Detailspezifikation v2.0 ch. 15, table 15.1 "Kombiniertes Statuswort",
as transcribed in formats.md 1.9), first matching rule wins:

- SMGW identification (bits 0 and 2) or BZ identification (bit 2) missing -> ``UNKNOWN`` (not an
  FNN word, TRuDI ``StatusFNN.Validate``).
- SMGW bit 8 ``Fatal_Error`` / ``SMGW_Error``, BZ bit 17 ``Fatal_Error`` -> ``INVALID``
  (PTB 4).
- SMGW bit 14 ``PTB_Temp_Error_is_invalid`` / ``MTR_Tamper``, BZ bit 9
  ``Magnetically_Influenced``, BZ bit 10 ``Manipulation_KD_PS`` -> ``INVALID`` (PTB 3).
- SMGW bit 9 ``Systemtime_Invalid`` / ``SMGW_TimeNotValid`` ("Zeit ungueltig") ->
  ``TIME_INVALID`` (PTB 3 in TRuDI; kept apart here because it is the time that cannot be
  trusted).
- SMGW bit 13 ``PTB_Temp_Error_signed_invalid`` / ``SMGW_NoValue`` (no reading in the expected
  window) -> ``NOT_PRESENT`` (PTB 2).
- SMGW bit 12 ``PTB_Warning`` / ``SMGW_Warning`` -> ``WARNING`` (PTB 1).
- otherwise -> ``VALID``. Informational bits (SMGW bit 1 transparency / not validated, bit 16
  value triggered; BZ start-up, energy direction, phase sequence, back stop, lead voltage) do
  not change the status, as in TRuDI's mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minimeter.readings import ReadingStatus

PPC_STATUS: dict[int, ReadingStatus] = {
    0: ReadingStatus.VALID,
    1: ReadingStatus.WARNING,
    2: ReadingStatus.INVALID,
    3: ReadingStatus.NOT_PRESENT,
    4: ReadingStatus.INVALID,
}
"""PPC / PTB integer status -> reading status (anything else: ``UNKNOWN``)."""


def _bit(n: int) -> int:
    return 1 << n


SMGW_IDENTIFICATION = _bit(0) | _bit(2)
BZ_IDENTIFICATION = _bit(2)


@dataclass(frozen=True)
class FnnRule:
    """Readings whose SMGW word has a bit of ``smgw`` set, or whose meter (BZ) word has a bit of
    ``bz`` set, get ``status``."""

    smgw: int
    bz: int
    status: ReadingStatus
    source: str


FNN_RULES: tuple[FnnRule, ...] = (
    FnnRule(_bit(8), _bit(17), ReadingStatus.INVALID, "fatal error (PTB 4)"),
    FnnRule(
        _bit(14),
        _bit(9) | _bit(10),
        ReadingStatus.INVALID,
        "temporary error, value invalid; magnetic influence; manipulation (PTB 3)",
    ),
    FnnRule(_bit(9), 0, ReadingStatus.TIME_INVALID, "system time invalid (PTB 3)"),
    FnnRule(_bit(13), 0, ReadingStatus.NOT_PRESENT, "no value / signed invalid (PTB 2)"),
    FnnRule(_bit(12), 0, ReadingStatus.WARNING, "warning (PTB 1)"),
)
"""In precedence order: the first rule that matches decides."""

_REVERSE = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def ppc_status(raw: np.ndarray) -> np.ndarray:
    """``ReadingStatus`` codes (uint8) of integer statuses (uint64)."""
    codes = np.full(len(raw), ReadingStatus.UNKNOWN, dtype=np.uint8)
    for word, status in PPC_STATUS.items():
        codes[raw == word] = status
    return codes


def fnn_words(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The SMGW and meter (BZ) status words (uint32, bit n = FNN bit n) of octet-string
    statuses kept as little-endian uint64 of their 8 bytes."""
    octets = np.ascontiguousarray(raw, dtype="<u8").view(np.uint8).reshape(-1, 8)
    words = np.ascontiguousarray(_REVERSE[octets]).view("<u4").reshape(-1, 2)
    return words[:, 0].astype(np.uint32), words[:, 1].astype(np.uint32)


def fnn_status(raw: np.ndarray) -> np.ndarray:
    """``ReadingStatus`` codes (uint8) of FNN combined status words (see the module text)."""
    smgw, bz = fnn_words(raw)
    codes = np.full(len(raw), ReadingStatus.VALID, dtype=np.uint8)
    decided = np.zeros(len(raw), dtype=bool)
    known = ((smgw & SMGW_IDENTIFICATION) == SMGW_IDENTIFICATION) & (
        (bz & BZ_IDENTIFICATION) == BZ_IDENTIFICATION
    )
    codes[~known] = ReadingStatus.UNKNOWN
    decided |= ~known
    for rule in FNN_RULES:
        hit = ~decided & (((smgw & rule.smgw) != 0) | ((bz & rule.bz) != 0))
        codes[hit] = rule.status
        decided |= hit
    return codes


def fnn_octets(smgw: int, bz: int) -> str:
    """The 16-hex octet string of an SMGW and a meter word (FNN bit order), as gateways write it
    (for synth and tests)."""
    out = bytearray()
    for word in (smgw, bz):
        for k in range(4):
            out.append(int(_REVERSE[(word >> (8 * k)) & 0xFF]))
    return out.hex().upper()

"""Decoded readings, whatever payload format they came in (no Beam, no XML here).

A decoder (``minimeter.payload``) turns one message's payload into a ``DecodedProfile``: one
meter's ``DecodedSeries``, one per OBIS code. Every reading keeps its capture time as sent
(``captured_us``) and gets the end of the capture period it is attributed to (``times_us``), its
reading status as a small enum (``status``) and the status word as sent (``status_raw``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class ReadingStatus(IntEnum):
    """What a reading's status says about its use. Only ``VALID`` readings are delivered,
    summed or complete an interval; every other status is counted under its own reason."""

    VALID = 0
    """Measured, no error (PPC status 0, PTB status 0)."""
    WARNING = 1
    """Measured, with a warning that does not affect the value (PTB status 1)."""
    NOT_PRESENT = 2
    """Not measured: a placeholder or substitute value (PPC status 3)."""
    INVALID = 3
    """Measured, but the meter or gateway marks the value invalid (PPC status 4, fatal errors)."""
    TIME_INVALID = 4
    """The capture time cannot be trusted (the gateway's clock was not synchronised)."""
    UNKNOWN = 5
    """A status word Minimeter does not know: never delivered."""

    @property
    def reason(self) -> str:
        """The accounting reason a reading of this status is dropped under."""
        return "dropped-" + self.name.lower().replace("_", "-")


DELIVERABLE = (ReadingStatus.VALID, ReadingStatus.WARNING)


def deliverable(status: np.ndarray) -> np.ndarray:
    """Per reading: may it be delivered (and complete an interval)?"""
    return np.isin(status, np.array([int(s) for s in DELIVERABLE], dtype=np.uint8))


@dataclass(frozen=True)
class DecodedSeries:
    """One capture object's readings in physical units; times in UTC epoch microseconds, sorted
    by ``times_us``."""

    obis: str
    unit: str
    times_us: np.ndarray
    """The end of the capture period each reading is attributed to (int64)."""
    values: np.ndarray
    """Physical values (float64, finite)."""
    status: np.ndarray
    """``ReadingStatus`` codes (uint8)."""
    status_raw: np.ndarray
    """The status word as sent (uint64)."""
    captured_us: np.ndarray
    """The capture time as sent (int64)."""
    step_us: int
    """The series' capture period (0 when it cannot be told)."""

    def __len__(self) -> int:
        return len(self.times_us)

    def subset(self, mask: np.ndarray) -> DecodedSeries:
        """The readings where ``mask`` holds (a boolean mask or an index array)."""
        return DecodedSeries(
            self.obis,
            self.unit,
            self.times_us[mask],
            self.values[mask],
            self.status[mask],
            self.status_raw[mask],
            self.captured_us[mask],
            self.step_us,
        )

    @classmethod
    def concat(cls, parts: Sequence[DecodedSeries], step_us: int) -> DecodedSeries:
        """Readings of several parts of one OBIS code (in the parts' order, unsorted)."""
        first = parts[0]
        return cls(
            first.obis,
            first.unit,
            np.concatenate([p.times_us for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.status for p in parts]),
            np.concatenate([p.status_raw for p in parts]),
            np.concatenate([p.captured_us for p in parts]),
            step_us,
        )

    @classmethod
    def measured(
        cls,
        obis: str,
        unit: str,
        times_us: np.ndarray,
        values: np.ndarray,
        step_us: int,
        status: np.ndarray | None = None,
    ) -> DecodedSeries:
        """A series captured exactly on its grid (tests, synth): capture times are the period
        ends, statuses valid unless given."""
        n = len(times_us)
        codes = np.zeros(n, dtype=np.uint8) if status is None else status.astype(np.uint8)
        times = np.asarray(times_us, dtype=np.int64)
        return cls(
            obis,
            unit,
            times,
            np.asarray(values, dtype=np.float64),
            codes,
            codes.astype(np.uint64),
            times.copy(),
            step_us,
        )


# numpy dtypes of the per-reading columns (for encoders such as the spill)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("times_us", "<i8"),
    ("values", "<f8"),
    ("status", "|u1"),
    ("status_raw", "<u8"),
    ("captured_us", "<i8"),
)


@dataclass(frozen=True)
class DecodedProfile:
    meter: str
    series: tuple[DecodedSeries, ...]
    source: str = ""
    """The message the readings came in (its file name), for conflict reports."""

    @property
    def readings(self) -> int:
        return sum(len(s.times_us) for s in self.series)

"""The meter registry (meters.csv) and the consent registry (consent.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from minimeter.errors import ConfigError

METER_COLUMNS = ("meter", "jurisdiction", "area", "supplier", "customer_type", "annual_kwh")
CONSENT_COLUMNS = ("meter", "purpose", "granted_from", "granted_until", "withdrawn_at")
_FOREVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class MeterInfo:
    meter: str
    jurisdiction: str
    area: str
    supplier: str
    customer_type: str


@dataclass(frozen=True)
class Grant:
    purpose: str
    start_us: int
    end_us: int
    """Exclusive: the earlier of granted_until and withdrawn_at (or never)."""


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: header: missing column(s) {', '.join(missing)}")
            return [(i + 2, row) for i, row in enumerate(reader)]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not valid CSV ({exc})") from None


def _time_us(path: Path, line: int, field: str, text: str) -> int | None:
    if not text.strip():
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{path}: line {line}: {field}: {text!r} is not an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        raise ConfigError(f"{path}: line {line}: {field}: {text!r} has no time zone (use Z)")
    return int(when.timestamp() * 1_000_000)


class MeterRegistry:
    def __init__(self, meters: dict[str, MeterInfo]) -> None:
        self.meters = meters

    @classmethod
    def load(cls, path: str | Path) -> MeterRegistry:
        path = Path(path)
        meters: dict[str, MeterInfo] = {}
        for line, row in _rows(path, METER_COLUMNS):
            if not row["meter"]:
                raise ConfigError(f"{path}: line {line}: meter: empty")
            meters[row["meter"]] = MeterInfo(
                row["meter"],
                row["jurisdiction"],
                row["area"],
                row["supplier"],
                row["customer_type"],
            )
        return cls(meters)

    def get(self, meter: str) -> MeterInfo | None:
        return self.meters.get(meter)


class ConsentRegistry:
    def __init__(self, grants: dict[str, tuple[Grant, ...]]) -> None:
        self.grants = grants

    @classmethod
    def load(cls, path: str | Path) -> ConsentRegistry:
        path = Path(path)
        grants: dict[str, list[Grant]] = {}
        for line, row in _rows(path, CONSENT_COLUMNS):
            start = _time_us(path, line, "granted_from", row["granted_from"])
            if start is None:
                raise ConfigError(f"{path}: line {line}: granted_from: empty")
            ends = [
                t
                for t in (
                    _time_us(path, line, "granted_until", row["granted_until"]),
                    _time_us(path, line, "withdrawn_at", row["withdrawn_at"]),
                )
                if t is not None
            ]
            grants.setdefault(row["meter"], []).append(
                Grant(row["purpose"], start, min(ends, default=_FOREVER))
            )
        return cls({m: tuple(g) for m, g in grants.items()})

    def valid(self, meter: str, purpose: str, times_us: np.ndarray) -> np.ndarray:
        """Per capture time: is a grant for ``purpose`` valid then (start <= t < end)?"""
        mask = np.zeros(len(times_us), dtype=bool)
        for g in self.grants.get(meter, ()):
            if g.purpose == purpose:
                mask |= (times_us >= g.start_us) & (times_us < g.end_us)
        return mask

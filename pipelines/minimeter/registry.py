"""The meter registry (meters.csv) and the consent registry (consent.csv)."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from minimeter.errors import ConfigError

METER_COLUMNS = (
    "meter",
    "jurisdiction",
    "area",
    "supplier",
    "customer_type",
    "annual_kwh",
    "gateway",
)
"""``gateway``: the id of the meter's gateway as its content-signature certificate names it
(the subject CN, e.g. ``EPPC0215990320.SMGW``): only that gateway may report the meter."""
CONSENT_COLUMNS = ("meter", "purpose", "granted_from", "granted_until", "withdrawn_at")
_FOREVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class MeterInfo:
    meter: str
    jurisdiction: str
    area: str
    supplier: str
    customer_type: str
    gateway: str = ""
    """The registered gateway's id (its certificate's subject CN)."""


@dataclass(frozen=True)
class Grant:
    purpose: str
    start_us: int
    end_us: int
    """Exclusive: the earlier of granted_until and withdrawn_at (or never)."""
    withdrawn_us: int = np.iinfo(np.int64).max
    """When the data subject withdrew the consent (never: the largest int64)."""


def _open_regular(path: Path) -> int:
    """A file descriptor of ``path`` if it is a regular file; a FIFO, device or directory is
    refused ("input-unreadable") without blocking: checked with ``Path.is_file()``, then opened
    non-blocking and checked again with ``fstat`` (the path may change in between)."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path}: not a regular file", "input-unreadable")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path}: not a regular file", "input-unreadable")
    return fd


def _text_lines(path: Path, raw: Iterator[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 file (an optional BOM dropped); a byte sequence that is not UTF-8
    stops with the file and line, never with the bytes themselves (they may be a meter id)."""
    for number, line in enumerate(raw, start=1):
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: line {number}: not UTF-8 text") from None


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of every data row; the header must name ``columns`` (once each) and every
    row must have exactly the header's number of fields. Line numbers are physical lines of the
    file (the last line of a row whose quoted field spans lines)."""
    fd = _open_regular(path)
    rows: list[tuple[int, dict[str, str]]] = []
    reader: csv.DictReader[str] | None = None
    try:
        with os.fdopen(fd, "rb") as f:
            reader = csv.DictReader(_text_lines(path, iter(f)))
            header = reader.fieldnames or []
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:
                raise ConfigError(f"{path}: header: column(s) {', '.join(twice)} more than once")
            missing = [c for c in columns if c not in header]
            if missing:
                raise ConfigError(f"{path}: header: missing column(s) {', '.join(missing)}")
            for row in reader:
                line = reader.line_num
                if None in row:  # more fields than the header: DictReader's restkey
                    extra = len(row[None])
                    raise ConfigError(
                        f"{path}: line {line}: {len(header) + extra} fields, the header has "
                        f"{len(header)}"
                    )
                if any(v is None for v in row.values()):  # fewer fields: DictReader's restval
                    have = sum(v is not None for v in row.values())
                    raise ConfigError(
                        f"{path}: line {line}: {have} field(s), the header has {len(header)}"
                    )
                rows.append((line, row))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except csv.Error as exc:
        where = f"line {max(reader.line_num, 1)}" if reader is not None else "header"
        raise ConfigError(f"{path}: {where}: not valid CSV ({exc})") from None
    return rows


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
        first: dict[str, int] = {}
        for line, row in _rows(path, METER_COLUMNS):
            if not row["meter"]:
                raise ConfigError(f"{path}: line {line}: meter: empty")
            if not row["gateway"].strip():
                raise ConfigError(f"{path}: line {line}: gateway: empty")
            key = row["meter"].casefold()  # gateways write ids in their own case
            if key in first:
                raise ConfigError(
                    f"{path}: line {line}: meter: the meter of line {first[key]} again "
                    "(ids are compared ignoring case)"
                )
            first[key] = line
            meters[row["meter"]] = MeterInfo(
                row["meter"],
                row["jurisdiction"],
                row["area"],
                row["supplier"],
                row["customer_type"],
                row["gateway"].strip(),
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
            until = _time_us(path, line, "granted_until", row["granted_until"])
            withdrawn = _time_us(path, line, "withdrawn_at", row["withdrawn_at"])
            ends = [t for t in (until, withdrawn) if t is not None]
            grants.setdefault(row["meter"], []).append(
                Grant(
                    row["purpose"],
                    start,
                    min(ends, default=_FOREVER),
                    _FOREVER if withdrawn is None else withdrawn,
                )
            )
        return cls({m: tuple(g) for m, g in grants.items()})

    def valid(
        self, meter: str, purpose: str, times_us: np.ndarray, at_us: int | None = None
    ) -> np.ndarray:
        """Per capture time: may the reading be delivered for ``purpose``? A grant must be
        valid at the capture time (start <= t < end) and, at delivery, not withdrawn by the
        processing time ``at_us`` (the run's as-of): a withdrawal stops the delivery of what
        was captured before it, too. A grant that simply ran out is no withdrawal."""
        mask = np.zeros(len(times_us), dtype=bool)
        for g in self.grants.get(meter, ()):
            if g.purpose != purpose:
                continue
            if at_us is not None and g.withdrawn_us <= at_us:
                continue  # withdrawn before this delivery
            mask |= (times_us >= g.start_us) & (times_us < g.end_us)
        return mask

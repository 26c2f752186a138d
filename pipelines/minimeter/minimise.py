"""Policy semantics: what one recipient may receive of one meter's readings (no Beam here).

Order per recipient: scope (habilitation) -> reading status (only valid readings go on) ->
conflicts between messages -> plausibility -> consent -> OBIS allow-list -> retention -> sampling limit (per OBIS kind) ->
identity -> k-anonymous aggregation. Every reading that does not reach a deliverable row is
counted under the reason that removed it, so that ``readings-in (+ carried-in) = dropped-* +
kept (+ suppressed-k) (+ carried-out)`` holds per recipient.

Only this module creates ``Deliverable`` objects, and the writers accept nothing else.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from minimeter.obis import OBIS_TABLE
from minimeter.policy.model import Policy
from minimeter.pseudonym import pseudonym, register_offset
from minimeter.readings import DecodedProfile, DecodedSeries, ReadingStatus, deliverable
from minimeter.registry import ConsentRegistry, MeterInfo

US = 1_000_000
FIXED_WIDTH_US = {"PT15M": 900 * US, "PT30M": 1800 * US, "PT1H": 3600 * US, "P1D": 86400 * US}


def in_scope(policy: Policy, info: MeterInfo | None) -> bool:
    """Habilitation: the recipient's jurisdiction, and its areas / its supplier's customers."""
    if info is None or info.jurisdiction != policy.jurisdiction:
        return False
    if policy.scope.areas is not None and info.area not in policy.scope.areas:
        return False
    return policy.scope.supplier is None or info.supplier == policy.scope.supplier


DEFAULT_MAX_POWER_W = 1_000_000.0
"""No meter behind one gateway draws or feeds more than this (plausibility)."""
_ENERGY_WH = {"Wh": 1.0, "kWh": 1000.0, "varh": 1.0, "kvarh": 1000.0}
_POWER_W = {"W": 1.0, "kW": 1000.0, "var": 1.0, "kvar": 1000.0}


def implausible(
    profiles: Iterable[DecodedProfile],
    max_power_w: float = DEFAULT_MAX_POWER_W,
    disputed: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per OBIS code, the capture times (``times_us``) of one meter's deliverable readings that
    no meter can produce: a register that decreases or grows faster than ``max_power_w``,
    negative interval energy or more than ``max_power_w`` over the capture period, an
    instantaneous power beyond it. Judged on all of the meter's messages of the run together,
    without the ``disputed`` readings (``conflicts``), which are dropped anyway."""
    by_obis: dict[str, list[DecodedSeries]] = {}
    for profile in profiles:
        for s in profile.series:
            ok = deliverable(s.status)
            if disputed and s.obis in disputed:
                ok &= ~np.isin(s.times_us, disputed[s.obis])
            if ok.any():
                by_obis.setdefault(s.obis, []).append(s.subset(ok))
    out: dict[str, np.ndarray] = {}
    for obis, parts in by_obis.items():
        joined = DecodedSeries.concat(parts, 0)
        order = np.argsort(joined.times_us, kind="stable")
        t, v, unit = joined.times_us[order], joined.values[order], joined.unit
        kind = OBIS_TABLE[obis].kind if obis in OBIS_TABLE else "register"
        bad = np.zeros(len(t), dtype=bool)
        if kind == "register":
            bad = _register_steps(t, v, _ENERGY_WH.get(unit), max_power_w)
        elif kind == "interval":
            bad |= v < 0
            if unit in _ENERGY_WH:
                steps = [p.step_us for p in parts if p.step_us]
                if steps:
                    hours = max(steps) / 3.6e9
                    bad |= v * _ENERGY_WH[unit] > max_power_w * hours
        elif unit in _POWER_W:
            bad |= np.abs(v) * _POWER_W[unit] > max_power_w
        if bad.any():
            out[obis] = np.unique(t[bad])
    return out


def _register_steps(
    t: np.ndarray, v: np.ndarray, wh_per_unit: float | None, max_power_w: float
) -> np.ndarray:
    """A register reading is implausible when it lies below the last plausible one, or above
    what ``max_power_w`` could add since then. Vectorised check first; the sequential pass (each
    reading judged against the last plausible one, so that one spike does not condemn what
    follows) only runs when something is wrong."""
    bad = np.zeros(len(t), dtype=bool)
    if len(t) < 2:
        return bad
    hours = np.diff(t) / 3.6e9
    grow = np.diff(v)
    suspect = grow < 0
    if wh_per_unit is not None:
        suspect |= grow * wh_per_unit > max_power_w * hours
    if not suspect.any():
        return bad
    last_t, last_v = int(t[0]), float(v[0])
    for i in range(1, len(t)):
        ti, vi = int(t[i]), float(v[i])
        too_fast = (
            wh_per_unit is not None
            and (vi - last_v) * wh_per_unit > max_power_w * (ti - last_t) / 3.6e9
        )
        if vi < last_v or too_fast:
            bad[i] = True
        else:
            last_t, last_v = ti, vi
    return bad


@dataclass(frozen=True)
class Conflict:
    """Different values for one meter, OBIS code and time from different messages."""

    obis: str
    time_us: int
    sources: tuple[str, ...]


def conflicts(profiles: Iterable[DecodedProfile]) -> tuple[dict[str, np.ndarray], list[Conflict]]:
    """Per OBIS code, the times at which a meter's deliverable readings from different messages
    disagree; neither value may be delivered (never resolved by chance). Identical values from
    several messages are plain duplicates, not conflicts."""
    by_obis: dict[str, list[tuple[DecodedSeries, str]]] = {}
    for profile in profiles:
        for s in profile.series:
            ok = deliverable(s.status)
            if ok.any():
                by_obis.setdefault(s.obis, []).append((s.subset(ok), profile.source))
    times: dict[str, np.ndarray] = {}
    found: list[Conflict] = []
    for obis, parts in sorted(by_obis.items()):
        if len(parts) < 2:
            continue
        t = np.concatenate([p.times_us for p, _ in parts])
        v = np.concatenate([p.values for p, _ in parts])
        src = np.concatenate([np.full(len(p.times_us), i) for i, (p, _) in enumerate(parts)])
        order = np.lexsort((v, t))
        t, v, src = t[order], v[order], src[order]
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        low, high = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
        differ = np.flatnonzero(low != high)
        if not len(differ):
            continue
        ends = np.r_[starts[1:], len(t)]
        bad = t[starts[differ]]
        times[obis] = bad
        for k in differ.tolist():
            names = sorted({parts[int(i)][1] for i in src[starts[k] : ends[k]].tolist()})
            found.append(Conflict(obis, int(t[starts[k]]), tuple(names)))
    return times, found


def select(
    policy: Policy,
    info: MeterInfo | None,
    consent: ConsentRegistry,
    profile: DecodedProfile,
    horizon_us: int,
    implausible: dict[str, np.ndarray] | None = None,
    conflicting: dict[str, np.ndarray] | None = None,
    delivered_at_us: int | None = None,
) -> tuple[list[DecodedSeries], Counter[str]]:
    """The per-message filters (scope, status, plausibility, conflicts, consent, OBIS,
    retention) for one recipient. ``implausible`` and ``conflicting``: what ``implausible`` and
    ``conflicts`` found for the meter. ``delivered_at_us``: the processing time (the run's
    as-of), at which a consent must not have been withdrawn."""
    counts: Counter[str] = Counter()
    counts["readings-in"] += profile.readings
    if not in_scope(policy, info):
        counts["dropped-scope"] += profile.readings
        return [], counts
    kept = []
    for s in profile.series:
        mask = deliverable(s.status)
        if not mask.all():
            codes, n = np.unique(s.status[~mask], return_counts=True)
            for code, k in zip(codes.tolist(), n.tolist(), strict=True):
                counts[_status_reason(code)] += k
        if conflicting and s.obis in conflicting:
            disputed = mask & np.isin(s.times_us, conflicting[s.obis])
            counts["dropped-conflict"] += int(disputed.sum())
            mask &= ~disputed
        if implausible and s.obis in implausible:
            wrong = mask & np.isin(s.times_us, implausible[s.obis])
            counts["dropped-implausible"] += int(wrong.sum())
            mask &= ~wrong
        if policy.consent is not None:
            ok = consent.valid(profile.meter, policy.consent, s.times_us, delivered_at_us)
            counts["dropped-consent"] += int((mask & ~ok).sum())
            mask &= ok
        if not policy.allows_obis(s.obis):
            counts["dropped-obis"] += int(mask.sum())
            continue
        recent = s.times_us >= horizon_us
        counts["dropped-retention"] += int((mask & ~recent).sum())
        mask &= recent
        if mask.any():
            kept.append(s.subset(mask))
    return kept, counts


def _status_reason(code: int) -> str:
    try:
        return ReadingStatus(code).reason
    except ValueError:
        return ReadingStatus.UNKNOWN.reason


def merge(parts: Iterable[DecodedSeries]) -> tuple[list[DecodedSeries], int]:
    """One series per OBIS code from parts of several messages; repeated capture times are
    dropped (counted) so that a reading delivered twice cannot be summed twice."""
    by_obis: dict[str, list[DecodedSeries]] = {}
    for s in parts:
        by_obis.setdefault(s.obis, []).append(s)
    out, duplicates = [], 0
    for obis in sorted(by_obis):
        group = by_obis[obis]
        steps = [g.step_us for g in group if g.step_us]
        step = max(set(steps), key=steps.count) if steps else 0
        joined = DecodedSeries.concat(group, step)
        order = np.argsort(joined.times_us, kind="stable")
        t = joined.times_us[order]
        first = np.ones(len(t), dtype=bool)
        first[1:] = t[1:] != t[:-1]
        duplicates += int((~first).sum())
        out.append(joined.subset(order[first]))
    return out, duplicates


CALENDAR_INTERVALS = ("P1D", "P1M")
"""Intervals that follow a recipient's civil calendar; shorter ones stay on the UTC grid."""


def interval_bounds(
    times_us: np.ndarray, interval: str, step_us: int, timezone: str = "UTC"
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end] of the interval holding each capture time, as UTC epoch microseconds.

    Days and months are civil ones of ``timezone`` (a local day is 23 or 25 hours long on DST
    change days: 92 or 100 quarter hours); intervals shorter than a day are UTC-aligned."""
    if interval in CALENDAR_INTERVALS and timezone != "UTC":
        return _civil_bounds(times_us, interval, timezone)
    if interval == "P1M":
        tt = times_us.astype("datetime64[us]")
        month = tt.astype("datetime64[M]")
        month_start = month.astype("datetime64[us]")
        end_month = np.where(tt == month_start, month, month + 1)
        return (end_month - 1).astype("datetime64[us]").astype(np.int64), end_month.astype(
            "datetime64[us]"
        ).astype(np.int64)
    width = max(FIXED_WIDTH_US[interval], step_us)
    end = -(-times_us // width) * width
    return end - width, end


def _civil_bounds(
    times_us: np.ndarray, interval: str, timezone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Local midnights around each ``t - 1 µs`` (an interval (start, end] holds its end)."""
    if len(times_us) == 0:
        return times_us.copy(), times_us.copy()
    instants = pd.to_datetime(np.asarray(times_us, dtype=np.int64) - 1, unit="us", utc=True)
    wall = instants.tz_convert(timezone).tz_localize(None)  # local wall-clock times
    if interval == "P1D":
        start = wall.floor("D")
        end = start + pd.Timedelta(days=1)
    else:
        month = wall.to_period("M")
        start, end = month.to_timestamp(), (month + 1).to_timestamp()

    def utc_us(local: pd.DatetimeIndex) -> np.ndarray:
        # local midnight is never ambiguous or missing in the zones Minimeter serves (their
        # changes happen at 01:00-03:00); "raise" makes sure of it
        stamped = local.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        return np.asarray(stamped.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)

    return utc_us(pd.DatetimeIndex(start)), utc_us(pd.DatetimeIndex(end))


def local_dates(ts_us: np.ndarray, timezone: str) -> np.ndarray:
    """The civil date (``YYYY-MM-DD``) of each interval ending at ``ts_us`` (end minus 1 µs)."""
    if timezone == "UTC":
        return ((ts_us - 1) // (86400 * US)).astype("datetime64[D]").astype(str)
    instants = pd.to_datetime(np.asarray(ts_us, dtype=np.int64) - 1, unit="us", utc=True)
    return np.asarray(instants.tz_convert(timezone).strftime("%Y-%m-%d"), dtype=str)


@dataclass(frozen=True)
class Coarse:
    """One meter's values for one OBIS code at the recipient's granularity."""

    obis: str
    unit: str
    ts_us: np.ndarray
    value: np.ndarray
    value_max: np.ndarray | None
    readings: np.ndarray
    """How many raw readings each value stands for."""


def coarsen(
    series: DecodedSeries, interval: str, timezone: str = "UTC"
) -> tuple[Coarse | None, DecodedSeries | None]:
    """Complete intervals only; returns the coarse values and the readings left over in
    incomplete intervals (None when there are none).

    register: last value at or before the interval end; interval quantity: sum;
    instantaneous: mean and max. An interval is complete when it holds every capture the series'
    capture period implies; a partial interval (at the edges of the data, or cut by consent or
    retention) is not delivered: its readings are dropped, or carried to a later run that may
    complete it (``deliver_meter``).
    """
    n = len(series.times_us)
    if n == 0:
        return None, None
    step = series.step_us
    if step <= 0:
        return None, series
    start, end = interval_bounds(series.times_us, interval, step, timezone)
    ends, first, counts = np.unique(end, return_index=True, return_counts=True)
    length = end[first] - start[first]
    complete = (length % step == 0) & (counts == length // step)
    leftover = None
    if not complete.all():
        leftover = series.subset(~np.repeat(complete, counts))
    if not complete.any():
        return None, leftover
    kind = OBIS_TABLE[series.obis].kind if series.obis in OBIS_TABLE else "register"
    values = series.values
    last = first + counts - 1
    value_max = None
    if kind == "interval":
        value = np.add.reduceat(values, first)
    elif kind == "instantaneous":
        value = np.add.reduceat(values, first) / counts
        value_max = np.maximum.reduceat(values, first)[complete]
    else:
        value = values[last]
    return (
        Coarse(
            series.obis, series.unit, ends[complete], value[complete], value_max, counts[complete]
        ),
        leftover,
    )


_ISSUED = object()


class Deliverable:
    """Rows one recipient may receive: only ``minimise`` creates these, writers take nothing else."""

    __slots__ = (
        "recipient",
        "meter",
        "area",
        "obis",
        "unit",
        "ts_us",
        "value",
        "value_max",
        "n_meters",
    )

    def __init__(
        self,
        token: object,
        *,
        recipient: str,
        meter: str | None,
        area: str | None,
        obis: str,
        unit: str,
        ts_us: np.ndarray,
        value: np.ndarray,
        value_max: np.ndarray | None = None,
        n_meters: np.ndarray | None = None,
    ) -> None:
        if token is not _ISSUED:
            raise TypeError("Deliverable rows are created by minimeter.minimise only")
        self.recipient = recipient
        self.meter = meter
        self.area = area
        self.obis = obis
        self.unit = unit
        self.ts_us = ts_us
        self.value = value
        self.value_max = value_max
        self.n_meters = n_meters

    def __reduce__(self) -> tuple[object, ...]:  # pickling between Beam stages
        return _rebuild, tuple(getattr(self, name) for name in self.__slots__)

    def __len__(self) -> int:
        return len(self.ts_us)

    def split_by_day(self, timezone: str = "UTC") -> list[tuple[str, Deliverable]]:
        """(YYYY-MM-DD, rows) by the civil day of ``timezone`` each interval closes in (end
        minus 1 microsecond): the ``date=`` partition."""
        days = local_dates(self.ts_us, timezone)
        out = []
        for day in np.unique(days):
            m = days == day
            out.append(
                (
                    str(day),
                    Deliverable(
                        _ISSUED,
                        recipient=self.recipient,
                        meter=self.meter,
                        area=self.area,
                        obis=self.obis,
                        unit=self.unit,
                        ts_us=self.ts_us[m],
                        value=self.value[m],
                        value_max=None if self.value_max is None else self.value_max[m],
                        n_meters=None if self.n_meters is None else self.n_meters[m],
                    ),
                )
            )
        return out


def _rebuild(*fields: object) -> Deliverable:
    return Deliverable(_ISSUED, **dict(zip(Deliverable.__slots__, fields, strict=True)))  # type: ignore[arg-type]


def identity_of(policy: Policy, meter: str, key: bytes | None) -> str | None:
    if policy.identity == "metering-point":
        return meter
    if policy.identity == "pseudonym":
        assert key is not None
        return pseudonym(key, meter)
    return None


def deliver_meter(
    policy: Policy,
    meter: str,
    parts: Iterable[DecodedSeries],
    key: bytes | None,
    *,
    carry_from_us: int | None = None,
    offsets: bytes | None = None,
) -> tuple[list[Deliverable], list[Coarse], Counter[str], list[DecodedSeries]]:
    """Row-level deliverables of one meter (parquet delivery), or coarse values to aggregate,
    and the readings to carry to the next run.

    Readings of incomplete intervals captured at or after ``carry_from_us`` are carried (counted
    ``carried-out``): a later run may bring the rest of their interval. Older ones, or all of
    them when ``carry_from_us`` is None, are dropped (``dropped-incomplete``). ``offsets``: the
    recipient's register-offset key when its policy rebases registers (``register_offset``)."""
    counts: Counter[str] = Counter()
    merged, duplicates = merge(parts)
    counts["dropped-duplicate"] += duplicates
    out: list[Deliverable] = []
    coarse_values: list[Coarse] = []
    carried: list[DecodedSeries] = []
    who = identity_of(policy, meter, key) if policy.delivery != "aggregate" else None
    for s in merged:
        coarse, leftover = coarsen(s, policy.min_interval.text, policy.timezone)
        if leftover is not None:
            if carry_from_us is None:
                counts["dropped-incomplete"] += len(leftover.times_us)
            else:
                recent = leftover.times_us >= carry_from_us
                counts["dropped-incomplete"] += int((~recent).sum())
                if recent.any():
                    counts["carried-out"] += int(recent.sum())
                    carried.append(leftover.subset(recent))
        if coarse is None:
            continue
        if policy.delivery == "aggregate":
            coarse_values.append(coarse)
            continue
        counts["kept"] += int(coarse.readings.sum())
        value = coarse.value
        if offsets is not None and policy.rebases_registers and _kind(coarse.obis) == "register":
            value = value + register_offset(offsets, meter, coarse.obis)
        out.append(
            Deliverable(
                _ISSUED,
                recipient=policy.id,
                meter=who,
                area=None,
                obis=coarse.obis,
                unit=coarse.unit,
                ts_us=coarse.ts_us,
                value=value,
                value_max=coarse.value_max,
            )
        )
    return out, coarse_values, counts, carried


def _kind(obis: str) -> str:
    return OBIS_TABLE[obis].kind if obis in OBIS_TABLE else "register"


class AreaTotal:
    """What meters contribute to one (area, OBIS, interval) total: how many meters, how many raw
    readings, and the exact sum of their values.

    The sum is kept as non-overlapping partial sums (Shewchuk's exact summation), so totals
    merged in any order, as a runner's combiner does, give the same correctly rounded value:
    outputs do not depend on the runner or on how it split the work."""

    __slots__ = ("meters", "readings", "partials", "special")

    def __init__(self) -> None:
        self.meters = 0
        self.readings = 0
        self.partials: list[float] = []
        self.special = 0.0
        """The sum of non-finite values (inf, nan), which exact summation cannot hold."""

    def add(self, value: float, readings: int) -> AreaTotal:
        """One meter's value for the group, standing for ``readings`` raw readings."""
        self.meters += 1
        self.readings += readings
        self._add_exact(value)
        return self

    def merge(self, other: AreaTotal) -> AreaTotal:
        self.meters += other.meters
        self.readings += other.readings
        self.special += other.special
        for partial in other.partials:
            self._add_exact(partial)
        return self

    def _add_exact(self, x: float) -> None:
        if not math.isfinite(x):
            self.special += x
            return
        kept = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                self.partials[kept] = low
                kept += 1
            x = high
        self.partials[kept:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self.partials) + self.special


def aggregate_group(
    policy: Policy, area: str, obis: str, unit: str, ts_us: int, total: AreaTotal
) -> tuple[Deliverable | None, Counter[str]]:
    """One (area, OBIS, interval) total over its meters; suppressed below k.

    Each meter contributes once to a group: the policy stage sees all of a meter's messages at
    once and coarsening yields one value per interval."""
    counts: Counter[str] = Counter()
    assert policy.k_anonymity is not None
    if total.meters < policy.k_anonymity:
        counts["suppressed-k"] += total.readings
        counts["groups-suppressed-k"] += 1
        return None, counts
    counts["kept"] += total.readings
    row = Deliverable(
        _ISSUED,
        recipient=policy.id,
        meter=None,
        area=area,
        obis=obis,
        unit=unit,
        ts_us=np.array([ts_us], dtype=np.int64),
        value=np.array([total.value]),
        n_meters=np.array([total.meters], dtype=np.int64),
    )
    return row, counts


def horizon_us(policy: Policy, as_of: datetime) -> int:
    """Capture times before this are beyond the recipient's retention."""
    return int(policy.retention.subtract_from(as_of.astimezone(UTC)).timestamp() * US)

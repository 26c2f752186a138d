"""Capture period detection and time attribution, as PTB TRuDI does it (payload-neutral).

Gateways stamp a reading a few seconds after the period it closes (``23:00:05`` for the quarter
hour ending ``23:00``). TRuDI (``MeterReadingExtensions.GetMeasurementPeriod`` and
``GetMatchingMeasurementPeriod``) takes the capture period to be the standard period that most
spacings between consecutive readings match within +-2 %, first counting only spacings between
readings without errors; ``ModelExtensions.GetAlignedTimestamp`` then moves a capture time that
lies within 1 % of the period from a grid boundary (9 s for 15 minutes) onto that boundary. The
grid here is UTC, aligned to the epoch (every standard period divides a day).
"""

from __future__ import annotations

import numpy as np

MINUTE_US = 60_000_000
STANDARD_PERIODS_US: tuple[int, ...] = tuple(m * MINUTE_US for m in (1, 5, 10, 15, 30, 60, 24 * 60))
"""1, 5, 10, 15, 30, 60 minutes and one day."""
PERIOD_TOLERANCE = 0.02
"""A spacing matches a standard period within +-2 %."""
GRID_TOLERANCE_DIVISOR = 100
"""A capture time within 1 % of the period from a grid boundary belongs to that boundary."""

_PERIODS = np.array(STANDARD_PERIODS_US, dtype=np.int64)
_WINDOWS = np.array([int(p * PERIOD_TOLERANCE) for p in STANDARD_PERIODS_US], dtype=np.int64)
# [p - w, p + w] of every period as half-open [low, high + 1): sorted and disjoint
_EDGES = np.column_stack([_PERIODS - _WINDOWS, _PERIODS + _WINDOWS + 1]).ravel()
assert (np.diff(_EDGES) > 0).all()


def window_bounds() -> tuple[list[int], list[int]]:
    """The lowest and highest spacing (inclusive) that matches each standard period."""
    return [int(v) for v in _PERIODS - _WINDOWS], [int(v) for v in _PERIODS + _WINDOWS]


def _window_index(spacing_us: np.ndarray) -> np.ndarray:
    """Per spacing: the index of the standard period it matches within +-2 %, -1 for none."""
    pos = np.searchsorted(_EDGES, np.asarray(spacing_us, dtype=np.int64), side="right")
    return np.where(pos % 2 == 1, pos // 2, -1)


def matching_period(spacing_us: np.ndarray) -> np.ndarray:
    """Per spacing: the standard period it matches within +-2 %, 0 for none (int64)."""
    index = _window_index(spacing_us)
    return np.where(index >= 0, _PERIODS[index], 0)


def detect_periods(
    captured_us: np.ndarray, groups: np.ndarray, n_groups: int, usable: np.ndarray | None = None
) -> np.ndarray:
    """Per group (of readings sorted by group, then by capture time): its capture period, the
    standard period most of its spacings match (ties: the shorter period), spacings between
    ``usable`` readings first, all its spacings when those match none; 0 when none matches."""
    k = len(_PERIODS)
    steps = np.zeros(n_groups, dtype=np.int64)
    if len(captured_us) < 2:
        return steps
    index = _window_index(np.diff(captured_us))
    pair_group = groups[1:]
    matched = (pair_group == groups[:-1]) & (index >= 0)

    def tally(mask: np.ndarray) -> np.ndarray:
        cells = pair_group[mask] * k + index[mask]
        return np.bincount(cells, minlength=n_groups * k).reshape(n_groups, k)

    counts = tally(matched)
    if usable is not None:
        first = tally(matched & usable[1:] & usable[:-1])
        counts = np.where(np.any(first, axis=1, keepdims=True), first, counts)
    found = np.any(counts, axis=1)
    steps[found] = _PERIODS[counts[found].argmax(axis=1)]  # periods ascend: ties, the shorter
    return steps


def detect_period(captured_us: np.ndarray, usable: np.ndarray | None = None) -> int:
    """The capture period of readings sorted by capture time (``detect_periods`` of one
    group)."""
    groups = np.zeros(len(captured_us), dtype=np.int64)
    return int(detect_periods(np.asarray(captured_us, dtype=np.int64), groups, 1, usable)[0])


def attribute(captured_us: np.ndarray, step_us: int | np.ndarray) -> np.ndarray:
    """The period end each capture time is attributed to: the nearest UTC grid boundary of its
    period (``step_us``: one for all, or one a reading) when the time lies within 1 % of the
    period from it, else the time as sent (also for a period of 0)."""
    captured = np.asarray(captured_us, dtype=np.int64)
    if isinstance(step_us, int):
        if step_us <= 0:
            return captured.copy()
        nearest = (captured + step_us // 2) // step_us * step_us
        near = np.abs(captured - nearest) <= step_us // GRID_TOLERANCE_DIVISOR
        return np.where(near, nearest, captured)
    step = np.asarray(step_us, dtype=np.int64)
    safe = np.where(step > 0, step, 1)
    nearest = (captured + safe // 2) // safe * safe
    near = (step > 0) & (np.abs(captured - nearest) <= safe // GRID_TOLERANCE_DIVISOR)
    return np.where(near, nearest, captured)

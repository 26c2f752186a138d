"""Load profiles: plausible 15-minute (or other) shapes for households, PV, heat pumps, shops.

Everything is vectorised per meter-day with numpy; times are UTC and the shapes assume central
European local time (UTC+1). The annual consumption sets the scale: the mean of every shape over
a year is close to one, so a year of intervals sums to about ``annual_kwh``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

LOCAL_OFFSET_H = 1.0


def daylight(day: date) -> tuple[float, float]:
    """Sunrise and sunset in UTC hours at about 50 degrees north (simple astronomical model)."""
    doy = day.timetuple().tm_yday
    length = 12.0 + 4.0 * math.cos(2 * math.pi * (doy - 172) / 365.0)
    noon = 12.0 - LOCAL_OFFSET_H + 0.25  # solar noon in UTC for central Europe
    return noon - length / 2, noon + length / 2


def _bump(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.asarray(np.exp(-0.5 * ((h - centre) / width) ** 2), dtype=float)


def _season(doy: int, amplitude: float) -> float:
    return 1.0 + amplitude * math.cos(2 * math.pi * (doy - 15) / 365.0)


def _household_shape(h: np.ndarray, weekend: bool) -> np.ndarray:
    if weekend:
        s = 0.45 + 0.9 * _bump(h, 9.5, 1.5) + 0.7 * _bump(h, 13.0, 1.5) + 1.8 * _bump(h, 19.5, 2.0)
    else:
        s = 0.45 + 1.1 * _bump(h, 7.0, 1.0) + 0.3 * _bump(h, 13.0, 1.5) + 2.0 * _bump(h, 19.5, 1.8)
    return np.asarray(s / s.mean(), dtype=float)


def _business_shape(h: np.ndarray, weekend: bool) -> np.ndarray:
    if weekend:
        return np.full_like(h, 0.25, dtype=float)
    open_hours = 1.0 / (1 + np.exp(-(h - 7.5) * 3)) * 1.0 / (1 + np.exp((h - 18.5) * 3))
    s = 0.3 + 2.6 * open_hours
    return np.asarray(s / s.mean() * (7 / (5 + 2 * 0.25)), dtype=float)  # weekdays carry the week


@dataclass(frozen=True)
class DayProfile:
    """Energy per interval (Wh, floats) consumed and generated."""

    consumption: np.ndarray
    generation: np.ndarray


def day_profile(
    customer_type: str,
    annual_kwh: float,
    day: date,
    interval_minutes: int,
    rng: np.random.Generator,
    *,
    kwp: float = 0.0,
) -> DayProfile:
    n = 24 * 60 // interval_minutes
    # local hour at the middle of each interval
    h = (np.arange(n) + 0.5) * interval_minutes / 60.0 + LOCAL_OFFSET_H
    h = np.mod(h, 24.0)
    weekend = day.weekday() >= 5
    doy = day.timetuple().tm_yday
    mean_wh = annual_kwh * 1000.0 / (365.0 * n)
    noise = rng.lognormal(0.0, 0.35, size=n) / math.exp(0.35**2 / 2)
    if customer_type == "small-business":
        shape = _business_shape(h, weekend) * _season(doy, 0.1)
    elif customer_type == "heat-pump":
        # about 60 % of the year's energy is heating, concentrated in winter and mornings
        heating_degree = max(0.0, 15.0 - (10.0 - 10.0 * math.cos(2 * math.pi * (doy - 20) / 365.0)))
        heat = 0.7 + 0.6 * _bump(h, 6.5, 2.0) + 0.3 * _bump(h, 18.0, 2.5)
        heat = heat / heat.mean() * heating_degree / 8.2
        shape = 0.4 * _household_shape(h, weekend) * _season(doy, 0.2) + 0.6 * heat
    else:
        shape = _household_shape(h, weekend) * _season(doy, 0.25)
    consumption = mean_wh * shape * noise
    generation = np.zeros(n)
    if kwp > 0:
        rise, set_ = daylight(day)
        h_utc = (np.arange(n) + 0.5) * interval_minutes / 60.0
        sun = np.clip(np.sin(math.pi * (h_utc - rise) / (set_ - rise)), 0.0, None)
        sun[(h_utc < rise) | (h_utc > set_)] = 0.0
        clouds = float(rng.uniform(0.25, 1.0)) * rng.uniform(0.7, 1.0, size=n)
        summer = 0.55 + 0.45 * math.cos(2 * math.pi * (doy - 172) / 365.0)
        generation = kwp * 1000.0 * 0.8 * summer * sun * clouds * interval_minutes / 60.0
    return DayProfile(consumption, generation)

"""What a recipient received against the raw readings, as matplotlib figures (embedded as PNG).

Registers are shown as energy per interval (a register's increase over the interval), so that
raw and delivered values share a scale (rebased registers included: the offset cancels);
energies are in kWh, powers in kW. A missing interval is left as a gap, never bridged. When the
recipient's interval is coarser than the raw readings, the raw 15-minute values get a panel of
their own and the delivered values are compared with the raw readings summed over the same
intervals; values of different interval lengths never share an axis.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from minimeter.minimise import CALENDAR_INTERVALS
from minimeter.obis import OBIS_TABLE
from minimeter.policy.model import Policy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PREFERRED = ("1-0:1.29.0", "1-0:1.8.0", "1-0:1.8.1", "1-0:1.7.0")
FINE_DAYS = 7
"""Days shown for recipients of sub-daily intervals (the last days of the delivery)."""


@dataclass(frozen=True)
class Series:
    """Values per interval: ``start`` and ``end`` (UTC), ``value`` (NaN: not known)."""

    start: pd.Series
    end: pd.Series
    value: pd.Series


def _starts(ends: pd.Series, policy: Policy) -> pd.Series:
    text = policy.min_interval.text
    if text in CALENDAR_INTERVALS:
        local = ends.dt.tz_convert(policy.timezone)
        offset = pd.DateOffset(months=1) if text == "P1M" else pd.DateOffset(days=1)
        return pd.Series(
            [(t - offset).tz_convert("UTC") for t in local], index=ends.index, dtype=ends.dtype
        )
    return ends - pd.Timedelta(seconds=policy.min_interval.seconds)


def _per_interval(ts: pd.Series, values: pd.Series, starts: pd.Series, kind: str) -> pd.Series:
    """Energy (or power) per interval: a register's increase from the value at the interval's
    start (NaN when that value is missing); other kinds as they are."""
    if kind != "register":
        return values.reset_index(drop=True)
    at = pd.Series(values.to_numpy(), index=ts.to_numpy())
    before = at.reindex(starts.to_numpy()).to_numpy()
    return pd.Series(values.to_numpy() - before)


def _raw_width(raw_ts: pd.Series) -> pd.Timedelta:
    steps = raw_ts.drop_duplicates().sort_values().diff().dropna()
    return pd.Timedelta(steps.median()) if len(steps) else pd.Timedelta(minutes=15)


def _aggregate_raw(
    raw: Series, starts: pd.Series, ends: pd.Series, kind: str, width: pd.Timedelta
) -> pd.Series:
    """The raw values over each delivered interval: sums of energies, means of powers; NaN when
    a raw interval inside it is missing."""
    out = []
    end_ns = raw.end.to_numpy()
    vals = raw.value.to_numpy()
    for s, e in zip(starts.to_numpy(), ends.to_numpy(), strict=True):
        inside = (end_ns > s) & (end_ns <= e)
        need = int(round((e - s) / width.to_timedelta64()))
        got = vals[inside]
        if need == 0 or len(got) < need or np.isnan(got).any():
            out.append(np.nan)
        else:
            out.append(float(got.mean() if kind == "instantaneous" else got.sum()))
    return pd.Series(out)


def _local(ts: pd.Series, tz: str) -> pd.Series:
    return ts.dt.tz_convert(tz).dt.tz_localize(None)


def _draw(ax, series: Series, tz: str, **style) -> None:  # type: ignore[no-untyped-def]
    """Each interval as a horizontal segment from its start to its end; NaN draws nothing."""
    keep = series.value.notna().to_numpy()
    ax.hlines(
        series.value.to_numpy()[keep],
        _local(series.start, tz).to_numpy()[keep],
        _local(series.end, tz).to_numpy()[keep],
        **style,
    )


def _line(ax, series: Series, tz: str, width: pd.Timedelta, **style) -> None:  # type: ignore[no-untyped-def]
    """A fine series as a line through interval ends, broken where an interval is missing."""
    ends = series.end.reset_index(drop=True)
    values = series.value.reset_index(drop=True).astype(float).copy()
    gap = ends.diff() > width * 1.5
    xs: list[object] = []
    ys: list[float] = []
    for t, v, g in zip(_local(ends, tz), values, gap, strict=True):
        if g:
            xs.append(t)
            ys.append(np.nan)
        xs.append(t)
        ys.append(v)
    ax.plot(xs, ys, **style)


def recipient_figure(
    policy: Policy,
    delivered: pd.DataFrame,
    raw: pd.DataFrame | None,
    meters: pd.DataFrame | None,
    secret: bytes | None,
) -> Figure | None:
    """One sample series of the recipient (a meter, or an area of an aggregate) against the raw
    readings it came from, when ``raw`` (the ground truth) can be matched to it."""
    from matplotlib.figure import Figure

    if delivered.empty or "obis" not in delivered.columns:
        return None
    present = set(delivered["obis"])
    codes = [c for c in PREFERRED if c in present]
    obis = codes[0] if codes else str(sorted(present)[0])
    code = OBIS_TABLE.get(obis)
    kind = code.kind if code else "register"
    unit = code.unit if code else ""
    scale, shown = (1000.0, "k" + unit) if unit in ("Wh", "W", "varh") else (1.0, unit)
    d = delivered[delivered["obis"] == obis]
    aggregate = policy.delivery == "aggregate"
    if aggregate:
        who = str(d["area"].iloc[0])
        d = d[d["area"] == who]
        label = f"area {who}"
    else:
        who = str(d["meter"].dropna().iloc[0]) if d["meter"].notna().any() else ""
        d = d[d["meter"] == who] if who else d
        label = (  # never the meter's id: the report is read beyond the hub
            "a pseudonymised meter" if policy.identity == "pseudonym" else "a sample meter"
        )
    d = d.sort_values("ts").reset_index(drop=True)
    fine = policy.min_interval.seconds and policy.min_interval.seconds <= 3600
    if fine:
        d = d[d["ts"] > d["ts"].max() - pd.Timedelta(days=FINE_DAYS)].reset_index(drop=True)
    starts = _starts(d["ts"], policy)
    values = _per_interval(d["ts"], d["value"], starts, kind) / scale
    got = Series(starts.reset_index(drop=True), d["ts"].reset_index(drop=True), values)

    raw_meters: list[str] = []
    if raw is not None:
        if aggregate and meters is not None:
            raw_meters = [str(m) for m in meters.index[meters["area"] == who]]
        elif policy.identity == "metering-point" and who:
            raw_meters = [who]
        elif policy.identity == "pseudonym" and secret is not None and who:
            from minimeter.pseudonym import pseudonym, recipient_key

            key = recipient_key(secret, policy.id)
            raw_meters = [m for m in raw["meter"].unique() if pseudonym(key, str(m)) == who][:1]
    truth: Series | None = None
    width = pd.Timedelta(minutes=15)
    if raw is not None and raw_meters:
        r = raw[raw["meter"].isin(raw_meters) & (raw["obis"] == obis)]
        if "status" in r.columns:
            r = r[r["status"] == 0]
        lo, hi = got.start.min(), got.end.max()
        r = r[(r["capture_time"] >= lo - pd.Timedelta(days=1)) & (r["capture_time"] <= hi)]
        if not r.empty:
            width = _raw_width(r["capture_time"])
            per_meter = []
            for _, one in r.sort_values("capture_time").groupby("meter"):
                ts = one["capture_time"].reset_index(drop=True)
                s = ts - width
                v = _per_interval(ts, one["value"].reset_index(drop=True), s, kind)
                per_meter.append(pd.Series(v.to_numpy(), index=ts.to_numpy()))
            both = pd.concat(per_meter, axis=1)
            total = (
                both.mean(axis=1)
                if kind == "instantaneous"
                else both.sum(axis=1, min_count=len(per_meter))
            )
            total = total[(total.index > lo) & (total.index <= hi)].sort_index()
            ends = pd.Series(pd.DatetimeIndex(total.index, tz="UTC"))
            truth = Series(ends - width, ends, pd.Series(total.to_numpy()) / scale)

    tz = policy.timezone
    quantity = "mean power" if kind == "instantaneous" else "energy"
    same = (
        truth is not None
        and abs(pd.Timedelta(seconds=policy.min_interval.seconds) - width) < pd.Timedelta(seconds=1)
        and policy.min_interval.text not in CALENDAR_INTERVALS
    )
    panels = 1 if truth is None or same else 2
    fig = Figure(figsize=(10, 3.0 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    name = code.name if code else obis
    fig.suptitle(f"{policy.id}: {obis} {name}; {label}", fontsize=10)
    per = policy.min_interval.describe()
    raw_note = "all meters of the area" if aggregate else "the same meter"
    if panels == 2 and truth is not None:
        top, bottom = axes
        _line(top, truth, tz, width, color="#26a", lw=0.8, label=f"raw readings ({raw_note})")
        top.set_ylabel(f"{quantity} per {int(width.total_seconds() // 60)} min ({shown})")
        top.set_title(
            f"raw readings, every {int(width.total_seconds() // 60)} minutes (not delivered)",
            fontsize=9,
        )
        raw_sum = Series(got.start, got.end, _aggregate_raw(truth, got.start, got.end, kind, width))
        summed = f"raw readings {'averaged' if kind == 'instantaneous' else 'summed'} per {per}"
        if fine:  # many short intervals: lines through interval ends, broken at gaps
            step = pd.Timedelta(seconds=policy.min_interval.seconds)
            _line(bottom, raw_sum, tz, step, color="#9bd", lw=4, label=summed)
            _line(bottom, got, tz, step, color="#d62", lw=1.0, label=f"delivered to {policy.id}")
        else:
            _draw(bottom, raw_sum, tz, colors="#9bd", linewidth=6, label=summed)
            _draw(bottom, got, tz, colors="#d62", linewidth=1.8, label=f"delivered to {policy.id}")
        if kind == "register" and not got.value.notna().any():
            bottom.text(
                0.5,
                0.2,
                f"no delivered {per} has a register value at its start in this run,\n"
                "so its energy cannot be computed (the first interval of a series never has)",
                transform=bottom.transAxes,
                ha="center",
                va="center",
                fontsize=8,
                color="#a33",
                bbox={"facecolor": "white", "edgecolor": "#a33"},
            )
        bottom.set_ylabel(f"{quantity} per {per} ({shown})")
        bottom.set_title(f"what {policy.id} received: one value per {per}", fontsize=9)
    else:
        ax = axes[0]
        if truth is not None:
            _line(ax, truth, tz, width, color="#9bd", lw=4, label=f"raw readings ({raw_note})")
        if fine:
            _line(
                ax,
                got,
                tz,
                pd.Timedelta(seconds=policy.min_interval.seconds),
                color="#d62",
                lw=1.0,
                label=f"delivered to {policy.id}",
            )
        else:
            _draw(ax, got, tz, colors="#d62", linewidth=1.8, label=f"delivered to {policy.id}")
        ax.set_ylabel(f"{quantity} per {per} ({shown})")
        if truth is None:
            ax.set_title(
                "raw readings not shown (no ground truth, or no way to match this series)",
                fontsize=9,
            )
    for ax in axes:
        ax.set_xlabel(f"time ({tz})")
        ax.grid(True, lw=0.3)
        ax.legend(fontsize=7, loc="upper right")
        for tick in ax.get_xticklabels():
            tick.set_rotation(20)
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()

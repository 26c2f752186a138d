"""The rows a suite checks: a recipient tree's Parquet, read in batches, with derived columns.

Grid, spacing, age, raw ids and scope are computed as columns next to the data (``_aligned``,
``_gap_s``, ``_ts_s``, ``_raw_meter_id``, ``_in_scope``) and the expectations test those
columns: a tampered row changes them and fails the suite. Outputs are read in batches of about
``BATCH_ROWS`` rows, so that memory does not grow with the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from minimeter.minimise import CALENDAR_INTERVALS, FIXED_WIDTH_US, US
from minimeter.policy.model import Policy
from minimeter.storage import AnyPath, read_table

BATCH_ROWS = 50_000
"""Rows validated at once: a recipient's output is checked in batches of about this size, so
that the check's memory does not grow with the output."""


def output_files(tree: AnyPath) -> list[AnyPath]:
    """The Parquet files of one recipient tree (``minimeter.layout.RecipientTree``), in date
    order."""
    return sorted(tree.glob("data/date=*/*.parquet"))


def read_output(tree: AnyPath) -> pd.DataFrame:
    files = output_files(tree)
    if not files:
        return pd.DataFrame()
    return pd.concat([read_table(f).to_pandas() for f in files], ignore_index=True)


def read_batches(tree: AnyPath, max_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A recipient tree's rows in date order, as frames of about ``max_rows`` rows (``BATCH_ROWS``
    by default; a file is split by record batches when it is larger)."""
    max_rows = max_rows or BATCH_ROWS
    pending: list[pd.DataFrame] = []
    size = 0
    for path in output_files(tree):
        with path.open("rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=max_rows):
                pending.append(batch.to_pandas())
                size += batch.num_rows
                if size >= max_rows:
                    yield pd.concat(pending, ignore_index=True)
                    pending, size = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def empty_frame(policy: Policy) -> pd.DataFrame:
    """No rows, in the columns of the policy's delivery (a suite still runs on it)."""
    columns = (
        ["meter", "obis", "ts", "value", "unit"]
        if policy.delivery != "aggregate"
        else ["area", "obis", "ts", "value", "unit", "n_meters"]
    )
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    df["ts"] = pd.Series(dtype="datetime64[us, UTC]")
    return df


def derived(
    df: pd.DataFrame,
    policy: Policy,
    last: dict[tuple[Any, ...], int],
    raw_meters: frozenset[str],
    in_scope: frozenset[str] | None = None,
) -> pd.DataFrame:
    """The data with the derived columns the suite checks. ``last`` carries each series' latest
    time (microseconds) from the batches before, so that the spacing check spans batches; it is
    updated with this batch's. ``_raw_meter_id`` tells whether ``meter`` is a registered meter id
    (a column rather than an expectation holding every id: Great Expectations re-serialises an
    expectation's arguments many times per validation, which made the check grow with the
    fleet)."""
    df = df.copy()
    if "meter" in df.columns:
        df["_raw_meter_id"] = df["meter"].isin(raw_meters).astype(bool)
    if in_scope is not None:  # whom the recipient may receive: ids, its pseudonyms, or areas
        who = "area" if policy.delivery == "aggregate" else "meter"
        if who in df.columns:
            df["_in_scope"] = df[who].isin(in_scope).astype(bool)
    ts_us = (df["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    interval = policy.min_interval.text
    civil = interval in CALENDAR_INTERVALS
    t = df["ts"].dt.tz_convert(policy.timezone) if civil else df["ts"]
    midnight = (t.dt.hour == 0) & (t.dt.minute == 0) & (t.dt.second == 0)
    if interval == "P1M":
        df["_aligned"] = (t.dt.day == 1) & midnight
    elif civil:
        df["_aligned"] = midnight
    else:
        df["_aligned"] = (ts_us % FIXED_WIDTH_US[interval]) == 0
    keys = ["meter", "obis"] if "meter" in df.columns else ["area", "obis"]
    ordered = df.assign(_us=ts_us).sort_values(keys + ["_us"])
    grouped = ordered.groupby(keys, dropna=False)["_us"]
    gaps = grouped.diff()
    if len(ordered):
        firsts, lasts = grouped.head(1), grouped.tail(1)
        before = [
            last.get(_key(k)) for k in ordered.loc[firsts.index, keys].itertuples(index=False)
        ]
        gaps.loc[firsts.index] = [
            (t - b) if b is not None else float("nan")
            for t, b in zip(firsts.tolist(), before, strict=True)
        ]
        for k, t in zip(
            ordered.loc[lasts.index, keys].itertuples(index=False), lasts.tolist(), strict=True
        ):
            last[_key(k)] = int(t)
    df["_gap_s"] = (gaps / US).reindex(df.index)
    df["_ts_s"] = ts_us / US
    return df


def _key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(None if pd.isna(v) else v for v in values)

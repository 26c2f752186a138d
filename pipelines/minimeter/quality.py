"""Conformance of written outputs, checked by Great Expectations suites generated from policies.

For each recipient the suite checks, on the Parquet it received: OBIS codes in the allowed set;
timestamps on the interval grid; consecutive timestamps per meter and OBIS at least
``min_interval`` apart; no raw meter id (every id of meters.csv) and pseudonyms of the expected
form; ``n_meters >= k`` for aggregates; nothing older than the retention horizon; the row count
equal to the audit's count. Grid, spacing, age and raw ids are computed as columns next to the
data (``_aligned``, ``_gap_s``, ``_ts_s``, ``_raw_meter_id``) and the expectations test those
columns: a tampered row changes them and fails the suite. Outputs are checked in batches of
about ``BATCH_ROWS`` rows, so that memory does not grow with the output.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from minimeter.minimise import CALENDAR_INTERVALS, FIXED_WIDTH_US, US, horizon_us
from minimeter.policy.model import Policy, PolicySet
from minimeter.pseudonym import PSEUDONYM_PATTERN

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class ExpectationResult:
    recipient: str
    expectation: str
    column: str | None
    success: bool
    observed: str


MIN_SPACING_S = {"P1D": 23 * 3600, "P1M": 28 * 86400}
"""The shortest spacing of consecutive values of civil days and months (a spring DST day has
23 hours; February 28 days)."""

BATCH_ROWS = 50_000
"""Rows validated at once: a recipient's output is checked in batches of about this size, so
that the check's memory does not grow with the output."""


def output_files(tree: Path) -> list[Path]:
    """The Parquet files of one recipient tree (``minimeter.layout.RecipientTree``), in date
    order."""
    return sorted(tree.glob("data/date=*/*.parquet"))


def read_output(tree: Path) -> pd.DataFrame:
    files = output_files(tree)
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def read_batches(tree: Path, max_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A recipient tree's rows in date order, as frames of about ``max_rows`` rows (``BATCH_ROWS``
    by default; a file is split by record batches when it is larger)."""
    max_rows = max_rows or BATCH_ROWS
    pending: list[pd.DataFrame] = []
    size = 0
    for path in output_files(tree):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=max_rows):
            pending.append(batch.to_pandas())
            size += batch.num_rows
            if size >= max_rows:
                yield pd.concat(pending, ignore_index=True)
                pending, size = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _derived(
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


def suite_for(
    policy: Policy, *, expected_rows: int, as_of: datetime, scope: bool = False
) -> list[Any]:
    """The expectations one recipient's output must meet (Great Expectations objects)."""
    gxe: Any = importlib.import_module("great_expectations.expectations")

    exact = [s.text for s in policy.obis if s.is_exact]
    if len(exact) == len(policy.obis):
        obis: Any = gxe.ExpectColumnValuesToBeInSet(column="obis", value_set=exact)
    else:
        pattern = "|".join(
            "^" + re.escape(s.text).replace(r"\*", r"\d{1,3}") + "$" for s in policy.obis
        )
        obis = gxe.ExpectColumnValuesToMatchRegex(column="obis", regex=pattern)
    width_s = MIN_SPACING_S.get(
        policy.min_interval.text, FIXED_WIDTH_US.get(policy.min_interval.text, 0) // US
    )
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToEqual(value=expected_rows),
        obis,
        gxe.ExpectColumnValuesToBeInSet(column="_aligned", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="_gap_s", min_value=width_s),
        gxe.ExpectColumnValuesToBeBetween(column="_ts_s", min_value=horizon_us(policy, as_of) / US),
        gxe.ExpectColumnValuesToNotBeNull(column="value"),
    ]
    if scope and (policy.delivery == "aggregate" or policy.identity != "none"):
        # every meter (or area) in the output is one the recipient is entitled to
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column="_in_scope", value_set=[True]))
    if policy.delivery == "aggregate":
        assert policy.k_anonymity is not None
        expectations += [
            gxe.ExpectColumnValuesToBeBetween(column="n_meters", min_value=policy.k_anonymity),
            gxe.ExpectColumnValuesToBeInSet(
                column="area", value_set=list(policy.scope.areas or ())
            ),
        ]
    elif policy.identity == "pseudonym":
        expectations += [
            gxe.ExpectColumnValuesToBeInSet(column="_raw_meter_id", value_set=[False]),
            gxe.ExpectColumnValuesToMatchRegex(column="meter", regex=PSEUDONYM_PATTERN.pattern),
        ]
    elif policy.identity == "none":
        expectations.append(gxe.ExpectColumnValuesToBeNull(column="meter"))
    else:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column="_raw_meter_id", value_set=[True])
        )
    return expectations


def _context() -> Any:
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _empty_frame(policy: Policy) -> pd.DataFrame:
    columns = (
        ["meter", "obis", "ts", "value", "unit"]
        if policy.delivery != "aggregate"
        else ["area", "obis", "ts", "value", "unit", "n_meters"]
    )
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    df["ts"] = pd.Series(dtype="datetime64[us, UTC]")
    return df


def check_recipient(
    ctx: Any,
    policy: Policy,
    batches: Iterable[pd.DataFrame],
    *,
    expected_rows: int,
    raw_meters: list[str],
    as_of: datetime,
    in_scope: list[str] | None = None,
) -> list[ExpectationResult]:
    """The recipient's suite on its output, batch by batch (``read_batches``), merged: an
    expectation holds when it holds on every batch, its unexpected counts add up, and the row
    count is the sum of the rows Great Expectations counted in each batch."""
    import great_expectations as gx

    gxe: Any = importlib.import_module("great_expectations.expectations")
    source = ctx.data_sources.add_pandas(f"out-{policy.id}")
    batch_def = source.add_dataframe_asset(name=policy.id).add_batch_definition_whole_dataframe(
        "all"
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"conformance-{policy.id}"))
    scope = frozenset(in_scope) if in_scope is not None else None
    for expectation in suite_for(
        policy, expected_rows=expected_rows, as_of=as_of, scope=scope is not None
    ):
        if isinstance(expectation, gxe.ExpectTableRowCountToEqual):
            # per batch only counted; the total is compared with the audit's count below
            expectation = gxe.ExpectTableRowCountToBeBetween(min_value=0)
        suite.add_expectation(expectation)
    rows = (df for df in batches if not df.empty)  # the row count is checked over all batches
    first = next(rows, None)
    frames = itertools.chain([_empty_frame(policy) if first is None else first], rows)
    merged: list[_Merged] | None = None
    last: dict[tuple[Any, ...], int] = {}
    raw = frozenset(raw_meters)
    for df in frames:
        data = _derived(df, policy, last, raw, scope)
        result = batch_def.get_batch(batch_parameters={"dataframe": data}).validate(suite)
        if merged is None:
            merged = [_Merged(r.expectation_config) for r in result.results]
        for m, r in zip(merged, result.results, strict=True):
            m.add(r)
    assert merged is not None  # at least one frame, empty or not, was validated
    return [m.result(policy.id, expected_rows) for m in merged]


class _Merged:
    """One expectation's results over the batches of a recipient's output."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.success = True
        self.unexpected: int | None = None
        self.elements = 0
        self.rows = 0
        self.observed = ""

    def add(self, r: Any) -> None:
        self.success &= bool(r.success)
        if "unexpected_count" in r.result:
            self.unexpected = (self.unexpected or 0) + int(r.result["unexpected_count"])
            self.elements += int(r.result.get("element_count", 0) or 0)
        elif self.config.type == "expect_table_row_count_to_be_between":
            self.rows += int(r.result.get("observed_value", 0))
        else:
            self.observed = str(r.result.get("observed_value", ""))

    def result(self, recipient: str, expected_rows: int) -> ExpectationResult:
        column = self.config.kwargs.get("column")
        if self.config.type == "expect_table_row_count_to_be_between":
            return ExpectationResult(
                recipient,
                "expect_table_row_count_to_equal",
                None,
                self.rows == expected_rows,
                str(self.rows),
            )
        observed = (
            f"{self.unexpected} unexpected of {self.elements}"
            if self.unexpected is not None
            else self.observed
        )
        return ExpectationResult(recipient, self.config.type, column, self.success, observed)


def run_conformance(
    trees: dict[str, Path],
    ps: PolicySet,
    *,
    expected_rows: dict[str, int],
    raw_meters: list[str],
    as_of: datetime,
    in_scope: dict[str, list[str]] | None = None,
) -> list[ExpectationResult]:
    """Every non-forward recipient's suite on the Parquet of its tree (``trees``: recipient id
    to its tree of the run; a recipient without a tree has no rows).

    In the conformance worker when ``start_conformance_worker`` started it, else here."""
    policies = sorted((p for p in ps.policies if p.delivery != "cms-forward"), key=lambda p: p.id)
    tasks = [
        (
            trees.get(p.id, _NO_TREE),
            p,
            expected_rows.get(p.id, 0),
            raw_meters,
            as_of,
            in_scope.get(p.id) if in_scope is not None else None,
        )
        for p in policies
    ]
    if _WORKER is not None:
        answers = [_WORKER.check(task) for task in tasks]
        return [  # a task the worker could not check is checked here
            r
            for task, answer in zip(tasks, answers, strict=True)
            for r in (answer if answer is not None else _check_task(task))
        ]
    ctx = _context()
    return [r for task in tasks for r in _check_task(task, ctx)]


_CheckTask = tuple[Path, Policy, int, list[str], datetime, list[str] | None]
_NO_TREE = Path("/nonexistent/minimeter-no-tree")


def _check_task(task: _CheckTask, ctx: Any = None) -> list[ExpectationResult]:
    """One recipient's suite; in a fresh context unless ``ctx`` is given (a worker serves many
    runs, and a context refuses a second data source of the same name)."""
    tree, policy, expected, raw_meters, as_of, in_scope = task
    return check_recipient(
        ctx if ctx is not None else _context(),
        policy,
        read_batches(tree),
        expected_rows=expected,
        raw_meters=raw_meters,
        as_of=as_of,
        in_scope=in_scope,
    )


# --- the conformance worker ---------------------------------------------------------------------


class _Worker:
    """One ``python -m minimeter.conformance_worker`` process, spoken to in pickles over pipes.

    A process of its own rather than ``multiprocessing``: spawn would re-run the caller's main
    script in the child, and fork would copy Beam's gRPC threads.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minimeter.conformance_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.alive = True
        self.answered = 0
        self.lock = threading.Lock()

    def check(self, task: _CheckTask) -> list[ExpectationResult] | None:
        """The task's results, or None when the worker failed (the caller checks it itself)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if not self.alive:
            return None
        try:
            with self.lock:  # one question and its answer at a time on the pipes
                pickle.dump(task, self.process.stdin)
                self.process.stdin.flush()
                answer = pickle.load(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            self.alive = False  # gone (killed, out of memory): no more tasks for it
            return None
        if not isinstance(answer, list):
            return None
        self.answered += 1
        return answer

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WORKER: _Worker | None = None


def start_conformance_worker() -> None:
    """Start a process that imports Great Expectations now, for ``run_conformance`` to use later.

    The import costs about 4 s and 150 MiB. ``minimeter run`` calls this before its Beam job, so
    that the import overlaps the job (on the core the job leaves free) instead of following it.
    The worker serves every later run of this process. A task it fails is checked here instead.
    """
    global _WORKER
    if _WORKER is not None:
        return
    try:
        _WORKER = _Worker()
    except OSError:
        return
    atexit.register(_stop_worker)


def _stop_worker() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER.stop()
        _WORKER = None


def as_of_datetime(day: Any) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class ConformanceOutcome:
    results: list[ExpectationResult]

    @property
    def failed(self) -> list[str]:
        return sorted({r.recipient for r in self.results if not r.success})


def check_trees(
    trees: dict[str, Path],
    ps: PolicySet,
    *,
    expected_rows: dict[str, int],
    meters: Path,
    as_of: datetime,
    secret: bytes | None = None,
) -> ConformanceOutcome:
    """Every suite on one run's recipient trees (staged or published). With the pseudonym
    ``secret``, each output is also checked to hold only meters (or areas) in the recipient's
    scope, pseudonyms recomputed. Moving a failing tree out of reach is the caller's
    (``minimeter.publish``)."""
    from minimeter.registry import MeterRegistry

    registry = MeterRegistry.load(meters)
    raw = sorted(registry.meters)
    scope = None if secret is None else entitled(ps, registry, secret)
    return ConformanceOutcome(
        run_conformance(
            trees, ps, expected_rows=expected_rows, raw_meters=raw, as_of=as_of, in_scope=scope
        )
    )


def entitled(ps: PolicySet, registry: Any, secret: bytes) -> dict[str, list[str]]:
    """Per recipient, what its output may name: the ids, or its pseudonyms, of the meters in
    its scope; for aggregates, its areas."""
    from minimeter.minimise import in_scope
    from minimeter.pseudonym import pseudonym, recipient_key

    out: dict[str, list[str]] = {}
    for p in ps.policies:
        if p.delivery == "aggregate":
            areas = p.scope.areas or {
                m.area for m in registry.meters.values() if m.jurisdiction == p.jurisdiction
            }
            out[p.id] = sorted(areas)
            continue
        scoped = [m for m, info in registry.meters.items() if in_scope(p, info)]
        if p.identity == "pseudonym":
            key = recipient_key(secret, p.id)
            out[p.id] = sorted(pseudonym(key, m) for m in scoped)
        else:
            out[p.id] = sorted(scoped)
    return out

"""Suites run on one run's recipient trees: batch by batch, merged per expectation.

In the conformance worker (``minimeter.conformance.worker``) when one was started, else in
this process.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from minimeter.conformance import worker
from minimeter.conformance.derived import derived, empty_frame, read_batches
from minimeter.conformance.suites import ExpectationResult, context, suite_for
from minimeter.policy.model import Policy, PolicySet
from minimeter.storage import AnyPath


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
    batch_def = _batch_definition(ctx)
    scope = frozenset(in_scope) if in_scope is not None else None
    expectations = [
        # per batch only counted; the total is compared with the audit's count below
        gxe.ExpectTableRowCountToBeBetween(min_value=0)
        if isinstance(e, gxe.ExpectTableRowCountToEqual)
        else e
        for e in suite_for(
            policy, expected_rows=expected_rows, as_of=as_of, scope=scope is not None
        )
    ]
    # not added to the context: a stored suite is re-serialised on every expectation added
    suite = gx.ExpectationSuite(name=f"conformance-{policy.id}", expectations=expectations)
    rows = (df for df in batches if not df.empty)  # the row count is checked over all batches
    first = next(rows, None)
    frames = itertools.chain([empty_frame(policy) if first is None else first], rows)
    merged: list[_Merged] | None = None
    last: dict[tuple[Any, ...], int] = {}
    raw = frozenset(raw_meters)
    for df in frames:
        data = derived(df, policy, last, raw, scope)
        result = batch_def.get_batch(batch_parameters={"dataframe": data}).validate(suite)
        if merged is None:
            merged = [_Merged(r.expectation_config) for r in result.results]
        for m, r in zip(merged, result.results, strict=True):
            m.add(r)
    assert merged is not None  # at least one frame, empty or not, was validated
    return [m.result(policy.id, expected_rows) for m in merged]


_SOURCE = "minimeter-outputs"


def _batch_definition(ctx: Any) -> Any:
    """The context's one in-memory data source, asset and whole-frame batch definition, made on
    first use: each recipient's frames are passed as batch parameters, so that a context (the
    worker's) serves every recipient and run without adding, and saving, a source per check."""
    try:
        source = ctx.data_sources.get(_SOURCE)
    except KeyError:
        source = ctx.data_sources.add_pandas(_SOURCE)
        return source.add_dataframe_asset(name="output").add_batch_definition_whole_dataframe("all")
    return source.get_asset("output").get_batch_definition("all")


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
    trees: dict[str, AnyPath],
    ps: PolicySet,
    *,
    expected_rows: dict[str, int],
    raw_meters: list[str],
    as_of: datetime,
    in_scope: dict[str, list[str]] | None = None,
) -> list[ExpectationResult]:
    """Every non-forward recipient's suite on the Parquet of its tree (``trees``: recipient id
    to its tree of the run; a recipient without a tree has no rows).

    In the conformance worker when ``worker.start`` started it, else here."""
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
    running = worker.current()
    if running is not None and all(isinstance(t[0], Path) for t in tasks):
        # (the worker process reads local trees; an object store's are read here, where
        # FileSystems has the run's options)
        answers = [running.check(task) for task in tasks]
        return [  # a task the worker could not check is checked here
            r
            for task, answer in zip(tasks, answers, strict=True)
            for r in (answer if answer is not None else check_task(task))
        ]
    ctx = context()
    return [r for task in tasks for r in check_task(task, ctx)]


CheckTask = tuple[AnyPath, Policy, int, list[str], datetime, list[str] | None]
_NO_TREE = Path("/nonexistent/minimeter-no-tree")


def check_task(task: CheckTask, ctx: Any = None) -> list[ExpectationResult]:
    """One recipient's suite, in ``ctx`` or the process's own context."""
    tree, policy, expected, raw_meters, as_of, in_scope = task
    return check_recipient(
        ctx if ctx is not None else _worker_context(),
        policy,
        read_batches(tree),
        expected_rows=expected,
        raw_meters=raw_meters,
        as_of=as_of,
        in_scope=in_scope,
    )


_CONTEXT: list[Any] = []


def _worker_context() -> Any:
    """One context for every check of this process (the conformance worker's)."""
    if not _CONTEXT:
        _CONTEXT.append(context())
    return _CONTEXT[0]


def as_of_datetime(day: Any) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class ConformanceOutcome:
    results: list[ExpectationResult]

    @property
    def failed(self) -> list[str]:
        return sorted({r.recipient for r in self.results if not r.success})


def check_trees(
    trees: dict[str, AnyPath],
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

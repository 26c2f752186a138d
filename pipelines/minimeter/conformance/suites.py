"""The expectations a recipient's output must meet, generated from its policy.

Each check is first a plain ``Check`` (Great Expectations' expectation type, its arguments, and
what it means to an auditor: the rule and the policy's parameters it tests), so that the report
can explain a result without importing Great Expectations; ``suite_for`` turns the checks into
Great Expectations objects. For each recipient: OBIS codes in the allowed set; timestamps on the
interval grid; consecutive timestamps per meter and OBIS at least ``min_interval`` apart; no raw
meter id (every id of meters.csv) and pseudonyms of the expected form; ``n_meters >= k`` for
aggregates; nothing older than the retention horizon; the row count equal to the audit's count;
with the pseudonym secret, only meters (or areas) in the recipient's scope.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from minimeter.minimise import CALENDAR_INTERVALS, FIXED_WIDTH_US, US, horizon_us
from minimeter.policy.model import Policy
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

MANIFEST_CHECK = "files_match_manifest"
"""Not a Great Expectations check: every file against the run's signed manifest
(``minimeter conformance``)."""


@dataclass(frozen=True)
class Check:
    expectation: str
    """Great Expectations' expectation type (``expect_column_values_to_be_in_set``)."""
    column: str | None
    kwargs: dict[str, Any] = field(hash=False)
    rule: str
    """What is checked, in an auditor's words."""
    parameters: str
    """The policy's values the check applies (allowed set, interval, horizon, k)."""

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.expectation, self.column)


def min_spacing_s(policy: Policy) -> int:
    text = policy.min_interval.text
    return MIN_SPACING_S.get(text, FIXED_WIDTH_US.get(text, 0) // US)


def checks(
    policy: Policy, *, expected_rows: int, as_of: datetime, scope: bool = False
) -> list[Check]:
    """The checks of one recipient's output, in suite order."""
    interval = policy.min_interval
    exact = [s.text for s in policy.obis if s.is_exact]
    allowed = ", ".join(s.text for s in policy.obis)
    if len(exact) == len(policy.obis):
        obis = Check(
            "expect_column_values_to_be_in_set",
            "obis",
            {"value_set": exact},
            "every OBIS code is one the policy allows",
            f"allowed: {allowed}",
        )
    else:
        pattern = "|".join(
            "^" + re.escape(s.text).replace(r"\*", r"\d{1,3}") + "$" for s in policy.obis
        )
        obis = Check(
            "expect_column_values_to_match_regex",
            "obis",
            {"regex": pattern},
            "every OBIS code is one the policy allows (* is any value of a group)",
            f"allowed: {allowed}",
        )
    width_s = min_spacing_s(policy)
    civil = interval.text in CALENDAR_INTERVALS
    grid = (
        f"interval ends at local midnight of {policy.timezone}"
        + (" on the 1st of a month" if interval.text == "P1M" else "")
        if civil
        else f"interval ends on the UTC {interval.describe()} grid"
    )
    horizon = datetime.fromtimestamp(horizon_us(policy, as_of) / US, tz=as_of.tzinfo)
    spacing = f"minimum interval {interval.describe()} ({interval.text})" + (
        f": at least {width_s // 3600} h apart (a DST day has 23 h)"
        if interval.text == "P1D"
        else (f": at least {width_s // 86400} days apart" if interval.text == "P1M" else "")
    )
    out = [
        Check(
            "expect_table_row_count_to_equal",
            None,
            {"value": expected_rows},
            "the rows written are the rows the audit counts as delivered",
            f"rows delivered (audit): {expected_rows}",
        ),
        obis,
        Check(
            "expect_column_values_to_be_in_set",
            "_aligned",
            {"value_set": [True]},
            "every timestamp is the end of a whole interval",
            grid,
        ),
        Check(
            "expect_column_values_to_be_between",
            "_gap_s",
            {"min_value": width_s},
            "consecutive values of one series are at least the minimum interval apart",
            spacing,
        ),
        Check(
            "expect_column_values_to_be_between",
            "_ts_s",
            {"min_value": horizon_us(policy, as_of) / US},
            "nothing older than the retention horizon",
            f"horizon {horizon:%Y-%m-%d %H:%M} UTC (retention {policy.retention.describe()} "
            f"before the as-of {as_of:%Y-%m-%d})",
        ),
        Check(
            "expect_column_values_to_not_be_null",
            "value",
            {},
            "every row has a value",
            "",
        ),
    ]
    if scope and (policy.delivery == "aggregate" or policy.identity != "none"):
        who = (
            f"grid areas {', '.join(policy.scope.areas or ())}"
            if policy.delivery == "aggregate"
            else "meters of the recipient's scope"
            + (" (its pseudonyms, recomputed)" if policy.identity == "pseudonym" else "")
        )
        out.append(
            Check(
                "expect_column_values_to_be_in_set",
                "_in_scope",
                {"value_set": [True]},
                "every meter (or area) named is one the recipient is entitled to",
                f"scope: jurisdiction {policy.jurisdiction}, {who}",
            )
        )
    if policy.delivery == "aggregate":
        assert policy.k_anonymity is not None
        out += [
            Check(
                "expect_column_values_to_be_between",
                "n_meters",
                {"min_value": policy.k_anonymity},
                "every aggregate sums at least k distinct meters",
                f"k = {policy.k_anonymity}",
            ),
            Check(
                "expect_column_values_to_be_in_set",
                "area",
                {"value_set": list(policy.scope.areas or ())},
                "only the policy's grid areas",
                f"areas: {', '.join(policy.scope.areas or ())}",
            ),
        ]
    elif policy.identity == "pseudonym":
        out += [
            Check(
                "expect_column_values_to_be_in_set",
                "_raw_meter_id",
                {"value_set": [False]},
                "no registered meter id appears",
                "identity: pseudonym (none of meters.csv's ids)",
            ),
            Check(
                "expect_column_values_to_match_regex",
                "meter",
                {"regex": PSEUDONYM_PATTERN.pattern},
                "every meter column holds a pseudonym",
                "32 lower-case hex digits",
            ),
        ]
    elif policy.identity == "none":
        out.append(
            Check(
                "expect_column_values_to_be_null",
                "meter",
                {},
                "no meter identifier at all",
                "identity: none",
            )
        )
    else:
        out.append(
            Check(
                "expect_column_values_to_be_in_set",
                "_raw_meter_id",
                {"value_set": [True]},
                "every meter is a registered metering point",
                "identity: metering-point (ids of meters.csv)",
            )
        )
    return out


def manifest_check() -> Check:
    return Check(
        MANIFEST_CHECK,
        None,
        {},
        "every file matches the run's signed manifest (SHA-256, rows; none missing or extra)",
        "manifest.json and its signature",
    )


def _class_name(expectation: str) -> str:
    return "".join(part.capitalize() for part in expectation.split("_"))


def suite_for(
    policy: Policy, *, expected_rows: int, as_of: datetime, scope: bool = False
) -> list[Any]:
    """The expectations one recipient's output must meet (Great Expectations objects)."""
    gxe: Any = importlib.import_module("great_expectations.expectations")
    return [
        getattr(gxe, _class_name(c.expectation))(
            **({"column": c.column} if c.column else {}), **c.kwargs
        )
        for c in checks(policy, expected_rows=expected_rows, as_of=as_of, scope=scope)
    ]


def context() -> Any:
    """An ephemeral Great Expectations context, quiet (no progress bars, errors only)."""
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx

"""``minimeter demo`` with its defaults shows every shipped recipient receiving data, any day.

The fleet covers a whole calendar month (the monthly recipients) and the EU summer-time change;
the job's as-of date comes from the fleet, not from today's date (one-year retentions would
otherwise empty recipients a year after the fleet's dates). No timing here: that is for
benchmarks/.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from minimeter.demo import EU_DST_START_2026, run_demo
from minimeter.policy.load import default_policies_dir, load_policy_set

pytestmark = pytest.mark.slow


def _visible(path: Path, base: Path) -> bool:
    return not any(part.startswith(("_", ".")) for part in path.relative_to(base).parts)


def parquet_rows(recipient_dir: Path) -> int:
    if not recipient_dir.is_dir():
        return 0
    return sum(
        pq.ParquetFile(f).metadata.num_rows
        for f in recipient_dir.rglob("*.parquet")
        if _visible(f, recipient_dir)
    )


def forwarded(recipient_dir: Path) -> int:
    if not recipient_dir.is_dir():
        return 0
    return sum(1 for f in recipient_dir.rglob("*.cms") if _visible(f, recipient_dir))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = run_demo(out)
    return out, status, buf.getvalue()


def fleet_days(out: Path) -> list[date]:
    with (out / "fleet" / "truth" / "messages.csv").open(newline="") as f:
        return sorted({date.fromisoformat(row["day"]) for row in csv.DictReader(f)})


def test_demo_exits_zero(demo: tuple[Path, int, str]) -> None:
    _, status, text = demo
    assert status == 0, text


def test_every_shipped_recipient_receives_data(demo: tuple[Path, int, str]) -> None:
    out, _, text = demo
    ps = load_policy_set(default_policies_dir())
    assert ps.policies
    received = {}
    for policy in ps.policies:
        where = out / "run" / policy.id
        if policy.delivery == "cms-forward":
            received[policy.id] = forwarded(where)
        else:  # parquet and aggregate
            received[policy.id] = parquet_rows(where)
    empty = sorted(rid for rid, n in received.items() if n == 0)
    assert not empty, f"no data for {empty}: {received}\n{text}"


def test_as_of_comes_from_the_fleet(demo: tuple[Path, int, str]) -> None:
    out, _, text = demo
    last_day = fleet_days(out)[-1]
    printed = re.search(r"^as-of: (\d{4}-\d{2}-\d{2})", text, re.M)
    assert printed, text
    assert date.fromisoformat(printed[1]) == last_day + timedelta(days=1)
    audits = list((out / "run").rglob("audit.duckdb"))
    assert audits, "no audit database under the demo's run output"
    con = duckdb.connect(str(audits[0]), read_only=True)
    try:
        (used,) = con.execute("SELECT as_of FROM runs WHERE run_id = 'demo'").fetchone() or (None,)
    finally:
        con.close()
    assert used == last_day + timedelta(days=1)


def test_fleet_covers_a_calendar_month_and_the_dst_change(demo: tuple[Path, int, str]) -> None:
    out, _, _ = demo
    days = fleet_days(out)
    assert EU_DST_START_2026 == date(2026, 3, 29)  # the last Sunday of March 2026
    assert days[0] <= EU_DST_START_2026 <= days[-1]
    assert len(days) == (days[-1] - days[0]).days + 1, "the fleet has gaps"
    first_of_month = (days[0] + timedelta(days=1)).replace(day=1)  # March, from 28 February
    month_days = {
        first_of_month + timedelta(days=i)
        for i in range(40)
        if (first_of_month + timedelta(days=i)).month == first_of_month.month
    }
    assert month_days <= set(days), "the fleet does not cover a whole calendar month"
    assert days[0] < first_of_month  # the local month starts the evening before, in UTC

"""``minimeter demo``: a synthetic fleet through the main job with the shipped policies.

The defaults show every shipped recipient receiving data, whatever day the demo runs:

* the fleet covers the whole of March 2026 in local time, so the monthly recipients
  (``min_interval: P1M``, civil months of Paris and Amsterdam) get a complete month, and the
  European change to summer time (29 March 2026);
* the job's as-of date is derived from the fleet (the day after its last day), never today's
  date, so retention horizons (P1Y, P2Y, P3Y) keep the fleet's readings in any year.

Synth lays out a day's message as the captures (day 00:00, day+1 00:00] UTC, the intervals of
``minimise.interval_bounds`` are (start, end], and ``coarsen`` delivers complete intervals only:
local March (28 February 23:00, 31 March 22:00] UTC in Paris and Amsterdam needs the day
messages of 28 February to 31 March.
"""

from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from minimeter.pipeline.run import RunConfig, main_run
from minimeter.policy.load import default_policies_dir
from minimeter.synth.generate import SynthConfig, synthesize

DEMO_START = date(2026, 2, 28)
"""First day of the demo fleet (the evening of 28 February UTC is already March in CET)."""
DEMO_DAYS = 32
"""All of March 2026 in local time: one complete civil month."""
DEMO_METERS = 24
"""Small enough for ``make demo`` to stay well under a minute on two cores (the message count,
meters x days, is what costs)."""
DEMO_SEED = 127
"""A fleet of ``DEMO_METERS`` in which every shipped recipient gets data: at least five meters
sharing a German and a British grid area on most days (the aggregates' k-anonymity), two French
historic-supplier and two Dutch meters without a faulty message all month (the monthly
recipients), and opt-in consent for the French ESCO and the British half-hourly supplier.
tests/test_demo.py checks this; change the seed only with that test passing."""
DEMO_FAULTS = 0.015
"""About a dozen faulty messages: every fault kind at least once, most meters with a complete month."""
EU_DST_START_2026 = date(2026, 3, 29)
"""Last Sunday of March 2026: Europe changes to summer time at 01:00 UTC."""


def fleet_last_day(start: date, days: int) -> date:
    return start + timedelta(days=days - 1)


def demo_as_of(start: date, days: int) -> date:
    """The job's as-of date: the day after the fleet's last day (its last capture is that day's
    00:00 UTC), independent of the day the demo runs."""
    return fleet_last_day(start, days) + timedelta(days=1)


def run_demo(
    out: Path,
    *,
    meters: int = DEMO_METERS,
    days: int = DEMO_DAYS,
    start: date = DEMO_START,
    seed: int = DEMO_SEED,
    beam_args: tuple[str, ...] = (),
) -> int:
    started = time.perf_counter()
    fleet = out / "fleet"
    if fleet.exists():
        shutil.rmtree(fleet)
    as_of = demo_as_of(start, days)
    last = fleet_last_day(start, days)
    summary = synthesize(
        SynthConfig(
            out=fleet,
            meters=meters,
            days=days,
            start=start,
            seed=seed,
            faults=DEMO_FAULTS,
            forward_share=0.05,
        )
    )
    print(
        f"synth: {summary.messages} messages ({summary.faults} faults, {summary.forwarded} for a forward "
        f"recipient), {summary.readings} readings in {summary.seconds:.1f} s -> {fleet}"
    )
    dst = (
        " (includes the EU summer-time change, 2026-03-29)"
        if start <= EU_DST_START_2026 <= last
        else ""
    )
    print(
        f"fleet: {meters} meters x {days} days, {start.isoformat()} to {last.isoformat()}{dst}\n"
        f"as-of: {as_of.isoformat()} (the day after the fleet's last day, not today)\n"
    )
    cfg = RunConfig(
        input=str(fleet / "messages" / "**" / "*.cms"),
        policies=default_policies_dir(),
        pki=fleet / "pki",
        consent=fleet / "consent.csv",
        meters=fleet / "meters.csv",
        out=out / "run",
        as_of=as_of,
        run_id="demo",
        beam_args=beam_args,
    )
    status = main_run(cfg)
    from minimeter.report import write_report

    html_path, md_path = write_report(
        cfg.out,
        policies=cfg.policies,
        run_id=cfg.run_id,
        raw=fleet / "truth" / "readings.parquet",
        pki=fleet / "pki",
    )
    print(
        f"\nfleet and ground truth: {fleet}\nper-recipient datasets: "
        f"{cfg.out}/<recipient>/runs/{cfg.run_id}/data, relayed messages: .../forward, signed "
        f"manifests: .../manifest.json(.p7s), index: {cfg.out}/<recipient>/index.json(.p7s)\n"
        f"verify: minimeter verify {cfg.out} --trust-anchor {fleet}/pki/pseudonymiser-root.pem\n"
        f"audit: {cfg.out}/_audit/audit.duckdb\n"
        f"DPIA policy report: {html_path} (and {md_path.name}); notebook: notebooks/auditor_walkthrough.ipynb\n"
        f"demo done in {time.perf_counter() - started:.1f} s"
    )
    return status

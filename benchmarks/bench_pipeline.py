"""End-to-end benchmark of ``minimeter run`` on a synthetic fleet.

Prints messages/s on 1 worker (FnApiRunner in memory) and 2 workers (multi_processing), the ratio
of the 1-worker rate to a crypto-only loop over the same messages (ECDSA verify, SHA-256, ECDH,
X9.63 KDF, AES unwrap, AES-GCM decrypt per message), the 2-worker speed-up, and the peak RSS of
a 1-worker run at 1x and 10x input; the 1- and 2-worker rates are measured at both sizes, since
start-up costs weigh on small inputs. Each run is a fresh process; wall time includes start-up.
Peak RSS is the run's process plus its conformance worker, each read from ``VmHWM`` (its peak
since exec; ``ru_maxrss`` would not do: Linux carries it over from the parent at fork, so it
reported this benchmark's own size): an upper bound of what the run held at once.

``--conformance``: the cost of conformance on the demo's output (``minimeter demo``): the Great
Expectations import (wall and CPU seconds, in a fresh process), then the validation of one run
(every recipient's suite, scope included) in this process and through a conformance worker,
and the same on empty outputs (the fixed part).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cms import crypto_inputs, crypto_only  # noqa: E402

from minimeter.synth.generate import SynthConfig, synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
from pathlib import Path
from minimeter.pipeline.run import RunConfig, run
fleet, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = RunConfig(input=str(fleet / "messages" / "**" / "*.cms"), policies=Path(sys.argv[3]), pki=fleet / "pki",
                consent=fleet / "consent.csv", meters=fleet / "meters.csv", out=out, run_id="bench",
                beam_args=tuple(sys.argv[4:]))
t = time.perf_counter()
result = run(cfg)
seconds = time.perf_counter() - t
def hwm(pid):  # peak RSS of a process since its exec (ru_maxrss would carry the parent's from fork)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
from minimeter.conformance import worker
own = hwm("self")
child = hwm(worker.current().process.pid) if worker.current() is not None else 0
print(json.dumps({"seconds": seconds, "pipeline_seconds": result.pipeline_seconds, "messages": result.messages_in,
                  "balanced": result.balanced, "peak_kib": own + child, "own_kib": own,
                  "child_kib": child}))
"""


CONFORMANCE = """
import json, sys, time
from pathlib import Path
t, c = time.perf_counter(), time.process_time()
from minimeter.conformance.suites import context
context()
imported = {"import_s": time.perf_counter() - t, "import_cpu_s": time.process_time() - c}
import duckdb
from minimeter.conformance import worker
from minimeter.conformance.run import as_of_datetime, check_trees
from minimeter.layout import OutLayout
from minimeter.policy.load import load_policy_set
out, fleet = Path(sys.argv[1]), Path(sys.argv[2])
con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
as_of = as_of_datetime(con.execute("SELECT as_of FROM runs WHERE run_id = 'demo'").fetchone()[0])
rows = dict(con.execute("SELECT recipient, n FROM counts WHERE run_id = 'demo' AND reason = 'rows-delivered'").fetchall())
con.close()
ps = load_policy_set(None)
layout = OutLayout(out)
trees = {p.id: layout.published(p.id, "demo").base for p in ps.policies}
args = dict(ps=ps, meters=fleet / "meters.csv", as_of=as_of,
            secret=(fleet / "pki" / "pseudonym-secret.key").read_bytes())
def timed(trees, rows):
    best = []
    for _ in range(3):
        t = time.perf_counter()
        outcome = check_trees(trees, expected_rows=rows, **args)
        best.append(time.perf_counter() - t)
    assert not outcome.failed, outcome.failed
    return min(best)
result = dict(imported, rows=sum(rows.values()), here_s=timed(trees, rows), here_empty_s=timed({}, {}))
worker.start()
check_trees({}, expected_rows={}, **args)  # waits for the worker's import
result.update(worker_s=timed(trees, rows), worker_empty_s=timed({}, {}))
worker.stop()
print(json.dumps(result))
"""


def conformance_cost(work: Path) -> int:
    """The ``--conformance`` mode (see the module docstring)."""
    demo = work / "demo"
    subprocess.run(
        [sys.executable, "-m", "minimeter", "demo", "--out", str(demo)],
        capture_output=True,
        check=True,
    )
    proc = subprocess.run(
        [sys.executable, "-c", CONFORMANCE, str(demo / "run"), str(demo / "fleet")],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"conformance on the demo's output ({r['rows']} rows, 10 suites):")
    print(f"  Great Expectations import: {r['import_s']:.2f} s wall, {r['import_cpu_s']:.2f} CPU-s")
    print(
        f"  one run's validation, in process: {r['here_s']:.2f} s "
        f"(empty outputs: {r['here_empty_s']:.2f} s)"
    )
    print(
        f"  one run's validation, conformance worker: {r['worker_s']:.2f} s "
        f"(empty outputs: {r['worker_empty_s']:.2f} s; target <= 1.5 s beyond the import)"
    )
    return 0


def run_once(fleet: Path, workdir: Path, *beam_args: str) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=workdir))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(fleet), str(out), str(ROOT / "policies"), *beam_args],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def make_fleet(directory: Path, meters: int, days: int) -> Path:
    synthesize(
        SynthConfig(
            out=directory,
            meters=meters,
            days=days,
            start=date(2026, 1, 5),
            faults=0.02,
            forward_share=0.05,
        ),
        progress=False,
    )
    return directory


def crypto_rate(fleet: Path) -> float:
    """Messages/s of the crypto-only loop over the fleet's hub messages (no re-signing: the
    pipeline re-signs only relayed messages)."""
    import csv

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    hub_key = load_pem_private_key((fleet / "pki" / "hub-key.pem").read_bytes(), None)
    with (fleet / "truth" / "messages.csv").open() as f:
        hub = [r["message"] for r in csv.DictReader(f) if r["route"] == "hub"]
    inputs = [crypto_inputs((fleet / m).read_bytes()) for m in hub]
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for i in inputs:
            crypto_only(hub_key, None, i)
        rates.append(len(inputs) / (time.perf_counter() - t))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument(
        "--scale", type=int, default=10, help="the larger input is this many times more meters"
    )
    parser.add_argument(
        "--conformance", action="store_true", help="only the conformance cost on the demo"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.conformance:
            return conformance_cost(work)
        small = make_fleet(work / "small", args.meters, args.days)
        one = run_once(small, work, "--direct_running_mode=in_memory")
        two = run_once(
            small, work, "--direct_running_mode=multi_processing", "--direct_num_workers=2"
        )
        crypto = crypto_rate(small)
        rate1 = one["messages"] / one["seconds"]
        rate2 = two["messages"] / two["seconds"]
        print(f"input: {int(one['messages'])} messages ({args.meters} meters x {args.days} days)")
        print(
            f"1 worker  (in_memory):          {rate1:7.1f} messages/s ({one['seconds']:.1f} s, balanced={one['balanced']})"
        )
        print(
            f"2 workers (multi_processing):   {rate2:7.1f} messages/s ({two['seconds']:.1f} s, balanced={two['balanced']})"
        )
        print(
            f"  the Beam job alone:           {one['messages'] / one['pipeline_seconds']:7.1f} messages/s (1 worker), "
            f"{two['messages'] / two['pipeline_seconds']:.1f} (2 workers); the rest is conformance, manifests, audit"
        )
        print(f"crypto-only loop:               {crypto:7.1f} messages/s")
        print(f"ratio 1 worker / crypto-only:   {rate1 / crypto:.2f} (target >= 0.8)")
        print(f"2-worker speed-up:              {rate2 / rate1:.2f} (target >= 1.8)")
        if args.scale < 2:
            return 0
        big = make_fleet(work / "big", args.meters * args.scale, args.days)
        large = run_once(big, work, "--direct_running_mode=in_memory")
        large2 = run_once(
            big, work, "--direct_running_mode=multi_processing", "--direct_num_workers=2"
        )
        big1 = large["messages"] / large["seconds"]
        big2 = large2["messages"] / large2["seconds"]
        print(
            f"{args.scale}x input, {int(large['messages'])} messages: 1 worker {big1:.1f} messages/s, "
            f"2 workers {big2:.1f}: speed-up {big2 / big1:.2f} (target >= 1.8); "
            f"ratio to crypto-only {big1 / crypto:.2f}"
        )
        for name, r in (("1x", one), (f"{args.scale}x", large)):
            print(
                f"peak RSS {name}: {r['peak_kib'] / 1024:7.0f} MiB ({int(r['messages'])} messages; "
                f"run {r['own_kib'] / 1024:.0f} MiB + conformance worker {r['child_kib'] / 1024:.0f} MiB)"
            )
        print(
            f"peak RSS ratio {args.scale}x / 1x: {large['peak_kib'] / one['peak_kib']:.2f} (target <= 1.2)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

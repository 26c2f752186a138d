"""What Beam's FnApiRunner itself allows on this machine: the 2-worker speed-up of a pipeline that
does nothing but CPU work per element (no I/O, no shuffle of data, tiny elements).

``bench_pipeline`` cannot do better than this ceiling, whatever Minimeter does: the figure puts
its own 2-worker speed-up in proportion. Each run is a fresh process; wall time includes the
runner's start-up, as in ``bench_pipeline``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import hashlib, json, sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

def work(i, ms):
    end = time.process_time() + ms / 1000  # CPU time, so that a busy machine does not shorten it
    h = str(i).encode()
    while time.process_time() < end:
        for _ in range(200):
            h = hashlib.sha256(h).digest()
    return 1

n, ms = int(sys.argv[1]), float(sys.argv[2])
t = time.perf_counter()
with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", *sys.argv[3:]])) as p:
    (p | beam.Create(range(n)) | beam.Reshuffle() | beam.Map(work, ms)
       | beam.CombineGlobally(sum) | beam.Map(lambda total: print(json.dumps({"done": total}))))
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def run(n: int, ms: float, *args: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(ms), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert {"done": n} in lines, proc.stdout
    return float(next(x["seconds"] for x in lines if "seconds" in x))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=3000)
    parser.add_argument("--ms", type=float, default=10.0, help="CPU milliseconds per element")
    args = parser.parse_args(argv)
    one = run(args.elements, args.ms, "--direct_running_mode=in_memory")
    two = run(
        args.elements, args.ms, "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    work = args.elements * args.ms / 1000
    print(f"{args.elements} elements x {args.ms:g} ms of CPU ({work:.0f} s of work)")
    print(f"1 worker  (in_memory):        {one:6.1f} s")
    print(f"2 workers (multi_processing): {two:6.1f} s")
    print(f"runner's 2-worker speed-up:   {one / two:6.2f} (the ceiling for bench_pipeline's 1.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

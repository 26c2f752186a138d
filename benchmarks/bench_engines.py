"""The same fleet on every runner this machine has: FnApiRunner in memory, FnApiRunner with 2
worker processes, Beam's portable path (its Python job service and an external worker pool),
Flink with parallelism 1 and 2 and Spark on the local clusters of ``scripts/engines`` (where
Beam's job-server jars can be had). Prints the wall time of the Beam job, messages/s and the
Flink-2 / Flink-1 speed-up, in one run.

Each run is a fresh process (``minimeter.pipeline.run.run``); the job's time is the run's
``pipeline_seconds`` (checks, recovery and the Beam job, without conformance, manifests and
audit). One engine runs at a time; a cluster this benchmark started is stopped at its end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "engines"))
import engines  # noqa: E402

CHILD = """
import json, sys
from datetime import date
from pathlib import Path
from minimeter.pipeline.run import RunConfig, run
fleet, out, as_of = Path(sys.argv[1]), Path(sys.argv[2]), date.fromisoformat(sys.argv[3])
policies, args = Path(sys.argv[4]), sys.argv[5:]
cfg = RunConfig(input=str(fleet / "messages" / "**" / "*.cms"), policies=policies,
                pki=fleet / "pki", consent=fleet / "consent.csv", meters=fleet / "meters.csv",
                out=out, run_id="bench", as_of=as_of, spill="--no-spill" not in args,
                beam_args=tuple(a for a in args if a != "--no-spill"))
result = run(cfg)
print(json.dumps({"pipeline_seconds": result.pipeline_seconds, "seconds": result.seconds,
                  "messages": result.messages_in, "balanced": result.balanced}))
"""


def run_once(fleet: Path, workdir: Path, as_of: date, args: list[str]) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=workdir))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(fleet),
            str(out),
            as_of.isoformat(),
            str(ROOT / "policies"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=engines.venv_env(),
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"run {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1])
    if not result["balanced"]:
        raise RuntimeError(f"run {args} is not balanced: {result}")
    return result  # type: ignore[no-any-return]


@contextmanager
def portable() -> Iterator[list[str]]:
    port = engines.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            "--port",
            str(port),
        ],
        env=engines.venv_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        engines.wait_for(port)
        with engines.worker_pool() as pool:
            yield [
                "--runner=PortableRunner",
                f"--job_endpoint=localhost:{port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool}",
            ]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def _fixed(args: list[str]) -> Iterator[list[str]]:
    yield args


def on_engine(engine: str, make_args: Callable[[Path, int], list[str]]) -> Callable[[], object]:
    @contextmanager
    def setup() -> Iterator[list[str]]:
        jar = engines.job_server_jar(engine)  # before the cluster: it may not be served
        with engines.cluster(engine), engines.worker_pool() as pool:
            yield make_args(jar, pool)

    return setup


RUNNERS: dict[str, tuple[str, Callable[[], object]]] = {
    "fnapi-1": ("FnApiRunner in memory", lambda: _fixed(["--direct_running_mode=in_memory"])),
    "fnapi-2": (
        "FnApiRunner, 2 worker processes",
        lambda: _fixed(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ),
    "portable": ("PortableRunner, Beam's job service + worker pool", portable),
    "flink-1": (
        "Flink, parallelism 1",
        on_engine(
            "flink", lambda jar, pool: engines.flink_args(jar, parallelism=1, pool_port=pool)
        ),
    ),
    "flink-2": (
        "Flink, parallelism 2",
        on_engine(
            "flink", lambda jar, pool: engines.flink_args(jar, parallelism=2, pool_port=pool)
        ),
    ),
    "spark": (
        "Spark, 1 worker x 2 cores",
        on_engine("spark", lambda jar, pool: engines.spark_args(jar, pool_port=pool)),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", default="2026-01-05")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated")
    args = parser.parse_args(argv)
    from minimeter.synth.generate import SynthConfig, synthesize

    start = date.fromisoformat(args.start)
    as_of = start + timedelta(days=args.days)
    results: dict[str, dict[str, float] | str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        work = Path(tmp)
        fleet = work / "fleet"
        synthesize(
            SynthConfig(out=fleet, meters=args.meters, days=args.days, start=start, seed=args.seed),
            progress=False,
        )
        for key in args.runners.split(","):
            label, setup = RUNNERS[key]
            try:
                with ExitStack() as stack:
                    beam_args = stack.enter_context(setup())  # type: ignore[arg-type]
                    results[key] = run_once(fleet, work, as_of, beam_args)
            except (engines.JobServerUnavailable, engines.ToolMissing) as exc:
                results[key] = f"not run: {exc}"
            except RuntimeError as exc:
                results[key] = f"failed: {str(exc).splitlines()[0]}"
            print(f"  {key}: {results[key] if isinstance(results[key], str) else 'done'}")
    messages = next((r["messages"] for r in results.values() if isinstance(r, dict)), 0)
    print(
        f"\n{args.meters} meters x {args.days} days = {messages:.0f} messages "
        f"(minimeter synth --meters {args.meters} --days {args.days} --start {args.start} "
        f"--seed {args.seed}), as of {as_of}"
    )
    print(f"{'runner':10s} {'':48s} {'job s':>8s} {'msg/s':>8s} {'run s':>8s}")
    for key, result in results.items():
        label = RUNNERS[key][0]
        if isinstance(result, str):
            print(f"{key:10s} {label:48s} {result}")
            continue
        job = result["pipeline_seconds"]
        print(
            f"{key:10s} {label:48s} {job:8.1f} {result['messages'] / job:8.1f} "
            f"{result['seconds']:8.1f}"
        )
    one, two = results.get("flink-1"), results.get("flink-2")
    if isinstance(one, dict) and isinstance(two, dict):
        print(
            f"Flink-2 / Flink-1 speed-up: {one['pipeline_seconds'] / two['pipeline_seconds']:.2f}"
        )
    else:
        print("Flink-2 / Flink-1 speed-up: n/a (Flink did not run)")
    a, b = results.get("fnapi-1"), results.get("fnapi-2")
    if isinstance(a, dict) and isinstance(b, dict):
        print(f"FnApiRunner 2 / 1 speed-up: {a['pipeline_seconds'] / b['pipeline_seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

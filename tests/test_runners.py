"""The same fleet through three Beam runners gives identical datasets.

(a) FnApiRunner in memory, (b) FnApiRunner with two worker processes, (c) PortableRunner against
Beam's Python job service with an EXTERNAL worker pool: separate worker processes, the
portability path Flink, Spark and Dataflow use for Python. Also (a) with ``--no-spill``: decoded
readings in the runner's shuffle instead of the encrypted spill give the same datasets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pipeline_helpers import all_rows, run_cli

from minimeter.synth.generate import SynthConfig, synthesize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "engines"))
from engines import free_port, wait_for  # noqa: E402  (the engine scripts' own helpers)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runner-fleet")
    synthesize(
        SynthConfig(
            out=out,
            meters=16,
            days=2,
            start=date(2026, 1, 12),
            seed=9,
            faults=0.1,
            forward_share=0.1,
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def portable_services() -> Iterator[tuple[int, int]]:
    """A local job service and an external worker pool, with this venv's python first on PATH."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    job_port, pool_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(job_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={pool_port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_for(job_port)
        wait_for(pool_port)
        yield job_port, pool_port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_three_runners_give_identical_datasets(
    fleet: Path, tmp_path: Path, portable_services: tuple[int, int]
) -> None:
    job_port, pool_port = portable_services
    runs = {
        "in_memory": ["--direct_running_mode=in_memory"],
        "in_memory_no_spill": ["--direct_running_mode=in_memory", "--no-spill"],
        "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        "portable": [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ],
    }
    results = {}
    for name, args in runs.items():
        out = tmp_path / name
        proc = run_cli(fleet, out, *args, run_id="same")
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        assert "[balanced]" in proc.stdout
        results[name] = all_rows(out)
        dead = sorted((out / "_dead_letters").glob("*.parquet"))
        results[name]["_dead"] = [(p.name, p.read_bytes()) for p in dead]  # type: ignore[list-item]
        results[name]["_forward"] = sorted(  # type: ignore[assignment]
            p.name for p in out.glob("*/runs/*/forward/*.cms")
        )
    reference = results["in_memory"]
    assert sum(len(v) for k, v in reference.items() if not k.startswith("_")) > 1000
    for name in ("in_memory_no_spill", "multi_processing", "portable"):
        assert results[name] == reference, name

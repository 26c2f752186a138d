"""The comparison the engine tests make, on the runners this machine always has: FnApiRunner
with 2 worker processes, and Beam's portable path (its Python job service, the same external
worker pool the Flink and Spark runs use). So the harness itself (fleet, outputs, worker pool) is
tested even where Beam's job servers cannot be had."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("engine_helpers")
from engine_helpers import engines, run_job  # noqa: E402

pytest_plugins = ["engine_helpers"]  # the fixtures: fleet, reference


def test_portable_path_gives_fnapi_outputs(
    fleet: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    port = engines.free_port()
    service = subprocess.Popen(
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
            result = run_job(
                fleet,
                tmp_path / "portable",
                "--runner=PortableRunner",
                f"--job_endpoint=localhost:{port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool}",
                "--no-spill",
            )
    finally:
        service.terminate()
        service.wait(timeout=20)
    assert result == reference
    assert {"rows", "dead_letters", "forward", "counts"} <= set(result)


def test_two_workers_give_fnapi_outputs(
    fleet: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    result = run_job(
        fleet,
        tmp_path / "two",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    )
    assert result == reference

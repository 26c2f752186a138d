"""Minimeter on a local Flink session cluster (``scripts/engines/flink.sh``): one JobManager and
one TaskManager with 2 slots, separate JVMs; Beam's FlinkRunner with parallelism 2 and an
external worker pool must give FnApiRunner's outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("engine_helpers")
from engine_helpers import engines, job_server, run_job  # noqa: E402

pytest_plugins = ["engine_helpers"]  # the fixtures: fleet, reference, flink, spark


def test_session_cluster_runs_a_batch_job(flink: dict[str, str]) -> None:
    overview = json.loads(engines.script("flink", "status").stdout)
    assert overview["taskmanagers"] == 1
    assert overview["slots-total"] == int(flink["FLINK_SLOTS"]) == 2
    assert overview["flink-version"] == flink["FLINK_VERSION"]
    out = engines.script("flink", "smoke").stdout
    assert re.search(r"\|\s+0 \|\s+2 \|\s+6 \|", out), out[-2000:]  # x % 2 = 0: 2 + 4
    assert re.search(r"\|\s+1 \|\s+3 \|\s+9 \|", out), out[-2000:]  # 1 + 3 + 5


def test_flink_gives_fnapi_outputs(
    flink: dict[str, str], fleet: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    jar = job_server("flink")
    reference: dict[str, Any] = request.getfixturevalue("reference")
    with engines.worker_pool() as pool:
        result = run_job(
            fleet, tmp_path / "flink", *engines.flink_args(jar, parallelism=2, pool_port=pool)
        )
    assert result == reference

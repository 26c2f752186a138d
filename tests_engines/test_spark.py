"""Minimeter on a local standalone Spark cluster (``scripts/engines/spark.sh``): one master and
one worker with 2 cores, separate JVMs; Beam's SparkRunner (Spark 3 job server) with an external
worker pool must give FnApiRunner's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("engine_helpers")
from engine_helpers import engines, job_server, run_job  # noqa: E402

pytest_plugins = ["engine_helpers"]  # the fixtures: fleet, reference, flink, spark


def test_standalone_cluster_runs_a_job(spark: dict[str, str]) -> None:
    summary = json.loads(engines.script("spark", "status").stdout)
    assert summary["status"] == "ALIVE"
    assert summary["aliveworkers"] == 1 and summary["cores"] == 2
    assert summary["url"] == spark["SPARK_MASTER_URL"]
    out = engines.script("spark", "smoke").stdout
    assert "SMOKE-RESULT 300000" in out, out[-2000:]  # sum of x % 7 for x in 1..100000


def test_spark_gives_fnapi_outputs(
    spark: dict[str, str], fleet: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    jar = job_server("spark")
    reference: dict[str, Any] = request.getfixturevalue("reference")
    with engines.worker_pool() as pool:
        result = run_job(fleet, tmp_path / "spark", *engines.spark_args(jar, pool_port=pool))
    assert result == reference

"""Helpers of the engine tests: the fleet, the outputs that must not depend on the runner, a run
through the CLI, Beam's job-server jars (conftest.py says when these tests run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts" / "engines"))
sys.path.insert(0, str(ROOT / "tests"))

import engines  # noqa: E402
from pipeline_helpers import all_rows, run_cli  # noqa: E402

FLEET = ("--meters", "14", "--days", "3", "--start", "2026-01-09", "--seed", "3")
"""The fleet of the comparison: ``minimeter synth --out DIR`` with these options."""
RUN_ID = "same"


def synth(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "minimeter.cli", "synth", "--out", str(out), *FLEET],
        check=True,
        capture_output=True,
        env=engines.venv_env(),
    )
    return out


def outputs(out: Path) -> dict[str, Any]:
    """What must not depend on the runner: every recipient's sorted rows, the dead letters, the
    relayed messages' names and the audit's counts of the run."""
    import duckdb
    import pyarrow.parquet as pq

    result: dict[str, Any] = {"rows": all_rows(out)}
    dead = sorted((out / "_dead_letters").glob("*.parquet"))
    result["dead_letters"] = sorted(
        tuple(sorted(r.items())) for f in dead for r in pq.read_table(f).to_pylist()
    )
    result["forward"] = sorted(p.name for p in out.glob("*/runs/*/forward/*.cms"))
    with duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True) as db:
        result["counts"] = db.execute(
            "SELECT recipient, reason, n FROM counts WHERE run_id = ? ORDER BY ALL", [RUN_ID]
        ).fetchall()
    return result


def run_job(fleet: Path, out: Path, *args: str) -> dict[str, Any]:
    proc = run_cli(fleet, out, *args, run_id=RUN_ID)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-6000:])
    assert "[balanced]" in proc.stdout
    return outputs(out)


def job_server(engine: str) -> Path:
    """Beam's job-server jar for ``engine``; an expected failure, with Maven's answer, where the
    repository reached here does not serve it."""
    try:
        return engines.job_server_jar(engine)
    except engines.JobServerUnavailable as exc:
        if os.environ.get("MINIMETER_REQUIRE_JOB_SERVERS") == "1":
            pytest.fail(str(exc))
        pytest.xfail(f"{exc} (README: Running on other runners)")

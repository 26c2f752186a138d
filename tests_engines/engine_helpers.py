"""Helpers and fixtures of the engine tests (``make test-engines``): Minimeter's job on local
Flink and Spark clusters (``scripts/engines/``), compared with FnApiRunner. The test modules load
the fixtures with ``pytest_plugins``: a conftest.py here would be imported as ``conftest`` and
shadow tests/conftest.py (``from conftest import ...``) in a session that collects both.

They start JVM clusters and download engines once into ``.cache/engines``, so they live outside
``tests/`` (pytest's testpaths): ``make test`` does not collect them, ``make test-engines`` runs
them (``pytest tests_engines``), one engine at a time. Without Java or Maven they fail with the
reason; they are never skipped. A Beam job-server jar that the Maven repository reached here
does not serve makes its comparison an expected failure (xfail, its reason in the summary),
unless ``MINIMETER_REQUIRE_JOB_SERVERS=1``, which makes it a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


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


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("engine-fleet"))


@pytest.fixture(scope="session")
def reference(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """FnApiRunner in memory: the outputs every engine must equal."""
    result = run_job(fleet, tmp_path_factory.mktemp("fnapi"), "--direct_running_mode=in_memory")
    assert sum(len(rows) for rows in result["rows"].values()) > 1000
    assert result["dead_letters"] and result["forward"] and result["counts"]
    return result


@pytest.fixture(scope="module")
def flink() -> Iterator[dict[str, str]]:
    with engines.cluster("flink") as settings:
        yield settings


@pytest.fixture(scope="module")
def spark() -> Iterator[dict[str, str]]:
    with engines.cluster("spark") as settings:
        yield settings

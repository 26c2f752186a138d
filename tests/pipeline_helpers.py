"""Shared helpers for the pipeline tests: run the CLI, read outputs back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    fleet: Path,
    out: Path,
    *extra: str,
    run_id: str = "t1",
    policies: Path | None = None,
    as_of: str = "2026-02-01",
    pattern: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``minimeter run`` on a synth fleet (every message, or the ``pattern`` given)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "minimeter.cli",
            "run",
            "--input",
            pattern or str(fleet / "messages" / "**" / "*.cms"),
            "--policies",
            str(policies or ROOT / "policies"),
            "--pki",
            str(fleet / "pki"),
            "--consent",
            str(fleet / "consent.csv"),
            "--meters",
            str(fleet / "meters.csv"),
            "--out",
            str(out),
            "--as-of",
            as_of,
            "--run-id",
            run_id,
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )


def read_recipient(out: Path, recipient: str) -> pd.DataFrame:
    """Every published row of a recipient (all its runs)."""
    files = sorted((out / recipient / "runs").glob("*/data/date=*/*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def all_rows(out: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every recipient's rows, sorted, for comparing runs."""
    result = {}
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        df = read_recipient(out, d.name)
        result[d.name] = (
            sorted(map(tuple, df.astype(str).itertuples(index=False))) if len(df) else []
        )
    return result

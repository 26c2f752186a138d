"""Whole runs with ``--out`` in S3 (``make test-stores``): three daily runs deliver what one local
run delivers, ``verify``, ``subject`` and ``report`` read S3, the lock holds there, and a run
killed before or after its commit leaves nothing unverified and is finished or removed by the
next run. The server is moto's S3 server (tests/s3_server.py) and every call goes through Beam's
own S3 file system; nothing of Minimeter or Beam is mocked.

These live outside ``tests/`` (pytest's testpaths) because each run costs minutes here: Beam's
S3 file system builds a new boto3 client (about 0.3 s of model loading) for every call.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
pytest.register_assert_rewrite("s3_server")

from fleets import session_fleet  # noqa: E402
from pipeline_helpers import all_rows, run_cli  # noqa: E402
from s3_server import BUCKET, DAYS, cli, day_run, download, keys  # noqa: E402

from minimeter.storage import ObjectPath, create_exclusive  # noqa: E402

pytest_plugins = ["s3_server"]  # the fixture s3: the server


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_fleet(tmp_path_factory)  # tests/conftest.py's fleet


def copy_prefix(source: str, target: str) -> None:
    """A server-side copy of every object below ``source`` (the start of a kill test)."""
    import boto3

    client = boto3.client("s3")
    src = source.removeprefix(f"s3://{BUCKET}/") + "/"
    dst = target.removeprefix(f"s3://{BUCKET}/") + "/"
    for key in keys(source):
        client.copy_object(Bucket=BUCKET, Key=dst + key, CopySource={"Bucket": BUCKET, "Key": src + key})  # fmt: skip


@pytest.fixture(scope="module")
def daily_s3(synth_dir: Path, s3: dict[str, str]) -> str:
    out = f"s3://{BUCKET}/daily"
    for n, day in enumerate(DAYS, 1):
        proc = day_run(synth_dir, out, day, f"d{n}")
        assert proc.returncode == 0, (day, proc.stdout[-2000:], proc.stderr[-3000:])
    return out


def test_three_daily_runs_into_s3_deliver_what_one_local_run_delivers(
    synth_dir: Path, daily_s3: str, tmp_path: Path
) -> None:
    local = tmp_path / "one-run"
    assert run_cli(synth_dir, local, "--no-progress", run_id="all").returncode == 0
    copy = download(daily_s3, tmp_path / "from-s3")
    assert all_rows(copy) == all_rows(local)
    present = keys(daily_s3)
    assert not [k for k in present if k.startswith(("_staging/", "_lock"))]
    assert "_audit/audit.duckdb" in present
    assert {"d1", "d2", "d3"} <= {k.split("/")[2] for k in present if "/runs/" in k}
    # the audit in S3 holds the three runs, balanced
    import duckdb

    con = duckdb.connect(str(copy / "_audit" / "audit.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT run_id, balanced FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()
    assert runs == [("d1", True), ("d2", True), ("d3", True)]


def test_verify_reads_s3_and_finds_tampering_there(
    synth_dir: Path, daily_s3: str, tmp_path: Path
) -> None:
    anchor = str(synth_dir / "pki" / "pseudonymiser-root.pem")
    proc = cli("verify", daily_s3, "--trust-anchor", anchor)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"verify: (\d+) recipient\(s\), (\d+) run\(s\)", proc.stdout)
    assert found and int(found[1]) > 0 and int(found[2]) == 3 * int(found[1]), proc.stdout
    mine = cli("verify", f"{daily_s3}/fr-enedis-daily", "--trust-anchor", anchor)
    assert mine.returncode == 0 and "1 recipient(s), 3 run(s)" in mine.stdout, mine.stdout
    # tamper with a copy of one recipient's folder in S3
    copy = download(f"{daily_s3}/de-dso-hamburg", tmp_path / "hamburg")
    victim = sorted(copy.glob("runs/d2/data/*/*.parquet"))[0]
    import boto3

    client = boto3.client("s3")
    for f in sorted(p for p in copy.rglob("*") if p.is_file()):
        body = f.read_bytes()
        if f == victim:
            body = body[:-8] + b"\0" * 8
        client.put_object(Bucket=BUCKET, Key=f"tampered/de-dso-hamburg/{f.relative_to(copy)}", Body=body)  # fmt: skip
    bad = cli("verify", f"s3://{BUCKET}/tampered/de-dso-hamburg", "--trust-anchor", anchor)
    assert bad.returncode == 1 and "SHA-256 differs" in bad.stdout, bad.stdout + bad.stderr
    assert bad.stderr.strip().startswith("minimeter: verify-failed:")


def test_subject_and_report_read_s3(synth_dir: Path, daily_s3: str, tmp_path: Path) -> None:
    from minimeter.registry import MeterRegistry

    meter = sorted(MeterRegistry.load(synth_dir / "meters.csv").meters)[0]
    policies = str(Path(__file__).resolve().parents[1] / "policies")
    proc = cli("subject", meter, "--out", daily_s3, "--policies", policies, "--pki", str(synth_dir / "pki"), "--meters", str(synth_dir / "meters.csv"), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["recipients"] and all(d["runs"] for d in doc["recipients"])
    # what it lists is what the same command lists on a local copy of the output
    copy = download(daily_s3, tmp_path / "copy")
    local = cli("subject", meter, "--out", str(copy), "--policies", policies, "--pki", str(synth_dir / "pki"), "--meters", str(synth_dir / "meters.csv"), "--json")  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    assert json.loads(local.stdout) == doc
    report = cli("report", daily_s3, "--policies", policies, "--run-id", "d3")
    assert report.returncode == 0, report.stderr[-2000:]
    html = ObjectPath(f"{daily_s3}/_report/index.html").read_text()
    assert "d3" in html and "<html" in html.lower()


def test_a_run_into_s3_fails_at_once_while_another_holds_the_lock(
    synth_dir: Path, s3: dict[str, str]
) -> None:
    out = f"s3://{BUCKET}/locked"
    holder = {"run_id": "elsewhere", "pid": 1, "host": "another-host", "since": "2026-12-03T00:00:00+00:00", "start": None}  # fmt: skip
    assert create_exclusive(ObjectPath(f"{out}/_lock"), json.dumps(holder).encode())
    proc = day_run(synth_dir, out, DAYS[0], "d1")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("minimeter: out-locked: ")
    assert "run elsewhere (pid 1 on another-host" in proc.stderr
    assert keys(out) == ["_lock"]  # nothing moved


@pytest.fixture(scope="module")
def first_day_s3(synth_dir: Path, s3: dict[str, str]) -> str:
    """An output in S3 holding run d1: what each kill test copies and starts from."""
    out = f"s3://{BUCKET}/first-day"
    proc = day_run(synth_dir, out, DAYS[0], "d1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_a_killed_run_into_s3_shows_nothing_unverified_and_a_rerun_publishes(
    synth_dir: Path, first_day_s3: str, point: str
) -> None:
    out = f"s3://{BUCKET}/killed-{point}"
    copy_prefix(first_day_s3, out)
    before = [k for k in keys(out) if not k.startswith("_")]
    killed = day_run(synth_dir, out, DAYS[1], "d2", env={"MINIMETER_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL
    assert [k for k in keys(out) if not k.startswith("_")] == before  # nothing of d2 visible
    assert any(k.startswith("_staging/d2/") for k in keys(out))  # (the dead run's staging)
    # the dead run's lock names a dead pid on this host: the re-run takes it over
    again = day_run(synth_dir, out, DAYS[1], "d2")
    assert again.returncode == 0, again.stderr[-2000:]
    recovered = "finished publishing run d2" if point == "after-commit" else "removed the staging"
    assert recovered in again.stdout
    present = keys(out)
    assert not [k for k in present if k.startswith(("_staging/", "_lock"))]
    assert "fr-enedis-daily/runs/d2/manifest.json" in present
    anchor = str(synth_dir / "pki" / "pseudonymiser-root.pem")
    assert cli("verify", out, "--trust-anchor", anchor).returncode == 0

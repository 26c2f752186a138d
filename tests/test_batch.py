"""Batch operation: daily runs into one output, a lock, killed runs, re-runs, verify, strict CLI.

Every run here is a real ``minimeter run`` process on the session's synthetic fleet (three days
of messages under ``messages/<day>/``), on Beam's FnApiRunner.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ROOT, all_rows, run_cli

from minimeter.pipeline.inputs import expand_pattern, input_base, match_inputs
from minimeter.pipeline.options import parse_run_options
from minimeter.pipeline.outputs import forward_name

from opensslkit import openssl

pytestmark = pytest.mark.slow
DAYS = ("2026-01-09", "2026-01-10", "2026-01-11")


def minimeter(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minimeter", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def day_run(
    fleet: Path, out: Path, day: str, run_id: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A run over one day's messages (the fleet lays them out as messages/<day>/*.cms)."""
    pattern = str(fleet / "messages" / day / "*.cms")
    return run_cli(fleet, out, "--no-progress", *extra, run_id=run_id, pattern=pattern, env=env)


def verify(fleet: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return minimeter(
        "verify", str(out), "--trust-anchor", str(fleet / "pki" / "pseudonymiser-root.pem"), *extra
    )


def visible_files(out: Path) -> set[Path]:
    """Everything a recipient can see: its folder (ids never start with '_')."""
    return {
        p.relative_to(out)
        for d in out.iterdir()
        if d.is_dir() and not d.name.startswith(("_", "."))
        for p in d.rglob("*")
        if p.is_file()
    }


def counts(out: Path, run_id: str) -> dict[str, dict[str, int]]:
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT recipient, reason, n FROM counts WHERE run_id = ?", [run_id]
        ).fetchall()
    finally:
        con.close()
    by: dict[str, dict[str, int]] = {}
    for rid, reason, n in rows:
        by.setdefault(rid, {})[reason] = n
    return by


@pytest.fixture(scope="module")
def one_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one-run")
    proc = run_cli(synth_dir, out, "--no-progress", run_id="all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def daily(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("daily")
    summary = out.parent / "d1-summary.json"
    for n, day in enumerate(DAYS, 1):
        extra = ("--summary-json", str(summary)) if n == 1 else ()
        proc = day_run(synth_dir, out, day, f"d{n}", *extra)
        assert proc.returncode == 0, (day, proc.stderr[-3000:])
    return out


def test_three_daily_runs_deliver_what_one_run_delivers(one_run: Path, daily: Path) -> None:
    every = all_rows(one_run)
    assert sum(len(v) for v in every.values()) > 300
    assert all_rows(daily) == every
    # intervals that span two runs were completed from carried readings
    carried = [c.get("carried-in", 0) for run in ("d2", "d3") for c in counts(daily, run).values()]
    assert sum(carried) > 0


def test_daily_runs_balance_with_carried_readings(daily: Path) -> None:
    for run_id in ("d1", "d2", "d3"):
        for rid, c in counts(daily, run_id).items():
            if rid.startswith("_") or "readings-in" not in c:
                continue
            inflow = c["readings-in"] + c.get("carried-in", 0)
            outflow = sum(
                n
                for k, n in c.items()
                if k.startswith("dropped-") or k in ("kept", "suppressed-k", "carried-out")
            )
            assert inflow == outflow, (run_id, rid, c)


def test_daily_runs_verify_and_manifests_count_true_rows(synth_dir: Path, daily: Path) -> None:
    proc = verify(synth_dir, daily)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rid = "fr-enedis-daily"
    index = json.loads((daily / rid / "index.json").read_text())
    assert [r["run_id"] for r in index["runs"]] == ["d1", "d2", "d3"]
    for entry in index["runs"]:
        tree = daily / rid / "runs" / entry["run_id"]
        manifest = json.loads((tree / "manifest.json").read_text())
        files = [f["path"] for f in manifest["files"]]
        assert all(f.endswith(f"/{entry['run_id']}.parquet") for f in files)  # this run's only
        assert manifest["rows"] == entry["rows"] == sum(f["rows"] for f in manifest["files"])
    for name in ("index.json", "runs/d2/manifest.json"):  # what the README shows, with openssl
        openssl(
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            daily / rid / f"{name}.p7s",
            "-content",
            daily / rid / name,
            "-CAfile",
            synth_dir / "pki" / "pseudonymiser-root.pem",
            "-purpose",
            "any",
        )


def test_summary_json(daily: Path) -> None:
    doc = json.loads((daily.parent / "d1-summary.json").read_text())
    assert doc["run_id"] == "d1" and doc["exit_status"] == 0 and doc["balance"]["balanced"]
    assert doc["balance"]["messages_in"] == (
        doc["balance"]["opened"] + doc["balance"]["forwarded"] + doc["balance"]["dead_letters"]
    )
    assert sum(doc["dead_letters_by_category"].values()) == doc["balance"]["dead_letters"]
    assert "fr-enedis-daily" in doc["recipients"]


def test_verify_finds_tampering_missing_and_extra_files(
    synth_dir: Path, daily: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(daily, copy)
    tree = copy / "de-dso-hamburg" / "runs" / "d2"
    data = sorted(tree.glob("data/*/*.parquet"))
    data[0].write_bytes(data[0].read_bytes()[:-8] + b"\0" * 8)
    (tree / "data" / "extra.parquet").write_bytes(b"x")
    shutil.rmtree(copy / "fr-esco-flex" / "runs" / "d1")
    proc = verify(synth_dir, copy)
    assert proc.returncode == 1
    assert "SHA-256 differs" in proc.stdout
    assert "data/extra.parquet: not in the manifest" in proc.stdout
    assert "fr-esco-flex/d1: listed in the index but missing" in proc.stdout
    assert proc.stderr.strip().startswith("minimeter: verify-failed:")


def test_a_recipient_verifies_its_own_folder_alone(
    synth_dir: Path, daily: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "fr-enedis-daily"
    shutil.copytree(daily / "fr-enedis-daily", mine)
    proc = verify(synth_dir, mine)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = verify(synth_dir, daily, "--recipient", "fr-enedis-daily", "--run-id", "d3")
    assert proc.returncode == 0 and "1 run(s)" in proc.stdout


@pytest.fixture(scope="module")
def first_day(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output holding run d1 (the first day): what every kill test starts from."""
    out = tmp_path_factory.mktemp("first-day")
    proc = day_run(synth_dir, out, DAYS[0], "d1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def two_days(synth_dir: Path, first_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """d1 then d2, neither killed: what a killed and re-run d2 must end up as."""
    out = tmp_path_factory.mktemp("two-days") / "out"
    shutil.copytree(first_day, out)
    proc = day_run(synth_dir, out, DAYS[1], "d2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("point", ["after-job", "before-commit", "after-commit", "mid-publish"])
def test_a_killed_run_shows_nothing_unverified_and_a_rerun_publishes(
    synth_dir: Path, first_day: Path, two_days: Path, tmp_path: Path, point: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_day, out)
    before = visible_files(out)
    killed = day_run(synth_dir, out, DAYS[1], "d2", env={"MINIMETER_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL
    if point in ("after-job", "before-commit", "after-commit"):
        assert visible_files(out) == before  # nothing of d2 is visible
    assert verify(synth_dir, out).returncode == 0  # what is visible verifies
    again = day_run(synth_dir, out, DAYS[1], "d2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (out / "_staging").exists() and not (out / "_lock").exists()
    assert verify(synth_dir, out).returncode == 0
    assert all_rows(out) == all_rows(two_days)


def test_a_second_concurrent_run_fails_at_once_and_the_first_is_unharmed(
    synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "minimeter", "run", "--input", str(synth_dir / "messages" / DAYS[0] / "*.cms"), "--policies", str(ROOT / "policies"), "--pki", str(synth_dir / "pki"), "--consent", str(synth_dir / "consent.csv"), "--meters", str(synth_dir / "meters.csv"), "--out", str(out), "--as-of", "2026-02-01", "--no-progress"]  # fmt: skip
    first = subprocess.Popen([*cmd, "--run-id", "first"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "_lock").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for run_id in ("second", "first"):  # another run, and the same run id again
            second = subprocess.run([*cmd, "--run-id", run_id], capture_output=True, text=True, timeout=120)  # fmt: skip
            assert second.returncode == 1
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
            assert second.stderr.startswith("minimeter: out-locked: ")
            assert "run first (pid" in second.stderr
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    finally:
        first.kill()
    assert verify(synth_dir, out).returncode == 0


def test_a_rerun_with_less_input_removes_stale_files(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli(synth_dir, out, "--no-progress", run_id="r").returncode == 0
    proc = day_run(synth_dir, out, DAYS[0], "r")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = tmp_path / "fresh"
    assert day_run(synth_dir, fresh, DAYS[0], "r").returncode == 0
    assert all_rows(out) == all_rows(fresh)
    files = {p.relative_to(out) for p in out.glob("*/runs/r/**/*") if p.is_file()}
    assert files == {p.relative_to(fresh) for p in fresh.glob("*/runs/r/**/*") if p.is_file()}
    assert verify(synth_dir, out).returncode == 0
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 1


def test_globs_mean_the_same_before_and_inside_the_job(synth_dir: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(synth_dir, fleet)
    one = next(iter(sorted((fleet / "messages" / DAYS[0]).glob("*.cms"))))
    shutil.copy(one, fleet / "messages" / "top-level.cms")  # directly in the glob's base
    os.mkfifo(fleet / "messages" / DAYS[1] / "a-fifo.cms")  # never opened: no hang
    (fleet / "messages" / DAYS[2] / "a-directory.cms").mkdir()
    pattern = str(fleet / "messages" / "**" / "*.cms")
    listed = match_inputs(pattern)
    assert str(fleet / "messages" / "top-level.cms") in listed
    out = tmp_path / "out"
    proc = run_cli(fleet, out, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    (messages_in,) = con.execute("SELECT messages_in FROM runs").fetchall()[0]
    assert messages_in == len(listed)
    dead = dict(con.execute("SELECT message, category FROM dead_letters").fetchall())
    assert dead[f"{DAYS[1]}/a-fifo.cms"] == "input-unreadable"
    assert dead[f"{DAYS[2]}/a-directory.cms"] == "input-unreadable"
    assert "top-level.cms" not in dead


def test_glob_expansion() -> None:
    assert expand_pattern("/d/**/*.cms") == ("/d/**/*.cms", "/d/*.cms")
    assert expand_pattern("gs://b/in/**/x/*.cms") == ("gs://b/in/**/x/*.cms", "gs://b/in/x/*.cms")
    assert len(expand_pattern("/a/**/b/**/*.cms")) == 4
    assert input_base("/d/**/*.cms") == "/d/" and input_base("/d/x.cms") == "/d/"


def test_relayed_names_are_unique_per_input_path() -> None:
    assert forward_name("a/b.cms") != forward_name("a_b.cms")
    assert forward_name("a/b.cms").startswith("a_b.") and forward_name("a/b.cms").endswith(".cms")


def test_minimeter_and_beam_spellings_of_options() -> None:
    base = ["--input", "x", "--policies", "p", "--pki", "k", "--consent", "c", "--meters", "m"]
    args, beam = parse_run_options([*base, "--out", "o", "--as_of", "2030-01-01", "--run_id", "x1", "--direct_num_workers=2"])  # fmt: skip
    assert (args.as_of, args.run_id, beam) == ("2030-01-01", "x1", ("--direct_num_workers=2",))


def _alias_bomb(tmp_path: Path) -> Path:
    policies = tmp_path / "project" / "policies"
    shutil.copytree(ROOT / "policies", policies)
    shutil.copytree(ROOT / "dpia", tmp_path / "project" / "dpia")
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (policies / "recipients" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    return policies


def _edit_policy(tmp_path: Path, text: str) -> Path:
    policies = tmp_path / "project" / "policies"
    shutil.copytree(ROOT / "policies", policies)
    shutil.copytree(ROOT / "dpia", tmp_path / "project" / "dpia")
    path = policies / "recipients" / "fr-esco-flex.yaml"
    path.write_text(path.read_text() + text)
    return policies


def _retention(tmp_path: Path) -> Path:
    policies = tmp_path / "project" / "policies"
    shutil.copytree(ROOT / "policies", policies)
    shutil.copytree(ROOT / "dpia", tmp_path / "project" / "dpia")
    path = policies / "recipients" / "fr-esco-flex.yaml"
    path.write_text(
        "\n".join(
            "retention: P10000Y" if line.startswith("retention:") else line
            for line in path.read_text().splitlines()
        )
        + "\n"
    )
    return policies


def _fleet_with(tmp_path: Path, synth_dir: Path, change: str) -> Path:
    fleet = tmp_path / "fleet"
    shutil.copytree(synth_dir, fleet)
    meters = fleet / "meters.csv"
    if change == "bom":
        meters.write_bytes(b"\xef\xbb\xbf" + meters.read_bytes())
    elif change == "latin1":
        meters.write_bytes(meters.read_bytes() + "x\xe9,DE,a,s,c,1\n".encode("latin-1"))
    elif change == "duplicate":
        lines = meters.read_text().splitlines()
        meters.write_text("\n".join([*lines, lines[1]]) + "\n")
    elif change == "short":
        meters.write_text(meters.read_text() + "onlyone\n")
    elif change == "hub-key":
        shutil.copy(fleet / "pki" / "pseudonymiser-key.pem", fleet / "pki" / "hub-key.pem")
    return fleet


# (name, how to build the arguments, exit status, category); every case: one line, no traceback
CASES = [
    ("unknown runner", lambda t, f: ["--runner=NoSuchRunner"], 2, "usage"),
    ("misspelt option", lambda t, f: ["--runnr=FnApiRunner"], 2, "usage"),
    ("unknown own option", lambda t, f: ["--inputs", "x"], 2, "usage"),
    ("bad as-of", lambda t, f: ["--as-of", "2026-13-01"], 2, "usage"),
    ("bad run id", lambda t, f: ["--run-id", "a b"], 2, "usage"),
    ("input is a directory", lambda t, f: ["--input", str(f / "messages")], 2, "usage"),
    (
        "no input matches",
        lambda t, f: ["--input", str(t / "none" / "*.cms")],
        3,
        "input-unreadable",
    ),
    ("out is a file", lambda t, f: ["--out", str(f / "meters.csv")], 2, "output-unwritable"),
    ("out unwritable", lambda t, f: ["--out", "/proc/minimeter-out"], 2, "output-unwritable"),
    ("gs out", lambda t, f: ["--out", "gs://bucket/out"], 2, "usage"),
    ("yaml alias bomb", lambda t, f: ["--policies", str(_alias_bomb(t))], 2, "policy-invalid"),
    (
        "duplicate yaml key",
        lambda t, f: ["--policies", str(_edit_policy(t, "purpose: again\n"))],
        2,
        "policy-invalid",
    ),  # fmt: skip
    ("retention P10000Y", lambda t, f: ["--policies", str(_retention(t))], 2, "policy-invalid"),
]
FLEET_CASES = [
    ("non-UTF-8 meters.csv", "latin1", 2, "config-invalid"),
    ("duplicate meter row", "duplicate", 2, "config-invalid"),
    ("short meters.csv row", "short", 2, "config-invalid"),
    ("hub key of another certificate", "hub-key", 2, "config-invalid"),
]


def _args(fleet: Path, out: Path, override: list[str]) -> list[str]:
    base = {
        "--input": str(fleet / "messages" / "**" / "*.cms"),
        "--policies": str(ROOT / "policies"),
        "--pki": str(fleet / "pki"),
        "--consent": str(fleet / "consent.csv"),
        "--meters": str(fleet / "meters.csv"),
        "--out": str(out),
    }
    extra = []
    i = 0
    while i < len(override):
        key = override[i]
        if key in base and i + 1 < len(override):
            base[key] = override[i + 1]
            i += 2
        else:
            extra.append(key)
            i += 1
    return [x for kv in base.items() for x in kv] + extra


def _one_line_error(proc: subprocess.CompletedProcess[str], status: int, category: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"minimeter: {category}: "), proc.stderr


@pytest.mark.parametrize("name,build,status,category", CASES, ids=[c[0] for c in CASES])
def test_cli_errors_are_one_line_with_their_exit_status(
    synth_dir: Path,
    tmp_path: Path,
    name: str,
    build,
    status: int,
    category: str,  # noqa: ANN001
) -> None:
    out = tmp_path / "out"
    proc = minimeter("run", *_args(synth_dir, out, build(tmp_path, synth_dir)), timeout=120)
    _one_line_error(proc, status, category)
    assert not out.exists() or not any(out.rglob("*.parquet"))  # nothing moved


@pytest.mark.parametrize(
    "name,change,status,category", FLEET_CASES, ids=[c[0] for c in FLEET_CASES]
)
def test_bad_registries_and_keys_stop_before_any_data_moves(
    synth_dir: Path, tmp_path: Path, name: str, change: str, status: int, category: str
) -> None:
    fleet = _fleet_with(tmp_path, synth_dir, change)
    out = tmp_path / "out"
    proc = minimeter("run", *_args(fleet, out, []), timeout=120)
    _one_line_error(proc, status, category)
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_usage_errors_of_other_commands(tmp_path: Path) -> None:
    _one_line_error(minimeter("nosuch"), 2, "usage")
    _one_line_error(minimeter("verify", str(tmp_path)), 2, "usage")  # no --trust-anchor
    proc = minimeter("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("minimeter ")


def test_expire_removes_what_is_beyond_retention_and_verify_still_holds(
    synth_dir: Path, daily: Path, tmp_path: Path
) -> None:
    from minimeter.policy.load import load_policy_set

    out = tmp_path / "out"
    shutil.copytree(daily, out)
    before = {p.relative_to(out) for p in out.glob("*/runs/*/data/*/*.parquet")}
    years = {p.id: int(p.retention.text[1:-1]) for p in load_policy_set(ROOT / "policies").policies}
    as_of = "2029-01-11"  # horizons: P1Y 2028-01-11, P2Y 2027-01-11, P3Y 2026-01-11
    expected = {
        p for p in before if p.parts[4].removeprefix("date=") < f"{2029 - years[p.parts[0]]}-01-11"
    }
    assert expected and expected != before, sorted(map(str, before))  # some files, not all
    pki = str(synth_dir / "pki")
    dry = minimeter("expire", str(out), "--as-of", as_of, "--pki", pki, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would remove") == len(expected)
    assert {p.relative_to(out) for p in out.glob("*/runs/*/data/*/*.parquet")} == before
    proc = minimeter("expire", str(out), "--as-of", as_of, "--pki", pki)
    assert proc.returncode == 0, proc.stderr
    after = {p.relative_to(out) for p in out.glob("*/runs/*/data/*/*.parquet")}
    assert before - after == expected
    assert verify(synth_dir, out).returncode == 0  # manifests and index re-signed
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT recipient, run_id, file, rows FROM expirations").fetchall()
    assert len(rows) == len(expected) and all(r[3] > 0 for r in rows)


def test_subject_access_lists_every_recipient_of_a_meter_and_nothing_else(
    synth_dir: Path, daily: Path
) -> None:
    import pandas as pd

    from minimeter.pseudonym import pseudonym, recipient_key

    meters = pd.read_csv(synth_dir / "meters.csv")["meter"].tolist()
    secret = (synth_dir / "pki" / "pseudonym-secret.key").read_bytes()
    rows = {
        rid: pd.concat([pd.read_parquet(f) for f in files])
        for rid in ("de-dso-hamburg", "fr-enedis-daily", "gb-supplier-daily")
        if (files := sorted((daily / rid / "runs").glob("*/data/*/*.parquet")))
    }

    def expected(meter: str) -> dict[str, int]:
        got = {}
        for rid, df in rows.items():
            who = pseudonym(recipient_key(secret, rid), meter) if rid == "de-dso-hamburg" else meter
            n = int((df["meter"] == who).sum())
            if n:
                got[rid] = n
        return got

    meter = next(m for m in meters if expected(m))
    proc = minimeter(
        "subject", meter.lower(), "--out", str(daily), "--pki", str(synth_dir / "pki"),
        "--meters", str(synth_dir / "meters.csv"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    listed = {d["recipient"]: d["rows"] for d in doc["recipients"] if d["delivery"] == "parquet"}
    assert {k: v for k, v in listed.items() if k in rows} == expected(meter)
    others = [m for m in meters if m != meter]
    assert not any(m in proc.stdout for m in others)  # nothing about other meters
    assert all("pseudonym" not in d for d in doc["recipients"])  # only with --show-pseudonyms
    hidden = pseudonym(recipient_key(secret, "de-dso-hamburg"), meter)
    assert hidden not in proc.stdout

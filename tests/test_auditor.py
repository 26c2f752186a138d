"""Auditor surface: conformance suites with quarantine, the report's figures, the notebook."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient
from pipeline_helpers import ROOT, run_cli

from minimeter.conformance import derived, worker
from minimeter.conformance import run as conformance_run
from minimeter.conformance.suites import context
from minimeter.report import write_report
from minimeter.synth.generate import SynthConfig, synthesize


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auditor-fleet")
    synthesize(
        SynthConfig(
            out=out,
            meters=30,
            days=2,
            start=date(2026, 1, 19),
            seed=21,
            faults=0.15,
            forward_share=0.05,
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def published(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auditor-run") / "out"
    proc = run_cli(fleet, out, run_id="a1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture()
def run(published: Path, tmp_path: Path) -> Path:
    """A copy of the run's output, for each test to change as it likes."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(published, out)
    return out


def conformance(fleet: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "minimeter.cli",
            "conformance",
            str(out),
            "--run-id",
            "a1",
            "--policies",
            str(ROOT / "policies"),
            "--meters",
            str(fleet / "meters.csv"),
            "--pki",
            str(fleet / "pki"),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def tamper(out: Path, recipient: str, change) -> None:  # noqa: ANN001
    path = sorted((out / recipient / "runs" / "a1" / "data").glob("date=*/*.parquet"))[0]
    table = pq.read_table(path)
    df = table.to_pandas()
    df = change(df)
    for f in table.schema:  # UTC instants as naive datetime64 (pyarrow's tz path warns on pandas 3)
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            df[f.name] = df[f.name].dt.tz_convert(None)
    columns = [pa.array(df[f.name].to_numpy(), type=f.type) for f in table.schema]
    pq.write_table(pa.Table.from_arrays(columns, schema=table.schema), path)


def add_voltage(df: pd.DataFrame) -> pd.DataFrame:
    """One more row, of an OBIS code (voltage) no policy allows."""
    extra = df.iloc[[0]].copy()
    extra["obis"] = "1-0:32.7.0"
    return pd.concat([df, extra], ignore_index=True)


def results(out: Path, recipient: str) -> list[tuple[str, str, bool]]:
    """The latest re-check's results (the run's own results stay in ``conformance``)."""
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    return con.execute(
        'SELECT expectation, "column", success FROM conformance_checks WHERE run_id = ? '
        "AND recipient = ? AND checked_at = (SELECT max(checked_at) FROM conformance_checks)",
        ["a1", recipient],
    ).fetchall()


def test_clean_run_conforms(run: Path, fleet: Path) -> None:
    proc = conformance(fleet, run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        all(ok for _, _, ok in results(run, "de-dso-hamburg"))
        and len(results(run, "de-dso-hamburg")) >= 7
    )
    assert not (run / "_quarantine").exists()


def test_forbidden_obis_row_is_caught_and_quarantined(run: Path, fleet: Path) -> None:
    tamper(run, "de-dso-hamburg", add_voltage)
    proc = conformance(fleet, run)
    assert proc.returncode == 4
    assert proc.stderr.startswith("minimeter: conformance-failed: de-dso-hamburg")
    assert not (run / "de-dso-hamburg" / "runs" / "a1").exists()
    assert (run / "_quarantine" / "a1" / "de-dso-hamburg" / "data").is_dir()
    failed = {(e, c) for e, c, ok in results(run, "de-dso-hamburg") if not ok}
    assert ("expect_column_values_to_be_in_set", "obis") in failed
    assert ("expect_table_row_count_to_equal", None) in failed
    assert (run / "fr-enedis-daily" / "runs" / "a1").exists()  # the others stay deliverable


def test_a_meter_outside_the_scope_and_a_changed_file_are_caught(run: Path, fleet: Path) -> None:
    """A row of a meter the recipient is not entitled to, written by hand (the row count and
    the OBIS code stay plausible), fails the scope check; the changed file fails its manifest."""
    meters = pd.read_csv(fleet / "meters.csv")
    outsider = meters[meters.jurisdiction != "FR"]["meter"].iloc[0]

    def swap(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[df.index[0], "meter"] = outsider
        return df

    tamper(run, "fr-enedis-daily", swap)
    proc = conformance(fleet, run)
    assert proc.returncode == 4
    failed = {(e, c) for e, c, ok in results(run, "fr-enedis-daily") if not ok}
    assert ("expect_column_values_to_be_in_set", "_in_scope") in failed
    assert ("files_match_manifest", None) in failed


def test_a_changed_file_alone_fails_its_manifest(run: Path, fleet: Path) -> None:
    path = sorted((run / "fr-enedis-daily" / "runs" / "a1" / "data").glob("date=*/*.parquet"))[0]
    pq.write_table(pq.read_table(path), path, compression="gzip")  # same rows, other bytes
    proc = conformance(fleet, run)
    assert proc.returncode == 4
    failed = {(e, c) for e, c, ok in results(run, "fr-enedis-daily") if not ok}
    assert failed == {("files_match_manifest", None)}


def test_a_policy_set_other_than_the_runs_is_refused(
    run: Path, fleet: Path, tmp_path: Path
) -> None:
    import shutil

    project = tmp_path / "project"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "dpia", project / "dpia")
    path = project / "policies" / "recipients" / "fr-enedis-daily.yaml"
    path.write_text(path.read_text() + "\n# edited after the run\n")
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter", "conformance", str(run), "--run-id", "a1",
         "--policies", str(project / "policies"), "--meters", str(fleet / "meters.csv"),
         "--pki", str(fleet / "pki")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("minimeter: policy-mismatch: ")
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter", "conformance", str(run), "--run-id", "a1",
         "--policies-as-of-run", "--meters", str(fleet / "meters.csv"), "--pki", str(fleet / "pki")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # the run's own recorded policies
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"), read_only=True)
    original = con.execute("SELECT count(*) FROM conformance WHERE run_id = 'a1'").fetchall()
    assert original[0][0] > 0  # the run's own results were not overwritten


def test_unknown_run_ids_fail(run: Path, fleet: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter", "report", str(run), "--run-id", "nosuch"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "nosuch" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter", "conformance", str(run), "--run-id", "nosuch",
         "--policies", str(ROOT / "policies"), "--meters", str(fleet / "meters.csv"),
         "--pki", str(fleet / "pki")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2


def test_report_input_and_output_problems_are_one_line(run: Path, tmp_path: Path) -> None:
    """A missing ``--raw`` file, an audit database that is not one and a report folder that
    cannot be written: one line naming the category, the documented exit status (3 unreadable
    input, 2 configuration), never a traceback."""

    def report(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "minimeter", "report", str(out), *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    cases = []
    cases.append((report(run, "--raw", str(tmp_path / "nosuch.parquet")), "input-unreadable"))
    broken = tmp_path / "broken"
    (broken / "_audit").mkdir(parents=True)
    (broken / "_audit" / "audit.duckdb").write_bytes(b"not a database" * 100)
    cases.append((report(broken), "input-unreadable"))
    (run / "_report").mkdir(exist_ok=True)
    (run / "_report" / "index.html").mkdir()  # a directory where the page goes
    cases.append((report(run), "output-unwritable"))
    for proc, category in cases:
        assert proc.returncode == {"input-unreadable": 3, "output-unwritable": 2}[category]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"minimeter: {category}: "), proc.stderr
        assert "Traceback" not in proc.stderr


def test_an_audit_that_is_not_a_database_stops_every_command(run: Path, fleet: Path) -> None:
    """``run``, ``expire``, ``report`` and ``conformance`` on an OUT whose audit is garbage: one
    line ``input-unreadable``, exit 3, and the run stops before its job (nothing staged)."""
    (run / "_audit" / "audit.duckdb").write_bytes(b"not a database" * 100)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "minimeter", *args], capture_output=True, text=True, check=False
        )

    procs = [
        run_cli(fleet, run, run_id="a2", pattern=str(fleet / "messages" / "2026-01-19" / "*.cms")),
        cli("expire", str(run), "--as-of", "2030-01-01", "--pki", str(fleet / "pki")),
        cli("report", str(run)),
        cli("conformance", str(run), "--run-id", "a1", "--policies", str(ROOT / "policies"),
            "--meters", str(fleet / "meters.csv"), "--pki", str(fleet / "pki")),
    ]  # fmt: skip
    for proc in procs:
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("minimeter: input-unreadable: "), lines
        assert "not a valid DuckDB database" in lines[0]
    assert not (run / "_staging").exists() or not any((run / "_staging").iterdir())


@pytest.mark.parametrize("shift_hours,failing", [(0, {"_gap_s"}), (6, {"_gap_s", "_aligned"})])
def test_timestamps_closer_than_allowed_are_caught(
    run: Path, fleet: Path, shift_hours: int, failing: set[str]
) -> None:
    def squeeze(df: pd.DataFrame) -> pd.DataFrame:
        # another value for the first row's meter and OBIS, 0 or 6 hours before it; same row count
        extra = df.iloc[[0]].copy()
        extra["ts"] = extra["ts"] - pd.Timedelta(hours=shift_hours)
        return pd.concat([df.iloc[1:], extra, df.iloc[[0]]], ignore_index=True).iloc[1:]

    tamper(run, "fr-enedis-daily", squeeze)
    proc = conformance(fleet, run)
    assert proc.returncode == 4
    failed = {c for e, c, ok in results(run, "fr-enedis-daily") if not ok}
    assert failed == failing | {None}  # and the rewritten file no longer matches its manifest
    assert (run / "_quarantine" / "a1" / "fr-enedis-daily").is_dir()


def test_report_figures_reproduce_and_cover_the_run(run: Path, fleet: Path) -> None:
    html_path, md_path = write_report(
        run, policies=ROOT / "policies", raw=fleet / "truth" / "readings.parquet", pki=fleet / "pki"
    )
    text = html_path.read_text()
    md = md_path.read_text()
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"), read_only=True)
    for (recipient,) in con.execute(
        "SELECT recipient FROM policies WHERE run_id = 'a1'"
    ).fetchall():
        assert recipient in text and recipient in md
    categories = con.execute(
        "SELECT DISTINCT category FROM dead_letters WHERE run_id = 'a1'"
    ).fetchall()
    assert len(categories) >= 4
    for (category,) in categories:
        assert category in text and category in md
    figures = json.loads((run / "_report" / "figures.json").read_text())
    assert len(figures) > 100
    for f in figures:
        assert html_escape(f["sql"]) in text
        rel = con.execute(f["sql"])
        if f["value"].count("\n") > 1 or "," in f["value"].split("\n")[0]:
            assert rel.df().to_csv(index=False) == f["value"], f["figure"]
        else:
            row = rel.fetchone()
            assert ("" if row is None or row[0] is None else str(row[0])) == f["value"], f["figure"]
            if f["value"]:
                assert html_escape(f["value"]) in text
    # self-contained: no fetched resources, plots embedded
    assert not re.search(r"""(src|href)=['"]?https?:""", text)
    assert text.count("data:image/png;base64,") >= 5
    assert "Art. 35(7)" in text and "Art. 30" in text and "MsbG" in text
    check_report_layout(run, text, md)
    page = visible(text).lower() + md.lower()
    for meter in pd.read_csv(fleet / "meters.csv").meter:  # no raw meter id, anywhere
        assert meter.lower() not in page, meter


def test_a_recipient_without_recorded_checks_does_not_conform(run: Path, fleet: Path) -> None:
    """An audit whose conformance rows for a recipient are missing (a partial or edited audit)
    never reads as conforming: the recipient's status and the verdict both say so."""
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"))
    con.execute("DELETE FROM conformance WHERE recipient = 'fr-esco-flex'")
    con.close()
    html_path, md_path = write_report(
        run, policies=ROOT / "policies", raw=fleet / "truth" / "readings.parquet", pki=fleet / "pki"
    )
    page = visible(html_path.read_text())
    assert "Verdict: The run does NOT conform" in page
    section = page[page.index("<h2 id='recipient-fr-esco-flex'>") :]
    assert re.match(
        r"<h2[^>]*>[^<]*</h2><p class='status bad'>DOES NOT CONFORM: \d+ rows delivered; "
        r"no conformance check recorded for this run",
        section,
    ), section[:300]
    assert "<p class='status ok'>conforms: " in page  # the others still do


def visible(text: str) -> str:
    """The HTML without its embedded images (base64 could hold any word)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)


def check_report_layout(run: Path, text: str, md: str) -> None:
    """Verdict and contents first, one section with a status line per recipient, conformance in
    words (no internal column names, no nan), transfers, linkability and expirations, and the
    explanation ``policy explain`` prints, rendered."""
    from minimeter.policy.explain import explanation
    from minimeter.policy.load import load_policy_set

    page = visible(text)
    assert page.index("Verdict: The run conforms") < page.index("<nav>") < page.index("Provenance")
    assert md.index("Verdict: ") < md.index("## Contents") < md.index("## Provenance")
    for word in ("_gap_s", "_aligned", "_ts_s", "_raw_meter_id", "_in_scope"):
        assert word not in page and word not in md, word
    assert not re.search(r"\bnan\b|\bNaN\b", page + md)
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"), read_only=True)
    ps = load_policy_set(ROOT / "policies")
    for (recipient,) in con.execute(
        "SELECT recipient FROM policies WHERE run_id = 'a1'"
    ).fetchall():
        assert f"<a href='#recipient-{recipient}'>" in page
        section = page[page.index(f"<h2 id='recipient-{recipient}'>") :]
        assert re.match(r"<h2[^>]*>[^<]*</h2><p class='status ok'>conforms: ", section), recipient
        assert explanation(ps, recipient).html() in section  # the same object as policy explain
    assert "minimum interval 15 minutes (PT15M)" in page and "k = 5" in page
    assert "allowed: 1-0:1.29.0" in page and "horizon 20" in page
    assert "transfers to third countries (Art. 30(1)(e))" in page
    assert "none (DE recipient, DE meters only)" in page
    pairs = con.execute("SELECT recipient, other FROM linkability WHERE run_id = 'a1'").fetchall()
    assert pairs and "Linkability between recipients" in page
    links = page[page.index("id='linkability-between-recipients'") :]
    for a, b in pairs:
        assert f"<td>{a}</td><td>{b}</td>" in links
    assert "Expirations (retention after delivery)" in page and "No expiry has run" in page
    from minimeter.report.sections import REASONS

    reasons = con.execute("SELECT DISTINCT reason FROM counts WHERE recipient <> '_run'").fetchall()
    assert {r for (r,) in reasons} <= set(REASONS)  # every count shown in words, none as a key


def test_report_lists_expirations(run: Path, fleet: Path) -> None:
    """After ``minimeter expire``, the report lists what it removed (and plots nothing for a
    recipient left without data)."""
    from datetime import UTC, datetime

    from minimeter.expire import expire

    gone = expire(
        run, as_of=date(2028, 6, 1), pki=fleet / "pki", at=datetime(2028, 6, 1, tzinfo=UTC)
    )
    assert gone
    html_path, md_path = write_report(run, policies=ROOT / "policies")
    page = visible(html_path.read_text())
    section = page[page.index("id='expirations-retention-after-delivery'") :]
    assert "No expiry has run" not in section
    for recipient in {g.recipient for g in gone}:
        assert f"<td>{recipient}</td><td>a1</td><td>retention</td>" in section


def test_plots_label_their_axes_and_keep_scales_apart(run: Path, fleet: Path) -> None:
    """Every panel has axis labels with units; a daily recipient's values get their own panel
    (not the 15-minute axis); the same series at 15 minutes shares one panel with the raw."""
    from matplotlib.text import Text

    from minimeter.policy.load import load_policy_set
    from minimeter.report.plots import recipient_figure

    ps = load_policy_set(ROOT / "policies")
    raw = pd.read_parquet(fleet / "truth" / "readings.parquet")
    meters = pd.read_csv(fleet / "meters.csv").set_index("meter")
    secret = (fleet / "pki" / "pseudonym-secret.key").read_bytes()
    labels = {}
    for rid in ("fr-enedis-daily", "de-dso-hamburg", "gb-dno-aggregate"):
        delivered = derived.read_output(run / rid / "runs" / "a1")
        fig = recipient_figure(ps.policy(rid), delivered, raw, meters, secret)  # type: ignore[arg-type]
        assert fig is not None
        for ax in fig.axes:
            assert ax.get_xlabel().startswith("time (") and "(kWh)" in ax.get_ylabel()
        labels[rid] = [ax.get_ylabel() for ax in fig.axes]
        words = " ".join(t.get_text() for t in fig.findobj(Text)).lower()
        assert "kwh" in words and not any(m.lower() in words for m in meters.index)
    assert labels["fr-enedis-daily"] == ["energy per 15 min (kWh)", "energy per 1 day (kWh)"]
    assert labels["de-dso-hamburg"] == ["energy per 15 minutes (kWh)"]  # raw and delivered
    assert labels["gb-dno-aggregate"][1] == "energy per 30 minutes (kWh)"


def test_plot_lines_leave_gaps() -> None:
    """A missing interval breaks the line: no segment joins the values around it."""
    from matplotlib.figure import Figure

    from minimeter.report.plots import Series, _line

    ends = pd.Series(
        pd.to_datetime(["2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 01:00"], utc=True)
    )
    series = Series(ends - pd.Timedelta(minutes=15), ends, pd.Series([1.0, 2.0, 3.0]))
    ax = Figure().subplots()
    _line(ax, series, "UTC", pd.Timedelta(minutes=15))
    ys = list(ax.lines[0].get_ydata())
    assert ys[:2] == [1.0, 2.0] and pd.isna(ys[2]) and ys[3] == 3.0


def html_escape(s: str) -> str:
    import html

    return html.escape(s)


def test_notebook_executes(run: Path, fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIMETER_OUT", str(run))
    monkeypatch.setenv("MINIMETER_PKI", str(fleet / "pki"))
    nb = nbformat.read(ROOT / "notebooks" / "auditor_walkthrough.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "outputs must not be committed"
    )
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    last = [o for o in nb.cells[-1].outputs if o.output_type == "execute_result"]
    assert last and int(last[0]["data"]["text/plain"]) > 0  # files verified by minimeter verify
    assert "minimeter', 'verify'" in nb.cells[-1].source  # the signatures, through the CLI
    plot = next(c for c in nb.cells if "recipient_figure" in c.source)
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)  # the figure is shown
    warnings = [
        o.text
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
    ]
    assert not warnings


def test_conformance_workers_agree_with_the_in_process_check(run: Path, fleet: Path) -> None:
    """The suites give the same results here, in a conformance worker, and after a worker died."""
    from datetime import UTC, datetime

    from minimeter.policy.load import load_policy_set
    from minimeter.registry import MeterRegistry

    tamper(run, "de-dso-hamburg", add_voltage)
    ps = load_policy_set(ROOT / "policies")
    check = {
        "expected_rows": {"fr-enedis-daily": 10},
        "raw_meters": sorted(MeterRegistry.load(fleet / "meters.csv").meters),
        "as_of": datetime(2026, 1, 21, tzinfo=UTC),
    }
    trees = {p.id: run / p.id / "runs" / "a1" for p in ps.policies}
    worker.stop()
    here = conformance_run.run_conformance(trees, ps, **check)  # type: ignore[arg-type]
    assert any(not r.success for r in here) and any(r.success for r in here)
    worker.start()
    try:
        running = worker.current()
        assert running is not None
        assert conformance_run.run_conformance(trees, ps, **check) == here  # type: ignore[arg-type]
        recipients = {r.recipient for r in here}
        assert running.answered == len(recipients)
        running.process.kill()
        running.process.wait()
        assert conformance_run.run_conformance(trees, ps, **check) == here  # type: ignore[arg-type]
    finally:
        worker.stop()


def test_conformance_in_small_batches_agrees_with_one_batch(run: Path, fleet: Path) -> None:
    """Checked in three or four batches (spacing carried across batches), every recipient gets
    the results of a single-batch check, and a too-close timestamp in the next batch is caught."""
    from datetime import UTC, datetime

    from minimeter.policy.load import load_policy_set
    from minimeter.registry import MeterRegistry

    ps = load_policy_set(ROOT / "policies")
    raw = sorted(MeterRegistry.load(fleet / "meters.csv").meters)
    as_of = datetime(2026, 1, 21, tzinfo=UTC)
    checked = 0
    for p in ps.policies:
        if p.delivery == "cms-forward":
            continue
        tree = run / p.id / "runs" / "a1"
        rows = sum(len(f) for f in derived.read_batches(tree))
        args = {"expected_rows": rows, "raw_meters": raw, "as_of": as_of}
        # a context per check: a context refuses a second data source of the same name
        whole = conformance_run.check_recipient(context(), p, [derived.read_output(tree)], **args)
        batches = list(derived.read_batches(tree, max_rows=rows // 3 + 1))
        small = conformance_run.check_recipient(context(), p, batches, **args)
        assert small == whole and all(r.success for r in whole), p.id
        checked += len(batches) >= 3
    assert checked >= 3

    # fr-enedis-daily: a second value one hour after a meter's first day, in a later batch
    policy = {p.id: p for p in ps.policies}["fr-enedis-daily"]
    frames = list(derived.read_batches(run / policy.id / "runs" / "a1", max_rows=10))
    first = frames[0].iloc[[0]].copy()
    first["ts"] = first["ts"] + pd.Timedelta(hours=1)
    later = [*frames, first]
    results = conformance_run.check_recipient(
        context(),
        policy,
        later,
        expected_rows=sum(len(f) for f in later),
        raw_meters=raw,
        as_of=as_of,
    )
    failed = {(r.expectation, r.column) for r in results if not r.success}
    assert failed == {
        ("expect_column_values_to_be_between", "_gap_s"),
        ("expect_column_values_to_be_in_set", "_aligned"),
    }

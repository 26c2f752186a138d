"""The audit trail: ``OUT/_audit/audit.duckdb``, one set of rows per run id (re-runs replace)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from minimeter.auditdb import open_audit
from minimeter.conformance.run import ConformanceOutcome
from minimeter.policy.model import PolicySet
from minimeter.storage import AnyPath, read_table, relative

if TYPE_CHECKING:
    from minimeter.layout import OutLayout
    from minimeter.manifest import Manifest
    from minimeter.pipeline.run import RunConfig, RunResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY, as_of DATE, policy_hash VARCHAR, code_version VARCHAR, runner VARCHAR,
  started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, input VARCHAR, messages_in BIGINT, opened BIGINT,
  forwarded BIGINT, dead_letters BIGINT, readings BIGINT, balanced BOOLEAN);
CREATE TABLE IF NOT EXISTS counts (run_id VARCHAR, recipient VARCHAR, reason VARCHAR, n BIGINT);
CREATE TABLE IF NOT EXISTS dead_letters (run_id VARCHAR, message VARCHAR, stage VARCHAR, category VARCHAR);
CREATE TABLE IF NOT EXISTS policies (
  run_id VARCHAR, recipient VARCHAR, name VARCHAR, role VARCHAR, jurisdiction VARCHAR, delivery VARCHAR,
  legal_basis VARCHAR, purpose VARCHAR, dpia VARCHAR, obis VARCHAR, min_interval VARCHAR, consent VARCHAR,
  retention VARCHAR, identity VARCHAR, k_anonymity INTEGER, areas VARCHAR, supplier VARCHAR, file VARCHAR);
CREATE TABLE IF NOT EXISTS manifests (
  run_id VARCHAR, recipient VARCHAR, path VARCHAR, sha256 VARCHAR, files INTEGER, rows BIGINT);
CREATE TABLE IF NOT EXISTS conformance (
  run_id VARCHAR, recipient VARCHAR, expectation VARCHAR, "column" VARCHAR, success BOOLEAN, observed VARCHAR);
CREATE TABLE IF NOT EXISTS quarantine (run_id VARCHAR, recipient VARCHAR, path VARCHAR);
CREATE TABLE IF NOT EXISTS policy_files (run_id VARCHAR, file VARCHAR, content BLOB);
CREATE TABLE IF NOT EXISTS conformance_checks (
  run_id VARCHAR, checked_at TIMESTAMPTZ, recipient VARCHAR, expectation VARCHAR,
  "column" VARCHAR, success BOOLEAN, observed VARCHAR, quarantined BOOLEAN);
CREATE TABLE IF NOT EXISTS linkability (
  run_id VARCHAR, recipient VARCHAR, other VARCHAR, series BIGINT, matched BIGINT);
CREATE TABLE IF NOT EXISTS conflicts (
  run_id VARCHAR, messages VARCHAR[], meter VARCHAR, obis VARCHAR, ts TIMESTAMPTZ);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS publish_id VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS carried_from VARCHAR;
CREATE OR REPLACE VIEW dead_letters_by_category AS
  SELECT run_id, stage, category, count(*) AS n FROM dead_letters GROUP BY ALL;
"""
TABLES = (
    "runs",
    "counts",
    "dead_letters",
    "policies",
    "manifests",
    "conformance",
    "quarantine",
    "conflicts",
    "linkability",
    "policy_files",
)


def write_audit(
    cfg: RunConfig,
    ps: PolicySet,
    result: RunResult,
    manifests: list[Manifest],
    *,
    layout: OutLayout,
    dead_letters: AnyPath,
    conflicts: AnyPath,
    linkability: list[Any],
    outcome: ConformanceOutcome,
    quarantined: dict[str, AnyPath],
    publish_id: str,
    carried_from: str | None,
    runner: str,
    started_at: datetime,
    version: str,
) -> None:
    """Every audit row of a run, in one transaction: its commit is the run's commit point
    (``minimeter.publish``); a re-run's earlier rows are replaced."""
    path = layout.audit_db
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = read_table(dead_letters).to_pylist()
    con = open_audit(path, read_only=False)
    try:
        con.execute(SCHEMA)
        con.execute("BEGIN")
        for table in TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [cfg.run_id])
        con.execute(
            "INSERT INTO runs (run_id, as_of, policy_hash, code_version, runner, started_at, "
            "finished_at, input, messages_in, opened, forwarded, dead_letters, readings, balanced, "
            "publish_id, carried_from) "
            "VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cfg.run_id,
                cfg.as_of,
                ps.digest,
                version,
                runner,
                started_at,
                cfg.input,
                result.messages_in,
                result.opened,
                result.forwarded,
                result.dead_letters,
                result.counts.get(("_run", "readings"), 0),
                result.balanced,
                publish_id,
                carried_from,
            ],
        )
        con.executemany(
            "INSERT INTO counts VALUES (?, ?, ?, ?)",
            [[cfg.run_id, rid, reason, n] for (rid, reason), n in sorted(result.counts.items())],
        )
        if dead:
            con.executemany(
                "INSERT INTO dead_letters VALUES (?, ?, ?, ?)",
                [[cfg.run_id, d["message"], d["stage"], d["category"]] for d in dead],
            )
        con.executemany(
            "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    cfg.run_id,
                    p.id,
                    p.name,
                    p.role,
                    p.jurisdiction,
                    p.delivery,
                    p.legal_basis,
                    p.purpose,
                    p.dpia,
                    ",".join(s.text for s in p.obis),
                    p.min_interval.text,
                    p.consent,
                    p.retention.text,
                    p.identity,
                    p.k_anonymity,
                    ",".join(p.scope.areas or ()),
                    p.scope.supplier,
                    p.file,
                ]
                for p in ps.policies
            ],
        )
        con.executemany(
            "INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?)",
            [
                [
                    cfg.run_id,
                    m.recipient,
                    relative(layout.published(m.recipient, cfg.run_id).manifest, layout.root),
                    m.sha256,
                    m.files,
                    m.rows,
                ]
                for m in manifests
            ],
        )
        _insert_conformance(con, cfg.run_id, outcome, quarantined, layout.root)
        files = policy_files(cfg.policies)
        con.executemany(
            "INSERT INTO policy_files VALUES (?, ?, ?)",
            [[cfg.run_id, name, data] for name, data in files],
        )
        if linkability:
            con.executemany(
                "INSERT INTO linkability VALUES (?, ?, ?, ?, ?)",
                [[cfg.run_id, x.recipient, x.other, x.series, x.matched] for x in linkability],
            )
        disputes = read_table(conflicts).to_pylist() if conflicts.is_file() else []
        if disputes:
            con.executemany(
                "INSERT INTO conflicts VALUES (?, ?, ?, ?, ?)",
                [[cfg.run_id, d["messages"], d["meter"], d["obis"], d["ts"]] for d in disputes],
            )
        con.execute("COMMIT")
    finally:
        con.close()


def _insert_conformance(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    outcome: ConformanceOutcome,
    quarantined: dict[str, AnyPath],
    root: AnyPath,
) -> None:
    if outcome.results:
        con.executemany(
            "INSERT INTO conformance VALUES (?, ?, ?, ?, ?, ?)",
            [
                [run_id, r.recipient, r.expectation, r.column, r.success, r.observed]
                for r in outcome.results
            ],
        )
    if quarantined:
        con.executemany(
            "INSERT INTO quarantine VALUES (?, ?, ?)",
            [[run_id, rid, relative(p, root)] for rid, p in sorted(quarantined.items())],
        )


def committed_publish_id(db: AnyPath, run_id: str) -> str | None:
    """The publish id the audit committed for a run (None: no such run, or no audit)."""
    if not db.is_file():
        return None
    con = open_audit(db)
    try:
        try:
            row = con.execute("SELECT publish_id FROM runs WHERE run_id = ?", [run_id]).fetchall()
        except duckdb.Error:
            return None
    finally:
        con.close()
    return str(row[0][0]) if row and row[0][0] is not None else None


def policy_files(policies: Path) -> list[tuple[str, bytes]]:
    """Every file the policy set of a run was read from (relative to the policies' parent):
    recorded in the audit, so that a run can be re-checked against its own policies."""
    from minimeter.policy.load import resolve_dirs

    pdir, ddir = resolve_dirs(policies)
    found = [
        (f"policies/{p.relative_to(pdir).as_posix()}", p.read_bytes())
        for p in sorted(pdir.glob("*/*.yaml"))
    ]
    found += [(f"dpia/{p.name}", p.read_bytes()) for p in sorted(ddir.glob("*.yaml"))]
    return found


def extract_policy_files(db: AnyPath, run_id: str, target: Path) -> None:
    con = open_audit(db)
    try:
        rows = con.execute(
            "SELECT file, content FROM policy_files WHERE run_id = ?", [run_id]
        ).fetchall()
    finally:
        con.close()
    if not rows:
        from minimeter.errors import ConfigError

        raise ConfigError(f"{db}: no policy files recorded for run {run_id!r}", "unknown-run")
    for name, content in rows:
        path = target / name
        if ".." in Path(name).parts:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(content))


def record_check(
    out: AnyPath,
    run_id: str,
    results: list[Any],
    quarantined: dict[str, AnyPath],
    *,
    at: datetime,
) -> None:
    """An auditor's re-check of a run, added beside (never over) the run's own results."""
    con = open_audit(out / "_audit" / "audit.duckdb", read_only=False)
    try:
        con.execute(SCHEMA)
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO conformance_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    run_id,
                    at,
                    r.recipient,
                    r.expectation,
                    r.column,
                    r.success,
                    r.observed,
                    r.recipient in quarantined,
                ]
                for r in results
            ],
        )
        if quarantined:
            con.executemany(
                "INSERT INTO quarantine VALUES (?, ?, ?)",
                [[run_id, rid, relative(p, out)] for rid, p in sorted(quarantined.items())],
            )
        con.execute("COMMIT")
    finally:
        con.close()

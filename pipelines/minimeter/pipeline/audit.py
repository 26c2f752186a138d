"""The audit trail: ``OUT/_audit/audit.duckdb``, one set of rows per run id (re-runs replace)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow.parquet as pq

from minimeter.policy.model import PolicySet
from minimeter.quality import ConformanceOutcome

if TYPE_CHECKING:
    from minimeter.pipeline.manifest import Manifest
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
CREATE OR REPLACE VIEW dead_letters_by_category AS
  SELECT run_id, stage, category, count(*) AS n FROM dead_letters GROUP BY ALL;
"""
TABLES = ("runs", "counts", "dead_letters", "policies", "manifests", "conformance", "quarantine")


def write_audit(
    cfg: RunConfig,
    ps: PolicySet,
    result: RunResult,
    manifests: list[Manifest],
    *,
    runner: str,
    started_at: datetime,
    version: str,
) -> None:
    path = cfg.out / "_audit" / "audit.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = pq.read_table(cfg.out / "_dead_letters" / f"{cfg.run_id}.parquet").to_pylist()
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")
        con.execute(SCHEMA)
        for table in TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [cfg.run_id])
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?)",
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
                    str(m.path.relative_to(cfg.out)),
                    m.sha256,
                    m.files,
                    m.rows,
                ]
                for m in manifests
            ],
        )
        con.execute("COMMIT")
    finally:
        con.close()


def write_conformance(out: Path, run_id: str, outcome: ConformanceOutcome) -> None:
    """Replace a run's conformance results (also used when an auditor re-checks outputs)."""
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"))
    try:
        con.execute("BEGIN")
        con.execute(SCHEMA)
        con.execute("DELETE FROM conformance WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM quarantine WHERE run_id = ?", [run_id])
        if outcome.results:
            con.executemany(
                "INSERT INTO conformance VALUES (?, ?, ?, ?, ?, ?)",
                [
                    [run_id, r.recipient, r.expectation, r.column, r.success, r.observed]
                    for r in outcome.results
                ],
            )
        if outcome.quarantined:
            con.executemany(
                "INSERT INTO quarantine VALUES (?, ?, ?)",
                [
                    [run_id, rid, str(p.relative_to(out))]
                    for rid, p in sorted(outcome.quarantined.items())
                ],
            )
        con.execute("COMMIT")
    finally:
        con.close()

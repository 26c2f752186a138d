"""Retention after delivery: ``minimeter expire`` removes what is older than a recipient's
retention from the published trees (no Beam here).

A data file ``data/date=D/<run id>.parquet`` is expired when its day D lies before the
recipient's retention horizon (the as-of minus its retention); relayed messages go with the run
that relayed them once that run's as-of lies before the horizon. The affected manifests are
rewritten and re-signed, a run tree left with nothing is removed, the recipient's index is
rewritten, every removal is recorded in the audit (``expirations``) and the staging of finished
runs is cleaned. ``verify`` holds after an expiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from minimeter.auditdb import open_audit
from minimeter.errors import ConfigError
from minimeter.layout import OutLayout
from minimeter.manifest import Signer, write_index, write_manifest
from minimeter.policy.duration import Duration
from minimeter.publish import OutLock, recover
from minimeter.storage import AnyPath, parquet_rows, relative, remove_tree

SCHEMA = """
CREATE TABLE IF NOT EXISTS expirations (
  recipient VARCHAR, run_id VARCHAR, file VARCHAR, rows BIGINT, reason VARCHAR,
  expired_at TIMESTAMPTZ, as_of DATE);
"""


@dataclass(frozen=True)
class Expiration:
    recipient: str
    run_id: str
    file: str
    rows: int
    reason: str


def _retentions(db: AnyPath) -> tuple[dict[str, Duration], dict[str, date]]:
    """Each recipient's retention under its latest run's policy, and each run's as-of."""
    if not db.is_file():
        raise ConfigError(f"{db}: no audit database", "input-unreadable")
    con = open_audit(db)
    try:
        rows = con.execute(
            "SELECT p.recipient, p.retention FROM policies p JOIN runs r USING (run_id) "
            "QUALIFY row_number() OVER (PARTITION BY p.recipient ORDER BY r.finished_at DESC) = 1"
        ).fetchall()
        runs = dict(con.execute("SELECT run_id, as_of FROM runs").fetchall())
    finally:
        con.close()
    return {rid: Duration.parse(text) for rid, text in rows}, runs


def expire(
    out: AnyPath, *, as_of: date, pki: Path, dry_run: bool = False, at: datetime
) -> list[Expiration]:
    """Remove (or, with ``dry_run``, list) every published file beyond its retention."""
    layout = OutLayout(out)
    retention, run_as_of = _retentions(layout.audit_db)
    signer = Signer.from_pki(pki)
    when = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    found: list[Expiration] = []
    with OutLock(layout, "expire", at=at):
        if not dry_run:
            recover(
                layout,
                lambda rid: _committed(layout, rid),
                lambda r: write_index(layout, r, signer),
            )
        for rid in layout.recipients():
            if rid not in retention:
                continue
            horizon = retention[rid].subtract_from(when).date()
            touched = False
            for tree in layout.published_runs(rid):
                gone: list[AnyPath] = []
                for f in tree.data_files():
                    day = date.fromisoformat(f.parent.name.removeprefix("date="))
                    if day < horizon:
                        rows = parquet_rows(f)
                        found.append(
                            Expiration(rid, tree.run_id, _rel(f, tree.base), rows, "retention")
                        )
                        gone.append(f)
                ran = run_as_of.get(tree.run_id)
                if ran is not None and ran < horizon:
                    for f in tree.forward_files():
                        found.append(
                            Expiration(rid, tree.run_id, _rel(f, tree.base), 0, "retention")
                        )
                        gone.append(f)
                if not gone or dry_run:
                    continue
                touched = True
                for f in gone:
                    f.unlink()
                    _prune(f.parent, tree.base)
                if not tree.data_files() and not tree.forward_files():
                    remove_tree(tree.base)
                    continue
                doc = json.loads(tree.manifest.read_text())
                write_manifest(
                    tree,
                    recipient=rid,
                    publish_id=str(doc.get("publish_id")),
                    policy_sha256=str(doc.get("policy_hash")),
                    delivery=str(doc.get("delivery")),
                    signer=signer,
                )
            if touched:
                write_index(layout, rid, signer)
        if not dry_run:
            _record(layout.audit_db, found, at, as_of)
    return found


def _rel(path: AnyPath, base: AnyPath) -> str:
    return relative(path, base)


def _prune(directory: AnyPath, stop: AnyPath) -> None:
    while directory != stop and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _committed(layout: OutLayout, run_id: str) -> str | None:
    from minimeter.pipeline.audit import committed_publish_id

    return committed_publish_id(layout.audit_db, run_id)


def _record(db: AnyPath, found: list[Expiration], at: datetime, as_of: date) -> None:
    con = open_audit(db, read_only=False)
    try:
        con.execute(SCHEMA)
        if found:
            con.executemany(
                "INSERT INTO expirations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[e.recipient, e.run_id, e.file, e.rows, e.reason, at, as_of] for e in found],
            )
    finally:
        con.close()

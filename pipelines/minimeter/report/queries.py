"""The DuckDB queries behind the report's figures, and ``Figures``, which runs and records them.

Every figure of the report is the answer of one query on the audit database
(``OUT/_audit/audit.duckdb``); ``Figures`` keeps (figure, SQL, value) for ``figures.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pandas as pd


def q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Figures:
    con: duckdb.DuckDBPyConnection
    items: list[dict[str, str]] = field(default_factory=list)

    def value(self, label: str, sql: str) -> str:
        row = self.con.execute(sql).fetchone()
        value = "" if row is None or row[0] is None else str(row[0])
        self.items.append({"figure": label, "sql": sql, "value": value})
        return value

    def table(self, label: str, sql: str) -> pd.DataFrame:
        df = self.con.execute(sql).df()
        self.items.append({"figure": label, "sql": sql, "value": df.to_csv(index=False)})
        return df

    def has_table(self, name: str) -> bool:
        """Whether the audit has the table (``expirations`` appears with the first expiry)."""
        row = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()
        return bool(row and row[0])


def latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def run_column(rid: str, column: str) -> str:
    return f"SELECT {column} FROM runs WHERE run_id = {rid}"


def failed_expectations(rid: str, recipient: str | None = None) -> str:
    who = f" AND recipient = {q(recipient)}" if recipient else ""
    return f"SELECT count(*) FROM conformance WHERE run_id = {rid}{who} AND NOT success"


def expectations(rid: str, recipient: str) -> str:
    return f"SELECT count(*) FROM conformance WHERE run_id = {rid} AND recipient = {q(recipient)}"


def quarantined(rid: str, recipient: str | None = None) -> str:
    if recipient is None:
        return f"SELECT count(DISTINCT recipient) FROM quarantine WHERE run_id = {rid}"
    return f"SELECT count(*) FROM quarantine WHERE run_id = {rid} AND recipient = {q(recipient)}"


def recheck_failures(rid: str) -> str:
    """Failed checks of the latest ``minimeter conformance`` re-check (0 when none ran)."""
    return (
        f"SELECT count(*) FROM conformance_checks WHERE run_id = {rid} AND NOT success AND "
        f"checked_at = (SELECT max(checked_at) FROM conformance_checks WHERE run_id = {rid})"
    )


def rechecks(rid: str) -> str:
    return f"SELECT max(checked_at) FROM conformance_checks WHERE run_id = {rid}"


def linkable_series(rid: str) -> str:
    return f"SELECT count(*) FROM linkability WHERE run_id = {rid} AND matched > 0"


def count(rid: str, recipient: str, reason: str) -> str:
    return (
        f"SELECT coalesce(sum(n), 0) FROM counts WHERE run_id = {rid} AND recipient = "
        f"{q(recipient)} AND reason = {q(reason)}"
    )


def counts(rid: str, recipient: str) -> str:
    return (
        f"SELECT reason, sum(n) AS n FROM counts WHERE run_id = {rid} AND recipient = "
        f"{q(recipient)} GROUP BY reason ORDER BY reason"
    )


def conformance(rid: str, recipient: str) -> str:
    return (
        f'SELECT expectation, "column", success, observed FROM conformance WHERE run_id = {rid} '
        f'AND recipient = {q(recipient)} ORDER BY expectation, "column"'
    )


def manifest_hash(rid: str, recipient: str) -> str:
    return f"SELECT sha256 FROM manifests WHERE run_id = {rid} AND recipient = {q(recipient)}"


def dead_letters(rid: str) -> str:
    return (
        f"SELECT stage, category, n FROM dead_letters_by_category WHERE run_id = {rid} "
        "ORDER BY stage, category"
    )


def linkability(rid: str) -> str:
    return (
        f"SELECT recipient, other, series, matched FROM linkability WHERE run_id = {rid} "
        "ORDER BY recipient, other"
    )


def expirations() -> str:
    return (
        "SELECT recipient, run_id, reason, as_of, count(*) AS files, sum(rows) AS rows, "
        "CAST(min(expired_at) AS VARCHAR) AS expired_at FROM expirations GROUP BY recipient, run_id, reason, as_of "
        "ORDER BY as_of, recipient, run_id"
    )

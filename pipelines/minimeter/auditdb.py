"""Opening the audit database (``OUT/_audit/audit.duckdb``) with one-line errors.

Every reader and writer of the audit opens it here: a file that is not a DuckDB database, a
database locked by another process or one that cannot be read is ``input-unreadable`` (exit 3),
never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from minimeter.errors import ConfigError


def open_audit(db: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the audit database ``db``."""
    try:
        return duckdb.connect(str(db), read_only=read_only)
    except duckdb.Error as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        for name in (str(db.absolute()), str(db)):  # the path is already in the line
            reason = reason.replace(f'"{name}" ', "").replace(name, "the file")
        reason = reason[:200]
        raise ConfigError(
            f"{db}: cannot open the audit database ({reason})", "input-unreadable"
        ) from None

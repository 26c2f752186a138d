"""Opening the audit database (``OUT/_audit/audit.duckdb``) with one-line errors.

Every reader and writer of the audit opens it here: a file that is not a DuckDB database, a
database locked by another process or one that cannot be read is ``input-unreadable`` (exit 3),
never a traceback.

DuckDB needs a local file. An audit in an object store (``minimeter.storage.ObjectPath``) is
downloaded into a temporary file for each opening; a writable opening uploads it back when it is
closed after a commit (one upload: the object is replaced whole, so that upload is the commit a
reader sees). Writers of ``--out`` hold its lock, so no two writers race on the object.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from minimeter.errors import ConfigError
from minimeter.storage import AnyPath, ObjectPath


class RemoteAudit:
    """A connection to the local copy of an audit that lives in an object store."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, local: Path, remote: ObjectPath, *, write: bool
    ) -> None:
        self._con, self._local, self._remote, self._write = con, local, remote, write
        self._closed = self._failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._call(self._con.execute, *args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._call(self._con.executemany, *args, **kwargs)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        try:
            return method(*args, **kwargs)  # type: ignore[no-any-return]
        except BaseException:
            self._failed = True  # a writer that failed uploads nothing
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._con.close()  # the last connection checkpoints: one file holds everything
            if self._write and not self._failed:
                self._remote.write_bytes(self._local.read_bytes())
        finally:
            shutil.rmtree(self._local.parent, ignore_errors=True)


def open_audit(db: AnyPath, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the audit database ``db``."""
    if isinstance(db, ObjectPath):
        return _open_remote(db, read_only=read_only)
    try:
        return duckdb.connect(str(db), read_only=read_only)
    except duckdb.Error as exc:
        raise _unreadable(db, exc) from None


def _unreadable(db: AnyPath, exc: BaseException, shown: tuple[str, ...] = ()) -> ConfigError:
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    for name in (*shown, str(db.absolute()), str(db)):  # the path is already in the line
        reason = reason.replace(f'"{name}" ', "").replace(name, "the file")
    reason = reason[:200]
    return ConfigError(f"{db}: cannot open the audit database ({reason})", "input-unreadable")


def _open_remote(db: ObjectPath, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    folder = Path(tempfile.mkdtemp(prefix="minimeter-audit-"))
    local = folder / "audit.duckdb"
    try:
        if db.is_file():
            local.write_bytes(db.read_bytes())
        elif read_only:
            raise FileNotFoundError(2, "No such object", str(db))
        con = duckdb.connect(str(local), read_only=read_only)
    except (duckdb.Error, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise _unreadable(db, exc, (str(local),)) from None
    return RemoteAudit(con, local, db, write=not read_only)  # type: ignore[return-value]

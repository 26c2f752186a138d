"""Writing a file so that readers see the old one or the complete new one, never a partial one.

Every writer of Minimeter's local files goes through ``atomic_write``: data files, relayed
messages, manifests and their signatures, indexes, the publish record, the state chain, the run
summary and the CLI's outputs. ``durable=True`` also flushes the file and its directory to disk
before returning, for the records a crashed machine must find as they were (the publish record,
the state chain, manifests): a rename is atomic, but without ``fsync`` it may reach the disk
before the data it names. In an object store (``minimeter.storage.ObjectPath``) one upload is
both: an object appears whole once its upload completes, and only then.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from minimeter.storage import AnyPath, ObjectPath


def atomic_write(
    path: AnyPath, data: bytes, *, durable: bool = False, parents: bool = True
) -> None:
    """Write ``data`` to ``path`` by a temporary file in the same directory and one rename
    (``parents``: create missing directories; otherwise a missing one is an ``OSError``)."""
    if isinstance(path, ObjectPath):
        path.write_bytes(data)
        return
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():  # a device, a FIFO, a directory: never replaced
        with path.open("wb") as target:  # written into as it is (a directory raises OSError)
            target.write(data)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # a new file of our own (never an existing one, never through a symlink), mode by umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(path.parent)


def sync_tree(root: AnyPath) -> None:
    """Flush every file and directory below ``root`` to disk (before a record that names them)."""
    if isinstance(root, ObjectPath) or not root.is_dir():
        return
    for directory, _dirs, files in os.walk(root):
        for name in files:
            _fsync(Path(directory, name))
        _fsync(Path(directory))


def sync_directory(path: AnyPath) -> None:
    """Flush a directory's entries (files created, renamed or removed in it) to disk."""
    if isinstance(path, Path):
        _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

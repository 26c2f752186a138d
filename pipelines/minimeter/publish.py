"""A run's life in its output folder: the lock, staging, publishing, recovery (no Beam here).

1. ``OutLock`` holds ``OUT/_lock`` for the whole run: a second run fails at once, naming the
   holder; a lock whose process is gone (same host, pid dead or reused) is taken over.
2. The job writes into ``_staging/<run id>/`` only (``minimeter.layout``): recipients see
   nothing of a run before it is published.
3. After conformance the run writes its commit record (``publish.json``: which recipient trees
   are published, which quarantined) and then commits the audit; the audit's ``runs`` row
   carries the record's publish id. That commit is the point of no return.
4. ``apply_publish`` carries the record out: it replaces the run's earlier published trees (a
   re-run), renames each staged recipient tree into ``<recipient>/runs/<run id>`` (one rename: a
   tree appears with its signed manifest), moves failing trees to ``_quarantine/<run id>/``,
   publishes dead letters and carried state, rewrites the recipients' signed indexes, and
   removes the staging. Every step is idempotent.
5. ``recover`` runs under the lock before a run starts: a staging whose record the audit
   committed is carried out (step 4); any other staging is a dead run's, and is removed. Earlier
   published runs are never touched by either.

On a POSIX file system (local disk or a shared mount) the lock is an ``O_EXCL`` file and every
move one rename. In an object store (``s3://``, ``gs://``) the lock is a conditional put and a
move copies a tree's objects, manifest last, then deletes the sources (``minimeter.storage``);
publishing is idempotent either way, so a killed publish is finished by the next run. A lock
left by a process on another host is never taken over: remove ``OUT/_lock`` once that run is
known to be dead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from minimeter.errors import MinimeterError
from minimeter.files import atomic_write, sync_directory, sync_tree
from minimeter.layout import OutLayout, Staging
from minimeter.storage import (
    AnyPath,
    create_exclusive,
    move_tree,
    moved_already,
    remove_tree,
    subfolders,
)

CRASH_AT = "MINIMETER_CRASH_AT"
"""Fault injection for the tests: the run kills itself (SIGKILL) at the named point."""


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class OutLocked(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("out-locked", detail)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (so that a reused pid is told apart), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class LockHolder:
    run_id: str
    pid: int
    host: str
    since: str
    start: str | None = None

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since})"


@contextmanager
def OutLock(layout: OutLayout, run_id: str, *, at: datetime | None = None) -> Iterator[LockHolder]:  # noqa: N802
    """Hold ``OUT/_lock`` for the duration of the block."""
    layout.root.mkdir(parents=True, exist_ok=True)
    me = LockHolder(
        run_id,
        os.getpid(),
        socket.gethostname(),
        (at or datetime.now(UTC)).isoformat(timespec="seconds"),
        _process_start(os.getpid()),
    )
    for _ in range(3):
        if not create_exclusive(layout.lock, json.dumps(asdict(me)).encode()):
            holder = read_lock(layout)
            if holder is None or (holder.host == me.host and not _alive(holder.pid, holder.start)):
                _take_over(layout, holder)
                continue
            raise OutLocked(f"{layout.root} is held by {holder.describe()}") from None
        break
    else:  # pragma: no cover - three races lost in a row
        raise OutLocked(f"{layout.root}: could not take the lock")
    try:
        yield me
    finally:
        if read_lock(layout) == me:
            layout.lock.unlink(missing_ok=True)


def read_lock(layout: OutLayout) -> LockHolder | None:
    """The holder of the lock; None when there is no lock or it names nobody (unparsable). A
    lock that cannot be read is never taken for a missing one."""
    try:
        text = layout.lock.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutLocked(f"{layout.lock}: cannot read the lock ({exc.strerror or exc})") from None
    try:
        return LockHolder(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _take_over(layout: OutLayout, holder: LockHolder | None) -> None:
    """Remove a dead holder's lock (only if it is still that holder's)."""
    if read_lock(layout) == holder:
        layout.lock.unlink(missing_ok=True)


# --- the commit record ------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishRecord:
    run_id: str
    publish_id: str
    published: tuple[str, ...]
    """Recipients whose staged trees are published."""
    quarantined: tuple[str, ...]
    recipients: tuple[str, ...]
    """Every recipient of the policy set: their earlier trees of this run id are replaced."""
    state: bool
    """Whether the run took part in carrying readings between runs (then it becomes the head of
    the chain, even when it carries nothing on: its successor must not take older state)."""
    consumed_state: str | None
    """The run whose carried readings this run consumed."""

    def write(self, staging: Staging) -> None:
        """The commit: the staged files are on disk before the record that publishes them."""
        sync_tree(staging.base)
        data = json.dumps(asdict(self), sort_keys=True).encode()
        atomic_write(staging.publish_record, data, durable=True)

    @classmethod
    def read(cls, staging: Staging) -> PublishRecord | None:
        try:
            doc = json.loads(staging.publish_record.read_text())
            return cls(
                run_id=str(doc["run_id"]),
                publish_id=str(doc["publish_id"]),
                published=tuple(doc["published"]),
                quarantined=tuple(doc["quarantined"]),
                recipients=tuple(doc["recipients"]),
                state=bool(doc["state"]),
                consumed_state=doc["consumed_state"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _publish_id_of(tree_manifest: AnyPath) -> str | None:
    try:
        return str(json.loads(tree_manifest.read_text()).get("publish_id"))
    except (OSError, ValueError, AttributeError):
        return None


def _replace_dir(source: AnyPath, target: AnyPath, trash: AnyPath) -> None:
    """``source`` becomes ``target``; an existing ``target`` goes to ``trash`` first. The
    rename reaches the disk before the caller goes on (the staging folder, which holds the
    commit record, is removed only after every rename is durable)."""
    if moved_already(source):  # an object-store move killed while deleting its source
        move_tree(source, target)  # (finishes the deletion; target is complete)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        if trash.exists():
            remove_tree(trash)
        move_tree(target, trash)
    move_tree(source, target)
    sync_directory(target.parent)


def apply_publish(
    layout: OutLayout, record: PublishRecord, write_index: Callable[[str], None]
) -> None:
    """Carry out a committed record (idempotent: a killed publish is finished by ``recover``)."""
    staging = layout.staging(record.run_id)
    for n, rid in enumerate(record.recipients):
        staged = staging.recipient(rid)
        published = layout.published(rid, record.run_id)
        touched = False
        if rid in record.published and staged.base.is_dir():
            _replace_dir(staged.base, published.base, staging.replaced / rid)
            touched = True
        elif published.base.is_dir() and _publish_id_of(published.manifest) != record.publish_id:
            remove_tree(published.base)  # an earlier attempt of this run id, now not published
            touched = True
        if rid in record.quarantined and staged.base.is_dir():
            q = layout.quarantine(record.run_id, rid)
            _replace_dir(staged.base, q.base, staging.replaced / f"_quarantine-{rid}")
        if touched or rid in record.published:
            write_index(rid)  # right after the rename: the index lags by one step at most
        if n == len(record.recipients) // 2:
            crash_point("mid-publish")
    if staging.dead_letters.is_file():
        target = layout.dead_letters(record.run_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        move_tree(staging.dead_letters, target)
        sync_directory(target.parent)
    if staging.state.is_dir():
        _replace_dir(staging.state, layout.state(record.run_id), staging.replaced / "_state")
    if record.state or layout.state_index.exists():
        set_state_head(layout, record.run_id, record.consumed_state)
    remove_tree(staging.base, ignore_errors=True)
    _remove_if_empty(layout.staging_root)


def _remove_if_empty(path: AnyPath) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def recover(
    layout: OutLayout,
    committed: Callable[[str], str | None],
    write_index: Callable[[str], None],
) -> list[str]:
    """Finish committed publishes and remove dead runs' staging. ``committed(run_id)`` is the
    publish id the audit holds for a run (None when it holds none). Returns what was done."""
    done = []
    for staging in layout.stagings():
        record = PublishRecord.read(staging)
        if record is not None and committed(record.run_id) == record.publish_id:
            apply_publish(layout, record, write_index)
            done.append(f"finished publishing run {staging.run_id}")
        else:
            remove_tree(staging.base, ignore_errors=True)
            done.append(f"removed the staging of unfinished run {staging.run_id}")
    _remove_if_empty(layout.staging_root)
    return done


# --- carried state chain ----------------------------------------------------------------------


def state_chain(layout: OutLayout) -> dict[str, object]:
    try:
        doc = json.loads(layout.state_index.read_text())
        if isinstance(doc, dict):
            return doc
    except (OSError, ValueError):
        pass
    return {"head": None, "runs": {}}


def set_state_head(layout: OutLayout, run_id: str, consumed: str | None) -> None:
    doc = state_chain(layout)
    runs = dict(doc.get("runs", {}))  # type: ignore[call-overload]
    runs[run_id] = {"consumed": consumed}
    doc = {"head": run_id, "runs": runs}
    atomic_write(layout.state_index, json.dumps(doc, sort_keys=True).encode(), durable=True)
    for name in subfolders(layout.state_root):
        if name not in (run_id, consumed):  # only the head and what it consumed are kept
            remove_tree(layout.state(name), ignore_errors=True)


def state_to_consume(layout: OutLayout, run_id: str) -> str | None:
    """The run whose carried readings ``run_id`` takes: what it took before (a re-run), else the
    head of the chain."""
    doc = state_chain(layout)
    runs = doc.get("runs", {})
    assert isinstance(runs, dict)
    if run_id in runs:
        consumed = runs[run_id].get("consumed")
        return consumed if consumed and layout.state(consumed).is_dir() else None
    head = doc.get("head")
    return str(head) if head and layout.state(str(head)).is_dir() else None

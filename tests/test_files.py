"""``minimeter.files``: readers see the old file or the whole new one, and a failed write leaves
neither a partial file nor a temporary one behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minimeter.files import atomic_write, sync_tree


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_write_replaces_whole_files(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "a" / "b" / "manifest.json"
    atomic_write(target, b"first", durable=durable)
    atomic_write(target, b"second", durable=durable)
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.fsync`` is called on (the real fsync still runs)."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_sync_tree_flushes_every_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "r" / "runs").mkdir(parents=True)
    (tmp_path / "r" / "runs" / "x.parquet").write_bytes(b"x")
    (tmp_path / "r" / "manifest.json").write_bytes(b"{}")
    calls = fsynced(monkeypatch)
    sync_tree(tmp_path)
    sync_tree(tmp_path / "absent")
    expected = {
        str(tmp_path),
        str(tmp_path / "r"),
        str(tmp_path / "r" / "runs"),
        str(tmp_path / "r" / "runs" / "x.parquet"),
        str(tmp_path / "r" / "manifest.json"),
    }
    assert sorted(calls) == sorted(expected)


@pytest.mark.parametrize("durable", [False, True])
def test_a_durable_write_flushes_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    calls = fsynced(monkeypatch)
    atomic_write(tmp_path / "publish.json", b"{}", durable=durable)
    tmp = [c for c in calls if c.endswith(".tmp")]  # the file, before its rename
    assert (len(tmp), calls.count(str(tmp_path))) == ((1, 1) if durable else (0, 0))


def test_no_directory_is_made_for_a_users_output_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "typo" / "summary.json", b"{}", parents=False)
    assert not (tmp_path / "typo").exists()


def test_a_device_or_fifo_is_written_into_never_replaced(tmp_path: Path) -> None:
    """``--out /dev/full`` must fail (no space), not swap the device for a regular file; a FIFO
    gets the bytes; a directory is an error."""
    with pytest.raises(OSError):
        atomic_write(Path("/dev/full"), b"x", parents=False)
    assert not Path("/dev/full").is_file()
    with pytest.raises(OSError):
        atomic_write(tmp_path, b"x", parents=False)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write(fifo, b"through the pipe", parents=False)
    reader.join(timeout=10)
    assert got == [b"through the pipe"] and not fifo.is_file()

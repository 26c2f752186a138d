"""``minimeter.files``: readers see the old file or the whole new one, and a failed write leaves
neither a partial file nor a temporary one behind."""

from __future__ import annotations

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


def test_sync_tree_reads_nothing_it_should_not(tmp_path: Path) -> None:
    (tmp_path / "r" / "runs").mkdir(parents=True)
    (tmp_path / "r" / "runs" / "x.parquet").write_bytes(b"x")
    sync_tree(tmp_path)  # flushes files and directories; changes nothing
    sync_tree(tmp_path / "absent")
    assert (tmp_path / "r" / "runs" / "x.parquet").read_bytes() == b"x"

"""``--out`` in an object store, the store operations: ObjectPath as the layout uses it, moves
with the manifest last, the lock's conditional put, against a real S3-protocol server (moto's
server, tests/s3_server.py) through Beam's own S3 file system. Whole runs into S3 are in
tests_stores/ (``make test-stores``): each costs minutes here, because Beam's S3 file system
makes a new boto3 client for every call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pipeline_helpers import run_cli
from s3_server import BUCKET, keys

from minimeter.storage import ObjectPath, create_exclusive, move_tree, remove_tree


def test_object_paths_behave_as_the_layout_expects(s3: dict[str, str]) -> None:
    root = ObjectPath(f"s3://{BUCKET}/unit")
    (root / "a" / "data" / "date=2026-01-01" / "r.parquet").write_bytes(b"p")
    (root / "a" / "forward" / "m.cms").write_bytes(b"f")
    (root / "a" / "manifest.json").write_bytes(b"{}")
    (root / "a" / "manifest.json.p7s").write_bytes(b"sig")
    assert (root / "a").is_dir() and not (root / "a").is_file()
    assert (root / "a" / "manifest.json").is_file() and not (root / "nothing").exists()
    assert [p.name for p in (root / "a").iterdir()] == [
        "data",
        "forward",
        "manifest.json",
        "manifest.json.p7s",
    ]
    assert [str(p) for p in (root / "a").glob("data/date=*/*.parquet")] == [
        f"s3://{BUCKET}/unit/a/data/date=2026-01-01/r.parquet"
    ]
    with pytest.raises(FileNotFoundError):
        (root / "missing.json").read_bytes()
    # a moved tree: everything arrives, the manifest and its signature last
    move_tree(root / "a", root / "b")
    assert keys(f"s3://{BUCKET}/unit") == [
        "b/data/date=2026-01-01/r.parquet",
        "b/forward/m.cms",
        "b/manifest.json",
        "b/manifest.json.p7s",
    ]
    assert (root / "b" / "forward" / "m.cms").read_bytes() == b"f"
    remove_tree(root / "b")
    assert keys(f"s3://{BUCKET}/unit") == []


def test_the_lock_is_a_conditional_put(s3: dict[str, str]) -> None:
    lock = ObjectPath(f"s3://{BUCKET}/lock-unit/_lock")
    assert create_exclusive(lock, b"first") is True
    assert create_exclusive(lock, b"second") is False
    assert lock.read_bytes() == b"first"


def test_out_on_a_scheme_without_its_extras_is_one_usage_line(synth_dir: Path) -> None:
    proc = run_cli(synth_dir, "gs://no-such-bucket/out", "--no-progress")  # type: ignore[arg-type]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("minimeter: usage: --out: ")
    assert "Traceback" not in proc.stderr


def test_a_store_that_cannot_be_reached_is_one_line_in_seconds(synth_dir: Path) -> None:
    """Beam's S3 calls retry for minutes; Minimeter checks the bucket first, with short timeouts."""
    import subprocess
    import sys

    from s3_server import free_port

    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    anchor = str(synth_dir / "pki" / "pseudonymiser-root.pem")
    verify = subprocess.run(
        [sys.executable, "-m", "minimeter", "verify", "s3://nowhere-bucket/out", "--trust-anchor", anchor],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert verify.returncode == 3, verify.stderr
    assert verify.stderr.startswith("minimeter: input-unreadable: --out: s3://nowhere-bucket/out: ")
    assert "cannot reach the store" in verify.stderr and verify.stderr.count("\n") == 1
    run = run_cli(synth_dir, Path("/tmp/unused"), "--no-progress", pattern="s3://nowhere-bucket/in/*.cms", env=env)  # fmt: skip
    assert (
        run.returncode == 3 and "--input: s3://nowhere-bucket/in/*.cms: cannot reach" in run.stderr
    )
    out = run_cli(synth_dir, "s3://nowhere-bucket/out", "--no-progress", env=env)  # type: ignore[arg-type]
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("minimeter: output-unwritable: --out: s3://nowhere-bucket/out: ")


def test_a_move_killed_while_deleting_is_finished_not_redone(s3: dict[str, str]) -> None:
    """A published tree (copied whole) and the remnant of its staged source, marked moved: the
    next publish deletes the remnant and leaves the tree as it is (it never trashes the
    complete tree for the remnant)."""
    from minimeter.publish import _replace_dir
    from minimeter.storage import MOVED, moved_already

    root = ObjectPath(f"s3://{BUCKET}/remnant")
    staged, published = root / "staged", root / "published"
    for name in ("data/date=2026-01-01/r.parquet", "manifest.json", "manifest.json.p7s"):
        (published / name).write_bytes(name.encode())
    (staged / "data" / "date=2026-01-01" / "r.parquet").write_bytes(b"left over")
    (staged / MOVED).write_bytes(published.url.encode())
    assert moved_already(staged)
    _replace_dir(staged, published, root / "trash")
    assert keys(f"s3://{BUCKET}/remnant") == [
        "published/data/date=2026-01-01/r.parquet",
        "published/manifest.json",
        "published/manifest.json.p7s",
    ]
    assert (published / "data" / "date=2026-01-01" / "r.parquet").read_bytes() == (
        b"data/date=2026-01-01/r.parquet"
    )


def test_removing_a_tree_leaves_a_tree_whose_name_it_prefixes(
    s3: dict[str, str],
) -> None:
    root = ObjectPath(f"s3://{BUCKET}/removal")
    for tree in ("runs/d1", "runs/d10"):
        for name in ("data/x.parquet", "manifest.json", "manifest.json.p7s"):
            (root / tree / name).write_bytes(b"x")
    remove_tree(root / "runs" / "d1")
    assert keys(f"s3://{BUCKET}/removal") == [
        "runs/d10/data/x.parquet",
        "runs/d10/manifest.json",
        "runs/d10/manifest.json.p7s",
    ]

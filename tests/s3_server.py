"""A real S3-protocol server for the object-store tests: moto's server in its own process on a
local port, and the environment that points boto3 (and so Beam's S3 file system) at it.

Used by tests/test_object_store.py (``make test``) and tests_stores/ (``make test-stores``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_helpers import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "engines"))
from engines import free_port, wait_for  # noqa: E402  (the engine scripts' own helpers)

BUCKET = "minimeter-test"
DAYS = ("2026-01-09", "2026-01-10", "2026-01-11")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server; the environment that points boto3 (and so Beam) at it."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    env = {
        "AWS_ACCESS_KEY_ID": "minimeter",
        "AWS_SECRET_ACCESS_KEY": "minimeter-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_for(port, 60)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        from minimeter.storage import configure

        configure([])
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def download(url: str, target: Path) -> Path:
    """Every object below ``url`` into ``target`` (for the local checks of what S3 holds)."""
    import boto3

    prefix = url.removeprefix(f"s3://{BUCKET}/").rstrip("/") + "/"
    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            local = target / obj["Key"][len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, obj["Key"], str(local))
    return target


def keys(url: str) -> list[str]:
    import boto3

    prefix = url.removeprefix(f"s3://{BUCKET}/").rstrip("/") + "/"
    client = boto3.client("s3")
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
    return sorted(found)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minimeter", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def day_run(fleet: Path, out: str, day: str, run_id: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    pattern = str(fleet / "messages" / day / "*.cms")
    return run_cli(fleet, out, "--no-progress", run_id=run_id, pattern=pattern, env=env)  # type: ignore[arg-type]

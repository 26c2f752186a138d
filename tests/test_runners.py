"""The same fleet through three Beam runners gives identical datasets.

(a) FnApiRunner in memory, (b) FnApiRunner with two worker processes, (c) PortableRunner against
Beam's Python job service with an EXTERNAL worker pool: separate worker processes, the
portability path Flink, Spark and Dataflow use for Python. Also (a) with ``--no-spill``: decoded
readings in the runner's shuffle instead of the encrypted spill give the same datasets. The
fleet holds a conflict (one message again with a changed value) and a plain duplicate, and
(b) runs twice: whichever worker sees which message first, the deliveries, dead letters and the
audit's conflicts are the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from pipeline_helpers import all_rows, run_cli

from minimeter.cms import CmsSigner, TrustStore, encrypt_envelope, open_message
from minimeter.keys import load_certificates, load_private_key
from minimeter.synth.generate import DEFAULT_FORWARD_RECIPIENT, SynthConfig, synthesize
from minimeter.synth.pki import TestPki as SynthPki

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "engines"))
from engines import free_port, wait_for  # noqa: E402  (the engine scripts' own helpers)

SEED, START = 9, date(2026, 1, 12)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runner-fleet")
    synthesize(
        SynthConfig(
            out=out,
            meters=16,
            days=2,
            start=START,
            seed=SEED,
            faults=0.1,
            forward_share=0.1,
        ),
        progress=False,
    )
    add_conflict_and_duplicate(out)
    return out


def add_conflict_and_duplicate(fleet: Path) -> None:
    """Two messages that race: one of meter A's day messages again with one register value
    changed (a conflict: neither value may be delivered, whichever worker sees it first), and a
    byte-identical copy of another message under a second name (a plain duplicate)."""
    pki_dir = fleet / "pki"
    messages = pd.read_csv(fleet / "truth" / "messages.csv")
    faulty = set(pd.read_csv(fleet / "faults.csv").message)
    hub = messages[(messages.route == "hub") & ~messages.message.isin(faulty)]
    a, b = hub.iloc[0], hub.iloc[-1]
    hub_cert = load_certificates(pki_dir / "hub-cert.pem")[0]
    data = open_message(
        (fleet / a.message).read_bytes(),
        recipient_key=load_private_key(pki_dir / "hub-key.pem"),
        recipient_cert=hub_cert,
        trust=TrustStore.from_files(
            [pki_dir / "trust-anchor.pem"], [pki_dir / "intermediates.pem"]
        ),
        at=datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=3),
    ).payload
    text = (zlib.decompress(data) if data[:1] == b"\x78" else data).decode()
    head, sep, tail = text.partition("long64>")
    value, rest = tail.split("<", 1)
    changed = f"{head}{sep}{int(value) + 1}<{rest}"
    pki = SynthPki.create(
        f"minimeter-synth/{SEED}".encode(),
        start=datetime(START.year, START.month, START.day, tzinfo=UTC),
        forward_recipients=(DEFAULT_FORWARD_RECIPIENT,),
    )
    gateway = pki.gateway(
        pd.read_csv(fleet / "meters.csv").set_index("meter").loc[a.meter, "gateway"]
    )
    signer = CmsSigner(gateway.key, gateway.cert, [pki.subca.cert])
    content_type, envelope = encrypt_envelope(changed.encode(), [hub_cert])
    day = date.fromisoformat(a.day)
    sent = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, minutes=7)
    extra = fleet / "messages" / "extra"
    extra.mkdir()
    (extra / "conflicting.cms").write_bytes(signer.sign(envelope, content_type, at=sent))
    (extra / "duplicate.cms").write_bytes((fleet / b.message).read_bytes())


def audit(out: Path, table: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    try:
        return sorted(map(tuple, con.execute(f"SELECT * EXCLUDE (run_id) FROM {table}").fetchall()))
    finally:
        con.close()


@pytest.fixture(scope="module")
def portable_services() -> Iterator[tuple[int, int]]:
    """A local job service and an external worker pool, with this venv's python first on PATH."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    job_port, pool_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(job_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={pool_port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_for(job_port)
        wait_for(pool_port)
        yield job_port, pool_port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_three_runners_give_identical_datasets(
    fleet: Path, tmp_path: Path, portable_services: tuple[int, int]
) -> None:
    job_port, pool_port = portable_services
    runs = {
        "in_memory": ["--direct_running_mode=in_memory"],
        "in_memory_no_spill": ["--direct_running_mode=in_memory", "--no-spill"],
        "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        "multi_processing_again": [
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ],
        "portable": [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ],
    }
    results = {}
    for name, args in runs.items():
        out = tmp_path / name
        proc = run_cli(fleet, out, *args, run_id="same")
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        assert "[balanced]" in proc.stdout
        results[name] = all_rows(out)
        dead = sorted((out / "_dead_letters").glob("*.parquet"))
        results[name]["_dead"] = [(p.name, p.read_bytes()) for p in dead]  # type: ignore[list-item]
        results[name]["_forward"] = sorted(  # type: ignore[assignment]
            p.name for p in out.glob("*/runs/*/forward/*.cms")
        )
        results[name]["_conflicts"] = audit(out, "conflicts")
        results[name]["_counts"] = audit(out, "counts")
    reference = results["in_memory"]
    assert sum(len(v) for k, v in reference.items() if not k.startswith("_")) > 1000
    (messages, *_), *more = reference["_conflicts"]  # one conflict, both messages named
    assert not more and "extra/conflicting.cms" in messages and len(messages) == 2
    counted: dict[object, int] = {}
    for _recipient, reason, n in reference["_counts"]:
        counted[reason] = counted.get(reason, 0) + int(n)  # type: ignore[call-overload]
    assert counted.get("dropped-conflict", 0) > 0 and counted.get("dropped-duplicate", 0) > 0
    for name in ("in_memory_no_spill", "multi_processing", "multi_processing_again", "portable"):
        assert results[name] == reference, name

"""The engines from Python: the clusters of ``flink.sh`` / ``spark.sh``, Beam's job-server jars,
an external Beam worker pool, and the ``minimeter run`` options for each runner.

Used by tests/engines and benchmarks/bench_engines.py, so that the tests, the benchmark and the
README run the same commands. The versions are those of ``versions.env`` (printed by
``<engine>.sh env``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NOT_SERVED = 3
"""The scripts' exit status when Maven does not serve a jar."""


class JobServerUnavailable(RuntimeError):
    """Beam's job-server jar for an engine cannot be had from the Maven repository reached here."""


class ToolMissing(RuntimeError):
    """Java or Maven is not installed."""


def require_tools() -> None:
    """Java and Maven, or a clear error (the engine tests fail, never skip, without them)."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise ToolMissing(
            f"{' and '.join(missing)} not found on PATH: the engine tests need a JDK 11+ (17 on "
            "this project's machines) and Maven (Debian: apt-get install openjdk-17-jdk-headless maven)"
        )


def script(engine: str, action: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(HERE / f"{engine}.sh"), action],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{engine}.sh {action} exited {proc.returncode}:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}"
        )
    return proc


@cache
def settings(engine: str) -> dict[str, str]:
    """``<engine>.sh env``: versions, ports and the jar's path in the cache."""
    out = script(engine, "env").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def job_server_jar(engine: str) -> Path:
    """Beam's job-server jar for ``engine``, fetched once into the cache with Maven."""
    require_tools()
    proc = script(engine, "jobserver", check=False)
    if proc.returncode == NOT_SERVED:
        raise JobServerUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{engine}.sh jobserver exited {proc.returncode}: {proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@contextmanager
def cluster(engine: str) -> Iterator[dict[str, str]]:
    """The engine's local cluster, up for the block; stopped afterwards if this call started it."""
    require_tools()
    was_up = script(engine, "status", check=False).returncode == 0
    script(engine, "up")
    try:
        yield settings(engine)
    finally:
        if not was_up:
            script(engine, "down", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def venv_env() -> dict[str, str]:
    """This venv's python first on PATH (Beam's worker pool starts workers with ``python``)."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@contextmanager
def worker_pool() -> Iterator[int]:
    """Beam's external worker pool (``worker_pool_main``): one SDK worker process per engine
    task that asks for one, as a worker pool beside each TaskManager / executor would on a
    cluster. Yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={port}",
        ],
        env=venv_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def flink_args(jar: Path, *, parallelism: int, pool_port: int) -> list[str]:
    """``minimeter run`` options for the local Flink cluster (README "Running on other runners")."""
    s = settings("flink")
    return [
        "--runner=FlinkRunner",
        f"--flink_master=localhost:{s['FLINK_REST_PORT']}",
        f"--flink_version={s['FLINK_MINOR']}",
        f"--flink_job_server_jar={jar}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool_port}",
        f"--parallelism={parallelism}",
        "--no-spill",
    ]


def spark_args(jar: Path, *, pool_port: int) -> list[str]:
    """``minimeter run`` options for the local Spark cluster."""
    s = settings("spark")
    return [
        "--runner=SparkRunner",
        f"--spark_master_url={s['SPARK_MASTER_URL']}",
        f"--spark_job_server_jar={jar}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool_port}",
        "--no-spill",
    ]

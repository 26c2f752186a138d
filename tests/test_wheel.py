"""The built wheel is runnable on its own: installed into a clean venv, run outside the checkout.

Issue 15 item 5: schemas, policies and DPIA records ship inside the package, so neither the
pipeline nor ``minimeter demo`` reads anything from the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# Built from a copy of the working tree, so that setuptools' in-tree build/ and *.egg-info
# neither land in the checkout nor leak stale files into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)
    dist = base / "dist"
    _ok(
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, src],
            cwd=base,
            timeout=600,
        )
    )
    (built,) = dist.glob("minimeter-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the venv's bin directory, pip's combined output)."""
    env_dir = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = _run(
        [
            bin_dir / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            ROOT / "requirements.lock",
            wheel,
        ],
        cwd=env_dir,
        timeout=1200,
    )
    _ok(pip)
    return bin_dir, pip.stdout + pip.stderr


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A working directory outside the checkout: no ./policies to fall back on."""
    cwd = tmp_path / "scratch"
    cwd.mkdir()
    assert not (cwd / "policies").exists()
    assert ROOT not in cwd.resolve().parents
    return cwd


def test_license_at_the_root() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_wheel_ships_resources_and_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "minimeter/resources/schemas/outputs.arrow.json" in names
    assert "minimeter/resources/schemas/recipient-policy.schema.json" in names
    assert "minimeter/__main__.py" in names
    assert any(n.startswith("minimeter/resources/policies/recipients/") for n in names)
    assert any(n.startswith("minimeter/resources/policies/baselines/") for n in names)
    assert any(n.startswith("minimeter/resources/dpia/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_install_is_quiet(installed: tuple[Path, str]) -> None:
    _, output = installed
    noisy = [
        line
        for line in output.splitlines()
        if "warning" in line.lower() or "deprecat" in line.lower()
    ]
    assert noisy == []


def test_version(installed: tuple[Path, str], scratch: Path) -> None:
    bin_dir, _ = installed
    from minimeter import __version__

    script = _ok(_run([bin_dir / "minimeter", "--version"], cwd=scratch, timeout=120))
    assert script.stdout.strip() == f"minimeter {__version__}"
    module = _ok(
        _run([bin_dir / "python", "-m", "minimeter", "--version"], cwd=scratch, timeout=120)
    )
    assert module.stdout.strip() == f"minimeter {__version__}"


def test_demo_runs_from_the_wheel(installed: tuple[Path, str], scratch: Path) -> None:
    bin_dir, _ = installed
    out = scratch / "demo"
    _ok(_run([bin_dir / "minimeter", "demo", "--out", out], cwd=scratch, timeout=900))
    assert list((out / "run").rglob("*.parquet")), "no recipient Parquet files written"
    assert (out / "run" / "_audit" / "audit.duckdb").is_file()

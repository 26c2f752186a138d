"""The ``minimeter cms`` command-line contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CmsWorld
from opensslkit import Identity, openssl, verify
from test_cms_interop import _name, make_message


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "minimeter.cli", *map(str, args)],
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def open_args(
    world: CmsWorld, message: Path, recipient: Identity | None = None
) -> list[str | Path]:
    who = recipient or world.hub
    return [
        "cms",
        "open",
        message,
        "--key",
        who.key,
        "--cert",
        who.cert,
        "--trust-anchor",
        world.root.cert,
        "--intermediate",
        world.subca.cert,
    ]


def test_open_writes_payload_to_stdout(world: CmsWorld) -> None:
    proc = run(*open_args(world, make_message(world, [world.hub])))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == world.payload.read_bytes()
    assert proc.stderr == b""


def test_open_writes_payload_to_file(world: CmsWorld, tmp_path: Path) -> None:
    out = tmp_path / "payload.xml"
    proc = run(*open_args(world, make_message(world, [world.hub])), "--out", out)
    assert proc.returncode == 0 and proc.stdout == b""
    assert out.read_bytes() == world.payload.read_bytes()


@pytest.mark.parametrize(
    "case,category",
    [("garbage", "malformed"), ("stranger", "not-a-recipient"), ("foreign", "untrusted-signer")],
)
def test_failure_is_one_line_on_stderr(
    world: CmsWorld, tmp_path: Path, case: str, category: str
) -> None:
    if case == "garbage":
        message = tmp_path / "garbage.cms"
        message.write_bytes(b"\x30\x03\x02\x01")
        recipient = None
    elif case == "stranger":
        message, recipient = make_message(world, [world.hub]), world.stranger
    else:
        message, recipient = make_message(world, [world.hub], signer=world.foreign), None
    proc = run(*open_args(world, message, recipient))
    assert proc.returncode == 1
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minimeter: {category}: "), lines
    assert "Traceback" not in proc.stderr.decode()


def test_too_large_input(world: CmsWorld, tmp_path: Path) -> None:
    big = tmp_path / "big.cms"
    big.write_bytes(b"\x30" * (16 * 1024 * 1024 + 1))
    proc = run(*open_args(world, big))
    assert proc.returncode == 1 and proc.stderr.decode().startswith(
        "minimeter: payload-too-large: "
    )


def test_resign_output_verifies_with_openssl(world: CmsWorld, tmp_path: Path) -> None:
    message = make_message(world, [world.hub], certfile=world.subca.cert)
    out = tmp_path / "resigned.cms"
    chain = tmp_path / "chain.pem"
    chain.write_bytes(world.ps_root.cert.read_bytes())
    proc = run(
        "cms",
        "resign",
        message,
        "--signer-key",
        world.pseudonymiser.key,
        "--signer-cert",
        world.pseudonymiser.cert,
        "--signer-chain",
        chain,
        "--trust-anchor",
        world.root.cert,
        "--intermediate",
        world.subca.cert,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert verify(out, world.ps_root.cert) == verify(message, world.root.cert)


def test_resign_to_stdout_is_der(world: CmsWorld) -> None:
    proc = run(
        "cms",
        "resign",
        make_message(world, [world.hub]),
        "--signer-key",
        world.pseudonymiser.key,
        "--signer-cert",
        world.pseudonymiser.cert,
        "--trust-anchor",
        world.root.cert,
        "--intermediate",
        world.subca.cert,
    )
    assert proc.returncode == 0 and proc.stdout[:1] == b"\x30"


def test_encrypted_and_traditional_keys(world: CmsWorld, tmp_path: Path) -> None:
    message = make_message(world, [world.hub])
    encrypted = tmp_path / "hub-enc.key"
    openssl("pkey", "-in", world.hub.key, "-aes256", "-passout", "pass:s3cret", "-out", encrypted)
    traditional = tmp_path / "hub-trad.key"
    openssl("ec", "-in", world.hub.key, "-out", traditional)
    assert b"BEGIN EC PRIVATE KEY" in traditional.read_bytes()
    for key, env, ok in (
        (encrypted, {"MINIMETER_KEY_PASSPHRASE": "s3cret"}, True),
        (encrypted, {"MINIMETER_KEY_PASSPHRASE": "wrong"}, False),
        (encrypted, {}, False),
        (traditional, {}, True),
    ):
        base_env = {k: v for k, v in os.environ.items() if k != "MINIMETER_KEY_PASSPHRASE"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "minimeter.cli",
                "cms",
                "open",
                str(message),
                "--key",
                str(key),
                "--cert",
                str(world.hub.cert),
                "--trust-anchor",
                str(world.root.cert),
                "--intermediate",
                str(world.subca.cert),
            ],
            capture_output=True,
            env={**base_env, **env},
            check=False,
        )
        if ok:
            assert proc.returncode == 0 and proc.stdout == world.payload.read_bytes(), proc.stderr
        else:
            assert proc.returncode == 1
            assert proc.stderr.decode().startswith("minimeter: config-invalid: ")
            assert "s3cret" not in proc.stderr.decode()


def test_missing_file_is_a_clear_error(world: CmsWorld) -> None:
    proc = run(*open_args(world, _name(world, "does-not-exist")))
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("minimeter: input-unreadable: ")

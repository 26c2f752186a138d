from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from fleets import SYNTH_ARGS, session_fleet  # noqa: E402, F401  (SYNTH_ARGS: for the tests)

from opensslkit import Identity, Pki  # noqa: E402

pytest_plugins = ["s3_server"]  # the fixture s3: a real S3-protocol server (moto's)


class CmsWorld:
    """One OpenSSL-made SM-PKI for the CMS tests."""

    def __init__(self, base: Path) -> None:
        self.base = base
        pki = self.pki = Pki(base / "pki")
        self.root = pki.root("sm-root")
        self.subca = pki.issue("sm-subca", self.root, profile="ca")
        self.gateway = pki.issue("gw-0001", self.subca)
        self.gateway_p384 = pki.issue("gw-0002", self.subca, curve="secp384r1")
        self.gateway_rsa = pki.issue("gw-rsa", self.subca, curve="rsa2048")
        self.expired = pki.issue(
            "gw-expired", self.subca, start="20200101000000Z", end="20210101000000Z"
        )
        self.no_sign = pki.issue("gw-nosign", self.subca, profile="nosign")
        self.other_root = pki.root("other-root")
        self.foreign = pki.issue("gw-foreign", self.other_root)
        self.hubs: dict[str, Identity] = {
            curve: pki.issue(f"hub-{curve}", self.subca, curve=curve, profile="enc_ec")
            for curve in (
                "brainpoolP256r1",
                "brainpoolP384r1",
                "brainpoolP512r1",
                "prime256v1",
                "secp384r1",
            )
        }
        self.hub = self.hubs["brainpoolP256r1"]
        self.hub_rsa = pki.issue("hub-rsa", self.subca, curve="rsa2048", profile="enc_rsa")
        self.stranger = pki.issue("stranger", self.subca, profile="enc_ec")
        self.ps_root = pki.root("pseudonymiser-root")
        self.pseudonymiser = pki.issue("pseudonymiser", self.ps_root)
        self.payload = base / "payload.xml"
        self.payload.write_bytes(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<profile>'
            + b"<v>42</v>" * 200
            + b"</profile>\n"
        )

    def path(self, name: str) -> Path:
        return self.base / name


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> CmsWorld:
    return CmsWorld(tmp_path_factory.mktemp("cms-world"))


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_fleet(tmp_path_factory)

"""``minimeter demo``: a CMS round trip on a freshly made test SM-PKI."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from minimeter.cms import TrustStore, open_message, resign, seal_message
from minimeter.synth.pki import TestPki


def run_demo(out: Path) -> int:
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    pki = TestPki.create(b"minimeter-demo", start=now)
    pki.write(out / "pki")
    gateway = pki.gateway("1EMH0012345678")
    payload = b"<profile_generic>demo reading 1-0:1.8.0 = 1234 Wh</profile_generic>"
    message = seal_message(
        payload, [pki.hub.cert], signer_key=gateway.key, signer_cert=gateway.cert,
        chain=[pki.subca.cert], at=now,
    )
    (out / "message.cms").write_bytes(message)
    trust = TrustStore((pki.root.cert,), (pki.subca.cert,))
    opened = open_message(message, recipient_key=pki.hub.key, recipient_cert=pki.hub.cert, trust=trust)
    assert opened.payload == payload
    relayed = resign(
        message, signer_key=pki.pseudonymiser.key, signer_cert=pki.pseudonymiser.cert,
        chain=[pki.pseudonymiser_subca.cert], trust=trust,
    )
    (out / "message.resigned.cms").write_bytes(relayed)
    print(f"PKI:       {out / 'pki'}")
    print(f"message:   {out / 'message.cms'} ({len(message)} bytes, {opened.cipher}, signed by a gateway)")
    print(f"opened:    {len(opened.payload)} payload bytes, recipient entry {opened.recipient}")
    print(f"re-signed: {out / 'message.resigned.cms'} (gateway signature replaced by the pseudonymiser's)")
    print(f"done in {time.perf_counter() - started:.2f} s")
    return 0

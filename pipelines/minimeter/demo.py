"""``minimeter demo``: a small synthetic fleet, opened end to end."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from pathlib import Path

from minimeter.cms import TrustStore, open_message
from minimeter.errors import CmsError
from minimeter.keys import load_certificates, load_private_key
from minimeter.synth.generate import SynthConfig, synthesize


def run_demo(out: Path) -> int:
    started = time.perf_counter()
    fleet = out / "fleet"
    summary = synthesize(SynthConfig(out=fleet, meters=100, days=7, start=date(2026, 1, 5)))
    print(f"synth: {summary.messages} messages, {summary.readings} readings -> {fleet}")
    pki = fleet / "pki"
    trust = TrustStore.from_files([pki / "trust-anchor.pem"], [pki / "intermediates.pem"])
    key, cert = load_private_key(pki / "hub-key.pem"), load_certificates(pki / "hub-cert.pem")[0]
    outcomes: Counter[str] = Counter()
    for path in sorted((fleet / "messages").rglob("*.cms")):
        try:
            open_message(path.read_bytes(), recipient_key=key, recipient_cert=cert, trust=trust)
            outcomes["opened"] += 1
        except CmsError as exc:
            outcomes[exc.category] += 1
    for outcome, n in sorted(outcomes.items()):
        print(f"  {outcome:24s} {n:6d}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0

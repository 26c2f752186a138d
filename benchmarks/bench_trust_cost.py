"""What the SM-PKI trust model's checks cost: open + re-sign now against the code before them.

Issue 13 added a content-signature profile check, bounded path building with look-alike
de-duplication, CRL lookups and the signing-time checks; it asks that they cost at most 5 % of
open + re-sign. This benchmark times open + re-sign of the same messages with this checkout's
code and with the code of a baseline revision (default ``891a97f``, the last commit before the
trust model), each in its own process on the same message files, alternating the two a few
times so that the machine's speed changes hit both alike. Every message comes from another
gateway and every round starts from a fresh trust store: each message pays its own path
validation, as in a daily run, where a gateway sends one message.

The baseline is checked out with ``git worktree`` into a temporary folder (removed at the end);
its module-wide memos then persist across rounds, which only favours the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from datetime import datetime, timezone
from pathlib import Path
import minimeter.cms as c
from minimeter.keys import load_certificates, load_private_key

d = Path(sys.argv[1]); rounds = int(sys.argv[2]); warm = sys.argv[3] == "warm"
messages = [p.read_bytes() for p in sorted((d / "messages").iterdir())]
root, subca = load_certificates(d / "root.pem")[0], load_certificates(d / "subca.pem")[0]
hub_key, hub_cert = load_private_key(d / "hub-key.pem"), load_certificates(d / "hub.pem")[0]
sig_key, sig_cert = load_private_key(d / "ps-key.pem"), load_certificates(d / "ps.pem")[0]
chain = load_certificates(d / "ps-chain.pem")
at = datetime.fromisoformat((d / "at.txt").read_text())

kept = c.TrustStore((root,), (subca,))

def one_round():
    trust = kept if warm else c.TrustStore((root,), (subca,))
    if hasattr(c, "Hub"):  # this checkout: the pipeline's prepared hub
        hub = c.Hub(recipient=c.EnvelopeRecipient(hub_key, hub_cert),
                    signer=c.CmsSigner(sig_key, sig_cert, chain), trust=trust)
        run = lambda m: hub.open_and_resign(m, at=at)
    else:  # the baseline: its one entry point (signer templates memoised module-wide)
        run = lambda m: c.open_and_resign(m, recipient_key=hub_key, recipient_cert=hub_cert,
                                          signer_key=sig_key, signer_cert=sig_cert, chain=chain,
                                          trust=trust, at=at)
    started = time.perf_counter()
    for m in messages:
        run(m)
    return (time.perf_counter() - started) / len(messages)

one_round()  # warm-up
print(json.dumps(sorted(one_round() for _ in range(rounds))))
"""


def write_inputs(base: Path, gateways: int) -> None:
    """One day message per gateway, sealed by this checkout's synth code, and the keys."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_cms import make_messages
    from cryptography.hazmat.primitives import serialization

    pki, messages, _payloads, _three = make_messages(gateways, 1)
    (base / "messages").mkdir()
    for i, m in enumerate(messages):
        (base / "messages" / f"{i:05d}.cms").write_bytes(m)

    def pem(cert: object) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]

    def key(k: object) -> bytes:
        return k.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    (base / "root.pem").write_bytes(pem(pki.root.cert))
    (base / "subca.pem").write_bytes(pem(pki.subca.cert))
    (base / "hub.pem").write_bytes(pem(pki.hub.cert))
    (base / "hub-key.pem").write_bytes(key(pki.hub.key))
    (base / "ps.pem").write_bytes(pem(pki.pseudonymiser.cert))
    (base / "ps-key.pem").write_bytes(key(pki.pseudonymiser.key))
    (base / "ps-chain.pem").write_bytes(pem(pki.pseudonymiser_subca.cert))
    (base / "at.txt").write_text("2026-01-06T12:00:00+00:00")


def measure(code: Path, inputs: Path, rounds: int, mode: str) -> list[float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(inputs), str(rounds), mode],
        env={"PYTHONPATH": str(code / "pipelines"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(t) for t in json.loads(proc.stdout)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="891a97f", help="revision before the trust model")
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alternations", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        base = Path(tmp)
        inputs, baseline = base / "inputs", base / "baseline"
        inputs.mkdir()
        write_inputs(inputs, args.gateways)
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "--detach",
                "-f",
                str(baseline),
                args.baseline,
            ],
            check=True,
            capture_output=True,
        )
        try:
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.alternations):
                for mode in ("cold", "warm"):
                    for side, code in (("before", baseline), ("now", ROOT)):
                        got = measure(code, inputs, args.rounds, mode)
                        times.setdefault((mode, side), []).extend(got)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                check=False,
                capture_output=True,
            )
    print(
        f"{args.gateways} day messages, one per gateway; {args.alternations} x {args.rounds} "
        f"rounds per side; before = {args.baseline} (no trust model), now = this checkout"
    )
    for mode, what in (
        ("cold", "a fresh trust store per round (a daily run: every path validated)"),
        ("warm", "one trust store for all rounds (paths cached, as bench_cms)"),
    ):
        b = statistics.median(times[(mode, "before")])
        n = statistics.median(times[(mode, "now")])
        print(
            f"{what}: open+resign before {b * 1e3:.3f} ms/message, now {n * 1e3:.3f} ms/message; "
            f"cost of the trust model's checks {(n / b - 1) * 100:+.1f} % (target <= +5 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

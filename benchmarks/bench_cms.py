"""CMS core benchmark: open + re-sign day-sized SMGW messages (brainpoolP256r1), one process.

Prints messages/s for Minimeter (``Hub.open_and_resign`` on a hub prepared once, as the
pipeline's ``DoFn.setup()`` does: one signature verification, decryption and a new signature per
message; also opening and re-signing alone, on the same prepared objects), for a crypto-only loop
that performs the same primitives with pyca/cryptography on pre-extracted inputs (ECDSA verify,
SHA-256 of the eContent, ECDH with the decoding and validation of the ephemeral point, X9.63 KDF,
AES key unwrap, AES-GCM decrypt, ECDSA sign), and for
the ``openssl cms`` command line (verify, decrypt, sign: three processes per message).
Also prints the K461 payload decode (``minimeter.payload.decode_payload``, real-shape XML as PPC
gateways write it) in ms/message next to the crypto-only figure: for the benchmark's day messages
and for the reference day message of 96 readings x 3 OBIS columns (target <= 1.3 ms), with its
ratios to the crypto-only loop and to a bare ``lxml.etree.fromstring`` of the same documents
(measured in the same rounds: the machine's speed varies, the ratios much less).
Rounds are interleaved and the median of each is reported, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from lxml import etree

from minimeter.cms import CmsSigner, EnvelopeRecipient, Hub, TrustStore, seal_message
from minimeter.cms._asn1 import EccCmsSharedInfo, GcmParameters, as_set_of
from minimeter.payload import decode_payload
from minimeter.payload.k461 import encode_profile
from minimeter.synth.fleet import make_fleet
from minimeter.synth.generate import SynthConfig, _meter_days
from minimeter.synth.pki import TestPki

THREE_COLUMNS = ("1-0:1.8.0", "1-0:1.8.1", "1-0:32.7.0")
LATEST_US = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000


def make_messages(
    n_gateways: int, days: int
) -> tuple[TestPki, list[bytes], list[bytes], list[bytes]]:
    """The sealed messages, their K461 payloads (real shape, as synth writes them) and the
    payloads cut to three columns (the decode target's reference message)."""
    start = date(2026, 1, 5)
    start_dt = datetime(2026, 1, 5, tzinfo=UTC)
    pki = TestPki.create(b"bench", start=start_dt)
    cfg = SynthConfig(out=Path("."), meters=n_gateways, days=days, start=start)
    rng = np.random.default_rng(7)
    messages, payloads, three = [], [], []
    for meter in make_fleet(n_gateways, rng):
        gateway = pki.gateway(f"GW-{meter.index}")
        key = bytes(64 - len(str(meter.index))) + str(meter.index).encode()
        for day, series in _meter_days(cfg, meter, np.random.default_rng(meter.index)):
            at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, minutes=5)
            payload = encode_profile(meter.meter.lower(), series, style="real", gateway_key=key)
            payloads.append(payload)
            cut = [s for s in series if s.obis in THREE_COLUMNS]
            three.append(encode_profile(meter.meter.lower(), cut, style="real", gateway_key=key))
            messages.append(
                seal_message(
                    payload,
                    [pki.hub.cert],
                    signer_key=gateway.key,
                    signer_cert=gateway.cert,
                    chain=[pki.subca.cert],
                    at=at,
                )
            )
    return pki, messages, payloads, three


def crypto_inputs(message: bytes) -> dict[str, object]:
    """Everything the primitives need, extracted before timing."""
    signed = cms.ContentInfo.load(message)["content"]
    si = signed["signer_infos"][0]
    econtent = bytes(signed["encap_content_info"]["content"])
    env = cms.AuthEnvelopedData.load(econtent)
    kari = env["recipient_infos"][0].chosen
    eci = env["auth_encrypted_content_info"]
    gateway = None
    for c in signed["certificates"]:
        if c.chosen.serial_number == si["sid"].chosen["serial_number"].native:
            gateway = x509.load_der_x509_certificate(c.chosen.dump())
    wrap_der = kari["key_encryption_algorithm"]["parameters"].dump()
    shared_info = EccCmsSharedInfo(
        {"key_info": core.Any.load(wrap_der), "supp_pub_info": (128).to_bytes(4, "big")}
    ).dump()
    return {
        "gateway_key": gateway.public_key(),  # type: ignore[union-attr]
        "to_verify": as_set_of(si["signed_attrs"].contents),
        "signature": si["signature"].native,
        "econtent": econtent,
        "ephemeral": bytes(kari["originator"].chosen["public_key"]),
        "shared_info": shared_info,
        "wrapped": kari["recipient_encrypted_keys"][0]["encrypted_key"].native,
        "nonce": GcmParameters.load(eci["content_encryption_algorithm"]["parameters"].dump())[
            "nonce"
        ].native,
        "ciphertext": eci["encrypted_content"].native + env["mac"].native,
        "attrs_for_new_signature": as_set_of(si["signed_attrs"].contents),
    }


def crypto_only(hub_key: object, signer_key: object | None, inputs: dict[str, object]) -> None:
    """The primitives of opening (and, with ``signer_key``, re-signing) one message."""
    inputs["gateway_key"].verify(
        inputs["signature"], inputs["to_verify"], ec.ECDSA(hashes.SHA256())
    )  # type: ignore[attr-defined]
    h = hashes.Hash(hashes.SHA256())
    h.update(inputs["econtent"])  # type: ignore[arg-type]
    h.finalize()
    ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.BrainpoolP256R1(),
        inputs["ephemeral"],  # type: ignore[arg-type]
    )  # decoding and validating the sender's ephemeral point is part of ECDH
    shared = hub_key.exchange(ec.ECDH(), ephemeral)  # type: ignore[attr-defined]
    kek = X963KDF(hashes.SHA256(), 16, inputs["shared_info"]).derive(shared)  # type: ignore[arg-type]
    cek = aes_key_unwrap(kek, inputs["wrapped"])  # type: ignore[arg-type]
    nonce = inputs["nonce"]
    AESGCM(cek).decrypt(nonce, inputs["ciphertext"], b"")  # type: ignore[arg-type]
    if signer_key is not None:
        signer_key.sign(inputs["attrs_for_new_signature"], ec.ECDSA(hashes.SHA256()))  # type: ignore[attr-defined]


def openssl_loop(pki: TestPki, messages: list[bytes], workdir: Path) -> float:
    """Seconds for verify + decrypt + sign with the OpenSSL CLI over ``messages``."""
    pki.write(workdir / "pki")
    p = workdir / "pki"
    root = p / "trust-anchor.pem"
    started = time.perf_counter()
    for i, message in enumerate(messages):
        msg = workdir / f"m{i}.cms"
        msg.write_bytes(message)
        env = subprocess.run(
            [
                "openssl",
                "cms",
                "-verify",
                "-CAfile",
                root,
                "-purpose",
                "any",
                "-binary",
                "-inform",
                "DER",
                "-in",
                msg,
            ],
            capture_output=True,
            check=True,
        ).stdout
        wrapped = workdir / f"e{i}.der"
        wrapped.write_bytes(
            cms.ContentInfo(
                {
                    "content_type": "authenticated_enveloped_data",
                    "content": cms.AuthEnvelopedData.load(env),
                }
            ).dump()
        )
        subprocess.run(
            [
                "openssl",
                "cms",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                wrapped,
                "-recip",
                p / "hub-cert.pem",
                "-inkey",
                p / "hub-key.pem",
            ],
            capture_output=True,
            check=True,
        )
        bare = workdir / f"b{i}.der"
        bare.write_bytes(env)
        subprocess.run(
            [
                "openssl",
                "cms",
                "-sign",
                "-signer",
                p / "pseudonymiser-cert.pem",
                "-inkey",
                p / "pseudonymiser-key.pem",
                "-binary",
                "-nodetach",
                "-econtent_type",
                "1.2.840.113549.1.9.16.1.23",
                "-md",
                "sha256",
                "-outform",
                "DER",
                "-in",
                bare,
                "-out",
                workdir / f"r{i}.cms",
            ],
            capture_output=True,
            check=True,
        )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cli-messages", type=int, default=30)
    parser.add_argument(
        "--decode-only", action="store_true", help="only the payload decode and crypto-only loops"
    )
    args = parser.parse_args(argv)

    pki, messages, payloads, three = make_messages(args.gateways, args.days)
    trust = TrustStore((pki.root.cert,), (pki.subca.cert,))
    at = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=args.days + 1)  # processing time
    sizes = [len(m) for m in messages]
    print(
        f"{len(messages)} messages, {statistics.mean(sizes) / 1024:.0f} KiB on average "
        f"(one day of 15-minute readings, 6-7 OBIS codes), brainpoolP256r1, AES-128-GCM"
    )
    chain = [pki.pseudonymiser_subca.cert]
    inputs = [crypto_inputs(m) for m in messages]

    hub = Hub(
        recipient=EnvelopeRecipient(pki.hub.key, pki.hub.cert),
        signer=CmsSigner(pki.pseudonymiser.key, pki.pseudonymiser.cert, chain),
        trust=trust,
    )

    def minimeter_both() -> None:
        for m in messages:
            hub.open_and_resign(m, at=at)

    def minimeter_open() -> None:
        for m in messages:
            hub.open(m, at=at)

    def minimeter_resign() -> None:
        for m in messages:
            hub.resign(m, at=at)

    def crypto() -> None:
        for i in inputs:
            crypto_only(pki.hub.key, pki.pseudonymiser.key, i)

    def decode_days() -> None:
        for p in payloads:
            decode_payload(p, latest_us=LATEST_US)

    def decode_three() -> None:
        for p in three:
            decode_payload(p, latest_us=LATEST_US)

    def parse_three() -> None:  # the floor: libxml2 parsing (and freeing) the same documents
        for p in three:
            etree.fromstring(p)

    loops = {
        "minimeter open+resign": minimeter_both,
        "crypto-only": crypto,
        "minimeter open": minimeter_open,
        "minimeter resign": minimeter_resign,
        "decode K461 (day)": decode_days,
        "decode K461 (3 x 96)": decode_three,
        "lxml parse (3 x 96)": parse_three,
    }
    if args.decode_only:
        keep = ("crypto-only", "decode K461 (day)", "decode K461 (3 x 96)", "lxml parse (3 x 96)")
        loops = {k: loops[k] for k in keep}
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for f in loops.values():  # warm-up (path cache, templates)
        f()
    for _ in range(args.rounds):
        for name, f in loops.items():
            t = time.perf_counter()
            f()
            rates[name].append(len(messages) / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}

    def ratio(slow: str, fast: str) -> float:
        """The median over the rounds of one loop's time per message over another's."""
        return statistics.median(b / a for a, b in zip(rates[slow], rates[fast], strict=True))

    for name, rate in med.items():
        print(f"{name:24s} {rate:8.1f} messages/s  {1000 / rate:6.2f} ms/message")
    day_kib = statistics.mean(len(p) for p in payloads) / 1024
    three_kib = statistics.mean(len(p) for p in three) / 1024
    print(
        f"payload decode: {1000 / med['decode K461 (day)']:.2f} ms/message for the day messages "
        f"({day_kib:.0f} KiB of K461 XML, 6-7 OBIS codes), "
        f"{1000 / med['decode K461 (3 x 96)']:.2f} ms/message for 96 readings x 3 OBIS codes "
        f"({three_kib:.0f} KiB, target <= 1.3 ms); crypto-only "
        f"{1000 / med['crypto-only']:.2f} ms/message"
    )
    print(
        f"decode (3 x 96) / crypto-only: {ratio('decode K461 (3 x 96)', 'crypto-only'):.2f}; "
        f"decode (3 x 96) / lxml parse alone: {ratio('decode K461 (3 x 96)', 'lxml parse (3 x 96)'):.2f} "
        f"(lxml parse {1000 / med['lxml parse (3 x 96)']:.2f} ms/message); "
        f"decode (day) / crypto-only: {ratio('decode K461 (day)', 'crypto-only'):.2f}"
    )
    if args.decode_only:
        return 0
    ratio = med["minimeter open+resign"] / med["crypto-only"]
    print(f"ratio open+resign / crypto-only: {ratio:.2f} (target >= 0.85)")

    with tempfile.TemporaryDirectory() as tmp:
        subset = messages[: args.cli_messages]
        seconds = openssl_loop(pki, subset, Path(tmp))
    cli_rate = len(subset) / seconds
    print(
        f"{'openssl cms CLI':24s} {cli_rate:8.1f} messages/s (verify + decrypt + sign, {len(subset)} messages)"
    )
    print(
        f"speed-up over the OpenSSL CLI: {med['minimeter open+resign'] / cli_rate:.1f}x (target >= 15x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small test SM-PKI, made with pyca/cryptography's X.509 builder.

Keys are derived from a seed (HMAC-SHA256 of the seed and the key's label, shortened below the
curve order), and certificates use deterministic ECDSA, so the same seed gives the same PKI.
This is test material only: a real SM-PKI's keys come from an HSM.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
    "brainpoolP512r1": ec.BrainpoolP512R1,
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
}


def derive_key(seed: bytes, label: str, curve: str) -> ec.EllipticCurvePrivateKey:
    """A private key determined by ``seed`` and ``label``.

    The scalar has one bit fewer than the curve, so it is below the group order of every curve
    in ``CURVES`` (their orders all exceed 2^(bits-1)); it is never zero in practice.
    """
    curve_obj = CURVES[curve]()
    bits = curve_obj.key_size
    stream = b""
    counter = 0
    while len(stream) * 8 < bits:
        stream += hmac.new(seed, f"{label}/{counter}".encode(), hashlib.sha256).digest()
        counter += 1
    scalar = int.from_bytes(stream, "big") >> (len(stream) * 8 - (bits - 1))
    return ec.derive_private_key(scalar | 1, curve_obj)


def _name(common_name: str, org: str = "Minimeter test SM-PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _serial(seed: bytes, label: str) -> int:
    return (
        int.from_bytes(
            hmac.new(seed, f"serial/{label}".encode(), hashlib.sha256).digest()[:16], "big"
        )
        >> 1
    )


@dataclass(frozen=True)
class Identity:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, key_path: Path, cert_path: Path) -> None:
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))


KIND_USAGE = {
    "ca": dict(key_cert_sign=True, crl_sign=True),
    "sign": dict(digital_signature=True),
    "encrypt": dict(key_agreement=True),
}


def issue(
    seed: bytes,
    label: str,
    common_name: str,
    *,
    kind: str,
    issuer: Identity | None,
    not_before: datetime,
    not_after: datetime,
    curve: str = "brainpoolP256r1",
    path_length: int | None = None,
    org: str = "Minimeter test SM-PKI",
) -> Identity:
    """A key and certificate of ``kind`` (``ca``, ``sign`` or ``encrypt``); self-signed without issuer."""
    key = derive_key(seed, label, curve)
    subject = _name(common_name, org)
    usage = {
        "digital_signature": False,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "key_cert_sign": False,
        "crl_sign": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    usage.update(KIND_USAGE[kind])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(_serial(seed, label))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(
                ca=kind == "ca", path_length=path_length if kind == "ca" else None
            ),
            critical=True,
        )
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
    )
    digest = hashes.SHA256() if signer.curve.key_size <= 256 else hashes.SHA384()
    cert = builder.sign(signer, digest, ecdsa_deterministic=True)
    return Identity(key, cert)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class TestPki:
    """The identities of a synthetic deployment."""

    root: Identity
    subca: Identity
    hub: Identity
    pseudonymiser_root: Identity
    pseudonymiser_subca: Identity
    pseudonymiser: Identity
    forward: dict[str, Identity]
    pseudonym_secret: bytes
    seed: bytes
    curve: str
    start: datetime

    @classmethod
    def create(
        cls,
        seed: bytes,
        *,
        start: datetime,
        forward_recipients: tuple[str, ...] = (),
        curve: str = "brainpoolP256r1",
    ) -> TestPki:
        long_before = start - timedelta(days=365)
        ten_years = start + timedelta(days=3650)
        five_years = start + timedelta(days=1825)
        root = issue(
            seed,
            "root",
            "SM-Test-Root-CA",
            kind="ca",
            issuer=None,
            curve=curve,
            not_before=long_before,
            not_after=ten_years,
            path_length=1,
        )
        subca = issue(
            seed,
            "subca",
            "SM-Test-GWA-Sub-CA",
            kind="ca",
            issuer=root,
            curve=curve,
            not_before=long_before,
            not_after=ten_years,
            path_length=0,
        )
        hub = issue(
            seed,
            "hub",
            "Data hub (encryption)",
            kind="encrypt",
            issuer=subca,
            curve=curve,
            not_before=long_before,
            not_after=five_years,
        )
        ps_org = "Minimeter test pseudonymiser PKI"
        ps_root = issue(
            seed,
            "ps-root",
            "Pseudonymiser-Root-CA",
            kind="ca",
            issuer=None,
            curve=curve,
            not_before=long_before,
            not_after=ten_years,
            path_length=1,
            org=ps_org,
        )
        ps_subca = issue(
            seed,
            "ps-subca",
            "Pseudonymiser-Sub-CA",
            kind="ca",
            issuer=ps_root,
            curve=curve,
            not_before=long_before,
            not_after=ten_years,
            path_length=0,
            org=ps_org,
        )
        pseudonymiser = issue(
            seed,
            "ps",
            "Pseudonymiser (signature)",
            kind="sign",
            issuer=ps_subca,
            curve=curve,
            not_before=long_before,
            not_after=five_years,
            org=ps_org,
        )
        forward = {
            rid: issue(
                seed,
                f"forward/{rid}",
                f"Recipient {rid} (encryption)",
                kind="encrypt",
                issuer=subca,
                curve=curve,
                not_before=long_before,
                not_after=five_years,
            )
            for rid in forward_recipients
        }
        secret = hmac.new(seed, b"pseudonym-secret", hashlib.sha256).digest()
        return cls(
            root, subca, hub, ps_root, ps_subca, pseudonymiser, forward, secret, seed, curve, start
        )

    def gateway(self, gateway_id: str, *, expired: bool = False) -> Identity:
        """The signing identity of one gateway (an expired certificate for fault injection)."""
        if expired:
            nb, na = self.start - timedelta(days=400), self.start - timedelta(days=30)
        else:
            nb, na = self.start - timedelta(days=30), self.start + timedelta(days=3 * 365)
        return issue(
            self.seed,
            f"gw/{gateway_id}/{expired}",
            gateway_id,
            kind="sign",
            issuer=self.subca,
            curve=self.curve,
            not_before=nb,
            not_after=na,
        )

    def write(self, directory: Path) -> None:
        """The file names other tools read (see ``minimeter run --pki``)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "trust-anchor.pem").write_bytes(pem(self.root.cert))
        (directory / "intermediates.pem").write_bytes(pem(self.subca.cert))
        self.hub.write(directory / "hub-key.pem", directory / "hub-cert.pem")
        self.pseudonymiser.write(
            directory / "pseudonymiser-key.pem", directory / "pseudonymiser-cert.pem"
        )
        (directory / "pseudonymiser-chain.pem").write_bytes(pem(self.pseudonymiser_subca.cert))
        (directory / "pseudonymiser-root.pem").write_bytes(pem(self.pseudonymiser_root.cert))
        for rid, ident in self.forward.items():
            ident.write(directory / f"forward-{rid}-key.pem", directory / f"forward-{rid}-cert.pem")
        secret = directory / "pseudonym-secret.key"
        secret.write_bytes(self.pseudonym_secret)
        secret.chmod(0o600)


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)

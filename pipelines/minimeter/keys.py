"""Loading private keys and certificates from PEM files."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from minimeter.cms.trust import load_certificates
from minimeter.errors import ConfigError

PASSPHRASE_VARIABLE = "MINIMETER_KEY_PASSPHRASE"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

__all__ = [
    "MIN_PSEUDONYM_SECRET_BYTES",
    "PASSPHRASE_VARIABLE",
    "PKI_FILES",
    "PrivateKey",
    "check_pki",
    "load_certificates",
    "load_private_key",
]

PKI_FILES = (
    "trust-anchor.pem",
    "intermediates.pem",
    "hub-key.pem",
    "hub-cert.pem",
    "pseudonymiser-key.pem",
    "pseudonymiser-cert.pem",
    "pseudonymiser-chain.pem",
    "pseudonym-secret.key",
)
"""The files of a ``minimeter synth`` PKI directory a run needs (plus forward-<id>-cert.pem)."""
MIN_PSEUDONYM_SECRET_BYTES = 32
_CERT_FILES = frozenset({"trust-anchor.pem", "intermediates.pem", "pseudonymiser-chain.pem"})


def load_private_key(path: str | Path) -> PrivateKey:
    """A PEM private key (PKCS#8 or traditional); encrypted keys take their passphrase from
    ``MINIMETER_KEY_PASSPHRASE``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read key file ({exc.strerror})") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        passphrase = os.environ.get(PASSPHRASE_VARIABLE)
        if not passphrase:
            raise ConfigError(
                f"{path}: key is encrypted and {PASSPHRASE_VARIABLE} is not set"
            ) from None
        try:
            key = load_pem_private_key(data, password=passphrase.encode())
        except (ValueError, TypeError):
            raise ConfigError(f"{path}: wrong passphrase or damaged key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{path}: only EC and RSA keys are supported")
    return key


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def check_pki(directory: Path, forward_ids: tuple[str, ...]) -> None:
    """Check, before any data moves, that the files of a PKI directory (``minimeter synth``
    names, see ``PKI_FILES``, and ``forward-<id>-cert.pem`` per forwarding recipient) exist,
    are regular files, load, and belong together: each private key is its certificate's, the
    pseudonymiser certificate is issued (name and signature) by a certificate of
    pseudonymiser-chain.pem or is self-signed, and the pseudonym secret has at least
    ``MIN_PSEUDONYM_SECRET_BYTES`` bytes.

    Raises ``ConfigError`` ("config-invalid") naming every file with a problem, on one line;
    never key material."""
    directory = Path(directory)
    names = (*PKI_FILES, *(f"forward-{rid}-cert.pem" for rid in forward_ids))
    unusable = [n for n in names if not (directory / n).is_file()]
    if unusable:
        what = [
            f"{n} is {'not a regular file' if (directory / n).exists() else 'missing'}"
            for n in unusable
        ]
        raise ConfigError(f"{directory}: {'; '.join(what)}")
    problems: list[str] = []
    prefix = f"{directory}{os.sep}"

    def note(exc: ConfigError) -> None:
        problems.append(exc.detail.replace(prefix, ""))  # file names, relative to the directory

    def load_key(name: str) -> PrivateKey | None:
        try:
            return load_private_key(directory / name)
        except ConfigError as exc:
            note(exc)
            return None

    def load_certs(name: str) -> list[x509.Certificate] | None:
        try:
            return load_certificates(directory / name)
        except ConfigError as exc:
            note(exc)
            return None

    certs = {n: load_certs(n) for n in names if n.endswith("-cert.pem") or n in _CERT_FILES}
    for role in ("hub", "pseudonymiser"):
        key, own = load_key(f"{role}-key.pem"), certs[f"{role}-cert.pem"]
        if key is not None and own and _spki(key.public_key()) != _spki(own[0].public_key()):
            problems.append(
                f"{role}-key.pem is not the key of {role}-cert.pem (their public keys differ)"
            )
    signer, chain = certs["pseudonymiser-cert.pem"], certs["pseudonymiser-chain.pem"]
    if signer and chain:
        cert = signer[0]
        self_signed = cert.issuer == cert.subject and _issued_by(cert, cert)
        named = [c for c in chain if c.subject == cert.issuer]
        if not self_signed and not any(_issued_by(cert, c) for c in named):
            problems.append(
                "pseudonymiser-cert.pem is neither self-signed nor issued by a certificate of "
                "pseudonymiser-chain.pem"
                + (" (a certificate there has the issuer's name but not its key)" if named else "")
            )
    size = (directory / "pseudonym-secret.key").stat().st_size
    if size < MIN_PSEUDONYM_SECRET_BYTES:
        problems.append(
            f"pseudonym-secret.key has {size} bytes, fewer than {MIN_PSEUDONYM_SECRET_BYTES}"
        )
    if problems:
        raise ConfigError(f"{directory}: PKI files do not belong together: {'; '.join(problems)}")

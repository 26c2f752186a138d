"""Loading private keys and certificates from PEM files."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from minimeter.cms.trust import load_certificates
from minimeter.errors import ConfigError

PASSPHRASE_VARIABLE = "MINIMETER_KEY_PASSPHRASE"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

__all__ = ["PASSPHRASE_VARIABLE", "PrivateKey", "load_certificates", "load_private_key"]


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

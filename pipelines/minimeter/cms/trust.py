"""Trust anchors, intermediates and certification-path building for signer certificates.

Paths are built from the signer certificate to a configured trust anchor through the message's
own certificates and configured intermediates. Each link's signature is checked by
pyca/cryptography (``verify_directly_issued_by``); validity is checked at the signing time.
Signature results of a path are remembered per leaf, so a fleet of gateways costs one chain
verification per gateway certificate, not per message; validity times are checked every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from minimeter.cms._memo import IdentityMemo
from minimeter.errors import CmsError, ConfigError

MAX_PATH_LENGTH = 8
_CACHE_LIMIT = 4096
_SHA256 = hashes.SHA256()


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """All certificates of a PEM file (or one DER certificate)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read certificate file ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigError(f"{path}: not a PEM or DER certificate") from None
    if not certs:
        raise ConfigError(f"{path}: no certificate found")
    return certs


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(_SHA256)


@dataclass(frozen=True, slots=True)
class _CachedPath:
    """A verified path, with the interval in which all of its certificates are valid."""

    leaf: x509.Certificate
    """Held so that the ``id`` the cache is keyed by stays this certificate's."""
    path: tuple[x509.Certificate, ...]
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class TrustStore:
    """Trust anchors (roots) and extra intermediates that signer paths may use."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    _paths: dict[int, _CachedPath] = field(default_factory=dict, compare=False, repr=False)
    _parsed: dict[bytes, x509.Certificate] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.anchors:
            raise ConfigError("at least one trust anchor is required")

    @classmethod
    def from_files(
        cls, anchors: Iterable[str | Path], intermediates: Iterable[str | Path] = ()
    ) -> TrustStore:
        return cls(
            tuple(c for p in anchors for c in load_certificates(p)),
            tuple(c for p in intermediates for c in load_certificates(p)),
        )

    def parse_certificate(self, der: bytes) -> x509.Certificate:
        """Parse a DER certificate, remembering the result (fleets repeat certificates)."""
        key = der
        cert = self._parsed.get(key)
        if cert is None:
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                raise CmsError(
                    "malformed", "a certificate in the message cannot be parsed"
                ) from None
            if len(self._parsed) >= _CACHE_LIMIT:
                self._parsed.clear()
            self._parsed[key] = cert
        return cert

    def validate(
        self, leaf: x509.Certificate, pool: Sequence[x509.Certificate], at: datetime
    ) -> tuple[x509.Certificate, ...]:
        """The path leaf -> anchor (inclusive) valid at ``at``; raises ``untrusted-signer``."""
        key = id(leaf)  # parse_certificate hands out one object per certificate
        cached = self._paths.get(key)
        if (
            cached is not None
            and cached.leaf is leaf
            and cached.not_before <= at <= cached.not_after
        ):
            return cached.path
        _check_leaf_usage(leaf)
        candidates = list(pool) + list(self.intermediates)
        anchor_prints = {fingerprint(a) for a in self.anchors}
        paths = _build_paths(leaf, candidates, self.anchors, anchor_prints)
        if not paths:
            raise CmsError("untrusted-signer", "no certification path to a trust anchor")
        for path in paths:
            if _valid_at(path, at):
                if len(self._paths) >= _CACHE_LIMIT:
                    self._paths.clear()
                self._paths[key] = _CachedPath(
                    leaf,
                    path,
                    max(c.not_valid_before_utc for c in path),
                    min(c.not_valid_after_utc for c in path),
                )
                return path
        raise CmsError(
            "untrusted-signer",
            "a certificate on the signer's path is not valid at the signing time",
        )


def _valid_at(path: Sequence[x509.Certificate], at: datetime) -> bool:
    return all(c.not_valid_before_utc <= at <= c.not_valid_after_utc for c in path)


def _check_leaf_usage(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    except ValueError:
        raise CmsError(
            "untrusted-signer", "the signer certificate's extensions are invalid"
        ) from None
    if not usage.digital_signature:
        raise CmsError("untrusted-signer", "the signer certificate does not allow digitalSignature")


def _may_issue(ca: x509.Certificate, below: int) -> bool:
    """Whether ``ca`` may act as a CA with ``below`` intermediate CAs beneath it on the path."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if not bc.ca or (bc.path_length is not None and below > bc.path_length):
        return False
    try:
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return bool(ku.key_cert_sign)


_LINKS: IdentityMemo[bool] = IdentityMemo(limit=_CACHE_LIMIT)


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``child`` (remembered: every gateway path shares its CA links)."""
    return _LINKS.get(None, (child, issuer), lambda: _verify_link(child, issuer))


def _verify_link(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _build_paths(
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    anchor_prints: set[bytes],
) -> list[tuple[x509.Certificate, ...]]:
    """All paths from ``leaf`` to an anchor (depth-first, at most ``MAX_PATH_LENGTH`` long)."""
    found: list[tuple[x509.Certificate, ...]] = []

    def extend(path: tuple[x509.Certificate, ...]) -> None:
        current = path[-1]
        if fingerprint(current) in anchor_prints:
            found.append(path)
            return
        if len(path) >= MAX_PATH_LENGTH:
            return
        below = len(path) - 1  # intermediate CAs already on the path under the next issuer
        seen = {fingerprint(c) for c in path}
        for anchor in anchors:
            if _issued_by(current, anchor):
                found.append((*path, anchor))
        for cand in candidates:
            fp = fingerprint(cand)
            if fp in seen or fp in anchor_prints:
                continue
            if _may_issue(cand, below) and _issued_by(current, cand):
                extend((*path, cand))

    extend((leaf,))
    return found

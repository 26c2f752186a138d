"""Trust anchors, intermediates and certification-path building for signer certificates.

Paths are built from the signer certificate to a configured trust anchor through the message's
own certificates and configured intermediates. Each link's signature is checked by
pyca/cryptography (``verify_directly_issued_by``); validity is checked at the signing time and
revocation against the configured CRLs. The search is bounded (``TrustStore``), so that any
message is decided in milliseconds. Paths are remembered per leaf, so a fleet of gateways costs
one chain verification per gateway certificate, not per message; validity times are checked
every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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


MAX_SIGNATURE_CHECKS = 32
"""Link signatures one message may cost before its signer is refused (path bombs)."""


@dataclass(frozen=True)
class Revocations:
    """Serial numbers revoked by each issuer (by the issuer's subject and key), from CRLs that
    were checked when the trust store was made."""

    revoked: dict[tuple[bytes, bytes], frozenset[int]] = field(default_factory=dict)

    def is_revoked(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        serials = self.revoked.get(_key_id(issuer))
        return serials is not None and cert.serial_number in serials


def _key_id(cert: x509.Certificate) -> tuple[bytes, bytes]:
    return cert.subject.public_bytes(), _spki(cert)


def _spki(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@dataclass
class _Budget:
    """Signature checks one path search may still make."""

    left: int


@dataclass(frozen=True)
class TrustStore:
    """Trust anchors (roots), extra intermediates that signer paths may use, and revocations.

    It owns its caches: parsed certificates, verified (certificate, issuer) links and paths per
    leaf. Path building is bounded: candidate issuers are indexed by subject name, certificates
    with the same name and key count once, each link is checked at most once, a path has at most
    ``MAX_PATH_LENGTH`` certificates and one search makes at most ``MAX_SIGNATURE_CHECKS``
    signature checks."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    revocations: Revocations = field(default_factory=Revocations)
    _paths: dict[int, _CachedPath] = field(default_factory=dict, compare=False, repr=False)
    _parsed: dict[bytes, x509.Certificate] = field(default_factory=dict, compare=False, repr=False)
    _links: dict[tuple[int, int], tuple[x509.Certificate, x509.Certificate, bool]] = field(
        default_factory=dict, compare=False, repr=False
    )
    signers: IdentityMemo[Any] = field(
        default_factory=lambda: IdentityMemo(limit=_CACHE_LIMIT), compare=False, repr=False
    )
    """Signer resolution per (SignerIdentifier, the message's certificate set): the store's."""
    verifiers: IdentityMemo[Any] = field(
        default_factory=lambda: IdentityMemo(limit=_CACHE_LIMIT), compare=False, repr=False
    )
    """Signature verifiers per (algorithm, certificate): the store's."""

    def __post_init__(self) -> None:
        if not self.anchors:
            raise ConfigError("at least one trust anchor is required")

    @classmethod
    def from_files(
        cls,
        anchors: Iterable[str | Path],
        intermediates: Iterable[str | Path] = (),
        crls: Iterable[str | Path] = (),
        *,
        at: datetime | None = None,
    ) -> TrustStore:
        """A trust store from PEM files. CRLs must each be signed by a configured anchor or
        intermediate and be current at ``at`` (the processing time), else ``ConfigError``."""
        anchor_certs = tuple(c for p in anchors for c in load_certificates(p))
        inter_certs = tuple(c for p in intermediates for c in load_certificates(p))
        crl_paths = list(crls)
        revoked: dict[tuple[bytes, bytes], frozenset[int]] = {}
        if crl_paths:
            if at is None:
                raise ConfigError("CRLs need the processing time to be checked against")
            for path in crl_paths:
                for crl in load_crls(path):
                    issuer = _crl_issuer(crl, (*anchor_certs, *inter_certs))
                    if issuer is None:
                        raise ConfigError(f"{path}: CRL not signed by a configured CA")
                    if crl.last_update_utc > at or (
                        crl.next_update_utc is not None and crl.next_update_utc < at
                    ):
                        raise ConfigError(
                            f"{path}: CRL of {issuer.subject.rfc4514_string()} is not current "
                            f"at {at.isoformat(timespec='seconds')} (this update "
                            f"{crl.last_update_utc.isoformat(timespec='seconds')}, next update "
                            f"{crl.next_update_utc.isoformat(timespec='seconds') if crl.next_update_utc else 'none'})"
                        )
                    key = _key_id(issuer)
                    revoked[key] = revoked.get(key, frozenset()) | {r.serial_number for r in crl}
        return cls(anchor_certs, inter_certs, Revocations(revoked))

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
        """The path leaf -> anchor (inclusive) valid at ``at`` and not revoked; raises
        ``untrusted-signer`` (or ``revoked``)."""
        key = id(leaf)  # parse_certificate hands out one object per certificate
        cached = self._paths.get(key)
        if (
            cached is not None
            and cached.leaf is leaf
            and cached.not_before <= at <= cached.not_after
        ):
            return cached.path
        check_signer_profile(leaf)
        budget = _Budget(MAX_SIGNATURE_CHECKS)
        path, problem = self._search(leaf, pool, at, budget)
        if path is None:
            if problem == "revoked":
                raise CmsError("revoked", "a certificate on the signer's path is revoked")
            raise CmsError("untrusted-signer", problem)
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        self._paths[key] = _CachedPath(
            leaf,
            path,
            max(c.not_valid_before_utc for c in path),
            min(c.not_valid_after_utc for c in path),
        )
        return path

    def _search(
        self,
        leaf: x509.Certificate,
        pool: Sequence[x509.Certificate],
        at: datetime,
        budget: _Budget,
    ) -> tuple[tuple[x509.Certificate, ...] | None, str]:
        """Depth-first search for one path valid at ``at``; (path, "") or (None, why)."""
        by_name: dict[bytes, list[x509.Certificate]] = {}
        seen_keys: set[tuple[bytes, bytes]] = set()
        anchor_prints = {fingerprint(a) for a in self.anchors}
        for cand in (*self.anchors, *pool, *self.intermediates):
            ident = _key_id(cand)
            if ident in seen_keys:  # look-alikes (same name, same key) count once
                continue
            seen_keys.add(ident)
            by_name.setdefault(ident[0], []).append(cand)
        dead: set[tuple[bytes, int]] = set()
        why = ["no certification path to a trust anchor"]

        def extend(path: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...] | None:
            current = path[-1]
            if fingerprint(current) in anchor_prints:
                if not _valid_at(path, at):
                    why[0] = "a certificate on the signer's path is not valid at the signing time"
                    return None
                if any(
                    self.revocations.is_revoked(c, i) for c, i in zip(path, path[1:], strict=False)
                ):
                    why[0] = "revoked"
                    return None
                return path
            if len(path) >= MAX_PATH_LENGTH:
                return None
            state = (fingerprint(current), len(path))
            if state in dead:
                return None
            below = len(path) - 1
            on_path = {fingerprint(c) for c in path}
            for cand in by_name.get(current.issuer.public_bytes(), ()):
                fp = fingerprint(cand)
                if fp in on_path:
                    continue
                if fp not in anchor_prints and not _may_issue(cand, below):
                    continue
                if not self._issued_by(current, cand, budget):
                    if budget.left <= 0:
                        why[0] = (
                            f"path building gave up after {MAX_SIGNATURE_CHECKS} signature checks"
                        )
                        return None
                    continue
                found = extend((*path, cand))
                if found is not None:
                    return found
                if budget.left <= 0:
                    return None
            dead.add(state)
            return None

        return extend((leaf,)), why[0]

    def _issued_by(
        self, child: x509.Certificate, issuer: x509.Certificate, budget: _Budget
    ) -> bool:
        """Whether ``issuer`` signed ``child``: each pair is checked once (then remembered in
        this store); a check costs one unit of the search's budget."""
        key = (id(child), id(issuer))
        hit = self._links.get(key)
        if hit is not None and hit[0] is child and hit[1] is issuer:
            return hit[2]
        if budget.left <= 0:
            return False
        budget.left -= 1
        ok = _verify_link(child, issuer)
        if len(self._links) >= _CACHE_LIMIT:
            self._links.clear()
        self._links[key] = (child, issuer, ok)
        return ok


def load_crls(path: str | Path) -> list[x509.CertificateRevocationList]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read CRL file ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            parts = data.split(b"-----END X509 CRL-----")
            return [
                x509.load_pem_x509_crl(p + b"-----END X509 CRL-----")
                for p in parts
                if b"-----BEGIN X509 CRL-----" in p
            ]
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise ConfigError(f"{path}: not a PEM or DER CRL") from None


def _crl_issuer(
    crl: x509.CertificateRevocationList, cas: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for ca in cas:
        if ca.subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                return ca
        except (TypeError, ValueError, UnsupportedAlgorithm):
            continue
    return None


def _valid_at(path: Sequence[x509.Certificate], at: datetime) -> bool:
    return all(c.not_valid_before_utc <= at <= c.not_valid_after_utc for c in path)


_CONTENT_SIGNING_EKUS = frozenset(
    {
        x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION,
    }
)


def check_signer_profile(leaf: x509.Certificate) -> None:
    """The content-signature certificate profile: keyUsage present with digitalSignature, not a
    CA, extendedKeyUsage (if present) allowing content signing (anyExtendedKeyUsage or
    emailProtection, the EKU of CMS signing). Raises ``untrusted-signer`` naming the rule."""
    try:
        extensions = leaf.extensions
    except ValueError:
        raise CmsError(
            "untrusted-signer", "the signer certificate's extensions are invalid"
        ) from None
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CmsError("untrusted-signer", "the signer certificate has no keyUsage") from None
    if not usage.digital_signature:
        raise CmsError("untrusted-signer", "the signer certificate does not allow digitalSignature")
    try:
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is not None and basic.ca:
        raise CmsError("untrusted-signer", "the signer certificate is a CA certificate")
    try:
        ekus = set(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return
    if not ekus & _CONTENT_SIGNING_EKUS:
        raise CmsError(
            "untrusted-signer", "the signer certificate's extendedKeyUsage excludes content signing"
        )


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


def _verify_link(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True

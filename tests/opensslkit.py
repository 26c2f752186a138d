"""Test PKIs and CMS messages made with the OpenSSL command line (the interop oracle).

Nothing here uses Minimeter: every key, certificate and message is the ``openssl`` CLI's own.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms

EXTENSIONS = """
[ext_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_sign]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_enc_ec]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_enc_rsa]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyEncipherment
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_nosign]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
subjectKeyIdentifier=hash
[ext_nokeyusage]
basicConstraints=critical,CA:FALSE
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_codesign]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_cmssign]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=emailProtection
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ext_caleaf]
basicConstraints=critical,CA:TRUE
keyUsage=critical,digitalSignature,keyCertSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""

CA_CONFIG = """
[ca]
default_ca = this
[this]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
default_md = {md}
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
"""

AUTH_ENVELOPED = "1.2.840.113549.1.9.16.1.23"
ENVELOPED = "1.2.840.113549.1.7.3"


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["openssl", *map(str, args)], input=stdin, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {proc.stderr.decode()}")
    return proc.stdout


@dataclass(frozen=True)
class Identity:
    key: Path
    cert: Path


class Pki:
    """A directory of OpenSSL-made keys and certificates."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ext = self.dir / "ext.cnf"
        self.ext.write_text(EXTENSIONS)

    def key(self, name: str, curve: str) -> Path:
        path = self.dir / f"{name}.key"
        if curve.startswith("rsa"):
            openssl(
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                f"rsa_keygen_bits:{curve[3:]}",
                "-out",
                path,
            )
        else:
            openssl(
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                f"ec_paramgen_curve:{curve}",
                "-pkeyopt",
                "ec_param_enc:named_curve",
                "-out",
                path,
            )
        return path

    def root(
        self, name: str, curve: str = "brainpoolP256r1", *, start: str | None = None
    ) -> Identity:
        key = self.key(name, curve)
        cert = self.dir / f"{name}.pem"
        if start:  # a root valid since ``start`` (YYYYMMDDHHMMSSZ): openssl ca -selfsign
            csr = self.dir / f"{name}.csr"
            openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
            conf = self._ca_config(Identity(key, cert))
            openssl(
                "ca", "-batch", "-notext", "-selfsign", "-config", conf, "-keyfile", key,
                "-in", csr, "-out", cert, "-extensions", "ext_ca", "-startdate", start,
                "-days", "5000",
            )  # fmt: skip
            return Identity(key, cert)
        openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            key,
            "-subj",
            f"/CN={name}",
            "-days",
            "3650",
            "-config",
            self.ext,
            "-extensions",
            "ext_ca",
            "-out",
            cert,
        )
        return Identity(key, cert)

    def issue(
        self,
        name: str,
        issuer: Identity,
        *,
        curve: str = "brainpoolP256r1",
        profile: str = "sign",
        start: str | None = None,
        end: str | None = None,
    ) -> Identity:
        """A certificate for a new key, issued by ``issuer`` (dates as YYYYMMDDHHMMSSZ)."""
        key = self.key(name, curve)
        csr = self.dir / f"{name}.csr"
        openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
        conf = self._ca_config(issuer)
        cert = self.dir / f"{name}.pem"
        args: list[str | Path] = [
            "ca",
            "-batch",
            "-notext",
            "-config",
            conf,
            "-cert",
            issuer.cert,
            "-keyfile",
            issuer.key,
            "-in",
            csr,
            "-out",
            cert,
            "-extensions",
            f"ext_{profile}",
        ]
        args += ["-startdate", start] if start else []
        args += ["-enddate", end] if end else ["-days", "365"]
        openssl(*args)
        return Identity(key, cert)

    def _ca_config(self, issuer: Identity) -> Path:
        cadir = self.dir / f"ca-{issuer.cert.stem}"
        if not cadir.exists():
            cadir.mkdir()
            (cadir / "index.txt").write_text("")
            (cadir / "serial").write_text("1000\n")
        conf = cadir / "ca.cnf"
        conf.write_text(CA_CONFIG.format(dir=cadir, md="sha256") + EXTENSIONS)
        return conf

    def revoke(self, cert: Identity, issuer: Identity) -> None:
        """Mark ``cert`` revoked in ``issuer``'s database (``openssl ca -revoke``)."""
        conf = self._ca_config(issuer)
        openssl(
            "ca",
            "-config",
            conf,
            "-cert",
            issuer.cert,
            "-keyfile",
            issuer.key,
            "-revoke",
            cert.cert,
        )

    def crl(self, issuer: Identity, name: str, *, hours: int = 240) -> Path:
        """``issuer``'s CRL of what it revoked so far (``openssl ca -gencrl``), valid ``hours``."""
        conf = self._ca_config(issuer)
        out = self.dir / f"{name}.crl.pem"
        openssl(
            "ca", "-config", conf, "-cert", issuer.cert, "-keyfile", issuer.key,
            "-gencrl", "-crlhours", str(hours), "-out", out,
        )  # fmt: skip
        return out


def encrypt(
    payload: Path,
    recipients: list[Path],
    out: Path,
    *,
    cipher: str = "aes-128-gcm",
    kdf: str | None = "sha256",
    keyid: bool = False,
    oaep: bool = False,
) -> Path:
    args: list[str | Path] = [
        "cms",
        "-encrypt",
        f"-{cipher}",
        "-binary",
        "-outform",
        "DER",
        "-in",
        payload,
        "-out",
        out,
    ]
    for r in recipients:
        args += ["-recip", r]
        is_rsa = b"rsaEncryption" in openssl("x509", "-in", r, "-noout", "-text")
        if kdf and not is_rsa:
            args += ["-keyopt", f"ecdh_kdf_md:{kdf}"]
        if oaep and is_rsa:
            args += ["-keyopt", "rsa_padding_mode:oaep"]
    if keyid:
        args.append("-keyid")
    openssl(*args)
    return out


def strip_content_info(path: Path, out: Path) -> Path:
    """The bare (Auth)EnvelopedData of an OpenSSL ContentInfo file (RFC 5652-shaped eContent)."""
    info = cms.ContentInfo.load(path.read_bytes())
    out.write_bytes(info["content"].untag().dump())
    return out


def sign(
    content: Path,
    signer: Identity,
    out: Path,
    *,
    econtent_type: str | None = AUTH_ENVELOPED,
    md: str = "sha256",
    certfile: Path | None = None,
    noattr: bool = False,
    keyid: bool = False,
    pss: bool = False,
    detached: bool = False,
    outform: str = "DER",
) -> Path:
    args: list[str | Path] = [
        "cms",
        "-sign",
        "-signer",
        signer.cert,
        "-inkey",
        signer.key,
        "-binary",
        "-md",
        md,
        "-outform",
        outform,
        "-in",
        content,
        "-out",
        out,
    ]
    if not detached:
        args.append("-nodetach")
    if econtent_type:
        args += ["-econtent_type", econtent_type]
    if certfile:
        args += ["-certfile", certfile]
    if noattr:
        args.append("-noattr")
    if keyid:
        args.append("-keyid")
    if pss:
        args += ["-keyopt", "rsa_padding_mode:pss"]
    openssl(*args)
    return out


def verify(message: Path, ca: Path, *, inform: str = "DER") -> bytes:
    """The verified eContent, by ``openssl cms -verify``."""
    return openssl(
        "cms",
        "-verify",
        "-CAfile",
        ca,
        "-purpose",
        "any",
        "-binary",
        "-inform",
        inform,
        "-in",
        message,
    )


def decrypt(envelope_ci: Path, recipient: Identity) -> bytes:
    return openssl(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        envelope_ci,
        "-recip",
        recipient.cert,
        "-inkey",
        recipient.key,
    )


def wrap_content_info(bare: bytes, content_type: str) -> bytes:
    """A ContentInfo around a bare envelope, so ``openssl cms -decrypt`` can read it."""
    spec = cms.AuthEnvelopedData if content_type == AUTH_ENVELOPED else cms.EnvelopedData
    name = "authenticated_enveloped_data" if content_type == AUTH_ENVELOPED else "enveloped_data"
    return bytes(cms.ContentInfo({"content_type": name, "content": spec.load(bare)}).dump())

"""Signed manifests of published runs, per recipient, and their verification (no Beam here).

Each recipient tree of a run carries ``manifest.json``: the run's files with their SHA-256, size
and row count, the recipient's own policy hash and the publish id, signed by the pseudonymiser
(detached CMS, ``manifest.json.p7s``). Each recipient folder carries ``index.json`` (signed the
same way): every published run with its manifest's SHA-256. ``verify`` checks all of it with
nothing but the recipient's folder and the pseudonymiser's trust anchor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from minimeter.cms import TrustStore, make_signed_data, verify_detached
from minimeter.cms.signed import OID_DATA
from minimeter.errors import CmsError
from minimeter.files import atomic_write
from minimeter.keys import load_certificates, load_private_key
from minimeter.layout import INDEX, MANIFEST, SIGNATURE, OutLayout, RecipientTree
from minimeter.policy.model import Policy
from minimeter.storage import AnyPath, parquet_rows, relative

FORMAT = "minimeter-manifest/1"
INDEX_FORMAT = "minimeter-index/1"


def digest_file(path: AnyPath) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def policy_hash(policy: Policy) -> str:
    """SHA-256 of one recipient's effective policy (its canonical form, as loaded)."""
    return hashlib.sha256(repr(policy).encode()).hexdigest()


@dataclass(frozen=True)
class Signer:
    """The pseudonymiser's signing key, certificate and chain (``minimeter synth`` names)."""

    key: PrivateKeyTypes
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @classmethod
    def from_pki(cls, pki: Path) -> Signer:
        return cls(
            load_private_key(pki / "pseudonymiser-key.pem"),
            load_certificates(pki / "pseudonymiser-cert.pem")[0],
            tuple(load_certificates(pki / "pseudonymiser-chain.pem")),
        )

    def sign(self, data: bytes) -> bytes:
        return make_signed_data(
            data,
            OID_DATA,
            signer_key=self.key,  # type: ignore[arg-type]
            signer_cert=self.cert,
            chain=self.chain,
            detached=True,
        )


def _encode(doc: dict[str, object]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Manifest:
    recipient: str
    run_id: str
    sha256: str
    files: int
    rows: int


def write_manifest(
    tree: RecipientTree,
    *,
    recipient: str,
    publish_id: str,
    policy_sha256: str,
    delivery: str,
    signer: Signer,
) -> Manifest:
    """Manifest and detached signature of one recipient tree, written into the tree."""
    files: list[dict[str, object]] = []
    total = 0
    for path in tree.data_files():
        entry = _entry(tree, path, "data")
        total += int(entry["rows"])  # type: ignore[call-overload]
        files.append(entry)
    for path in tree.forward_files():
        files.append(_entry(tree, path, "forward"))
    doc = {
        "format": FORMAT,
        "recipient": recipient,
        "run_id": tree.run_id,
        "publish_id": publish_id,
        "policy_hash": policy_sha256,
        "delivery": delivery,
        "files": files,
        "rows": total,
    }
    data = _encode(doc)
    atomic_write(tree.manifest, data, durable=True)
    atomic_write(tree.signature, signer.sign(data), durable=True)
    return Manifest(recipient, tree.run_id, hashlib.sha256(data).hexdigest(), len(files), total)


def _rows_of(parquet: bytes) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(pa.BufferReader(parquet)).metadata.num_rows)


def _facts(path: AnyPath, *, parquet: bool) -> tuple[int, str, int | None]:
    """(bytes, SHA-256, rows) of a file: a local one streamed (its Parquet footer read alone),
    an object in one read (one request)."""
    if isinstance(path, Path):
        rows = None
        if parquet:
            import pyarrow.parquet as pq

            rows = int(pq.ParquetFile(path).metadata.num_rows)
        return path.stat().st_size, digest_file(path), rows
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest(), _rows_of(data) if parquet else None


def _entry(tree: RecipientTree, path: AnyPath, kind: str) -> dict[str, object]:
    size, sha256, rows = _facts(path, parquet=kind == "data")
    return {
        "path": relative(path, tree.base),
        "kind": kind,
        "rows": rows,
        "bytes": size,
        "sha256": sha256,
    }


def write_index(layout: OutLayout, recipient: str, signer: Signer) -> None:
    """The recipient's signed index of every published run (rewritten from the run trees)."""
    runs = []
    for tree in layout.published_runs(recipient):
        if not tree.manifest.is_file():
            continue
        data = tree.manifest.read_bytes()
        doc = json.loads(data)
        runs.append(
            {
                "run_id": tree.run_id,
                "manifest_sha256": hashlib.sha256(data).hexdigest(),
                "publish_id": doc.get("publish_id"),
                "files": len(doc.get("files", [])),
                "rows": doc.get("rows", 0),
            }
        )
    data = _encode({"format": INDEX_FORMAT, "recipient": recipient, "runs": runs})
    atomic_write(layout.index(recipient), data, durable=True)
    atomic_write(layout.index_signature(recipient), signer.sign(data), durable=True)


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    recipient: str
    run_id: str | None
    what: str

    def __str__(self) -> str:
        where = f"{self.recipient}/{self.run_id}" if self.run_id else self.recipient
        return f"{where}: {self.what}"


@dataclass(frozen=True)
class Verified:
    recipients: int
    runs: int
    files: int
    rows: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings and self.recipients > 0


def _signed_json(
    data_path: AnyPath, sig_path: AnyPath, trust: TrustStore, at: datetime
) -> tuple[dict[str, object] | None, bytes | None, str | None]:
    """(document, bytes, problem)."""
    try:
        data = data_path.read_bytes()
    except OSError:
        return None, None, f"{data_path.name} is missing"
    try:
        signature = sig_path.read_bytes()
    except OSError:
        return None, data, f"{sig_path.name} is missing"
    try:
        verify_detached(signature, data, trust=trust, at=at)
    except CmsError as exc:
        return None, data, f"{sig_path.name}: {exc.category}: {exc.detail}"
    try:
        doc = json.loads(data)
    except ValueError:
        return None, data, f"{data_path.name} is not JSON"
    if not isinstance(doc, dict):
        return None, data, f"{data_path.name} is not a JSON object"
    return doc, data, None


def verify_recipient(
    root: AnyPath,
    recipient: str,
    trust: TrustStore,
    *,
    run_id: str | None = None,
    at: datetime,
) -> tuple[int, int, int, list[Finding]]:
    """Check one recipient folder ``root``: (runs, files, rows, findings)."""
    findings: list[Finding] = []
    layout = OutLayout(root.parent)

    def bad(what: str, rid: str | None = None) -> None:
        findings.append(Finding(recipient, rid, what))

    index, _, problem = _signed_json(root / INDEX, root / (INDEX + ".p7s"), trust, at)
    listed: dict[str, str] = {}
    if problem:
        bad(problem)
    elif index is not None:
        if index.get("recipient") != recipient:
            bad(f"index names recipient {index.get('recipient')!r}")
        entries = index.get("runs", [])
        for entry in entries if isinstance(entries, list) else []:
            listed[str(entry["run_id"])] = str(entry["manifest_sha256"])
    present = {tree.run_id: tree for tree in layout.published_runs(recipient)}
    wanted = [run_id] if run_id is not None else sorted(set(listed) | set(present))
    runs = files = rows = 0
    for rid in wanted:
        tree = present.get(rid)
        if tree is None:
            bad("listed in the index but missing" if rid in listed else "no such run", rid)
            continue
        if rid not in listed and index is not None:
            bad("published but not in the index", rid)
        runs += 1
        f, r = _verify_tree(tree, recipient, listed.get(rid), trust, at, lambda w, x=rid: bad(w, x))
        files += f
        rows += r
    return runs, files, rows, findings


def _verify_tree(
    tree: RecipientTree,
    recipient: str,
    expected_sha256: str | None,
    trust: TrustStore,
    at: datetime,
    bad: object,
) -> tuple[int, int]:
    report = bad  # a callable taking the finding text
    assert callable(report)
    doc, data, problem = _signed_json(tree.manifest, tree.signature, trust, at)
    if problem or doc is None or data is None:
        report(problem or "manifest unreadable")
        return 0, 0
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        report("manifest differs from the one the index lists")
    if doc.get("recipient") != recipient or doc.get("run_id") != tree.run_id:
        report("manifest names another recipient or run")
    return _check_files(tree, doc, report)


def _check_files(
    tree: RecipientTree, doc: dict[str, object], report: Callable[[str], None]
) -> tuple[int, int]:
    entries = doc.get("files", [])
    assert isinstance(entries, list)
    listed = set()
    rows = 0
    present = {  # one listing (an object store's rglob lists objects only)
        relative(p, tree.base)
        for p in tree.base.rglob("*")
        if not isinstance(p, Path) or p.is_file()
    }
    for entry in entries:
        rel = str(entry["path"])
        listed.add(rel)
        if ".." in PurePosixPath(rel).parts or rel not in present:
            report(f"{rel}: missing")
            continue
        path = tree.base / rel
        try:
            if isinstance(path, Path):
                sha256, data = digest_file(path), None
            else:  # one read: hash and rows
                data = path.read_bytes()
                sha256 = hashlib.sha256(data).hexdigest()
        except OSError as exc:
            report(f"{rel}: unreadable ({exc.strerror or exc})")
            continue
        if sha256 != entry["sha256"]:
            report(f"{rel}: SHA-256 differs from the manifest")
            continue
        if entry.get("kind") == "data":
            try:
                n = _rows_of(data) if data is not None else parquet_rows(path)
            except Exception:  # noqa: BLE001 - any unreadable file is a finding
                report(f"{rel}: not readable as Parquet")
                continue
            if n != entry.get("rows"):
                report(f"{rel}: {n} rows, the manifest says {entry.get('rows')}")
            rows += n
    if rows != doc.get("rows"):
        report(f"{rows} rows in the files, the manifest says {doc.get('rows')}")
    for rel in sorted(present):
        if rel not in listed and rel not in (MANIFEST, SIGNATURE):
            report(f"{rel}: not in the manifest")
    return len(entries), rows


def manifest_findings(tree: RecipientTree) -> list[str]:
    """What in a tree does not match its manifest (hashes, row counts, missing and extra
    files); the signature is ``verify``'s."""
    findings: list[str] = []
    try:
        doc = json.loads(tree.manifest.read_bytes())
    except (OSError, ValueError):
        return ["manifest.json is missing or not JSON"]
    _check_files(tree, doc, findings.append)
    return findings


def verify(
    out: AnyPath,
    trust: TrustStore,
    *,
    recipient: str | None = None,
    run_id: str | None = None,
    at: datetime,
) -> Verified:
    """Verify an output folder, one recipient of it, or a recipient's own folder (``out``
    holding ``index.json``)."""
    if (out / INDEX).is_file() or (out / "runs").is_dir():
        roots = [(out, out.name)]
    else:
        layout = OutLayout(out)
        names = [recipient] if recipient else layout.recipients()
        roots = [(out / name, name) for name in names]
    findings: list[Finding] = []
    runs = files = rows = 0
    for root, name in roots:
        if recipient and name != recipient:
            findings.append(Finding(name, None, f"this folder is {name}, not {recipient}"))
            continue
        if not root.is_dir():
            findings.append(Finding(name, None, "no such recipient folder"))
            continue
        r, f, n, found = verify_recipient(root, name, trust, run_id=run_id, at=at)
        runs, files, rows = runs + r, files + f, rows + n
        findings += found
    return Verified(len(roots), runs, files, rows, tuple(findings))

"""Per-recipient manifests (files, rows, SHA-256) with a detached CMS signature by the pseudonymiser."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from minimeter.cms import make_signed_data
from minimeter.cms.signed import OID_DATA
from minimeter.keys import load_certificates, load_private_key
from minimeter.pipeline.outputs import atomic_write, digest_file
from minimeter.policy.model import PolicySet


@dataclass(frozen=True)
class Manifest:
    recipient: str
    path: Path
    sha256: str
    files: int
    rows: int


def write_manifests(out: Path, ps: PolicySet, pki: Path, run_id: str) -> list[Manifest]:
    key = load_private_key(pki / "pseudonymiser-key.pem")
    cert = load_certificates(pki / "pseudonymiser-cert.pem")[0]
    chain = tuple(load_certificates(pki / "pseudonymiser-chain.pem"))
    manifests = []
    for policy in sorted(ps.policies, key=lambda p: p.id):
        base = out / policy.id
        if (out / "_quarantine" / policy.id / run_id).exists():
            continue  # quarantined outputs are not deliverable: no manifest
        files: list[dict[str, object]] = []
        total = 0
        for path in sorted(base.glob("data/date=*/*.parquet")) + sorted(base.glob("forward/*.cms")):
            rows = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else None
            files.append(
                {
                    "path": str(path.relative_to(base)),
                    "rows": rows,
                    "sha256": digest_file(path),
                    "kind": "data" if rows is not None else "forward",
                }
            )
        doc = {
            "recipient": policy.id,
            "run_id": run_id,
            "policy_hash": ps.digest,
            "delivery": policy.delivery,
            "files": files,
            "rows": total,
        }
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        manifest = base / "manifest.json"
        atomic_write(manifest, data)
        signature = make_signed_data(
            data, OID_DATA, signer_key=key, signer_cert=cert, chain=chain, detached=True
        )
        atomic_write(base / "manifest.json.p7s", signature)
        manifests.append(Manifest(policy.id, manifest, digest_file(manifest), len(files), total))
    return manifests

"""Writing deliverables, forwards and dead letters: complete files only (write, then rename)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from minimeter.files import atomic_write
from minimeter.minimise import Deliverable
from minimeter.policy.load import SCHEMAS
from minimeter.storage import AnyPath

_TYPES = {
    "string": pa.string(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(name: str) -> pa.Schema:
    """An output schema from ``schemas/outputs.arrow.json``."""
    spec = json.loads((SCHEMAS / "outputs.arrow.json").read_text())[name]
    return pa.schema(
        [pa.field(f["name"], _TYPES[f["type"]], nullable=f.get("nullable", True)) for f in spec]
    )


def deliverable_table(rows: list[Deliverable], *, aggregate: bool) -> pa.Table:
    """Deliverables (of one recipient) as a table of the output schema, sorted."""
    for r in rows:
        if not isinstance(r, Deliverable):
            raise TypeError("the writer accepts only Deliverable rows from the policy stage")
    ts = np.concatenate([r.ts_us for r in rows]) if rows else np.array([], dtype=np.int64)
    n = [len(r) for r in rows]
    cols: dict[str, object] = {
        "obis": [r.obis for r, k in zip(rows, n, strict=True) for _ in range(k)],
        "ts": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "value": np.concatenate([r.value for r in rows]) if rows else np.array([], dtype=float),
        "unit": [r.unit for r, k in zip(rows, n, strict=True) for _ in range(k)],
    }
    if aggregate:
        cols["area"] = [r.area for r, k in zip(rows, n, strict=True) for _ in range(k)]
        cols["n_meters"] = (
            np.concatenate([r.n_meters for r in rows if r.n_meters is not None]) if rows else []
        )
        schema = arrow_schema("aggregate")
        order = ["area", "obis", "ts"]
    else:
        cols["meter"] = [r.meter for r, k in zip(rows, n, strict=True) for _ in range(k)]
        cols["value_max"] = pa.array(
            np.concatenate(
                [r.value_max if r.value_max is not None else np.full(len(r), np.nan) for r in rows]
            )
            if rows
            else [],
            pa.float64(),
            from_pandas=True,
        )
        schema = arrow_schema("delivery")
        order = ["meter", "obis", "ts"]
    table = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
    return table.sort_by([(c, "ascending") for c in order])


def write_parquet(path: AnyPath, table: pa.Table, metadata: dict[str, str]) -> None:
    meta = dict(table.schema.metadata or {})
    meta.update({f"minimeter.{k}".encode(): v.encode() for k, v in metadata.items()})
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write(path, sink.getvalue().to_pybytes())


def forward_name(message: str) -> str:
    """A relayed message's file name: readable, and unique per input path (``a/b.cms`` and
    ``a_b.cms`` no longer meet): the path with separators replaced, plus a hash of the path."""
    stem = message[:-4] if message.endswith(".cms") else message
    safe = stem.replace("/", "_").replace("\\", "_")
    return f"{safe}.{hashlib.sha256(message.encode()).hexdigest()[:12]}.cms"

"""How linkable a run's pseudonymised datasets still are (no Beam here).

A pseudonym hides a meter's id, not its data. For every pair of recipients of one jurisdiction
of which the first is pseudonymised (identity ``pseudonym`` or ``none``, row-level delivery),
this counts the first recipient's series (pseudonym, OBIS code) that share at least one exact
(OBIS code, time, value) with the second recipient's rows: such a series can be joined to the
other dataset, and through it to a metering-point id where the other recipient has one.
Cumulative registers, which are unique per meter, are what rebasing (``registers: rebased``)
protects; interval values can still match where two recipients get the same granularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from minimeter.policy.model import Policy
from minimeter.storage import AnyPath, LocalCopies


@dataclass(frozen=True)
class Linkability:
    recipient: str
    other: str
    series: int
    """The recipient's series (pseudonym, OBIS code) in this run."""
    matched: int
    """Of those, the series with at least one exact (OBIS, time, value) in the other's rows."""


def measure(trees: dict[str, AnyPath], policies: tuple[Policy, ...]) -> list[Linkability]:
    """Every ordered pair of one jurisdiction, the first pseudonymised, on one run's trees."""
    rows = {p.id: p for p in policies if p.delivery == "parquet" and p.id in trees}
    found = {rid: sorted(trees[rid].glob("data/date=*/*.parquet")) for rid in rows}
    order = [(rid, f) for rid in sorted(found) for f in found[rid]]
    with LocalCopies(f for _, f in order) as local:  # type: ignore[misc]
        files: dict[str, list[str]] = {rid: [] for rid in rows}
        for (rid, _), name in zip(order, local, strict=True):
            files[rid].append(name)
        return _measure(rows, files)


def _measure(rows: dict[str, Policy], files: dict[str, list[str]]) -> list[Linkability]:
    out: list[Linkability] = []
    con = duckdb.connect()
    try:
        for a, pa in sorted(rows.items()):
            if pa.identity == "metering-point" or not files[a]:
                continue
            (series,) = con.execute(
                "SELECT count(*) FROM (SELECT DISTINCT meter, obis FROM read_parquet(?))",
                [files[a]],
            ).fetchall()[0]
            for b, pb in sorted(rows.items()):
                if b == a or pb.jurisdiction != pa.jurisdiction or not files[b]:
                    continue
                (matched,) = con.execute(
                    "SELECT count(*) FROM (SELECT DISTINCT x.meter, x.obis FROM read_parquet(?) x "
                    "JOIN read_parquet(?) y ON x.obis = y.obis AND x.ts = y.ts AND x.value = y.value)",
                    [files[a], files[b]],
                ).fetchall()[0]
                out.append(Linkability(a, b, int(series), int(matched)))
    finally:
        con.close()
    return out

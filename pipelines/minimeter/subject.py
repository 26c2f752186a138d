"""Subject access (GDPR Art. 15): who received a meter's data, from the published outputs.

For each recipient the published trees are searched for the meter: by its id for recipients
that receive metering-point ids, by the recipient's pseudonym of it (which the hub can compute
from the pseudonym secret) for pseudonymised recipients, and, for aggregate recipients, by the
groups of the meter's grid area it was in scope for. Nothing about other meters is returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from minimeter.errors import ConfigError
from minimeter.layout import OutLayout
from minimeter.minimise import in_scope
from minimeter.policy.model import PolicySet
from minimeter.pseudonym import pseudonym, recipient_key
from minimeter.registry import MeterRegistry
from minimeter.storage import AnyPath, LocalCopies


@dataclass(frozen=True)
class Disclosure:
    recipient: str
    delivery: str
    identity: str
    granularity: str
    runs: tuple[str, ...]
    obis: tuple[str, ...]
    first: str | None
    last: str | None
    rows: int
    pseudonym: str | None = None
    note: str = ""

    def as_dict(self, *, show_pseudonyms: bool) -> dict[str, object]:
        doc = asdict(self)
        if not show_pseudonyms:
            doc.pop("pseudonym")
        return doc


def subject_access(
    meter: str, *, out: AnyPath, ps: PolicySet, pki: Path, meters: Path
) -> list[Disclosure]:
    registry = MeterRegistry.load(meters)
    canonical = {m.casefold(): m for m in registry.meters}.get(meter.casefold())
    if canonical is None:
        raise ConfigError(f"{meters}: no such meter", "unknown-meter")
    info = registry.get(canonical)
    secret = (pki / "pseudonym-secret.key").read_bytes()
    layout = OutLayout(out)
    found: list[Disclosure] = []
    for policy in sorted(ps.policies, key=lambda p: p.id):
        if not in_scope(policy, info):
            continue
        trees = layout.published_runs(policy.id)
        base = dict(
            recipient=policy.id,
            delivery=policy.delivery,
            identity=policy.identity,
            granularity=policy.min_interval.text,
        )
        if policy.delivery == "cms-forward":
            runs = tuple(t.run_id for t in trees if t.forward_files())
            if runs:
                found.append(
                    Disclosure(
                        **base,
                        runs=runs,
                        obis=(),
                        first=None,
                        last=None,
                        rows=0,
                        note="messages relayed encrypted end to end: the hub cannot read them; "
                        "the meter's messages of these runs may be among them",
                    )
                )
            continue
        objects = [f for t in trees for f in t.data_files()]
        if not objects:
            continue
        if policy.delivery == "aggregate":
            assert info is not None
            where, params = "area = ?", [info.area]
            who = None
            note = f"aggregates of grid area {info.area} (k >= {policy.k_anonymity}) it was in scope for"
        else:
            who = canonical if policy.identity == "metering-point" else None
            if policy.identity == "pseudonym":
                who = pseudonym(recipient_key(secret, policy.id), canonical)
            if who is None:
                continue
            where, params, note = "meter = ?", [who], ""
        with LocalCopies(objects) as files:
            rows = duckdb.execute(
                f"SELECT regexp_extract(filename, '/runs/([^/]+)/', 1) AS run, obis, min(ts), "
                f"max(ts), count(*) FROM read_parquet(?, filename = true) WHERE {where} "
                "GROUP BY ALL",
                [files, *params],
            ).fetchall()
        if not rows:
            continue
        found.append(
            Disclosure(
                **base,
                runs=tuple(sorted({r[0] for r in rows})),
                obis=tuple(sorted({r[1] for r in rows})),
                first=min(r[2] for r in rows).isoformat(),
                last=max(r[3] for r in rows).isoformat(),
                rows=sum(int(r[4]) for r in rows),
                pseudonym=who if policy.identity == "pseudonym" else None,
                note=note,
            )
        )
    return found

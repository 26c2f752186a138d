"""Minimeter's Beam stages: composite PTransforms over the core's pure functions.

Keys and registries are loaded in ``DoFn.setup()`` from paths (never pickled into the graph);
failures become typed dead letters on a tagged output; counts flow as data for the audit and as
Beam metrics for monitoring. Nothing here holds module-level state, so the same graph runs on
FnApiRunner (one or several processes) and on portable runners with separate workers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from minimeter.cms import Relayed, TrustStore, open_or_relay
from minimeter.cms.signed import DEFAULT_MAX_SIZE
from minimeter.errors import CmsError, PayloadError
from minimeter.keys import load_certificates, load_private_key
from minimeter.minimise import (
    AreaTotal,
    Deliverable,
    aggregate_group,
    deliver_meter,
    horizon_us,
    select,
)
from minimeter.payload.k461 import DecodedProfile, DecodedSeries, decode_profile
from minimeter.pipeline.outputs import atomic_write, deliverable_table, safe_name, write_parquet
from minimeter.policy.model import Policy
from minimeter.pseudonym import recipient_key
from minimeter.registry import ConsentRegistry, MeterRegistry
from minimeter.spill import Spill, SpillRef, spill_directory, spill_key

DEAD = "dead"
FORWARD = "forward"
COUNTS = "counts"
AGGREGATE = "aggregate"
RUN = "_run"


@dataclass(frozen=True)
class DeadLetter:
    """A refused message: its name, the stage and the typed reason; never its content."""

    message: str
    stage: str
    category: str


@dataclass(frozen=True)
class Pki:
    """Paths of the PKI files (``minimeter synth`` names); files are read in setup()."""

    directory: str
    forward: tuple[str, ...]

    def file(self, name: str) -> Path:
        return Path(self.directory) / name


@dataclass(frozen=True)
class OpenedPayload:
    message: str
    payload: bytes


@dataclass(frozen=True)
class Forwarded:
    recipient: str
    message: str
    data: bytes


def count(recipient: str, reason: str, n: int) -> tuple[tuple[str, str], int]:
    return (recipient, reason), n


# --- 1. ReadMessages ------------------------------------------------------------------------------


class _Read(beam.DoFn):
    def __init__(self, base: str, max_size: int) -> None:
        self.base = base
        self.max_size = max_size
        self.read = Metrics.counter("minimeter", "messages-in")

    def process(self, readable: Any) -> Iterator[Any]:
        path = readable.metadata.path
        name = (
            str(Path(path).relative_to(self.base))
            if path.startswith(self.base)
            else Path(path).name
        )
        self.read.inc()
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "messages-in", 1))
        if readable.metadata.size_in_bytes > self.max_size:
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "payload-too-large"))
            return
        yield name, readable.read()


class ReadMessages(beam.PTransform):
    """File name (relative to the input's base directory) and bytes, size-capped."""

    def __init__(self, pattern: str, base: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__()
        self.pattern, self.base, self.max_size = pattern, base, max_size

    def expand(self, pbegin: Any) -> Any:
        return (
            pbegin
            | "Match"
            >> fileio.MatchFiles(
                self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Spread"
            >> beam.Reshuffle()  # so that workers share the files (no fused single bundle)
            | "Open" >> fileio.ReadMatches()
            | "Read"
            >> beam.ParDo(_Read(self.base, self.max_size)).with_outputs(
                DEAD, COUNTS, main="messages"
            )
        )


# --- 2. OpenCms -------------------------------------------------------------------------------------


class _Open(beam.DoFn):
    def __init__(self, pki: Pki, at: datetime | None) -> None:
        self.pki = pki
        self.at = at
        self.dead = Metrics.counter("minimeter", "dead-letters")

    def setup(self) -> None:
        p = self.pki
        self.trust = TrustStore.from_files(
            [p.file("trust-anchor.pem")], [p.file("intermediates.pem")]
        )
        self.hub_key = load_private_key(p.file("hub-key.pem"))
        self.hub_cert = load_certificates(p.file("hub-cert.pem"))[0]
        self.signer_key = load_private_key(p.file("pseudonymiser-key.pem"))
        self.signer_cert = load_certificates(p.file("pseudonymiser-cert.pem"))[0]
        self.chain = load_certificates(p.file("pseudonymiser-chain.pem"))
        self.forward = [
            (rid, load_certificates(p.file(f"forward-{rid}-cert.pem"))[0]) for rid in p.forward
        ]

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        name, data = element
        try:
            result = open_or_relay(
                data,
                recipient_key=self.hub_key,
                recipient_cert=self.hub_cert,
                forward=self.forward,
                signer_key=self.signer_key,
                signer_cert=self.signer_cert,
                chain=self.chain,
                trust=self.trust,
                at=self.at,
            )
        except CmsError as exc:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "open", exc.category))
            return
        if isinstance(result, Relayed):
            yield beam.pvalue.TaggedOutput(COUNTS, count(result.recipient, "messages-forwarded", 1))
            yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "forwarded", 1))
            yield beam.pvalue.TaggedOutput(
                FORWARD, Forwarded(result.recipient, name, result.message)
            )
            return
        yield OpenedPayload(name, result.payload)


class OpenCms(beam.PTransform):
    """Verify every message; decrypt ours; re-sign and relay forward recipients' messages."""

    def __init__(self, pki: Pki, at: datetime | None = None) -> None:
        super().__init__()
        self.pki, self.at = pki, at

    def expand(self, messages: Any) -> Any:
        return messages | "Open" >> beam.ParDo(_Open(self.pki, self.at)).with_outputs(
            DEAD, FORWARD, COUNTS, main="opened"
        )


# --- 3. DecodePayload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpillPlace:
    """Where a run parks decoded profiles (``minimeter.spill``): paths only; the key is derived
    in ``setup()`` from the pseudonym secret's file."""

    out: str
    run_id: str
    secret: str

    def open(self) -> Spill:
        key = spill_key(Path(self.secret).read_bytes(), self.run_id)
        return Spill(spill_directory(self.out, self.run_id), key)


class _Decode(beam.DoFn):
    SPILL_BATCH = 32
    """Profiles sealed into one spill file."""

    def __init__(self, spill: SpillPlace | None) -> None:
        self.place = spill

    def setup(self) -> None:
        self.spill = self.place.open() if self.place is not None else None

    def start_bundle(self) -> None:
        self.pending: list[DecodedProfile] = []

    def process(self, element: OpenedPayload) -> Iterator[Any]:
        try:
            profile = decode_profile(element.payload)
        except PayloadError as exc:
            yield beam.pvalue.TaggedOutput(
                DEAD, DeadLetter(element.message, "decode", exc.category)
            )
            return
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "opened", 1))
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "readings", profile.readings))
        if self.spill is None:
            yield profile.meter, profile
            return
        self.pending.append(profile)
        if len(self.pending) >= self.SPILL_BATCH:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        for meter_ref in self._flush():
            yield WindowedValue(meter_ref, MIN_TIMESTAMP, (GlobalWindow(),))

    def _flush(self) -> list[tuple[str, SpillRef]]:
        pending, self.pending = self.pending, []
        if not pending or self.spill is None:
            return []
        refs = self.spill.put(pending)
        return [(p.meter, ref) for p, ref in zip(pending, refs, strict=True)]


class DecodePayload(beam.PTransform):
    """K461 XML (zlib detected, parsed safely) into readings; failures are dead letters.

    The main output is ``(meter, spill reference)``: the profile itself waits in the run's
    encrypted spill (``minimeter.spill``), so the shuffle by meter carries references, not
    readings. Without a spill (``None``) it is ``(meter, profile)``."""

    def __init__(self, spill: SpillPlace | None) -> None:
        super().__init__()
        self.spill = spill

    def expand(self, opened: Any) -> Any:
        return opened | "Decode" >> beam.ParDo(_Decode(self.spill)).with_outputs(
            DEAD, COUNTS, main="decoded"
        )


# --- 4. ApplyPolicies ---------------------------------------------------------------------------


class _Minimise(beam.DoFn):
    """All of one meter's messages, every recipient: scope, consent, OBIS and retention per
    message, then the sampling limit and identity over the meter's whole series. Aggregates go
    on, keyed by area and interval, to be summed over meters."""

    def __init__(
        self,
        policies: tuple[Policy, ...],
        *,
        meters: str,
        consent: str,
        secret: str,
        as_of: datetime,
        spill: SpillPlace | None,
    ) -> None:
        self.policies = policies
        self.meters_path, self.consent_path, self.secret_path, self.as_of = (
            meters,
            consent,
            secret,
            as_of,
        )
        self.place = spill

    def setup(self) -> None:
        self.spill = self.place.open() if self.place is not None else None
        self.meters = MeterRegistry.load(self.meters_path)
        self.consent = ConsentRegistry.load(self.consent_path)
        self.horizons = {p.id: horizon_us(p, self.as_of) for p in self.policies}
        secret = Path(self.secret_path).read_bytes()
        self.keys = {
            p.id: recipient_key(secret, p.id) for p in self.policies if p.identity == "pseudonym"
        }

    def process(self, element: tuple[str, Iterable[Any]]) -> Iterator[Any]:
        meter, grouped = element
        spill = self.spill
        profiles: list[DecodedProfile] = (
            [spill.take(ref) for ref in sorted(grouped)] if spill is not None else list(grouped)
        )
        info = self.meters.get(meter)
        for policy in self.policies:
            counts: Counter[str] = Counter()
            parts: list[DecodedSeries] = []
            for profile in profiles:
                kept, c = select(policy, info, self.consent, profile, self.horizons[policy.id])
                counts.update(c)
                parts += kept
            if parts:
                rows, coarse, c = deliver_meter(policy, meter, parts, self.keys.get(policy.id))
                counts.update(c)
                yield from rows
                if coarse:
                    assert info is not None  # in scope, so registered
                    for part in coarse:
                        for ts, value, readings in zip(
                            part.ts_us.tolist(),
                            part.value.tolist(),
                            part.readings.tolist(),
                            strict=True,
                        ):
                            key = (policy.id, info.area, part.obis, part.unit, ts)
                            yield beam.pvalue.TaggedOutput(AGGREGATE, (key, (value, readings)))
            for reason, n in counts.items():
                if n:
                    yield beam.pvalue.TaggedOutput(COUNTS, count(policy.id, reason, n))


class _SumPerArea(beam.CombineFn):
    """Meters' values per (recipient, area, OBIS, unit, interval): combined before the shuffle,
    so that the shuffle carries one partial total per group, not one element per meter."""

    def create_accumulator(self) -> AreaTotal:
        return AreaTotal()

    def add_input(self, total: AreaTotal, contribution: tuple[float, int]) -> AreaTotal:
        value, readings = contribution
        return total.add(value, readings)

    def merge_accumulators(self, totals: Iterable[AreaTotal]) -> AreaTotal:
        merged = AreaTotal()
        for total in totals:
            merged.merge(total)
        return merged

    def extract_output(self, total: AreaTotal) -> AreaTotal:
        return total


class _Aggregate(beam.DoFn):
    def __init__(self, policies: tuple[Policy, ...]) -> None:
        self.policies = {p.id: p for p in policies}

    def process(self, element: tuple[tuple[str, str, str, str, int], AreaTotal]) -> Iterator[Any]:
        (rid, area, obis, unit, ts), total = element
        row, counts = aggregate_group(self.policies[rid], area, obis, unit, ts, total)
        for reason, n in counts.items():
            yield beam.pvalue.TaggedOutput(COUNTS, count(rid, reason, n))
        if row is not None:
            yield row


class ApplyPolicies(beam.PTransform):
    """Every recipient's policy; the only stage whose output (``Deliverable``) writers accept."""

    def __init__(
        self,
        policies: tuple[Policy, ...],
        *,
        meters: str,
        consent: str,
        secret: str,
        as_of: datetime,
        spill: SpillPlace | None,
    ) -> None:
        super().__init__()
        self.policies = tuple(p for p in policies if p.delivery != "cms-forward")
        self.meters, self.consent, self.secret, self.as_of = meters, consent, secret, as_of
        self.spill = spill

    def expand(self, decoded: Any) -> Any:
        delivered = (
            decoded
            | "GroupByMeter" >> beam.GroupByKey()
            | "Minimise"
            >> beam.ParDo(
                _Minimise(
                    self.policies,
                    meters=self.meters,
                    consent=self.consent,
                    secret=self.secret,
                    as_of=self.as_of,
                    spill=self.spill,
                )
            ).with_outputs(AGGREGATE, COUNTS, main="rows")
        )
        aggregated = (
            delivered[AGGREGATE]
            | "SumPerAreaAndInterval" >> beam.CombinePerKey(_SumPerArea())
            | "Aggregate" >> beam.ParDo(_Aggregate(self.policies)).with_outputs(COUNTS, main="rows")
        )
        rows = (delivered.rows, aggregated.rows) | "AllRows" >> beam.Flatten()
        counts = (delivered[COUNTS], aggregated[COUNTS]) | "AllCounts" >> beam.Flatten()
        return rows, counts


# --- 5. WriteParquet ------------------------------------------------------------------------------


class _WriteDay(beam.DoFn):
    def __init__(self, out: str, run_id: str, policy_hash: str, aggregates: frozenset[str]) -> None:
        self.out, self.run_id, self.policy_hash, self.aggregates = (
            out,
            run_id,
            policy_hash,
            aggregates,
        )

    def process(self, element: tuple[tuple[str, str], Iterable[Deliverable]]) -> Iterator[Any]:
        (rid, day), rows = element
        table = deliverable_table(list(rows), aggregate=rid in self.aggregates)
        path = Path(self.out) / rid / "data" / f"date={day}" / f"{self.run_id}.parquet"
        write_parquet(
            path, table, {"run_id": self.run_id, "policy_hash": self.policy_hash, "recipient": rid}
        )
        yield beam.pvalue.TaggedOutput(COUNTS, count(rid, "rows-delivered", table.num_rows))


class WriteParquet(beam.PTransform):
    """``OUT/<recipient>/data/date=YYYY-MM-DD/<run id>.parquet``: one file per recipient and day."""

    def __init__(self, out: str, run_id: str, policy_hash: str, aggregates: frozenset[str]) -> None:
        super().__init__()
        self.args = (out, run_id, policy_hash, aggregates)

    def expand(self, rows: Any) -> Any:
        return (
            rows
            | "ByRecipientAndDay"
            >> beam.FlatMap(
                lambda r: [((r.recipient, day), part) for day, part in r.split_by_day()]
            )
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteDay(*self.args)).with_outputs(COUNTS, main="written")
        )[COUNTS]


class _RedactMeterIds(beam.DoFn):
    """Dead letters name the message file; a file name that carries a registered meter id (some
    gateways name files ``<meter>.sm_data.xml.cms``) has that id replaced by ``<meter>``."""

    def __init__(self, meters: str) -> None:
        self.meters_path = meters

    def setup(self) -> None:
        self.meters = frozenset(MeterRegistry.load(self.meters_path).meters)

    def process(self, letter: DeadLetter) -> Iterator[DeadLetter]:
        parts = re.split(r"([^A-Za-z0-9]+)", letter.message)
        if any(p in self.meters for p in parts):
            name = "".join("<meter>" if p in self.meters else p for p in parts)
            letter = DeadLetter(name, letter.stage, letter.category)
        yield letter


class RedactMeterIds(beam.PTransform):
    def __init__(self, meters: str) -> None:
        super().__init__()
        self.meters = meters

    def expand(self, letters: Any) -> Any:
        return letters | "Redact" >> beam.ParDo(_RedactMeterIds(self.meters))


def write_forward(item: Forwarded, out: str) -> tuple[tuple[str, str], int]:
    atomic_write(Path(out) / item.recipient / "forward" / safe_name(item.message), item.data)
    return count(item.recipient, "messages-relayed", 1)


def write_dead_letters(out: str, run_id: str, letters: list[DeadLetter]) -> int:
    import pyarrow as pa

    from minimeter.pipeline.outputs import arrow_schema

    letters = sorted(letters, key=lambda d: (d.message, d.stage))
    table = pa.table(
        {
            "message": [d.message for d in letters],
            "stage": [d.stage for d in letters],
            "category": [d.category for d in letters],
            "run_id": [run_id] * len(letters),
        },
        schema=arrow_schema("dead_letters"),
    )
    write_parquet(Path(out) / "_dead_letters" / f"{run_id}.parquet", table, {"run_id": run_id})
    return len(letters)


def write_counts(path: str, items: list[tuple[tuple[str, str], int]]) -> None:
    import json

    rows = sorted([[rid, reason, n] for (rid, reason), n in items])
    atomic_write(Path(path), json.dumps(rows).encode())


def counter_dict(items: Iterable[tuple[tuple[str, str], int]]) -> Counter[tuple[str, str]]:
    c: Counter[tuple[str, str]] = Counter()
    for key, n in items:
        c[key] += n
    return c

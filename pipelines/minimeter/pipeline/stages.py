"""Minimeter's Beam stages: composite PTransforms over the core's pure functions.

Keys and registries are loaded in ``DoFn.setup()`` from paths (never pickled into the graph);
failures become typed dead letters on a tagged output; counts flow as data for the audit and as
Beam metrics for monitoring. Nothing here holds module-level state, so the same graph runs on
FnApiRunner (one or several processes) and on portable runners with separate workers.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from minimeter.cms import CmsSigner, EnvelopeRecipient, HanExport, Hub, Relayed, TrustStore
from minimeter.cms.signed import DEFAULT_MAX_SIZE
from minimeter.errors import CmsError, PayloadError
from minimeter.files import atomic_write
from minimeter.keys import load_certificates, load_private_key
from minimeter.layout import RecipientTree, Staging
from minimeter.minimise import (
    DEFAULT_MAX_POWER_W,
    AreaTotal,
    Deliverable,
    aggregate_group,
    conflicts,
    deliver_meter,
    horizon_us,
    implausible,
    select,
)
from minimeter.payload import decode_payload
from minimeter.pipeline.inputs import match_inputs
from minimeter.pipeline.outputs import deliverable_table, forward_name, write_parquet
from minimeter.policy.model import Policy
from minimeter.pseudonym import offset_key, pseudonym, recipient_key
from minimeter.readings import DecodedProfile, DecodedSeries
from minimeter.redact import Redactor
from minimeter.registry import ConsentRegistry, MeterRegistry
from minimeter.spill import Spill, SpillRef, spill_key
from minimeter.storage import location

DEAD = "dead"
FORWARD = "forward"
COUNTS = "counts"
AGGREGATE = "aggregate"
CARRY = "carry"
CONFLICTS = "conflicts"
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
    crls: tuple[str, ...] = ()

    def file(self, name: str) -> Path:
        return Path(self.directory) / name


@dataclass(frozen=True)
class Signer:
    """What the decode stage checks a message's readings against: the signer's id (its
    certificate's subject CN), the signing time and the certificate's validity (UTC µs)."""

    gateway: str
    signed_us: int
    valid_from_us: int
    valid_until_us: int

    @classmethod
    def of(cls, cert: Any, signing_time: datetime) -> Signer:
        from cryptography.x509.oid import NameOID

        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(
            str(names[0].value) if names else "",
            _us(signing_time),
            _us(cert.not_valid_before_utc),
            _us(cert.not_valid_after_utc),
        )


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


@dataclass(frozen=True)
class OpenedPayload:
    message: str
    payload: bytes
    signer: Signer | None = None


@dataclass(frozen=True)
class Forwarded:
    recipient: str
    message: str
    data: bytes


def count(recipient: str, reason: str, n: int) -> tuple[tuple[str, str], int]:
    return (recipient, reason), n


# --- 1. ReadMessages ------------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    return "://" not in path


class _Read(beam.DoFn):
    """One matched file: counted, refused unless a regular file within the size cap, read."""

    def __init__(self, base: str, max_size: int) -> None:
        self.base = base
        self.max_size = max_size
        self.read = Metrics.counter("minimeter", "messages-in")

    def process(self, path: str) -> Iterator[Any]:
        name = path[len(self.base) :] if path.startswith(self.base) else path.rsplit("/", 1)[-1]
        self.read.inc()
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "messages-in", 1))
        if _is_local(path):  # FIFOs, devices, directories are never opened
            try:
                info = os.stat(path)
            except OSError:
                yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "input-unreadable"))
                return
            if not stat.S_ISREG(info.st_mode):
                yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "input-unreadable"))
                return
            if info.st_size > self.max_size:
                yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "payload-too-large"))
                return
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                data = f.read(self.max_size + 1)
        except OSError:
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "input-unreadable"))
            return
        if len(data) > self.max_size:
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "read", "payload-too-large"))
            return
        yield name, data


class ReadMessages(beam.PTransform):
    """File name (relative to the input's base directory) and bytes, size-capped.

    Files are listed by ``minimeter.pipeline.inputs.match_inputs``, the function the run's
    pre-check used, so that a glob means the same before and inside the job."""

    def __init__(self, pattern: str, base: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__()
        self.pattern, self.base, self.max_size = pattern, base, max_size

    def expand(self, pbegin: Any) -> Any:
        return (
            pbegin
            | "Pattern" >> beam.Create([self.pattern])
            | "Match" >> beam.FlatMap(match_inputs)
            | "Spread" >> beam.Reshuffle()  # so that workers share the files
            | "Read"
            >> beam.ParDo(_Read(self.base, self.max_size)).with_outputs(
                DEAD, COUNTS, main="messages"
            )
        )


# --- 2. OpenCms -------------------------------------------------------------------------------------


class _Open(beam.DoFn):
    def __init__(self, pki: Pki, at: datetime, accept_han_export: bool = False) -> None:
        self.pki = pki
        self.at = at
        self.accept_han_export = accept_han_export
        self.dead = Metrics.counter("minimeter", "dead-letters")

    def setup(self) -> None:
        p = self.pki
        self.hub = Hub(
            recipient=EnvelopeRecipient(
                load_private_key(p.file("hub-key.pem")),
                load_certificates(p.file("hub-cert.pem"))[0],
            ),
            signer=CmsSigner(
                load_private_key(p.file("pseudonymiser-key.pem")),
                load_certificates(p.file("pseudonymiser-cert.pem"))[0],
                load_certificates(p.file("pseudonymiser-chain.pem")),
            ),
            trust=TrustStore.from_files(
                [p.file("trust-anchor.pem")], [p.file("intermediates.pem")], p.crls, at=self.at
            ),
            forward=[
                (rid, load_certificates(p.file(f"forward-{rid}-cert.pem"))[0]) for rid in p.forward
            ],
            accept_han_export=self.accept_han_export,
        )

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        name, data = element
        try:
            result = self.hub.open_or_relay(data, at=self.at)
        except CmsError as exc:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(name, "open", exc.category))
            return
        if isinstance(result, Relayed):
            yield beam.pvalue.TaggedOutput(COUNTS, count(result.recipient, "messages-forwarded", 1))
            if result.stripped:  # originatorInfo or unprotected attributes removed
                yield beam.pvalue.TaggedOutput(
                    COUNTS, count(result.recipient, "messages-relay-stripped", 1)
                )
            yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "forwarded", 1))
            yield beam.pvalue.TaggedOutput(
                FORWARD, Forwarded(result.recipient, name, result.message)
            )
            return
        if isinstance(result, HanExport):
            yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "han-exports", 1))
        yield OpenedPayload(name, result.payload, Signer.of(result.signer, result.signing_time))


class OpenCms(beam.PTransform):
    """Verify every message; decrypt ours; re-sign and relay forward recipients' messages."""

    def __init__(self, pki: Pki, at: datetime, accept_han_export: bool = False) -> None:
        super().__init__()
        self.pki, self.at, self.accept_han_export = pki, at, accept_han_export

    def expand(self, messages: Any) -> Any:
        opener = _Open(self.pki, self.at, self.accept_han_export)
        return messages | "Open" >> beam.ParDo(opener).with_outputs(
            DEAD, FORWARD, COUNTS, main="opened"
        )


# --- 3. DecodePayload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpillPlace:
    """Where a run parks sealed readings (``minimeter.spill``): paths only; the key is derived
    in ``setup()`` from the pseudonym secret's file and ``key_id`` (the run id for the spill,
    ``state:<run id>`` for readings carried to the next run)."""

    directory: str
    key_id: str
    secret: str

    def open(self) -> Spill:
        key = spill_key(Path(self.secret).read_bytes(), self.key_id)
        return Spill(location(self.directory), key)


@dataclass(frozen=True)
class Decoding:
    """What decoding needs besides the payload: meters.csv (ids are matched
    case-insensitively), the latest plausible capture time (the run's as-of plus a day) and
    the most readings one message may hold."""

    meters: str | None
    latest_us: int
    max_readings: int = 200_000


class _Decode(beam.DoFn):
    SPILL_BATCH = 32
    """Profiles sealed into one spill file."""

    def __init__(self, spill: SpillPlace | None, decoding: Decoding) -> None:
        self.place = spill
        self.decoding = decoding

    def setup(self) -> None:
        self.spill = self.place.open() if self.place is not None else None
        self.registry = MeterRegistry.load(self.decoding.meters) if self.decoding.meters else None
        meters = self.registry.meters if self.registry is not None else {}
        self.canonical = {m.casefold(): m for m in meters}

    def start_bundle(self) -> None:
        self.pending: list[DecodedProfile] = []

    def process(self, element: OpenedPayload) -> Iterator[Any]:
        try:
            profile = decode_payload(
                element.payload,
                latest_us=self.decoding.latest_us,
                max_readings=self.decoding.max_readings,
            )
        except PayloadError as exc:
            yield beam.pvalue.TaggedOutput(
                DEAD, DeadLetter(element.message, "decode", exc.category)
            )
            return
        meter = self.canonical.get(profile.meter.casefold(), profile.meter)
        profile = DecodedProfile(meter, profile.series, element.message)  # ids in our case
        refused = self._refusal(profile, element.signer)
        if refused is not None:
            yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(element.message, "decode", refused))
            return
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "opened", 1))
        yield beam.pvalue.TaggedOutput(COUNTS, count(RUN, "readings", profile.readings))
        if self.spill is None:
            yield profile.meter, profile
            return
        self.pending.append(profile)
        if len(self.pending) >= self.SPILL_BATCH:
            yield from self._flush()

    def _refusal(self, profile: DecodedProfile, signer: Signer | None) -> str | None:
        """Why a decoded message may not be used, or None: a meter missing from meters.csv
        (``meter-unknown``), a signer that is not the meter's registered gateway
        (``gateway-not-authorised``), or a reading captured after the signing time or outside
        the signer certificate's validity (``untrusted-signer``)."""
        if self.registry is None:
            return None
        info = self.registry.get(profile.meter)
        if info is None:
            return "meter-unknown"
        if signer is None:
            return None
        if info.gateway.casefold() != signer.gateway.casefold():
            return "gateway-not-authorised"
        latest = min(signer.signed_us, signer.valid_until_us)
        for s in profile.series:
            if len(s.captured_us) and (
                int(s.captured_us.max()) > latest or int(s.captured_us.min()) < signer.valid_from_us
            ):
                return "untrusted-signer"
        return None

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

    def __init__(self, spill: SpillPlace | None, decoding: Decoding) -> None:
        super().__init__()
        self.spill, self.decoding = spill, decoding

    def expand(self, opened: Any) -> Any:
        return opened | "Decode" >> beam.ParDo(_Decode(self.spill, self.decoding)).with_outputs(
            DEAD, COUNTS, main="decoded"
        )


# --- 4. ApplyPolicies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Carried:
    """Readings of one recipient's incomplete intervals of one meter, carried from an earlier
    run (they already passed that recipient's per-message filters)."""

    recipient: str
    profile: DecodedProfile


AUDIT_PSEUDONYMS = "_audit"
"""The pseudonym key of the audit's own tables (conflicts): no recipient's pseudonyms."""


@dataclass(frozen=True)
class ConflictRow:
    """Two or more messages disagree about one reading: their (redacted) names, the meter's
    audit pseudonym, the OBIS code and the time."""

    messages: tuple[str, ...]
    meter: str
    obis: str
    time_us: int


@dataclass(frozen=True)
class CarryPlan:
    """Carrying readings between runs: where the previous run's carried readings are (if any),
    where this run's go, and how old a carried reading may get (``max_age_us`` before the
    meter's newest reading)."""

    take: SpillPlace | None
    keep: SpillPlace | None
    max_age_us: int


class _Minimise(beam.DoFn):
    """All of one meter's messages, every recipient: scope, consent, OBIS and retention per
    message, then the sampling limit and identity over the meter's whole series. Aggregates go
    on, keyed by area and interval, to be summed over meters. Readings of intervals the run
    cannot complete go to the carry output when the run carries (``CarryPlan``)."""

    def __init__(
        self,
        policies: tuple[Policy, ...],
        *,
        meters: str,
        consent: str,
        secret: str,
        as_of: datetime,
        spill: SpillPlace | None,
        carry: CarryPlan | None,
        max_power_w: float = DEFAULT_MAX_POWER_W,
    ) -> None:
        self.policies = policies
        self.max_power_w = max_power_w
        self.meters_path, self.consent_path, self.secret_path, self.as_of = (
            meters,
            consent,
            secret,
            as_of,
        )
        self.place = spill
        self.carry = carry

    def setup(self) -> None:
        self.spill = self.place.open() if self.place is not None else None
        self.meters = MeterRegistry.load(self.meters_path)
        self.consent = ConsentRegistry.load(self.consent_path)
        self.horizons = {p.id: horizon_us(p, self.as_of) for p in self.policies}
        self.delivered_at_us = int(self.as_of.timestamp() * 1_000_000)
        secret = Path(self.secret_path).read_bytes()
        self.keys = {
            p.id: recipient_key(secret, p.id) for p in self.policies if p.identity == "pseudonym"
        }
        self.audit_key = recipient_key(secret, AUDIT_PSEUDONYMS)
        self.offsets = {
            p.id: offset_key(secret, p.id) for p in self.policies if p.rebases_registers
        }
        self.redact = redactor(self.meters_path)

    def process(self, element: tuple[str, Iterable[Any]]) -> Iterator[Any]:
        meter, grouped = element
        spill = self.spill
        items = list(grouped)
        carried: dict[str, list[DecodedSeries]] = {}
        for item in items:
            if isinstance(item, Carried):
                carried.setdefault(item.recipient, []).extend(item.profile.series)
        refs = sorted(item for item in items if not isinstance(item, (Carried, DecodedProfile)))
        profiles: list[DecodedProfile] = [
            item for item in items if isinstance(item, DecodedProfile)
        ]
        if spill is not None:
            profiles += [spill.take(ref) for ref in refs]
        carry_from = None
        if self.carry is not None and self.carry.keep is not None:
            newest = [
                int(s.times_us.max()) for p in profiles for s in p.series if len(s.times_us)
            ] + [int(s.times_us.max()) for ss in carried.values() for s in ss if len(s.times_us)]
            carry_from = (max(newest) if newest else 0) - self.carry.max_age_us
        info = self.meters.get(meter)
        disputed, found = conflicts(profiles)
        wrong = implausible(profiles, self.max_power_w, disputed)
        for dispute in found:
            yield beam.pvalue.TaggedOutput(
                CONFLICTS,
                ConflictRow(
                    tuple(self.redact(name) for name in dispute.sources),
                    pseudonym(self.audit_key, meter),
                    dispute.obis,
                    dispute.time_us,
                ),
            )
        for policy in self.policies:
            counts: Counter[str] = Counter()
            parts: list[DecodedSeries] = list(carried.get(policy.id, ()))
            counts["carried-in"] += sum(len(s.times_us) for s in parts)
            for profile in profiles:
                kept, c = select(
                    policy,
                    info,
                    self.consent,
                    profile,
                    self.horizons[policy.id],
                    wrong,
                    disputed,
                    delivered_at_us=self.delivered_at_us,
                )
                counts.update(c)
                parts += kept
            if parts:
                rows, coarse, c, leftover = deliver_meter(
                    policy,
                    meter,
                    parts,
                    self.keys.get(policy.id),
                    carry_from_us=carry_from,
                    offsets=self.offsets.get(policy.id),
                )
                counts.update(c)
                yield from rows
                if leftover:
                    yield beam.pvalue.TaggedOutput(
                        CARRY, (policy.id, DecodedProfile(meter, tuple(leftover)))
                    )
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
        carry: CarryPlan | None = None,
        max_power_w: float = DEFAULT_MAX_POWER_W,
    ) -> None:
        super().__init__()
        self.max_power_w = max_power_w
        self.policies = tuple(p for p in policies if p.delivery != "cms-forward")
        self.meters, self.consent, self.secret, self.as_of = meters, consent, secret, as_of
        self.spill = spill
        self.carry = carry

    def expand(self, decoded: Any) -> Any:
        if self.carry is not None and self.carry.take is not None:
            earlier = decoded.pipeline | "TakeCarried" >> TakeCarried(self.carry.take)
            decoded = (decoded, earlier) | "WithCarried" >> beam.Flatten()
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
                    carry=self.carry,
                    max_power_w=self.max_power_w,
                )
            ).with_outputs(AGGREGATE, COUNTS, CARRY, CONFLICTS, main="rows")
        )
        aggregated = (
            delivered[AGGREGATE]
            | "SumPerAreaAndInterval" >> beam.CombinePerKey(_SumPerArea())
            | "Aggregate" >> beam.ParDo(_Aggregate(self.policies)).with_outputs(COUNTS, main="rows")
        )
        rows = (delivered.rows, aggregated.rows) | "AllRows" >> beam.Flatten()
        counts = (delivered[COUNTS], aggregated[COUNTS]) | "AllCounts" >> beam.Flatten()
        if self.carry is not None and self.carry.keep is not None:
            delivered[CARRY] | "KeepCarried" >> KeepCarried(self.carry.keep)
        self.conflicts = delivered[CONFLICTS]
        return rows, counts


# --- carrying readings between runs -------------------------------------------------------------

CARRY_REFS = "refs.json"
"""In a state directory: ``[[recipient, file, offset, length], ...]`` of its sealed profiles."""


class _SealCarried(beam.DoFn):
    def __init__(self, place: SpillPlace) -> None:
        self.place = place

    def setup(self) -> None:
        self.spill = self.place.open()

    def start_bundle(self) -> None:
        self.pending: list[tuple[str, DecodedProfile]] = []

    def process(self, element: tuple[str, DecodedProfile]) -> Iterator[Any]:
        self.pending.append(element)
        if len(self.pending) >= 64:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        for ref in self._flush():
            yield WindowedValue(ref, MIN_TIMESTAMP, (GlobalWindow(),))

    def _flush(self) -> list[list[Any]]:
        pending, self.pending = self.pending, []
        if not pending:
            return []
        refs = self.spill.put([p for _, p in pending])
        return [[rid, *ref] for (rid, _), ref in zip(pending, refs, strict=True)]


def _write_refs(directory: str, refs: list[list[Any]]) -> None:
    atomic_write(location(directory) / CARRY_REFS, json.dumps(sorted(refs)).encode())


class KeepCarried(beam.PTransform):
    """This run's carried readings, sealed into its state directory, and their reference list."""

    def __init__(self, place: SpillPlace) -> None:
        super().__init__()
        self.place = place

    def expand(self, carried: Any) -> Any:
        directory = self.place.directory
        return (
            carried
            | "Seal" >> beam.ParDo(_SealCarried(self.place))
            | "Refs" >> beam.combiners.ToList()
            | "WriteRefs" >> beam.Map(lambda refs: _write_refs(directory, refs))
        )


def _read_refs(directory: str) -> list[tuple[str, str, int, int]]:
    path = location(directory) / CARRY_REFS
    if not path.is_file():
        return []
    return [(str(r), str(f), int(o), int(n)) for r, f, o, n in json.loads(path.read_bytes())]


class _OpenCarried(beam.DoFn):
    def __init__(self, place: SpillPlace) -> None:
        self.place = place

    def setup(self) -> None:
        self.spill = self.place.open()

    def process(self, ref: tuple[str, str, int, int]) -> Iterator[tuple[str, Carried]]:
        recipient, name, offset, length = ref
        profile = self.spill.take((name, offset, length))
        yield profile.meter, Carried(recipient, profile)


class TakeCarried(beam.PTransform):
    """The readings an earlier run carried, as ``(meter, Carried)`` for the group by meter."""

    def __init__(self, place: SpillPlace) -> None:
        super().__init__()
        self.place = place

    def expand(self, pbegin: Any) -> Any:
        directory = self.place.directory
        return (
            pbegin
            | "StateDir" >> beam.Create([directory])
            | "Refs" >> beam.FlatMap(_read_refs)
            | "Spread" >> beam.Reshuffle()
            | "Open" >> beam.ParDo(_OpenCarried(self.place))
        )


# --- 5. WriteParquet ------------------------------------------------------------------------------


class _WriteDay(beam.DoFn):
    def __init__(
        self, staging: str, run_id: str, policy_hash: str, aggregates: frozenset[str]
    ) -> None:
        self.staging, self.run_id, self.policy_hash, self.aggregates = (
            staging,
            run_id,
            policy_hash,
            aggregates,
        )

    def process(self, element: tuple[tuple[str, str], Iterable[Deliverable]]) -> Iterator[Any]:
        (rid, day), rows = element
        table = deliverable_table(list(rows), aggregate=rid in self.aggregates)
        path = Staging(location(self.staging), self.run_id).recipient(rid).data_file(day)
        write_parquet(
            path, table, {"run_id": self.run_id, "policy_hash": self.policy_hash, "recipient": rid}
        )
        yield beam.pvalue.TaggedOutput(COUNTS, count(rid, "rows-delivered", table.num_rows))


class WriteParquet(beam.PTransform):
    """``data/date=YYYY-MM-DD/<run id>.parquet`` of each recipient's staged tree: one file per
    recipient and day (``minimeter.layout``)."""

    def __init__(
        self,
        staging: str,
        run_id: str,
        policy_hash: str,
        aggregates: frozenset[str],
        zones: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.args = (staging, run_id, policy_hash, aggregates)
        self.zones = dict(zones or {})
        """Recipient id to the time zone of its calendar: the ``date=`` partition's day."""

    def expand(self, rows: Any) -> Any:
        return (
            rows
            | "ByRecipientAndDay"
            >> beam.FlatMap(
                lambda r, zones: [
                    ((r.recipient, day), part)
                    for day, part in r.split_by_day(zones.get(r.recipient, "UTC"))
                ],
                self.zones,
            )
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteDay(*self.args)).with_outputs(COUNTS, main="written")
        )[COUNTS]


class _RedactMeterIds(beam.DoFn):
    """Dead letters name the message file; every registered meter id and gateway id in it is
    replaced (``minimeter.redact``), wherever it occurs, ignoring case."""

    def __init__(self, meters: str) -> None:
        self.meters_path = meters

    def setup(self) -> None:
        self.redact = redactor(self.meters_path)

    def process(self, letter: DeadLetter) -> Iterator[DeadLetter]:
        name = self.redact(letter.message)
        yield letter if name == letter.message else DeadLetter(name, letter.stage, letter.category)


def redactor(meters_path: str) -> Redactor:
    registry = MeterRegistry.load(meters_path)
    return Redactor(registry.meters, (m.gateway for m in registry.meters.values()))


class RedactMeterIds(beam.PTransform):
    def __init__(self, meters: str) -> None:
        super().__init__()
        self.meters = meters

    def expand(self, letters: Any) -> Any:
        return letters | "Redact" >> beam.ParDo(_RedactMeterIds(self.meters))


def write_forward(item: Forwarded, staging: str, run_id: str) -> tuple[tuple[str, str], int]:
    tree: RecipientTree = Staging(location(staging), run_id).recipient(item.recipient)
    atomic_write(tree.forward_file(forward_name(item.message)), item.data)
    return count(item.recipient, "messages-relayed", 1)


def write_dead_letters(staging: str, run_id: str, letters: list[DeadLetter]) -> int:
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
    write_parquet(Staging(location(staging), run_id).dead_letters, table, {"run_id": run_id})
    return len(letters)


def write_conflicts(staging: str, run_id: str, rows: list[ConflictRow]) -> None:
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: (r.meter, r.obis, r.time_us, r.messages))
    table = pa.table(
        {
            "messages": pa.array([list(r.messages) for r in rows], pa.list_(pa.string())),
            "meter": pa.array([r.meter for r in rows], pa.string()),
            "obis": pa.array([r.obis for r in rows], pa.string()),
            "ts": pa.array([r.time_us for r in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )
    write_parquet(Staging(location(staging), run_id).conflicts, table, {"run_id": run_id})


def write_counts(path: str, items: list[tuple[tuple[str, str], int]]) -> None:
    import json

    rows = sorted([[rid, reason, n] for (rid, reason), n in items])
    atomic_write(location(path), json.dumps(rows).encode())


def counter_dict(items: Iterable[tuple[tuple[str, str], int]]) -> Counter[tuple[str, str]]:
    c: Counter[tuple[str, str]] = Counter()
    for key, n in items:
        c[key] += n
    return c


# --- the whole job ------------------------------------------------------------------------------


class MinimeterJob(beam.PTransform):
    """The whole graph, over the stage composites: every runner gets this one composite.

    Everything it writes goes into the run's staging area (``minimeter.layout.Staging``);
    publishing is the caller's, after conformance."""

    def __init__(
        self,
        *,
        input: str,
        input_base: str,
        pki: Pki,
        policies: tuple[Policy, ...],
        policy_hash: str,
        meters: str,
        consent: str,
        secret: str,
        as_of: datetime,
        staging: str,
        run_id: str,
        aggregates: frozenset[str],
        spill: SpillPlace | None,
        carry: CarryPlan | None,
        decoding: Decoding,
        processing_time: datetime,
        accept_han_export: bool = False,
        max_power_w: float = DEFAULT_MAX_POWER_W,
    ) -> None:
        super().__init__()
        self.processing_time = processing_time
        self.decoding, self.accept_han_export = decoding, accept_han_export
        self.max_power_w = max_power_w
        self.input, self.input_base, self.pki = input, input_base, pki
        self.policies, self.policy_hash = policies, policy_hash
        self.meters, self.consent, self.secret, self.as_of = meters, consent, secret, as_of
        self.staging, self.run_id, self.aggregates = staging, run_id, aggregates
        self.spill, self.carry = spill, carry

    def expand(self, pbegin: Any) -> Any:
        staging, run_id = self.staging, self.run_id
        read = pbegin | "ReadMessages" >> ReadMessages(self.input, self.input_base)
        opened = read.messages | "OpenCms" >> OpenCms(
            self.pki, self.processing_time, accept_han_export=self.accept_han_export
        )
        decoded = opened.opened | "DecodePayload" >> DecodePayload(self.spill, self.decoding)
        apply = ApplyPolicies(
            self.policies,
            meters=self.meters,
            consent=self.consent,
            secret=self.secret,
            as_of=self.as_of,
            spill=self.spill,
            carry=self.carry,
            max_power_w=self.max_power_w,
        )
        rows, policy_counts = decoded.decoded | "ApplyPolicies" >> apply
        written = rows | "WriteParquet" >> WriteParquet(
            staging,
            run_id,
            self.policy_hash,
            self.aggregates,
            {p.id: p.timezone for p in self.policies},
        )
        relayed = opened[FORWARD] | "WriteForwards" >> beam.Map(write_forward, staging, run_id)
        _ = (
            apply.conflicts
            | "AllConflicts" >> beam.combiners.ToList()
            | "WriteConflicts" >> beam.Map(lambda rows: write_conflicts(staging, run_id, rows))
        )
        dead = (read[DEAD], opened[DEAD], decoded[DEAD]) | "DeadLetters" >> beam.Flatten()
        dead = dead | "RedactNames" >> RedactMeterIds(self.meters)
        dead_total = (
            dead
            | "AllDeadLetters" >> beam.combiners.ToList()
            | "WriteDeadLetters"
            >> beam.Map(lambda letters: write_dead_letters(staging, run_id, letters))
            | "DeadCount" >> beam.Map(lambda n: count(RUN, "dead-letters", n))
        )
        counts_path = str(Staging(location(staging), run_id).counts)
        return (
            (
                read[COUNTS],
                opened[COUNTS],
                decoded[COUNTS],
                policy_counts,
                written,
                relayed,
                dead_total,
            )
            | "AllCounts" >> beam.Flatten()
            | "Sum" >> beam.CombinePerKey(sum)
            | "CountList" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(lambda items: write_counts(counts_path, items))
        )

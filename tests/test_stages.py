"""Each stage composite of ``minimeter.pipeline.stages`` on its own, in a TestPipeline with
``assert_that``, and ``MinimeterJob`` (the whole graph) end to end: seconds each, on the session's
14-meter, 3-day fleet (``synth_dir``), checked against the fleet's ground truth
(``truth/messages.csv``, ``faults.csv``) rather than against another run.

Inputs of a stage are made with the stage before it used as a plain DoFn (``setup`` then
``process``), so that each pipeline holds one stage composite.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import pickle
import shutil
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from minimeter.pipeline import stages
from minimeter.policy.load import PROJECT_ROOT, load_policy_set
from minimeter.readings import DecodedProfile
from minimeter.registry import MeterRegistry

AS_OF = datetime(2026, 2, 1, tzinfo=UTC)
AT = datetime(2026, 2, 2, tzinfo=UTC)
"""Signatures are checked as of the end of the as-of day (``run.processing_time``)."""
POLICIES = PROJECT_ROOT / "policies"


# --- the fleet and its ground truth ---------------------------------------------------------------


def pattern(fleet: Path) -> str:
    return str(fleet / "messages" / "**" / "*.cms")


def base(fleet: Path) -> str:
    return str(fleet / "messages") + os.sep


def messages(fleet: Path) -> dict[str, bytes]:
    """Every message by its name relative to the input base (``2026-01-09/x.cms``)."""
    root = fleet / "messages"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*.cms"))}


def truth(fleet: Path) -> dict[str, dict[str, str]]:
    """messages.csv by message name, with the fault's category and stage where it has one."""

    def name(m: str) -> str:
        return m.removeprefix("messages/")

    with open(fleet / "truth" / "messages.csv", newline="") as f:
        rows = {name(r["message"]): dict(r) for r in csv.DictReader(f)}
    with open(fleet / "faults.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(name(r["message"]), {}).update(category=r["category"], stage=r["stage"])
    return rows


def dead_at(fleet: Path, stage: str) -> set[stages.DeadLetter]:
    return {
        stages.DeadLetter(m, stage, t["category"])
        for m, t in truth(fleet).items()
        if t.get("stage") == stage
    }


def policy_set() -> Any:
    return load_policy_set(POLICIES)


def pki(fleet: Path) -> stages.Pki:
    forward = tuple(p.id for p in policy_set().policies if p.delivery == "cms-forward")
    return stages.Pki(str(fleet / "pki"), forward)


def decoding(fleet: Path) -> stages.Decoding:
    return stages.Decoding(
        meters=str(fleet / "meters.csv"),
        latest_us=int(AS_OF.timestamp() * 1_000_000) + 86_400 * 1_000_000,
    )


def run_dofn(fn: beam.DoFn, elements: list[Any]) -> tuple[list[Any], dict[str, list[Any]]]:
    """A DoFn outside Beam: (main outputs, tagged outputs by tag)."""
    fn.setup()
    if hasattr(fn, "start_bundle"):
        fn.start_bundle()
    main: list[Any] = []
    tagged: dict[str, list[Any]] = defaultdict(list)
    outputs = [o for e in elements for o in fn.process(e)]
    outputs += list(fn.finish_bundle() or ())
    for o in outputs:
        if isinstance(o, beam.pvalue.TaggedOutput):
            tagged[o.tag].append(o.value)
        else:
            main.append(getattr(o, "value", o))
    return main, tagged


def opened_payloads(fleet: Path) -> list[stages.OpenedPayload]:
    main, _ = run_dofn(stages._Open(pki(fleet), AT), sorted(messages(fleet).items()))
    return main


def decoded_profiles(fleet: Path) -> list[tuple[str, DecodedProfile]]:
    main, _ = run_dofn(stages._Decode(None, decoding(fleet)), opened_payloads(fleet))
    return main


def summed(items: list[tuple[tuple[str, str], int]]) -> Counter[tuple[str, str]]:
    return stages.counter_dict(items)


def _load(path: str) -> list[Any]:
    with open(path, "rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


def created(p: Any, items: list[Any], where: Path, label: str = "Inputs") -> Any:
    """``beam.Create(items)`` without pickling the items into the graph (Beam compresses the
    graph with bz2, seconds for a megabyte of messages): they wait in a file."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{label}.pickle"
    path.write_bytes(pickle.dumps(items))
    return p | label >> beam.Create([str(path)]) | f"{label}Load" >> beam.FlatMap(_load)


def digest(item: tuple[str, bytes]) -> tuple[str, str]:
    return item[0], hashlib.sha256(item[1]).hexdigest()


def matches(check: Any) -> Any:
    """An ``assert_that`` matcher from a function that raises AssertionError."""

    def matcher(actual: list[Any]) -> None:
        try:
            check(list(actual))
        except AssertionError as exc:
            raise BeamAssertException(str(exc)) from None

    return matcher


# --- 1. ReadMessages ------------------------------------------------------------------------------


def test_read_messages(synth_dir: Path, tmp_path: Path) -> None:
    fleet = messages(synth_dir)
    inbox = tmp_path / "in"
    (inbox / "a").mkdir(parents=True)
    few = sorted(fleet.items())[:3]
    for i, (_, data) in enumerate(few):
        (inbox / "a" / f"m{i}.cms").write_bytes(data)
    cap = max(len(d) for _, d in few)
    (inbox / "big.cms").write_bytes(b"\x30" * (cap + 1))
    (inbox / "a" / "dir.cms").mkdir()
    os.mkfifo(inbox / "a" / "fifo.cms")
    small = str(inbox / "**" / "*.cms")

    with BeamTestPipeline() as p:
        whole = p | "Fleet" >> stages.ReadMessages(pattern(synth_dir), base(synth_dir))
        assert_that(
            whole.messages | "Digest" >> beam.Map(digest),
            equal_to([digest(m) for m in fleet.items()]),
            label="AllRead",
        )
        assert_that(whole[stages.DEAD], equal_to([]), label="NoneDead")
        odd = p | "Odd" >> stages.ReadMessages(small, str(inbox) + os.sep, max_size=cap)
        assert_that(
            odd.messages | "DigestOdd" >> beam.Map(digest),
            equal_to([digest((f"a/m{i}.cms", d)) for i, (_, d) in enumerate(few)]),
            label="Regular",
        )
        assert_that(
            odd[stages.DEAD],
            equal_to(
                [
                    stages.DeadLetter("big.cms", "read", "payload-too-large"),
                    stages.DeadLetter("a/dir.cms", "read", "input-unreadable"),
                    stages.DeadLetter("a/fifo.cms", "read", "input-unreadable"),
                ]
            ),
            label="Refused",
        )
        assert_that(
            odd[stages.COUNTS] | "Sum" >> beam.CombinePerKey(sum),
            equal_to([((stages.RUN, "messages-in"), 6)]),
            label="Counted",
        )


# --- 2. OpenCms -----------------------------------------------------------------------------------


def test_open_cms(synth_dir: Path, tmp_path: Path) -> None:
    t = truth(synth_dir)
    fleet = messages(synth_dir)
    hub = sorted(m for m, r in t.items() if r.get("route") == "hub" and "stage" not in r)
    hub += sorted(m for m, r in t.items() if r.get("stage") == "decode")  # opened, bad inside
    forward = sorted(
        (r["recipient"], m)
        for m, r in t.items()
        if r.get("route") == "forward" and "stage" not in r
    )
    assert hub and forward and dead_at(synth_dir, "open")
    pseudonymiser = (synth_dir / "pki" / "pseudonymiser-cert.pem").read_bytes()
    originals = {m: hashlib.sha256(d).hexdigest() for m, d in fleet.items()}

    def relayed(items: list[stages.Forwarded]) -> None:
        assert sorted((f.recipient, f.message) for f in items) == forward
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        from minimeter.cms.signed import read_signed_parts

        signer = x509.load_pem_x509_certificate(pseudonymiser).public_bytes(Encoding.DER)
        for f in items:
            assert hashlib.sha256(f.data).hexdigest() != originals[f.message]  # re-signed
            assert signer in read_signed_parts(f.data).certificates, f.message

    with BeamTestPipeline() as p:
        out = created(p, sorted(fleet.items()), tmp_path) | stages.OpenCms(pki(synth_dir), AT)
        assert_that(
            out.opened | beam.Map(lambda o: o.message), equal_to(sorted(hub)), label="Opened"
        )
        assert_that(out[stages.FORWARD], matches(relayed), label="Relayed")
        assert_that(
            out[stages.DEAD], equal_to(sorted(dead_at(synth_dir, "open"), key=str)), label="Dead"
        )
        assert_that(
            out[stages.COUNTS] | "Sum" >> beam.CombinePerKey(sum),
            equal_to(
                [((stages.RUN, "forwarded"), len(forward))]
                + [
                    ((rid, "messages-forwarded"), n)
                    for rid, n in Counter(r for r, _ in forward).items()
                ]
            ),
            label="Counted",
        )


# --- 3. DecodePayload -----------------------------------------------------------------------------


def test_decode_payload(synth_dir: Path, tmp_path: Path) -> None:
    t = truth(synth_dir)
    ok = [m for m, r in t.items() if r.get("route") == "hub" and "stage" not in r]
    per_meter: Counter[str] = Counter()
    for m in ok:
        per_meter[t[m]["meter"]] += int(t[m]["readings"])
    opened = opened_payloads(synth_dir)
    secret = str(synth_dir / "pki" / "pseudonym-secret.key")
    place = stages.SpillPlace(str(tmp_path / "work"), "stage-test", secret)

    def readings(pairs: list[tuple[str, DecodedProfile]]) -> Counter[str]:
        c: Counter[str] = Counter()
        for meter, profile in pairs:
            assert meter == profile.meter
            c[meter] += profile.readings
        return c

    def same_readings(pairs: list[tuple[str, DecodedProfile]]) -> None:
        assert readings(pairs) == per_meter

    def spilled(pairs: list[tuple[str, Any]]) -> None:
        spill = place.open()
        assert readings([(m, spill.take(tuple(ref))) for m, ref in pairs]) == per_meter

    def payload_faults(letters: list[stages.DeadLetter]) -> None:
        # the fault's message and stage; its category within the payload family, which the
        # decoders refine (a payload that is not K461 is "unsupported", not just "invalid")
        expected = dead_at(synth_dir, "decode")
        assert sorted((d.message, d.stage) for d in letters) == sorted(
            (d.message, d.stage) for d in expected
        )
        assert all(d.category.startswith("payload-") for d in letters), letters

    expected_counts = [
        ((stages.RUN, "opened"), len(ok)),
        ((stages.RUN, "readings"), sum(per_meter.values())),
    ]
    with BeamTestPipeline() as p:
        inputs = created(p, opened, tmp_path / "in")
        plain = inputs | "Plain" >> stages.DecodePayload(None, decoding(synth_dir))
        assert_that(plain.decoded, matches(same_readings), label="Profiles")
        assert_that(plain[stages.DEAD], matches(payload_faults), label="Dead")
        assert_that(
            plain[stages.COUNTS] | "Sum" >> beam.CombinePerKey(sum),
            equal_to(expected_counts),
            label="Counted",
        )
        sealed = inputs | "Spilled" >> stages.DecodePayload(place, decoding(synth_dir))
        assert_that(sealed.decoded, matches(spilled), label="References")
    assert any((tmp_path / "work").iterdir())  # the profiles waited in the spill, sealed
    for f in (tmp_path / "work").iterdir():
        assert b"<?xml" not in f.read_bytes()


# --- 4. ApplyPolicies -----------------------------------------------------------------------------


def test_apply_policies(synth_dir: Path, tmp_path: Path) -> None:
    ps = policy_set()
    decoded = decoded_profiles(synth_dir)
    total = sum(p.readings for _, p in decoded)
    raw_ids = set(MeterRegistry.load(synth_dir / "meters.csv").meters)
    applied = [p for p in ps.policies if p.delivery != "cms-forward"]
    identity = {p.id: p.identity for p in applied}

    def balanced(items: list[tuple[tuple[str, str], int]]) -> None:
        c = summed(items)
        for policy in applied:
            got = {reason: n for (rid, reason), n in c.items() if rid == policy.id}
            assert got.get("readings-in") == total, (policy.id, got)
            out = sum(n for r, n in got.items() if r.startswith(("dropped-", "suppressed-")))
            out += got.get("kept", 0) + got.get("carried-out", 0)
            assert got["readings-in"] + got.get("carried-in", 0) == out, (policy.id, got)
        assert sum(n for (_, reason), n in c.items() if reason == "kept") > 0

    def minimised(rows: list[Any]) -> None:
        assert rows
        assert {r.recipient for r in rows} <= set(identity)
        for r in rows:
            if identity[r.recipient] != "metering-point":
                assert r.meter not in raw_ids, r.recipient
            if identity[r.recipient] == "none":
                assert r.meter is None, r.recipient
            assert len(r) == len(r.ts_us) > 0

    with BeamTestPipeline() as p:
        rows, counts = created(p, decoded, tmp_path) | stages.ApplyPolicies(
            ps.policies,
            meters=str(synth_dir / "meters.csv"),
            consent=str(synth_dir / "consent.csv"),
            secret=str(synth_dir / "pki" / "pseudonym-secret.key"),
            as_of=AS_OF,
            spill=None,
        )
        assert_that(counts, matches(balanced), label="Balanced")
        assert_that(rows, matches(minimised), label="Rows")


# --- 5. WriteParquet ------------------------------------------------------------------------------


def test_write_parquet(synth_dir: Path, tmp_path: Path) -> None:
    ps = policy_set()
    staging = tmp_path / "staging"
    aggregates = frozenset(p.id for p in ps.policies if p.delivery == "aggregate")

    def on_disk(items: list[tuple[tuple[str, str], int]]) -> None:
        counted = summed(items)
        assert counted and all(reason == "rows-delivered" for _, reason in counted)
        for (rid, _), n in counted.items():
            files = sorted((staging / "recipients" / rid / "data").glob("date=*/run-w.parquet"))
            assert files, rid
            assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == n, rid
            for f in files:
                meta = pq.read_schema(f).metadata
                assert meta[b"minimeter.run_id"] == b"run-w"
                assert meta[b"minimeter.policy_hash"] == ps.digest.encode()
                assert meta[b"minimeter.recipient"] == rid.encode()

    def per_recipient(rows: list[Any]) -> None:  # the same totals, counted from the rows
        by: Counter[str] = Counter()
        for rid, n in rows:
            by[rid] += n
        assert by and all(n > 0 for n in by.values())
        (staging.parent / "row-totals.json").write_text(json.dumps(by))

    with BeamTestPipeline() as p:
        rows, _ = created(p, decoded_profiles(synth_dir), tmp_path / "in") | stages.ApplyPolicies(
            ps.policies,
            meters=str(synth_dir / "meters.csv"),
            consent=str(synth_dir / "consent.csv"),
            secret=str(synth_dir / "pki" / "pseudonym-secret.key"),
            as_of=AS_OF,
            spill=None,
        )
        written = rows | stages.WriteParquet(str(staging), "run-w", ps.digest, aggregates)
        assert_that(written, matches(on_disk), label="Written")
        assert_that(
            rows | beam.Map(lambda r: (r.recipient, len(r))), matches(per_recipient), label="Rows"
        )
    totals = json.loads((tmp_path / "row-totals.json").read_text())
    for rid, n in totals.items():
        files = (staging / "recipients" / rid / "data").glob("date=*/run-w.parquet")
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == n, rid


# --- 6. RedactMeterIds ----------------------------------------------------------------------------


def test_redact_meter_ids(synth_dir: Path) -> None:
    meters = sorted(MeterRegistry.load(synth_dir / "meters.csv").meters)
    meter = meters[0]
    letters = [
        stages.DeadLetter(f"2026-01-09/{meter}.sm_data.xml.cms", "open", "malformed"),
        stages.DeadLetter(f"{meter}/{meters[1]}_1.cms", "read", "input-unreadable"),
        stages.DeadLetter("2026-01-09/0a1b2c.cms", "decode", "payload-invalid"),
    ]

    def redacted(out: list[stages.DeadLetter]) -> None:
        assert len(out) == len(letters)
        by_kind = {(d.stage, d.category): d for d in out}
        for letter in letters:
            got = by_kind[(letter.stage, letter.category)]
            assert not any(m.casefold() in got.message.casefold() for m in meters), got
            if not any(m in letter.message for m in meters):
                assert got == letter  # nothing to redact: unchanged
            else:
                assert "<" in got.message and got.message.endswith(".cms"), got

    with BeamTestPipeline() as p:
        out = p | beam.Create(letters) | stages.RedactMeterIds(str(synth_dir / "meters.csv"))
        assert_that(out, matches(redacted))


# --- the whole job --------------------------------------------------------------------------------


def job(fleet: Path, staging: Path, run_id: str) -> stages.MinimeterJob:
    """``MinimeterJob`` as ``minimeter run`` builds it (``run._run_job``), without the spill's and
    the carry's directories of a real output folder."""
    ps = policy_set()
    kwargs: dict[str, Any] = dict(
        input=pattern(fleet),
        input_base=base(fleet),
        pki=pki(fleet),
        policies=ps.policies,
        policy_hash=ps.digest,
        meters=str(fleet / "meters.csv"),
        consent=str(fleet / "consent.csv"),
        secret=str(fleet / "pki" / "pseudonym-secret.key"),
        as_of=AS_OF,
        staging=str(staging),
        run_id=run_id,
        aggregates=frozenset(p.id for p in ps.policies if p.delivery == "aggregate"),
        spill=stages.SpillPlace(
            str(staging / "work"), run_id, str(fleet / "pki" / "pseudonym-secret.key")
        ),
        carry=None,
        decoding=decoding(fleet),
    )
    if "processing_time" in inspect.signature(stages.MinimeterJob.__init__).parameters:
        kwargs["processing_time"] = AT
    return stages.MinimeterJob(**kwargs)


def test_minimeter_job_end_to_end(synth_dir: Path, tmp_path: Path) -> None:
    t = truth(synth_dir)
    staging = tmp_path / "staging"
    with BeamTestPipeline() as p:
        _ = p | stages.MinimeterJob.__name__ >> job(synth_dir, staging, "run-e")
    counts = {
        (rid, reason): n for rid, reason, n in json.loads((staging / "counts.json").read_text())
    }
    run = {reason: n for (rid, reason), n in counts.items() if rid == stages.RUN}
    assert run["messages-in"] == len(t) == run["opened"] + run["forwarded"] + run["dead-letters"]
    assert run["forwarded"] == sum(
        1 for r in t.values() if r.get("route") == "forward" and "stage" not in r
    )
    dead = pq.read_table(staging / "dead_letters.parquet").to_pylist()
    assert {stages.DeadLetter(d["message"], d["stage"], d["category"]) for d in dead} >= (
        dead_at(synth_dir, "open")
    )
    assert sorted((d["message"], d["stage"]) for d in dead) == sorted(
        (d.message, d.stage) for d in dead_at(synth_dir, "open") | dead_at(synth_dir, "decode")
    )
    forwards = sorted(staging.glob("recipients/*/forward/*.cms"))
    assert len(forwards) == run["forwarded"]
    for (rid, reason), n in counts.items():
        if reason == "rows-delivered":
            files = (staging / "recipients" / rid / "data").glob("date=*/run-e.parquet")
            assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == n, rid
    assert sum(n for (_, reason), n in counts.items() if reason == "rows-delivered") > 0
    shutil.rmtree(staging / "work", ignore_errors=True)

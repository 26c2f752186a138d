"""``minimeter run``: the main job, from a folder of gateway messages to per-recipient datasets."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

from minimeter.errors import ConfigError, MinimeterError
from minimeter.policy.check import require_valid
from minimeter.policy.load import PROJECT_ROOT, load_policy_set
from minimeter.policy.model import PolicySet

PKI_FILES = (
    "trust-anchor.pem",
    "intermediates.pem",
    "hub-key.pem",
    "hub-cert.pem",
    "pseudonymiser-key.pem",
    "pseudonymiser-cert.pem",
    "pseudonymiser-chain.pem",
    "pseudonym-secret.key",
)


class ConformanceFailed(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("conformance-failed", detail)


class IncompleteRun(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("run-incomplete", detail)


@dataclass(frozen=True)
class RunConfig:
    input: str
    policies: Path
    pki: Path
    consent: Path
    meters: Path
    out: Path
    as_of: date = field(default_factory=lambda: datetime.now(UTC).date())
    run_id: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    )
    beam_args: tuple[str, ...] = ()
    spill: bool = True
    """Decoded profiles wait in the encrypted spill (``minimeter.spill``) rather than in the
    runner's shuffle: bounded memory on runners that keep shuffles in memory (FnApiRunner)."""

    def absolute(self) -> RunConfig:
        """Every path absolute: workers in other processes must see the same files."""
        return RunConfig(
            input=os.path.abspath(self.input),
            policies=self.policies.resolve(),
            pki=self.pki.resolve(),
            consent=self.consent.resolve(),
            meters=self.meters.resolve(),
            out=self.out.resolve(),
            as_of=self.as_of,
            run_id=self.run_id,
            beam_args=self.beam_args,
            spill=self.spill,
        )


@dataclass(frozen=True)
class RunResult:
    run_id: str
    messages_in: int
    opened: int
    forwarded: int
    dead_letters: int
    counts: dict[tuple[str, str], int]
    dead_by_category: dict[tuple[str, str], int]
    seconds: float
    quarantined: tuple[str, ...] = ()
    conformance_failures: tuple[str, ...] = ()
    pipeline_seconds: float = 0.0
    """The Beam job alone (without conformance, manifests and audit)."""

    @property
    def balanced(self) -> bool:
        return self.messages_in == self.opened + self.forwarded + self.dead_letters


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = Path(*fixed) if fixed else Path(".")
    return str(base if base.is_dir() else base.parent) + os.sep


def code_version() -> str:
    from minimeter import __version__

    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"{__version__}+{commit}"


def _check_inputs(cfg: RunConfig, ps: PolicySet) -> None:
    for name in PKI_FILES:
        if not (cfg.pki / name).is_file():
            raise ConfigError(f"--pki: {cfg.pki / name} is missing")
    for p in ps.policies:
        if p.delivery == "cms-forward" and not (cfg.pki / f"forward-{p.id}-cert.pem").is_file():
            raise ConfigError(
                f"--pki: forward-{p.id}-cert.pem is missing for cms-forward recipient {p.id}"
            )
    for what, path in (("--consent", cfg.consent), ("--meters", cfg.meters)):
        if not path.is_file():
            raise ConfigError(f"{what}: {path} is not a file")
    if not glob.glob(cfg.input, recursive=True):
        raise ConfigError(f"--input: no file matches {cfg.input}")


def run(cfg: RunConfig) -> RunResult:
    """Check policies (stop before any data moves), run the Beam job, then seal and audit."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from minimeter.pipeline import stages
    from minimeter.pipeline.audit import write_audit, write_conformance
    from minimeter.pipeline.manifest import write_manifests
    from minimeter.quality import start_conformance_worker
    from minimeter.registry import ConsentRegistry, MeterRegistry
    from minimeter.spill import remove_spill

    started = time.perf_counter()
    started_at = datetime.now(UTC)
    cfg = cfg.absolute()
    ps = require_valid(load_policy_set(cfg.policies))
    _check_inputs(cfg, ps)
    MeterRegistry.load(cfg.meters)  # fail now, with a clear message, rather than in a worker
    ConsentRegistry.load(cfg.consent)
    start_conformance_worker()  # Great Expectations' import overlaps the Beam job
    as_of = datetime(cfg.as_of.year, cfg.as_of.month, cfg.as_of.day, tzinfo=UTC)
    options = PipelineOptions(list(cfg.beam_args))
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = "FnApiRunner"
    runner = str(options.view_as(StandardOptions).runner)
    forward_ids = tuple(p.id for p in ps.policies if p.delivery == "cms-forward")
    pki = stages.Pki(str(cfg.pki), forward_ids)
    out = str(cfg.out)
    counts_path = cfg.out / "_audit" / f".counts-{cfg.run_id}.json"
    aggregates = frozenset(p.id for p in ps.policies if p.delivery == "aggregate")
    secret = str(cfg.pki / "pseudonym-secret.key")
    spill = stages.SpillPlace(out, cfg.run_id, secret) if cfg.spill else None
    remove_spill(out, cfg.run_id)  # a re-run of the same id starts clean
    try:
        with beam.Pipeline(options=options) as pipeline:
            read = pipeline | "ReadMessages" >> stages.ReadMessages(
                cfg.input, _glob_base(cfg.input)
            )
            opened = read.messages | "OpenCms" >> stages.OpenCms(pki)
            decoded = opened.opened | "DecodePayload" >> stages.DecodePayload(spill)
            rows, policy_counts = decoded.decoded | "ApplyPolicies" >> stages.ApplyPolicies(
                ps.policies,
                meters=str(cfg.meters),
                consent=str(cfg.consent),
                secret=secret,
                as_of=as_of,
                spill=spill,
            )
            written = rows | "WriteParquet" >> stages.WriteParquet(
                out, cfg.run_id, ps.digest, aggregates
            )
            relayed = opened[stages.FORWARD] | "WriteForwards" >> beam.Map(
                stages.write_forward, out
            )
            dead = (
                read[stages.DEAD],
                opened[stages.DEAD],
                decoded[stages.DEAD],
            ) | "DeadLetters" >> beam.Flatten()
            dead = dead | "RedactNames" >> stages.RedactMeterIds(str(cfg.meters))
            dead_total = (
                dead
                | "AllDeadLetters" >> beam.combiners.ToList()
                | "WriteDeadLetters"
                >> beam.Map(lambda letters: stages.write_dead_letters(out, cfg.run_id, letters))
                | "DeadCount" >> beam.Map(lambda n: stages.count(stages.RUN, "dead-letters", n))
            )
            (
                (
                    read[stages.COUNTS],
                    opened[stages.COUNTS],
                    decoded[stages.COUNTS],
                    policy_counts,
                    written,
                    relayed,
                    dead_total,
                )
                | "AllCounts" >> beam.Flatten()
                | "Sum" >> beam.CombinePerKey(sum)
                | "CountList" >> beam.combiners.ToList()
                | "WriteCounts"
                >> beam.Map(lambda items: stages.write_counts(str(counts_path), items))
            )
    finally:  # decoded readings never outlive the job, whatever its outcome
        remove_spill(out, cfg.run_id)
    pipeline_seconds = time.perf_counter() - started

    counts = {(rid, reason): n for rid, reason, n in json.loads(counts_path.read_text())}
    counts_path.unlink()
    run_counts = {reason: n for (rid, reason), n in counts.items() if rid == stages.RUN}
    result = RunResult(
        run_id=cfg.run_id,
        messages_in=run_counts.get("messages-in", 0),
        opened=run_counts.get("opened", 0),
        forwarded=run_counts.get("forwarded", 0),
        dead_letters=run_counts.get("dead-letters", 0),
        counts=counts,
        dead_by_category=dict(
            Counter(
                (d["stage"], d["category"])
                for d in pq.read_table(
                    cfg.out / "_dead_letters" / f"{cfg.run_id}.parquet"
                ).to_pylist()
            )
        ),
        seconds=time.perf_counter() - started,
        pipeline_seconds=pipeline_seconds,
    )
    from minimeter.quality import check_and_quarantine

    outcome = check_and_quarantine(
        cfg.out,
        ps,
        run_id=cfg.run_id,
        meters=cfg.meters,
        as_of=as_of,
        expected_rows={rid: n for (rid, reason), n in counts.items() if reason == "rows-delivered"},
    )
    manifests = write_manifests(cfg.out, ps, cfg.pki, cfg.run_id)
    write_audit(
        cfg, ps, result, manifests, runner=runner, started_at=started_at, version=code_version()
    )
    write_conformance(cfg.out, cfg.run_id, outcome)
    failures = tuple(
        f"{r.recipient}: {r.expectation} {r.column or ''}: {r.observed}"
        for r in outcome.results
        if not r.success
    )
    return replace(
        result,
        quarantined=tuple(sorted(outcome.quarantined)),
        conformance_failures=failures,
        seconds=time.perf_counter() - started,
    )


def summary(result: RunResult, ps: PolicySet) -> str:
    lines = [
        f"run {result.run_id}: {result.messages_in} messages in = {result.opened} opened + "
        f"{result.forwarded} forwarded + {result.dead_letters} dead letters "
        f"[{'balanced' if result.balanced else 'NOT BALANCED'}] in {result.seconds:.1f} s",
        "",
    ]
    cols = [
        "rows-delivered",
        "kept",
        "dropped-scope",
        "dropped-consent",
        "dropped-obis",
        "dropped-retention",
        "dropped-incomplete",
        "suppressed-k",
        "messages-relayed",
    ]
    short = [
        "rows",
        "kept",
        "scope",
        "consent",
        "obis",
        "retention",
        "incomplete",
        "suppr-k",
        "relayed",
    ]
    lines.append(f"{'recipient':26s} {'delivery':11s} " + " ".join(f"{s:>10s}" for s in short))
    for p in sorted(ps.policies, key=lambda p: p.id):
        vals = [result.counts.get((p.id, c), 0) for c in cols]
        lines.append(f"{p.id:26s} {p.delivery:11s} " + " ".join(f"{v:>10d}" for v in vals))
    if result.quarantined:
        lines.append("")
        lines.append(f"QUARANTINED (failed conformance): {', '.join(result.quarantined)}")
    if result.dead_by_category:
        lines.append("")
        lines += [
            f"dead letters at {stage:6s} {category:22s} {n:6d}"
            for (stage, category), n in sorted(result.dead_by_category.items())
        ]
    return "\n".join(lines)


def main_run(cfg: RunConfig) -> int:
    result = run(cfg)
    ps = load_policy_set(cfg.policies)
    print(summary(result, ps))
    print(
        f"\noutputs in {cfg.out.resolve()} (audit: _audit/audit.duckdb, dead letters: _dead_letters/)"
    )
    if result.quarantined:
        for line in result.conformance_failures:
            print(f"conformance failed: {line}", file=sys.stderr)
        raise ConformanceFailed(
            f"{', '.join(result.quarantined)} failed conformance; output moved to {cfg.out}/_quarantine/"
        )
    if not result.balanced:
        raise IncompleteRun(
            f"{result.messages_in} messages in but {result.opened} opened + {result.forwarded} forwarded + "
            f"{result.dead_letters} dead letters"
        )
    return 0

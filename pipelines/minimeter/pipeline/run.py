"""``minimeter run``: the main job, from gateway messages to per-recipient datasets.

A run checks everything it can before any data moves (policies, PKI files and keys, registries,
inputs, the output folder, the runner), takes the lock on ``--out``, finishes or removes what a
dead run left, runs the Beam job into its staging area, checks conformance on what it staged,
commits the audit and then publishes (``minimeter.publish``). Recipients see a run's files only
once they are published with their signed manifests; earlier runs are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from minimeter.auditdb import open_audit
from minimeter.errors import ConfigError, MinimeterError
from minimeter.files import atomic_write
from minimeter.layout import OutLayout, Staging
from minimeter.policy.check import require_valid
from minimeter.policy.load import PROJECT_ROOT, load_policy_set
from minimeter.policy.model import PolicySet
from minimeter.storage import (
    AnyPath,
    ObjectPath,
    check_reachable,
    configure,
    is_url,
    parquet_rows,
    read_table,
    remove_tree,
)

CARRY_MAX_AGE_DAYS = 7


class ConformanceFailed(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("conformance-failed", detail)


class IncompleteRun(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("run-unbalanced", detail)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class RunConfig:
    input: str
    policies: Path
    pki: Path
    consent: Path
    meters: Path
    out: AnyPath
    """A local folder or an object-store URL (``minimeter.storage``)."""
    as_of: date = field(default_factory=lambda: datetime.now(UTC).date())
    run_id: str = field(default_factory=new_run_id)
    beam_args: tuple[str, ...] = ()
    spill: bool = True
    """Decoded profiles wait in the encrypted spill (``minimeter.spill``) rather than in the
    runner's shuffle: bounded memory on runners that keep shuffles in memory (FnApiRunner)."""
    carry_max_age_days: int = CARRY_MAX_AGE_DAYS
    """Readings of intervals a run cannot complete are carried to the next run for at most this
    many days (before the meter's newest reading); 0 carries nothing."""
    accept_han_export: bool = False
    """Accept gateways' HAN exports (SignedData over the plain payload, no encryption)."""
    max_power_w: float = 1_000_000.0
    """Plausibility: the most power one meter can draw or feed (readings beyond are dropped)."""
    max_readings: int = 200_000
    """A message holding more readings is refused (decode cost is bounded)."""
    crls: tuple[Path, ...] = ()
    """Revocation lists besides ``crls/*.pem`` of ``pki``."""

    def all_crls(self) -> tuple[Path, ...]:
        return (*self.crls, *sorted((self.pki / "crls").glob("*.pem")))

    def absolute(self) -> RunConfig:
        """Every local path absolute: workers in other processes must see the same files."""
        return replace(
            self,
            input=self.input if "://" in self.input else os.path.abspath(self.input),
            policies=self.policies.resolve(),
            pki=self.pki.resolve(),
            consent=self.consent.resolve(),
            meters=self.meters.resolve(),
            out=self.out.resolve(),
            crls=tuple(c.resolve() for c in self.crls),
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
    recovered: tuple[str, ...] = ()
    carried_from: str | None = None
    linkability: tuple[Any, ...] = ()
    """``minimeter.linkability.Linkability`` of every pair this run measured."""

    @property
    def balanced(self) -> bool:
        return self.messages_in == self.opened + self.forwarded + self.dead_letters


def processing_time(as_of: date) -> datetime:
    """The time a run checks signatures and signing times at: now, or the end of the as-of day
    when the run processes an earlier day (read here, at the edge: the core takes it as ``at``)."""
    end_of_day = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC) + timedelta(days=1)
    return min(datetime.now(UTC), end_of_day)


def code_version() -> str:
    from minimeter import __version__

    if not (PROJECT_ROOT / ".git").exists():
        return __version__
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


def _check_runner(beam_args: tuple[str, ...]) -> str:
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.runners.runner import create_runner

    options = PipelineOptions(list(beam_args))
    name = options.view_as(StandardOptions).runner or "FnApiRunner"
    try:
        create_runner(str(name))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"--runner: {exc}", "usage") from None
    return str(name)


def _check_out(out: AnyPath) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory", "output-unwritable")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.write_bytes(b"probe")  # (an empty upload is refused by S3 multipart)
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--out: {out} is not writable ({exc.strerror})", "output-unwritable"
        ) from None


def check_before_run(cfg: RunConfig) -> tuple[PolicySet, str, list[str]]:
    """Everything that can be wrong before any data moves: (policies, runner, input paths)."""
    from minimeter.pipeline.inputs import match_inputs
    from minimeter.registry import ConsentRegistry, MeterRegistry

    ps = require_valid(load_policy_set(cfg.policies))
    forward_ids = tuple(p.id for p in ps.policies if p.delivery == "cms-forward")
    _check_pki(cfg.pki, forward_ids)
    from minimeter.cms import TrustStore

    TrustStore.from_files(  # CRLs signed by a configured CA and current, or stop here
        [cfg.pki / "trust-anchor.pem"],
        [cfg.pki / "intermediates.pem"],
        cfg.all_crls(),
        at=processing_time(cfg.as_of),
    )
    MeterRegistry.load(cfg.meters)  # fail now, with a clear message, rather than in a worker
    ConsentRegistry.load(cfg.consent)
    if "://" not in cfg.input and Path(cfg.input).is_dir():
        raise ConfigError(
            f"--input: {cfg.input} is a directory; give a glob such as {cfg.input}/**/*.cms",
            "usage",
        )
    if is_url(cfg.input):  # a store that cannot be reached: seconds, not Beam's minutes of retries
        try:
            check_reachable(ObjectPath(cfg.input))
        except OSError as exc:
            raise ConfigError(
                f"--input: {cfg.input}: cannot reach the store ({exc.strerror})", "input-unreadable"
            ) from None
    paths = match_inputs(cfg.input)
    if not paths:
        raise ConfigError(f"--input: no file matches {cfg.input}", "input-unreadable")
    runner = _check_runner(cfg.beam_args)
    _check_out(cfg.out)
    return ps, runner, paths


def _check_pki(pki: Path, forward_ids: tuple[str, ...]) -> None:
    from minimeter.keys import check_pki

    check_pki(pki, forward_ids)


class Progress:
    """A progress line on stderr while the run works (only when stderr is a terminal)."""

    def __init__(self, staging: Staging, messages: int, *, enabled: bool) -> None:
        self.staging, self.messages, self.enabled = staging, messages, enabled
        self.phase = "job"
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=2)
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def _line(self) -> str:

        work = self.staging.work
        decoded = sum(1 for _ in work.rglob("*")) * 32 if work.is_dir() else 0
        rows = files = 0
        for f in self.staging.base.glob("recipients/*/data/date=*/*.parquet"):
            try:
                rows += parquet_rows(f)
                files += 1
            except Exception:  # noqa: BLE001 - a file being written
                pass
        forwards = sum(1 for _ in self.staging.base.glob("recipients/*/forward/*.cms"))
        return (
            f"minimeter: run {self.staging.run_id}: {self.phase}: {self.messages} messages listed, "
            f"~{min(decoded, self.messages)} decoded, {forwards} relayed, {rows} rows in {files} "
            f"files, {time.perf_counter() - self.started:.0f} s"
        )

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                sys.stderr.write("\r\033[K" + self._line()[:200])
                sys.stderr.flush()
            except OSError:
                return


def run(cfg: RunConfig, *, progress: bool = False) -> RunResult:
    """Check (stop before any data moves), lock, recover, run the job into staging, check
    conformance, commit the audit, publish."""
    from minimeter.publish import OutLock

    started = time.perf_counter()
    started_at = datetime.now(UTC)
    cfg = cfg.absolute()
    configure(cfg.beam_args)  # FileSystems sees the run's options (an S3 endpoint, say)
    ps, runner, paths = check_before_run(cfg)
    layout = OutLayout(cfg.out)
    with OutLock(layout, cfg.run_id):
        if layout.audit_db.exists():  # an audit that cannot be opened stops us before the job
            open_audit(layout.audit_db).close()
        return _run_locked(cfg, ps, runner, len(paths), layout, started, started_at, progress)


def _run_locked(
    cfg: RunConfig,
    ps: PolicySet,
    runner: str,
    listed: int,
    layout: OutLayout,
    started: float,
    started_at: datetime,
    progress: bool,
) -> RunResult:
    from minimeter.conformance import worker
    from minimeter.conformance.run import check_trees
    from minimeter.manifest import Signer, policy_hash, write_index, write_manifest
    from minimeter.pipeline.audit import committed_publish_id, write_audit
    from minimeter.publish import (
        PublishRecord,
        apply_publish,
        crash_point,
        recover,
        state_to_consume,
    )

    signer = Signer.from_pki(cfg.pki)

    def index(rid: str) -> None:
        write_index(layout, rid, signer)

    recovered = recover(layout, lambda rid: committed_publish_id(layout.audit_db, rid), index)
    staging = layout.staging(cfg.run_id)
    remove_tree(staging.base, ignore_errors=True)
    staging.base.mkdir(parents=True)
    worker.start()  # Great Expectations' import overlaps the Beam job
    carried_from = state_to_consume(layout, cfg.run_id) if cfg.carry_max_age_days > 0 else None
    with Progress(staging, listed, enabled=progress) as ticker:
        _run_job(cfg, ps, runner, staging, layout, carried_from)
        crash_point("after-job")
        pipeline_seconds = time.perf_counter() - started
        ticker.phase = "conformance"
        counts = {(rid, reason): n for rid, reason, n in json.loads(staging.counts.read_text())}
        run_counts = {reason: n for (rid, reason), n in counts.items() if rid == "_run"}
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
                    for d in read_table(staging.dead_letters).to_pylist()
                )
            ),
            seconds=time.perf_counter() - started,
            pipeline_seconds=pipeline_seconds,
            recovered=tuple(recovered),
            carried_from=carried_from,
        )
        as_of = datetime(cfg.as_of.year, cfg.as_of.month, cfg.as_of.day, tzinfo=UTC)
        trees = {rid: staging.recipient(rid).base for rid in staging.recipients()}
        outcome = check_trees(
            trees,
            ps,
            meters=cfg.meters,
            as_of=as_of,
            secret=(cfg.pki / "pseudonym-secret.key").read_bytes(),
            expected_rows={
                rid: n for (rid, reason), n in counts.items() if reason == "rows-delivered"
            },
        )
        failed = set(outcome.failed)
        from minimeter.linkability import measure

        links = measure(trees, ps.policies)
        ticker.phase = "publishing"
        publish_id = uuid.uuid4().hex
        published, manifests = [], []
        for policy in sorted(ps.policies, key=lambda p: p.id):
            tree = staging.recipient(policy.id)
            if policy.id in failed:
                continue
            tree.base.mkdir(parents=True, exist_ok=True)  # a recipient with nothing this run
            manifests.append(
                write_manifest(
                    tree,
                    recipient=policy.id,
                    publish_id=publish_id,
                    policy_sha256=policy_hash(policy),
                    delivery=policy.delivery,
                    signer=signer,
                )
            )
            published.append(policy.id)
        quarantined = {
            rid: layout.quarantine(cfg.run_id, rid).base for rid in sorted(failed) if rid in trees
        }
        record = PublishRecord(
            run_id=cfg.run_id,
            publish_id=publish_id,
            published=tuple(published),
            quarantined=tuple(quarantined),
            recipients=tuple(sorted(p.id for p in ps.policies)),
            state=cfg.carry_max_age_days > 0,
            consumed_state=carried_from,
        )
        record.write(staging)
        crash_point("before-commit")
        write_audit(
            cfg,
            ps,
            result,
            manifests,
            layout=layout,
            dead_letters=staging.dead_letters,
            conflicts=staging.conflicts,
            linkability=links,
            outcome=outcome,
            quarantined=quarantined,
            publish_id=publish_id,
            carried_from=carried_from,
            runner=runner,
            started_at=started_at,
            version=code_version(),
        )
        crash_point("after-commit")
        apply_publish(layout, record, index)
    failures = tuple(
        f"{r.recipient}: {r.expectation} {r.column or ''}: {r.observed}"
        for r in outcome.results
        if not r.success
    )
    return replace(
        result,
        linkability=tuple(links),
        quarantined=tuple(sorted(quarantined)),
        conformance_failures=failures,
        seconds=time.perf_counter() - started,
    )


def build_job(
    cfg: RunConfig,
    ps: PolicySet,
    staging: Staging,
    layout: OutLayout,
    carried_from: str | None,
) -> Any:
    """The whole graph of a run as one composite (``stages.MinimeterJob``): what ``run`` gives
    every runner, and what the tests build. Only paths and values go in (keys are read in the
    workers' ``setup()``)."""
    from minimeter.pipeline import stages
    from minimeter.pipeline.inputs import input_base

    forward_ids = tuple(p.id for p in ps.policies if p.delivery == "cms-forward")
    pki = stages.Pki(str(cfg.pki), forward_ids, tuple(str(c) for c in cfg.all_crls()))
    run_id = cfg.run_id
    secret = str(cfg.pki / "pseudonym-secret.key")
    spill = stages.SpillPlace(str(staging.work), run_id, secret) if cfg.spill else None
    carry = None
    if cfg.carry_max_age_days > 0:
        carry = stages.CarryPlan(
            take=stages.SpillPlace(str(layout.state(carried_from)), f"state:{carried_from}", secret)
            if carried_from
            else None,
            keep=stages.SpillPlace(str(staging.state), f"state:{run_id}", secret),
            max_age_us=cfg.carry_max_age_days * 86_400 * 1_000_000,
        )
    as_of = datetime(cfg.as_of.year, cfg.as_of.month, cfg.as_of.day, tzinfo=UTC)
    return stages.MinimeterJob(
        input=cfg.input,
        input_base=input_base(cfg.input),
        pki=pki,
        policies=ps.policies,
        policy_hash=ps.digest,
        meters=str(cfg.meters),
        consent=str(cfg.consent),
        secret=secret,
        as_of=as_of,
        staging=str(staging.base),
        run_id=run_id,
        aggregates=frozenset(p.id for p in ps.policies if p.delivery == "aggregate"),
        spill=spill,
        carry=carry,
        decoding=stages.Decoding(
            meters=str(cfg.meters),
            latest_us=int(as_of.timestamp() * 1_000_000) + 86_400 * 1_000_000,
            max_readings=cfg.max_readings,
        ),
        processing_time=processing_time(cfg.as_of),
        accept_han_export=cfg.accept_han_export,
        max_power_w=cfg.max_power_w,
    )


class RunnerFailed(MinimeterError):
    def __init__(self, detail: str) -> None:
        super().__init__("runner-failed", detail)


def _run_job(
    cfg: RunConfig,
    ps: PolicySet,
    runner: str,
    staging: Staging,
    layout: OutLayout,
    carried_from: str | None,
) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from minimeter.spill import remove_spill

    options = PipelineOptions(list(cfg.beam_args))
    options.view_as(StandardOptions).runner = runner
    job = build_job(cfg, ps, staging, layout, carried_from)
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = pipeline | "Minimeter" >> job
    except MinimeterError:
        raise
    except Exception as exc:  # the runner's own failure (a job server missing, a worker lost)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise RunnerFailed(f"{runner}: {first}") from None
    finally:  # decoded readings never outlive the job, whatever its outcome
        remove_spill(staging.work)


SUMMARY_COLUMNS = (
    ("rows-delivered", "rows"),
    ("kept", "kept"),
    ("dropped-scope", "scope"),
    ("dropped-consent", "consent"),
    ("dropped-obis", "obis"),
    ("dropped-retention", "retention"),
    ("dropped-incomplete", "incomplete"),
    ("dropped-invalid", "invalid"),
    ("dropped-implausible", "implausbl"),
    ("carried-in", "carry-in"),
    ("carried-out", "carry-out"),
    ("suppressed-k", "suppr-k"),
    ("messages-relayed", "relayed"),
)


def summary(result: RunResult, ps: PolicySet) -> str:
    lines = [
        f"run {result.run_id}: {result.messages_in} messages in = {result.opened} opened + "
        f"{result.forwarded} forwarded + {result.dead_letters} dead letters "
        f"[{'balanced' if result.balanced else 'NOT BALANCED'}] in {result.seconds:.1f} s",
        "",
    ]
    lines += list(result.recovered)
    if result.carried_from:
        lines.append(f"readings carried from run {result.carried_from}")
    lines.append(
        f"{'recipient':26s} {'delivery':11s} "
        + " ".join(f"{short:>10s}" for _, short in SUMMARY_COLUMNS)
    )
    for p in sorted(ps.policies, key=lambda p: p.id):
        vals = [result.counts.get((p.id, c), 0) for c, _ in SUMMARY_COLUMNS]
        lines.append(f"{p.id:26s} {p.delivery:11s} " + " ".join(f"{v:>10d}" for v in vals))
    linked = [x for x in result.linkability if x.matched]
    if linked:
        lines.append("")
        lines += [
            f"linkable: {x.matched} of {x.series} series of {x.recipient} match {x.other} exactly"
            for x in linked
        ]
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


def summary_document(result: RunResult, ps: PolicySet, status: int) -> dict[str, object]:
    """The run's machine-readable summary (``--summary-json``)."""
    recipients: dict[str, dict[str, int]] = {p.id: {} for p in ps.policies}
    for (rid, reason), n in sorted(result.counts.items()):
        if rid in recipients:
            recipients[rid][reason] = n
    dead: Counter[str] = Counter()
    for (_, category), n in result.dead_by_category.items():
        dead[category] += n
    return {
        "run_id": result.run_id,
        "exit_status": status,
        "balance": {
            "messages_in": result.messages_in,
            "opened": result.opened,
            "forwarded": result.forwarded,
            "dead_letters": result.dead_letters,
            "balanced": result.balanced,
        },
        "recipients": recipients,
        "dead_letters_by_category": dict(sorted(dead.items())),
        "quarantined": list(result.quarantined),
        "carried_from": result.carried_from,
        "seconds": round(result.seconds, 3),
    }


def summary_document_error(run_id: str, error: MinimeterError) -> dict[str, object]:
    """The summary of a run that stopped before it had results."""
    from minimeter.errors import exit_code

    return {
        "run_id": run_id,
        "exit_status": exit_code(error),
        "error": {"category": error.category, "detail": error.detail},
    }


def write_summary(path: str | None, doc: dict[str, object]) -> None:
    if not path:
        return
    try:
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(Path(path), data, parents=False)
    except OSError as exc:
        raise ConfigError(
            f"--summary-json: cannot write {path} ({exc.strerror})", "output-unwritable"
        ) from None


def main_run(
    cfg: RunConfig,
    *,
    summary_json: str | None = None,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run, print the summary, and raise the error that names a failed outcome (unbalanced,
    conformance). ``--summary-json`` is written in every case where the run got that far."""
    result = run(cfg, progress=sys.stderr.isatty() if progress is None else progress)
    ps = load_policy_set(cfg.policies)
    echo(summary(result, ps))
    echo(
        f"\noutputs in {cfg.out.resolve()} (audit: _audit/audit.duckdb, dead letters: _dead_letters/)"
    )
    error: MinimeterError | None = None
    if not result.balanced:
        error = IncompleteRun(
            f"{result.messages_in} messages in but {result.opened} opened + {result.forwarded} "
            f"forwarded + {result.dead_letters} dead letters"
        )
    elif result.quarantined:
        for line in result.conformance_failures:
            print(f"conformance failed: {line}", file=sys.stderr)
        error = ConformanceFailed(
            f"{', '.join(result.quarantined)} failed conformance; their files of run "
            f"{result.run_id} are in {cfg.out}/_quarantine/{result.run_id}/"
        )
    from minimeter.errors import exit_code

    write_summary(summary_json, summary_document(result, ps, exit_code(error) if error else 0))
    if error is not None:
        raise error
    return 0

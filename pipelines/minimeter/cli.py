"""The ``minimeter`` command line.

Failures print one line ``minimeter: <category>: <detail>`` on stderr; nothing is written to
stdout then. Exit status: 0 success, 2 usage or configuration, 3 unbalanced run or unreadable
input, 4 conformance failure (quarantine), 1 anything else; ``cms open`` / ``cms resign`` exit 1
on every failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minimeter import __version__
from minimeter.auditdb import open_audit
from minimeter.errors import (
    EXIT_OTHER,
    EXIT_USAGE,
    ConfigError,
    MinimeterError,
    UsageError,
    exit_code,
)
from minimeter.files import atomic_write

if TYPE_CHECKING:
    from minimeter.cms import TrustStore
    from minimeter.storage import AnyPath

Handler = Callable[[argparse.Namespace], int]


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--at: {value!r} is not an ISO 8601 date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "input-unreadable") from None


def _write_output(data: bytes, out: str | None) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(Path(out), data, parents=False)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write ({exc.strerror})", "output-unwritable") from None


def _trust(args: argparse.Namespace) -> TrustStore:
    from minimeter.cms import TrustStore

    at = _parse_at(getattr(args, "at", None)) or datetime.now(UTC)
    crls = getattr(args, "crl", None) or ()
    return TrustStore.from_files(args.trust_anchor, args.intermediate or (), crls, at=at)


def _cms_open(args: argparse.Namespace) -> int:
    from minimeter.cms import open_message
    from minimeter.keys import load_certificates, load_private_key

    key = load_private_key(args.key)
    cert = load_certificates(args.cert)[0]
    trust = _trust(args)
    at = _parse_at(args.at) or datetime.now(UTC)  # the command line is the edge: it reads the clock
    opened = open_message(
        _read_input(args.message),
        recipient_key=key,
        recipient_cert=cert,
        trust=trust,
        at=at,
    )
    _write_output(opened.payload, args.out)
    return 0


def _cms_resign(args: argparse.Namespace) -> int:
    from minimeter.cms import resign
    from minimeter.keys import load_certificates, load_private_key

    key = load_private_key(args.signer_key)
    cert = load_certificates(args.signer_cert)[0]
    chain = load_certificates(args.signer_chain) if args.signer_chain else []
    trust = _trust(args)
    at = _parse_at(args.at) or datetime.now(UTC)
    out = resign(
        _read_input(args.message),
        signer_key=key,
        signer_cert=cert,
        chain=chain,
        trust=trust,
        at=at,
    )
    _write_output(out, args.out)
    return 0


DECODE_COLUMNS = ("meter", "obis", "capture_time", "ts", "value", "unit", "status", "status_raw")


def _looks_like_cms(data: bytes) -> bool:
    head = data.lstrip()[:16]
    return head.startswith(b"-----BEGIN") or (head[:1] == b"\x30" and not head.startswith(b"<"))


def _decode(args: argparse.Namespace) -> int:
    """``minimeter decode``: one payload's readings, for operators and auditors. The columns:
    meter, obis, capture_time (UTC, as sent), ts (UTC, the attributed period end), value (in
    unit), unit, status (the ReadingStatus name), status_raw (the status word as sent)."""
    import pyarrow as pa

    from minimeter.payload import decode_payload

    at = _parse_at(args.at) or datetime.now(UTC)
    data = _read_input(args.input)
    if _looks_like_cms(data):
        if not args.trust_anchor:
            raise UsageError("decode: a CMS message needs --trust-anchor")
        trust = _trust(args)
        if args.han_export:
            from minimeter.cms import open_han_export

            payload = open_han_export(data, trust=trust, at=at).payload
        else:
            from minimeter.cms import open_message
            from minimeter.keys import load_certificates, load_private_key

            if not (args.key and args.cert):
                raise UsageError("decode: an encrypted message needs --key and --cert")
            payload = open_message(
                data,
                recipient_key=load_private_key(args.key),
                recipient_cert=load_certificates(args.cert)[0],
                trust=trust,
                at=at,
            ).payload
    else:
        payload = data
    latest = int(at.timestamp() * 1_000_000) + 86_400 * 1_000_000
    profile = decode_payload(payload, latest_us=latest)
    cols: dict[str, list[object]] = {c: [] for c in DECODE_COLUMNS}
    for s in profile.series:
        n = len(s)
        cols["meter"] += [profile.meter] * n
        cols["obis"] += [s.obis] * n
        cols["capture_time"] += s.captured_us.tolist()
        cols["ts"] += s.times_us.tolist()
        cols["value"] += s.values.tolist()
        cols["unit"] += [s.unit] * n
        cols["status"] += [_status_name(int(c)) for c in s.status.tolist()]
        cols["status_raw"] += s.status_raw.tolist()
    stamp = pa.timestamp("us", tz="UTC")
    table = pa.table(
        {
            "meter": pa.array(cols["meter"], pa.string()),
            "obis": pa.array(cols["obis"], pa.string()),
            "capture_time": pa.array(cols["capture_time"], pa.int64()).cast(stamp),
            "ts": pa.array(cols["ts"], pa.int64()).cast(stamp),
            "value": pa.array(cols["value"], pa.float64()),
            "unit": pa.array(cols["unit"], pa.string()),
            "status": pa.array(cols["status"], pa.string()),
            "status_raw": pa.array(cols["status_raw"], pa.uint64()),
        }
    )
    _write_table(table, args.out)
    return 0


def _status_name(code: int) -> str:
    from minimeter.readings import ReadingStatus

    try:
        return ReadingStatus(code).name.lower().replace("_", "-")
    except ValueError:
        return "unknown"


def _write_table(table: Any, out: str) -> None:
    import io

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    if out == "-" or out.endswith(".csv"):
        pcsv.write_csv(table, sink)
    else:
        pq.write_table(table, sink, compression="zstd")
    _write_output(sink.getvalue(), None if out == "-" else out)


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-anchor", action="append", required=True, metavar="ROOT.pem")
    p.add_argument("--intermediate", action="append", metavar="CERT.pem")
    p.add_argument("--crl", action="append", metavar="CRL.pem", help="revocation list (repeatable)")
    p.add_argument("--at", metavar="ISO8601", help="processing time (default: now)")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line (``UsageError``), never its usage text and exit."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="minimeter",
        description="Smart-meter data minimisation for SMGW CMS messages.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"minimeter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    cms_p = commands.add_parser("cms", help="open or re-sign one CMS message")
    cms_sub = cms_p.add_subparsers(dest="cms_command", required=True)
    op = cms_sub.add_parser("open", help="verify and decrypt; writes the payload")
    op.add_argument("message", metavar="MESSAGE", help="DER or PEM file, - for stdin")
    op.add_argument("--key", required=True, metavar="KEY.pem")
    op.add_argument("--cert", required=True, metavar="CERT.pem")
    _add_trust_options(op)
    op.set_defaults(handler=_cms_open)
    rs = cms_sub.add_parser("resign", help="verify and replace the signature; writes DER")
    rs.add_argument("message", metavar="MESSAGE", help="DER or PEM file, - for stdin")
    rs.add_argument("--signer-key", required=True, metavar="KEY.pem")
    rs.add_argument("--signer-cert", required=True, metavar="CERT.pem")
    rs.add_argument("--signer-chain", metavar="PEM")
    _add_trust_options(rs)
    rs.set_defaults(handler=_cms_resign)

    dc = commands.add_parser(
        "decode",
        help="decode one gateway payload or CMS message into readings (CSV or Parquet)",
        allow_abbrev=False,
    )
    dc.add_argument(
        "input", metavar="INPUT", help="K461 XML (or zlib), or a CMS message; - for stdin"
    )
    dc.add_argument("--out", required=True, metavar="FILE", help="*.csv or - for CSV, else Parquet")
    dc.add_argument("--trust-anchor", action="append", metavar="ROOT.pem")
    dc.add_argument("--intermediate", action="append", metavar="CERT.pem")
    dc.add_argument("--crl", action="append", metavar="CRL.pem")
    dc.add_argument("--key", metavar="KEY.pem", help="to decrypt an enveloped message")
    dc.add_argument("--cert", metavar="CERT.pem")
    dc.add_argument("--han-export", action="store_true", help="accept a signed-only HAN export")
    dc.add_argument("--at", metavar="ISO8601", help="processing time (default: now)")
    dc.set_defaults(handler=_decode)

    sy = commands.add_parser("synth", help="make a synthetic SMGW fleet, test SM-PKI and messages")
    sy.add_argument("--out", required=True, metavar="DIR")
    sy.add_argument("--meters", type=int, default=50)
    sy.add_argument("--days", type=int, default=3)
    sy.add_argument("--start", default="2026-01-05", metavar="YYYY-MM-DD")
    sy.add_argument("--seed", type=int, default=1)
    sy.add_argument("--interval", default="PT15M", metavar="PT15M")
    sy.add_argument("--faults", type=float, default=0.05, metavar="FRACTION")
    sy.add_argument("--forward-share", type=float, default=0.05, metavar="FRACTION")
    sy.add_argument("--forward-recipient", default=None, metavar="ID")
    sy.add_argument("--curve", default="brainpoolP256r1")
    sy.add_argument("--zlib-share", type=float, default=0.1, metavar="FRACTION")
    sy.add_argument(
        "--k461-style",
        choices=("real", "simple"),
        default="real",
        help="real (default): K461 as PPC gateways write it; simple: the old flat shape",
    )
    sy.set_defaults(handler=_synth)

    pol = commands.add_parser("policy", help="check or explain recipient policies")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    chk = pol_sub.add_parser("check", help="check policies against baselines and DPIA records")
    chk.add_argument(
        "dir",
        nargs="?",
        default=None,
        metavar="DIR",
        help="project root or policies directory (default: ./policies)",
    )
    chk.set_defaults(handler=_policy_check)
    exp = pol_sub.add_parser("explain", help="what a recipient receives and why")
    exp.add_argument("recipient", metavar="RECIPIENT")
    exp.add_argument("--policies", default=None, metavar="DIR")
    exp.set_defaults(handler=_policy_explain)

    rn = commands.add_parser(
        "run",
        help="the main job: messages to per-recipient datasets",
        usage="minimeter run --input GLOB --policies DIR --pki DIR --consent FILE --meters FILE "
        "--out DIR [--as-of DATE] [--run-id ID] [--no-spill] [--carry-max-age-days N] "
        "[--accept han-export] [--max-power-w W] [--max-readings N] "
        "[--summary-json FILE] [--log-level LEVEL] [--progress | --no-progress] "
        "[beam options ...]",
        epilog="Any other --option must be one of Apache Beam's (--runner, --direct_num_workers, "
        "--direct_running_mode, --job_endpoint, --environment_type, --environment_config, ...); "
        "an unknown option is an error.",
        allow_abbrev=False,
    )
    rn.set_defaults(handler=_run, allow_extra=True)

    ex = commands.add_parser(
        "expire",
        help="remove published files older than their recipient's retention (audit records it)",
        allow_abbrev=False,
    )
    ex.add_argument("out", metavar="OUT")
    ex.add_argument("--as-of", required=True, metavar="DATE")
    ex.add_argument("--pki", required=True, metavar="DIR", help="to re-sign changed manifests")
    ex.add_argument("--dry-run", action="store_true", help="list what would be removed")
    ex.set_defaults(handler=_expire)

    sb = commands.add_parser(
        "subject",
        help="subject access: which recipients received a meter's data (GDPR Art. 15)",
        allow_abbrev=False,
    )
    sb.add_argument("meter", metavar="METER")
    sb.add_argument("--out", required=True, metavar="OUT")
    sb.add_argument("--pki", required=True, metavar="DIR", help="to compute the meter's pseudonyms")
    sb.add_argument("--meters", required=True, metavar="FILE")
    sb.add_argument("--policies", default=None, metavar="DIR")
    sb.add_argument("--json", action="store_true")
    sb.add_argument("--show-pseudonyms", action="store_true")
    sb.set_defaults(handler=_subject)

    vf = commands.add_parser(
        "verify",
        help="check the signed manifests and indexes of published runs",
        allow_abbrev=False,
    )
    vf.add_argument("out", metavar="OUT", help="an output folder, or one recipient's folder")
    vf.add_argument("--recipient", default=None, metavar="ID")
    vf.add_argument("--run-id", default=None, metavar="ID")
    vf.add_argument("--trust-anchor", action="append", required=True, metavar="ROOT.pem")
    vf.add_argument("--at", metavar="ISO8601", help="time to check validity at (default: now)")
    vf.set_defaults(handler=_verify)

    cf = commands.add_parser("conformance", help="re-check a run's outputs against its policies")
    cf.add_argument("out", metavar="OUT")
    cf.add_argument("--run-id", required=True, metavar="ID")
    cf.add_argument("--policies", default=None, metavar="DIR")
    cf.add_argument(
        "--policies-as-of-run",
        action="store_true",
        help="check against the policy files the audit recorded for the run",
    )
    cf.add_argument("--meters", required=True, metavar="FILE")
    cf.add_argument(
        "--pki",
        required=True,
        metavar="DIR",
        help="to recompute pseudonyms (scope check) and re-sign a quarantined recipient's index",
    )
    cf.set_defaults(handler=_conformance)

    rp = commands.add_parser("report", help="the DPIA policy report of a run (HTML and Markdown)")
    rp.add_argument("out", metavar="OUT")
    rp.add_argument("--policies", default=None, metavar="DIR")
    rp.add_argument("--run-id", default=None, metavar="ID", help="default: the latest run")
    rp.add_argument(
        "--raw",
        default=None,
        metavar="PARQUET",
        help="raw readings (e.g. synth truth) to plot a sample meter against each delivery",
    )
    rp.add_argument(
        "--pki", default=None, metavar="DIR", help="to recognise pseudonyms of the sample meter"
    )
    rp.set_defaults(handler=_report)

    demo = commands.add_parser("demo", help="run the main job on a small synthetic fleet")
    demo.add_argument("--out", default="out/demo", metavar="DIR")
    demo.add_argument("--meters", type=int, default=None, help="default 24")
    demo.add_argument(
        "--days", type=int, default=None, help="default 32 (all of March 2026, local time)"
    )
    demo.set_defaults(handler=_demo, allow_extra=True)
    return parser


def _synth(args: argparse.Namespace) -> int:
    from datetime import date

    from minimeter.synth.generate import (
        DEFAULT_FORWARD_RECIPIENT,
        SynthConfig,
        parse_interval,
        synthesize,
    )

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise ConfigError(f"--start: {args.start!r} is not a date YYYY-MM-DD") from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create ({exc.strerror})", "output-unwritable") from None
    config = SynthConfig(
        out=out,
        meters=args.meters,
        days=args.days,
        start=start,
        seed=args.seed,
        interval_minutes=parse_interval(args.interval),
        faults=args.faults,
        forward_share=args.forward_share,
        forward_recipient=args.forward_recipient or DEFAULT_FORWARD_RECIPIENT,
        curve=args.curve,
        zlib_share=args.zlib_share,
        k461_style=args.k461_style,
    )
    summary = synthesize(config)
    print(
        f"synth: {summary.messages} messages ({summary.faults} faults, {summary.forwarded} forwarded), "
        f"{summary.readings} readings in {summary.seconds:.1f} s -> {out}"
    )
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from minimeter.errors import PolicyError
    from minimeter.policy.check import check_policy_set
    from minimeter.policy.load import load_policy_set

    try:
        ps = load_policy_set(args.dir)
        findings = check_policy_set(ps)
    except PolicyError as exc:
        findings = exc.findings
        ps = None
    if findings:
        for line in findings:
            print(line)
        print(f"minimeter: policy-invalid: {len(findings)} finding(s)", file=sys.stderr)
        return EXIT_USAGE
    assert ps is not None
    print(
        f"policy check: {len(ps.policies)} recipients, {len(ps.baselines)} baselines, "
        f"{len(ps.dpias)} DPIA records: all pass (policy hash {ps.digest[:16]})"
    )
    return 0


def _policy_explain(args: argparse.Namespace) -> int:
    from minimeter.policy.check import require_valid
    from minimeter.policy.explain import explain
    from minimeter.policy.load import load_policy_set

    ps = require_valid(load_policy_set(args.policies))
    try:
        text = explain(ps, args.recipient)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), "unknown-recipient") from None
    sys.stdout.write(text)
    return 0


def _run_config(args: argparse.Namespace, beam_args: tuple[str, ...]) -> Any:
    import re
    from datetime import date

    from minimeter.pipeline.run import RunConfig

    extra: dict[str, object] = {}
    if args.as_of:
        try:
            extra["as_of"] = date.fromisoformat(args.as_of)
        except ValueError:
            raise UsageError(f"--as-of: {args.as_of!r} is not a date YYYY-MM-DD") from None
    if args.run_id:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.run_id):
            raise UsageError("--run-id: use letters, digits, '.', '_' and '-' (at most 64)")
        extra["run_id"] = args.run_id
    if args.accept:
        extra["accept_han_export"] = "han-export" in args.accept
    if args.max_power_w is not None:
        if not 0 < args.max_power_w <= 1e9:
            raise UsageError("--max-power-w: above 0 and at most 1e9")
        extra["max_power_w"] = args.max_power_w
    if args.max_readings is not None:
        if not 1 <= args.max_readings <= 10_000_000:
            raise UsageError("--max-readings: between 1 and 10000000")
        extra["max_readings"] = args.max_readings
    if args.carry_max_age_days is not None:
        if not 0 <= args.carry_max_age_days <= 62:
            raise UsageError("--carry-max-age-days: between 0 and 62")
        extra["carry_max_age_days"] = args.carry_max_age_days
    if args.crl:
        extra["crls"] = tuple(Path(c) for c in args.crl)
    return RunConfig(
        input=args.input,
        policies=Path(args.policies),
        pki=Path(args.pki),
        consent=Path(args.consent),
        meters=Path(args.meters),
        out=_out(args.out, beam_args, writing=True),
        beam_args=beam_args,
        spill=not args.no_spill,
        **extra,  # type: ignore[arg-type]
    )


def _set_log_level(level: str | None) -> None:
    name = (level or os.environ.get("MINIMETER_LOG_LEVEL") or "ERROR").upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UsageError(f"--log-level: {level!r} is not one of debug, info, warning, error")
    logging.getLogger().setLevel(name)


def _run(args: argparse.Namespace) -> int:
    from minimeter.pipeline.options import parse_run_options
    from minimeter.pipeline.run import main_run, summary_document_error, write_summary

    options, beam_args = parse_run_options(list(args.run_argv))
    _set_log_level(options.log_level)
    cfg = _run_config(options, beam_args)
    try:
        return main_run(cfg, summary_json=options.summary_json, progress=options.progress)
    except MinimeterError as exc:
        if options.summary_json and not Path(options.summary_json).exists():
            write_summary(options.summary_json, summary_document_error(cfg.run_id, exc))
        raise


def _out(text: str, beam_args: tuple[str, ...] = (), *, writing: bool = False) -> AnyPath:
    """``--out``: a local folder, or an object store (``s3://``, ``gs://``) through Beam's
    FileSystems, configured by the Beam options (``run``) or the store's own environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... for S3). A store that cannot be reached is
    one line within seconds: ``output-unwritable`` for ``run`` (``writing``), else
    ``input-unreadable``."""
    from minimeter.storage import ObjectPath, check_reachable, configure, is_url, location

    if is_url(text):
        scheme = text.partition("://")[0]
        if any(c in text for c in "*?["):
            raise UsageError(f"--out: {text}: an object-store --out holds no glob characters")
        try:
            configure(beam_args)
            from apache_beam.io.filesystems import FileSystems

            FileSystems.get_filesystem(text)
        except ValueError as exc:
            raise UsageError(f"--out: {exc}") from None
        except ImportError as exc:
            raise UsageError(
                f"--out: {scheme}:// needs Beam's extras for it ({exc.name or exc}); "
                "pip install 'minimeter[aws]' (s3://) or 'minimeter[gcp]' (gs://)"
            ) from None
    out = location(text)
    if isinstance(out, ObjectPath):
        try:
            check_reachable(out)
        except OSError as exc:
            raise ConfigError(
                f"--out: {text}: cannot reach the store ({exc.strerror})",
                "output-unwritable" if writing else "input-unreadable",
            ) from None
    return out


def _expire(args: argparse.Namespace) -> int:
    from datetime import date

    from minimeter.expire import expire

    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        raise UsageError(f"--as-of: {args.as_of!r} is not a date YYYY-MM-DD") from None
    out = _out(args.out)
    if not out.is_dir():
        raise ConfigError(f"{out}: not a folder", "input-unreadable")
    found = expire(out, as_of=as_of, pki=Path(args.pki), dry_run=args.dry_run, at=datetime.now(UTC))
    for e in found:
        print(
            f"{'would remove' if args.dry_run else 'removed'} {e.recipient}/runs/{e.run_id}/{e.file} ({e.rows} rows, {e.reason})"
        )
    print(
        f"expire: {len(found)} file(s), {sum(e.rows for e in found)} rows "
        f"{'would be ' if args.dry_run else ''}removed as of {as_of}"
    )
    return 0


def _subject(args: argparse.Namespace) -> int:
    import json

    from minimeter.policy.check import require_valid
    from minimeter.policy.load import load_policy_set
    from minimeter.subject import subject_access

    ps = require_valid(load_policy_set(args.policies))
    found = subject_access(
        args.meter, out=_out(args.out), ps=ps, pki=Path(args.pki), meters=Path(args.meters)
    )
    docs = [d.as_dict(show_pseudonyms=args.show_pseudonyms) for d in found]
    if args.json:
        print(json.dumps({"recipients": docs}, indent=2))
        return 0
    if not found:
        print("subject: no recipient received data of this meter")
    for d in found:
        span = f"{d.first} .. {d.last}" if d.first else "-"
        extra = f"; pseudonym {d.pseudonym}" if args.show_pseudonyms and d.pseudonym else ""
        print(
            f"{d.recipient}: {d.delivery}, identity {d.identity}{extra}, {d.granularity}, "
            f"runs {', '.join(d.runs)}, OBIS {', '.join(d.obis) or '-'}, {span}, {d.rows} rows"
            + (f" ({d.note})" if d.note else "")
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from minimeter.cms import TrustStore
    from minimeter.manifest import verify

    trust = TrustStore.from_files(args.trust_anchor, ())
    out = _out(args.out)
    if not out.is_dir():
        raise ConfigError(f"{out}: not a folder", "input-unreadable")
    at = _parse_at(args.at) or datetime.now(UTC)
    result = verify(out, trust, recipient=args.recipient, run_id=args.run_id, at=at)
    for finding in result.findings:
        print(finding)
    if not result.ok:
        detail = f"{len(result.findings)} finding(s)" if result.findings else "nothing to verify"
        raise MinimeterError("verify-failed", detail)
    print(
        f"verify: {result.recipients} recipient(s), {result.runs} run(s), {result.files} files, "
        f"{result.rows} rows: signatures, hashes and row counts hold"
    )
    return 0


def _conformance(args: argparse.Namespace) -> int:
    """Re-check a published run: its suites (scope included), and every file against its
    manifest. The results go to ``conformance_checks`` (the run's own results stay as they
    were); a failing recipient's tree of the run moves to quarantine."""

    from minimeter.layout import OutLayout
    from minimeter.publish import OutLock

    out = _out(args.out)
    layout = OutLayout(out)
    db = layout.audit_db
    if not db.is_file():
        raise ConfigError(f"{db}: no audit database", "input-unreadable")
    with OutLock(layout, "conformance", at=datetime.now(UTC)):  # it moves trees, writes the audit
        return _conformance_locked(args, out, layout)


def _conformance_locked(args: argparse.Namespace, out: AnyPath, layout: Any) -> int:
    from minimeter.conformance.quarantine import quarantine
    from minimeter.conformance.run import as_of_datetime, check_trees
    from minimeter.conformance.suites import MANIFEST_CHECK, ExpectationResult
    from minimeter.manifest import manifest_findings
    from minimeter.pipeline.audit import record_check

    db = layout.audit_db
    con = open_audit(db)
    try:
        run = con.execute(
            "SELECT as_of, policy_hash FROM runs WHERE run_id = ?", [args.run_id]
        ).fetchall()
        rows = dict(
            con.execute(
                "SELECT recipient, n FROM counts WHERE run_id = ? AND reason = 'rows-delivered'",
                [args.run_id],
            ).fetchall()
        )
    finally:
        con.close()
    if not run:
        raise ConfigError(f"--run-id: no run {args.run_id!r} in {db}")
    ps = _policies_of_run(args, layout, run[0][1])
    trees = {
        p.id: layout.published(p.id, args.run_id).base
        for p in ps.policies
        if layout.published(p.id, args.run_id).base.is_dir()
    }
    secret = (Path(args.pki) / "pseudonym-secret.key").read_bytes()
    outcome = check_trees(
        trees,
        ps,
        expected_rows=rows,
        meters=Path(args.meters),
        as_of=as_of_datetime(run[0][0]),
        secret=secret,
    )
    results = list(outcome.results)
    for rid in sorted(trees):
        problems = manifest_findings(layout.published(rid, args.run_id))
        results.append(
            ExpectationResult(rid, MANIFEST_CHECK, None, not problems, "; ".join(problems) or "all")
        )
    failed = sorted({r.recipient for r in results if not r.success})
    quarantined = quarantine(layout, args.run_id, trees, failed, Path(args.pki))
    record_check(out, args.run_id, results, quarantined, at=datetime.now(UTC))
    for r in results:
        if not r.success:
            print(f"{r.recipient}: {r.expectation} {r.column or ''}: {r.observed}")
    if failed:
        raise ConfigError(
            f"{', '.join(failed)} moved to {out / '_quarantine' / args.run_id}",
            "conformance-failed",
        )
    print(f"conformance: {len(results)} expectations met for run {args.run_id}")
    return 0


def _policies_of_run(args: argparse.Namespace, layout: Any, run_hash: str) -> Any:
    """The policy set a run was made with: ``--policies`` when its hash is the run's, or the
    policy files the audit recorded for the run (``--policies-as-of-run``); otherwise refuse,
    because checking an old run against today's policies says nothing about it."""
    import tempfile

    from minimeter.pipeline.audit import extract_policy_files
    from minimeter.policy.check import require_valid
    from minimeter.policy.load import load_policy_set

    if getattr(args, "policies_as_of_run", False):
        scratch = Path(tempfile.mkdtemp(prefix="minimeter-policies-"))
        extract_policy_files(layout.audit_db, args.run_id, scratch)
        ps = require_valid(load_policy_set(scratch / "policies"))
    else:
        if not args.policies:
            raise UsageError("--policies DIR or --policies-as-of-run is required")
        ps = require_valid(load_policy_set(args.policies))
    if ps.digest != run_hash:
        raise ConfigError(
            f"the policy set's hash {ps.digest[:16]} is not run {args.run_id}'s "
            f"({run_hash[:16]}); use --policies-as-of-run to check it against the policies it "
            "was made with",
            "policy-mismatch",
        )
    return ps


def _report(args: argparse.Namespace) -> int:
    from minimeter.report import write_report

    paths = write_report(
        _out(args.out),
        policies=args.policies,
        run_id=args.run_id,
        raw=Path(args.raw) if args.raw else None,
        pki=Path(args.pki) if args.pki else None,
    )
    print(f"report: {paths[0]} and {paths[1]}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from minimeter.demo import run_demo
    from minimeter.pipeline.options import check_known

    check_known(list(args.beam_args))
    sizes = {k: v for k, v in (("meters", args.meters), ("days", args.days)) if v is not None}
    return run_demo(Path(args.out), beam_args=tuple(args.beam_args), **sizes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    command = None
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger().setLevel(logging.ERROR)  # until the command's own level is known
    try:
        if argv[:1] == ["run"] and not {"-h", "--help"} & set(argv[1:]):
            # run's options are Minimeter's and Beam's, parsed strictly in one place
            args = argparse.Namespace(command="run", handler=_run, run_argv=argv[1:])
            return _run(args)
        args, rest = parser.parse_known_args(argv)
        command = args.command
        if rest and not getattr(args, "allow_extra", False):
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        args.beam_args = rest
        if command != "run":
            _set_log_level(None)
        handler: Handler = args.handler
        return handler(args)
    except MinimeterError as exc:
        print(f"minimeter: {exc.category}: {exc.detail}", file=sys.stderr)
        return EXIT_OTHER if command == "cms" and exc.category != "usage" else exit_code(exc)
    except OSError as exc:  # a file or an object store failing under us: one line, exit 1
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"minimeter: io-failed: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_OTHER
    except KeyboardInterrupt:
        print("minimeter: interrupted: stopped by the user", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

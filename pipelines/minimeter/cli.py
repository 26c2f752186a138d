"""The ``minimeter`` command line.

Failures print one line ``minimeter: <category>: <detail>`` on stderr and exit 1; nothing is
written to stdout then.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from minimeter.errors import ConfigError, MinimeterError

if TYPE_CHECKING:
    from minimeter.cms import TrustStore

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
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write ({exc.strerror})", "output-unwritable") from None


def _trust(args: argparse.Namespace) -> TrustStore:
    from minimeter.cms import TrustStore

    return TrustStore.from_files(args.trust_anchor, args.intermediate or ())


def _cms_open(args: argparse.Namespace) -> int:
    from minimeter.cms import open_message
    from minimeter.keys import load_certificates, load_private_key

    key = load_private_key(args.key)
    cert = load_certificates(args.cert)[0]
    trust = _trust(args)
    at = _parse_at(args.at)
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
    at = _parse_at(args.at)
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


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-anchor", action="append", required=True, metavar="ROOT.pem")
    p.add_argument("--intermediate", action="append", metavar="CERT.pem")
    p.add_argument("--at", metavar="ISO8601", help="time to check validity at when no signingTime")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minimeter", description="Smart-meter data minimisation for SMGW CMS messages."
    )
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
        epilog="Any further --option is passed to Apache Beam (--runner, --direct_num_workers, "
        "--direct_running_mode, --job_endpoint, --environment_type, --environment_config, ...).",
    )
    rn.add_argument("--input", required=True, metavar="GLOB")
    rn.add_argument("--policies", required=True, metavar="DIR")
    rn.add_argument("--pki", required=True, metavar="DIR")
    rn.add_argument("--consent", required=True, metavar="FILE")
    rn.add_argument("--meters", required=True, metavar="FILE")
    rn.add_argument("--out", required=True, metavar="DIR")
    rn.add_argument("--as-of", default=None, metavar="DATE")
    rn.add_argument("--run-id", default=None, metavar="ID")
    rn.add_argument(
        "--no-spill",
        action="store_true",
        help="keep decoded readings in the runner's shuffle instead of the encrypted spill under "
        "OUT/_work (for runners whose shuffle spills to disk itself: Flink, Spark, Dataflow)",
    )
    rn.set_defaults(handler=_run, allow_extra=True)

    cf = commands.add_parser("conformance", help="re-check a run's outputs against its policies")
    cf.add_argument("out", metavar="OUT")
    cf.add_argument("--run-id", required=True, metavar="ID")
    cf.add_argument("--policies", required=True, metavar="DIR")
    cf.add_argument("--meters", required=True, metavar="FILE")
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
    demo.add_argument("--meters", type=int, default=100)
    demo.add_argument("--days", type=int, default=7)
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
        return 1
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


def _run(args: argparse.Namespace) -> int:
    import re
    from datetime import date

    from minimeter.pipeline.run import RunConfig, main_run

    extra: dict[str, object] = {}
    if args.as_of:
        try:
            extra["as_of"] = date.fromisoformat(args.as_of)
        except ValueError:
            raise ConfigError(f"--as-of: {args.as_of!r} is not a date YYYY-MM-DD") from None
    if args.run_id:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.run_id):
            raise ConfigError("--run-id: use letters, digits, '.', '_' and '-' (at most 64)")
        extra["run_id"] = args.run_id
    cfg = RunConfig(
        input=args.input,
        policies=Path(args.policies),
        pki=Path(args.pki),
        consent=Path(args.consent),
        meters=Path(args.meters),
        out=Path(args.out),
        beam_args=tuple(args.beam_args),
        spill=not args.no_spill,
        **extra,  # type: ignore[arg-type]
    )
    return main_run(cfg)


def _conformance(args: argparse.Namespace) -> int:
    import duckdb

    from minimeter.pipeline.audit import write_conformance
    from minimeter.policy.check import require_valid
    from minimeter.policy.load import load_policy_set
    from minimeter.quality import as_of_datetime, check_and_quarantine

    out = Path(args.out)
    db = out / "_audit" / "audit.duckdb"
    if not db.is_file():
        raise ConfigError(f"{db}: no audit database", "input-unreadable")
    con = duckdb.connect(str(db), read_only=True)
    try:
        run = con.execute("SELECT as_of FROM runs WHERE run_id = ?", [args.run_id]).fetchone()
        rows = dict(
            con.execute(
                "SELECT recipient, n FROM counts WHERE run_id = ? AND reason = 'rows-delivered'",
                [args.run_id],
            ).fetchall()
        )
    finally:
        con.close()
    if run is None:
        raise ConfigError(f"--run-id: no run {args.run_id!r} in {db}")
    ps = require_valid(load_policy_set(args.policies))
    outcome = check_and_quarantine(
        out,
        ps,
        run_id=args.run_id,
        expected_rows=rows,
        meters=Path(args.meters),
        as_of=as_of_datetime(run[0]),
    )
    write_conformance(out, args.run_id, outcome)
    for r in outcome.results:
        if not r.success:
            print(f"{r.recipient}: {r.expectation} {r.column or ''}: {r.observed}")
    if outcome.failed:
        raise ConfigError(
            f"{', '.join(outcome.failed)} moved to {out / '_quarantine'}", "conformance-failed"
        )
    print(f"conformance: {len(outcome.results)} expectations met for run {args.run_id}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from minimeter.report import write_report

    paths = write_report(
        Path(args.out),
        policies=args.policies,
        run_id=args.run_id,
        raw=Path(args.raw) if args.raw else None,
        pki=Path(args.pki) if args.pki else None,
    )
    print(f"report: {paths[0]} and {paths[1]}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from minimeter.demo import run_demo

    return run_demo(
        Path(args.out), meters=args.meters, days=args.days, beam_args=tuple(args.beam_args)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "allow_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.beam_args = rest
    logging.getLogger().setLevel(os.environ.get("MINIMETER_LOG_LEVEL", "ERROR"))
    handler: Handler = args.handler
    try:
        return handler(args)
    except MinimeterError as exc:
        print(f"minimeter: {exc.category}: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("minimeter: interrupted: stopped by the user", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

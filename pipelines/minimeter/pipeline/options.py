"""Minimeter's run options as a Beam ``PipelineOptions`` subclass, and strict option parsing.

``minimeter run`` takes its own options and Beam's. Every option must be one of them: an
unknown one (``--runnr``, ``--inputs``) is a usage error naming the closest known option, never
silently ignored. Both spellings, ``--as-of`` and ``--as_of``, are accepted for Minimeter's own.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from minimeter.errors import UsageError


def _both(name: str) -> list[str]:
    dashed, underscored = f"--{name.replace('_', '-')}", f"--{name}"
    return [dashed] if dashed == underscored else [dashed, underscored]


class MinimeterOptions(PipelineOptions):
    """``minimeter run``'s own options."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        add = parser.add_argument
        add(*_both("input"), dest="input", metavar="GLOB", help="messages ('**' = 0+ directories)")
        add(*_both("policies"), dest="policies", metavar="DIR")
        add(*_both("pki"), dest="pki", metavar="DIR")
        add(*_both("consent"), dest="consent", metavar="FILE")
        add(*_both("meters"), dest="meters", metavar="FILE")
        add(*_both("out"), dest="out", metavar="DIR")
        add(*_both("as_of"), dest="as_of", metavar="DATE", help="processing date (default today)")
        add(*_both("run_id"), dest="run_id", metavar="ID")
        add(
            *_both("no_spill"),
            dest="no_spill",
            action="store_true",
            default=False,
            help="keep decoded readings in the runner's shuffle instead of the encrypted spill "
            "(for runners whose shuffle spills to disk itself: Flink, Spark, Dataflow)",
        )
        add(
            *_both("carry_max_age_days"),
            dest="carry_max_age_days",
            type=int,
            default=None,
            metavar="DAYS",
            help="carry readings of incomplete intervals to the next run for this long "
            "(default 7; 0 carries nothing)",
        )
        add(
            *_both("accept"),
            dest="accept",
            action="append",
            choices=["han-export"],
            default=None,
            help="also accept gateways' HAN exports (signed, not encrypted); default: refuse "
            "them as not-encrypted",
        )
        add(
            *_both("max_power_w"),
            dest="max_power_w",
            type=float,
            default=None,
            metavar="W",
            help="plausibility: most power one meter draws or feeds (default 1000000)",
        )
        add(
            *_both("max_readings"),
            dest="max_readings",
            type=int,
            default=None,
            metavar="N",
            help="a message with more readings is refused (default 200000)",
        )
        add(
            *_both("crl"),
            dest="crl",
            action="append",
            default=None,
            metavar="CRL.pem",
            help="revocation list (repeatable; also every crls/*.pem of --pki)",
        )
        add(*_both("summary_json"), dest="summary_json", metavar="FILE")
        add(*_both("log_level"), dest="log_level", metavar="LEVEL", default=None)
        add(
            *_both("progress"),
            dest="progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="progress line on stderr (default: when stderr is a terminal)",
        )


REQUIRED = ("input", "policies", "pki", "consent", "meters", "out")


class _Parser(_BeamArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own errors become one line
        raise UsageError(message)


def _beam_parser() -> _Parser:
    parser = _Parser(allow_abbrev=False, add_help=False)
    seen: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    return parser


def known_options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({s for a in parser._actions for s in a.option_strings if s.startswith("--")})


def check_known(argv: list[str]) -> None:
    """Every option is Minimeter's or Beam's; else a usage error naming the closest one."""
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        first = unknown[0]
        name = first.split("=", 1)[0]
        if not name.startswith("-"):
            raise UsageError(f"unexpected argument {first!r}")
        close = difflib.get_close_matches(name, known_options(parser), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown option {name}{hint}")


def parse_run_options(argv: list[str]) -> tuple[argparse.Namespace, tuple[str, ...]]:
    """(Minimeter's options, the arguments to hand to Beam); unknown options are an error."""
    check_known(argv)
    own = _Parser(allow_abbrev=False, add_help=False)
    MinimeterOptions._add_argparse_args(own)
    args, beam_args = own.parse_known_args(argv)
    missing = [f"--{n}" for n in REQUIRED if getattr(args, n) is None]
    if missing:
        raise UsageError(f"missing required option(s): {', '.join(missing)}")
    return args, tuple(beam_args)

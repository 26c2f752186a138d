"""Reading policies, baselines and DPIA records: the only place raw YAML dicts live.

Errors name the file, the field and the reason: ``policies/recipients/x.yaml: retention: ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import replace
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml

from minimeter.errors import PolicyError
from minimeter.policy.duration import Duration
from minimeter.policy.model import (
    Baseline,
    BaselineRule,
    ConsentTier,
    Control,
    Dpia,
    DpiaRecipient,
    ObisSelector,
    Policy,
    PolicySet,
    Risk,
    Scope,
)

# The repository root when running from a checkout (``git rev-parse`` runs there); from an
# installed wheel it is some directory above site-packages and nothing is read from it.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# Schemas, policies and DPIA records ship inside the package (the top-level folders of the
# repository are symlinks to them); a directory package, so the resource path is a real path.
RESOURCES = Path(str(files("minimeter") / "resources"))
SCHEMAS = RESOURCES / "schemas"


def default_policies_dir() -> Path:
    """``./policies`` when it exists, else the package's shipped ``resources/policies/``."""
    here = Path("policies")
    return here if (here / "recipients").is_dir() else RESOURCES / "policies"


def resolve_dirs(path: str | Path | None) -> tuple[Path, Path]:
    """(policies dir, dpia dir) from a project root, a policies dir, or nothing."""
    base = Path(path) if path else default_policies_dir()
    if (base / "policies" / "recipients").is_dir():
        return base / "policies", base / "dpia"
    dpia = base.parent / "dpia"
    return base, dpia if dpia.is_dir() else base / "dpia"


def _schema(name: str) -> dict[str, Any]:
    with (SCHEMAS / f"{name}.schema.json").open() as f:
        return dict(json.load(f))


class _Reader:
    """Collects findings while reading, so that every problem is reported at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.findings: list[str] = []
        self.hash = hashlib.sha256()

    def name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def add(self, file: str, field: str, reason: str) -> None:
        self.findings.append(f"{file}: {field}: {reason}")

    def read(self, path: Path, schema: str) -> dict[str, Any] | None:
        name = self.name(path)
        try:
            data = _read_regular(path, MAX_YAML_BYTES)
        except _Refused as exc:
            self.add(name, "-", str(exc))
            return None
        except OSError as exc:
            self.add(name, "-", f"cannot read ({exc.strerror})")
            return None
        self.hash.update(name.encode() + b"\0" + data + b"\0")
        try:
            doc = yaml.load(data, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "-"
            self.add(name, where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})")
            return None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date such as 2026-13-45
            self.add(name, "-", f"not valid YAML ({exc})")
            return None
        if not isinstance(doc, dict):
            self.add(name, "-", "expected a mapping at the top level")
            return None
        doc = _plain(doc)
        validator = jsonschema.Draft202012Validator(_schema(schema))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        for err in errors:
            field = ".".join(str(p) for p in err.absolute_path) or "-"
            self.add(name, field, err.message)
        return None if errors else doc

    def named_after(self, path: Path, field: str, value: str) -> None:
        """A record's id must be its file's name (``<id>.yaml``)."""
        if value != path.stem:
            self.add(self.name(path), field, f"{value!r} differs from the file name {path.stem!r}")

    def duration(self, name: str, field: str, text: str) -> Duration | None:
        try:
            return Duration.parse(text)
        except ValueError as exc:
            self.add(name, field, str(exc))
            return None


MAX_YAML_BYTES = 1 << 20
"""A policy, baseline or DPIA file larger than this (1 MiB) is refused unread."""
MAX_YAML_NODES = 10_000
"""Scalars, sequences and mappings one file may compose (the largest shipped file has ~300)."""
MAX_YAML_DEPTH = 64
"""Nesting of sequences and mappings (deeper input would exhaust the parser's recursion)."""


class _Refused(Exception):
    """A file that is not read at all: not a regular file, or too large."""


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; a FIFO, device or directory is
    refused without blocking (opened non-blocking, then checked with ``fstat``)."""
    if path.exists() and not path.is_file():
        raise _Refused("not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("not a regular file")
        if info.st_size > limit:
            raise _Refused(f"{info.st_size} bytes; files larger than {limit} bytes are refused")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _Refused(f"larger than {limit} bytes; such files are refused")
    return data


def _key_text(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses, while composing and so before anything is expanded:
    aliases (``*name``; policies have no use for them and they make "billion laughs" bombs),
    more than ``MAX_YAML_NODES`` nodes, nesting deeper than ``MAX_YAML_DEPTH``; and, while
    constructing, duplicate mapping keys (plain YAML keeps the last one silently) and keys
    that are not text (``on:`` would become ``True``)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"alias *{event.anchor} refused: policy files may not use aliases",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_YAML_NODES} nodes; such files are refused",
                self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_YAML_DEPTH} levels; such files are refused",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {_key_text(key)} is not text (quote it)",
                        key_node.start_mark,
                    )
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {_key_text(key)} (first at line {first[key]})",
                        key_node.start_mark,
                    )
                first[key] = line
        return dict(super().construct_mapping(node, deep=deep))


def _plain(value: Any) -> Any:
    """YAML dates become ISO strings (the schemas describe text)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def load_policy_set(
    policies_dir: str | Path | None = None, dpia_dir: str | Path | None = None
) -> PolicySet:
    """Read every baseline, recipient policy and DPIA record; raises ``PolicyError`` listing
    every schema or syntax problem. Semantic checks are ``minimeter.policy.check``."""
    pdir, ddir = resolve_dirs(policies_dir)
    if dpia_dir is not None:
        ddir = Path(dpia_dir)
    reader = _Reader(pdir.parent)
    for d, what in (
        (pdir / "baselines", "baselines"),
        (pdir / "recipients", "recipient policies"),
        (ddir, "DPIA records"),
    ):
        if not d.is_dir():
            reader.add(reader.name(d), "-", f"no directory of {what}")
    baselines = [_baseline(reader, p) for p in sorted((pdir / "baselines").glob("*.yaml"))]
    policies = [_policy(reader, p) for p in sorted((pdir / "recipients").glob("*.yaml"))]
    dpias = [_dpia(reader, p) for p in sorted(ddir.glob("*.yaml"))] if ddir.is_dir() else []
    if not policies and (pdir / "recipients").is_dir():
        reader.add(reader.name(pdir / "recipients"), "-", "no recipient policy (*.yaml)")
    if reader.findings:
        raise PolicyError(reader.findings)
    zones = {b.jurisdiction: b.timezone for b in baselines if b is not None}
    policies = [
        replace(p, timezone="UTC" if p.calendar == "utc" else zones.get(p.jurisdiction, "UTC"))
        for p in policies
        if p is not None
    ]
    return PolicySet(
        policies=tuple(p for p in policies if p is not None),
        baselines=tuple(b for b in baselines if b is not None),
        dpias=tuple(d for d in dpias if d is not None),
        digest=reader.hash.hexdigest(),
    )


def _policy(reader: _Reader, path: Path) -> Policy | None:
    doc = reader.read(path, "recipient-policy")
    if doc is None:
        return None
    name = reader.name(path)
    reader.named_after(path, "id", doc["id"])
    selectors = []
    for i, text in enumerate(doc["obis"]):
        try:
            selectors.append(ObisSelector.parse(text))
        except ValueError as exc:
            reader.add(name, f"obis.{i}", str(exc))
    interval = reader.duration(name, "min_interval", doc["min_interval"])
    retention = reader.duration(name, "retention", doc["retention"])
    if interval is None or retention is None or len(selectors) != len(doc["obis"]):
        return None
    scope = doc.get("scope") or {}
    return Policy(
        id=doc["id"],
        role=doc["role"],
        jurisdiction=doc["jurisdiction"],
        purpose=doc["purpose"].strip(),
        legal_basis=doc["legal_basis"],
        dpia=doc["dpia"],
        delivery=doc["delivery"],
        obis=tuple(selectors),
        min_interval=interval,
        consent=doc["consent"],
        retention=retention,
        identity=doc["identity"],
        k_anonymity=doc.get("k_anonymity"),
        scope=Scope(
            areas=tuple(scope["areas"]) if "areas" in scope else None,
            supplier=scope.get("supplier"),
        ),
        name=doc.get("name", doc["id"]),
        description=doc.get("description", "").strip(),
        file=name,
        calendar=doc.get("calendar", "local"),
        registers=doc.get("registers", "rebased"),
    )


def _baseline(reader: _Reader, path: Path) -> Baseline | None:
    doc = reader.read(path, "baseline")
    if doc is None:
        return None
    name = reader.name(path)
    reader.named_after(path, "jurisdiction", doc["jurisdiction"])
    rules = []
    for i, r in enumerate(doc["rules"]):
        interval = r["min_interval"]
        retention = reader.duration(name, f"rules.{i}.max_retention", r["max_retention"])
        if retention is None:
            continue
        rules.append(
            BaselineRule(
                role=r["role"],
                min_interval=Duration.parse(interval) if interval else None,
                consent=tuple(
                    ConsentTier(t["purpose"], Duration.parse(t["min_interval"]))
                    for t in r["consent"]
                ),
                max_retention=retention,
                identity=r["identity"],
                source=r["source"].strip(),
                unconfirmed=tuple(r.get("unconfirmed", ())),
                note=r.get("note", "").strip(),
                description=r.get("description", "").strip(),
            )
        )
    roles = [r.role for r in rules]
    for role in {r for r in roles if roles.count(r) > 1}:
        reader.add(name, "rules", f"role {role!r} has more than one rule")
    zone = doc["timezone"]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        reader.add(name, "timezone", f"{zone!r} is not an IANA time zone")
        return None
    return Baseline(
        doc["jurisdiction"], doc["name"], tuple(rules), doc.get("note", "").strip(), name, zone
    )


def _dpia(reader: _Reader, path: Path) -> Dpia | None:
    doc = reader.read(path, "dpia")
    if doc is None:
        return None
    name = reader.name(path)
    reader.named_after(path, "id", doc["id"])
    recipients = []
    for i, r in enumerate(doc["recipients"]):
        retention = reader.duration(name, f"recipients.{i}.retention", r["retention"])
        if retention is not None:
            recipients.append(
                DpiaRecipient(
                    r["id"],
                    r["legal_basis"],
                    retention,
                    r.get("justification", "").strip(),
                    r.get("registers", "rebased"),
                )
            )
    risks = tuple(
        Risk(
            id=r["id"],
            description=r["description"].strip(),
            likelihood=r["likelihood"],
            severity=r["severity"],
            controls=tuple(
                Control(
                    c["description"].strip(),
                    c["relies_on"],
                    tuple(c["recipients"]) if "recipients" in c else None,
                )
                for c in r["controls"]
            ),
            residual_likelihood=r["residual"]["likelihood"],
            residual_severity=r["residual"]["severity"],
        )
        for r in doc["risks"]
    )
    processing, necessity = doc["processing"], doc["necessity"]
    return Dpia(
        id=doc["id"],
        title=doc["title"],
        controller=doc["controller"],
        template=doc.get("template", ""),
        description=processing["description"].strip(),
        purposes=tuple(processing["purposes"]),
        use_cases=tuple(processing.get("use_cases", ())),
        necessity=necessity["assessment"].strip(),
        minimisation=necessity.get("minimisation", "").strip(),
        storage_limitation=necessity.get("storage_limitation", "").strip(),
        data_categories=tuple(doc["data_categories"]),
        data_subjects=tuple(doc["data_subjects"]),
        recipients=tuple(recipients),
        risks=risks,
        review_date=str(doc["review_date"]),
        file=name,
    )

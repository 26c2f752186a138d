"""Frozen dataclasses for recipient policies, jurisdiction baselines and DPIA records.

Only ``minimeter.policy.load`` builds these from YAML; everything else receives typed objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from minimeter.obis import OBIS_PATTERN
from minimeter.policy.duration import Duration

Delivery = Literal["parquet", "aggregate", "cms-forward"]
Identity = Literal["pseudonym", "metering-point", "none"]
IdentityCeiling = Literal["metering-point", "pseudonym", "aggregate"]

_GROUP = r"(\d{1,3}|\*)"
OBIS_SELECTOR = re.compile(rf"^{_GROUP}-{_GROUP}:{_GROUP}\.{_GROUP}\.{_GROUP}$")


@dataclass(frozen=True)
class ObisSelector:
    """An allowed OBIS code ``A-B:C.D.E``; ``*`` stands for any value of a whole group."""

    text: str

    @classmethod
    def parse(cls, text: str) -> ObisSelector:
        value = text.strip()
        match = OBIS_SELECTOR.match(value)
        if not match or any(g != "*" and int(g) > 255 for g in match.groups()):
            raise ValueError(f"{text!r} is not an OBIS code A-B:C.D.E (a group may be *)")
        return cls(value)

    @property
    def groups(self) -> tuple[str, ...]:
        match = OBIS_SELECTOR.match(self.text)
        assert match is not None
        return tuple(match.groups())

    @property
    def is_exact(self) -> bool:
        return "*" not in self.text

    def matches(self, code: str) -> bool:
        match = OBIS_PATTERN.match(code)
        if not match:
            return False
        return all(
            s == "*" or int(s) == int(c) for s, c in zip(self.groups, match.groups(), strict=True)
        )


@dataclass(frozen=True)
class Scope:
    areas: tuple[str, ...] | None = None
    supplier: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    role: str
    jurisdiction: str
    purpose: str
    legal_basis: str
    dpia: str
    delivery: Delivery
    obis: tuple[ObisSelector, ...]
    min_interval: Duration
    consent: str | None
    retention: Duration
    identity: Identity
    k_anonymity: int | None
    scope: Scope
    name: str
    description: str
    file: str
    calendar: str = "local"
    """``local``: days and months are civil days and months of ``timezone``; ``utc``: the
    policy's explicit opt-out, UTC days and months."""
    registers: str = "rebased"
    """``rebased``: cumulative registers reach a pseudonymised recipient shifted by a secret
    offset per recipient, meter and OBIS code; ``absolute`` where its DPIA record allows."""
    timezone: str = "UTC"
    """The IANA zone of the recipient's calendar: its jurisdiction baseline's ``timezone``
    (``UTC`` with ``calendar: utc``). Intervals shorter than a day stay on the UTC grid."""

    @property
    def rebases_registers(self) -> bool:
        """Whether delivered cumulative registers are rebased (pseudonymised rows only)."""
        return (
            self.registers == "rebased"
            and self.identity != "metering-point"
            and self.delivery == "parquet"
        )

    def allows_obis(self, code: str) -> bool:
        return any(s.matches(code) for s in self.obis)

    def sets(self, field: str) -> bool:
        """Whether the policy gives ``field`` a value a DPIA control can rely on."""
        if field == "consent":
            return self.consent is not None
        if field == "identity":
            return self.identity != "metering-point"
        if field == "k_anonymity":
            return self.k_anonymity is not None
        if field == "scope":
            return bool(self.scope.areas) or self.scope.supplier is not None
        return True


@dataclass(frozen=True)
class ConsentTier:
    purpose: str
    min_interval: Duration


@dataclass(frozen=True)
class BaselineRule:
    role: str
    min_interval: Duration | None
    """Finest interval without consent; None = nothing without consent."""
    consent: tuple[ConsentTier, ...]
    max_retention: Duration
    identity: IdentityCeiling
    source: str
    unconfirmed: tuple[str, ...]
    note: str
    description: str


@dataclass(frozen=True)
class Baseline:
    jurisdiction: str
    name: str
    rules: tuple[BaselineRule, ...]
    note: str
    file: str
    timezone: str = "UTC"
    """The jurisdiction's civil time zone (IANA name): recipients' days and months."""

    def rule(self, role: str) -> BaselineRule | None:
        return next((r for r in self.rules if r.role == role), None)


@dataclass(frozen=True)
class Control:
    description: str
    relies_on: str
    recipients: tuple[str, ...] | None


@dataclass(frozen=True)
class Risk:
    id: str
    description: str
    likelihood: int
    severity: int
    controls: tuple[Control, ...]
    residual_likelihood: int
    residual_severity: int

    @property
    def level(self) -> int:
        return self.likelihood * self.severity

    @property
    def residual_level(self) -> int:
        return self.residual_likelihood * self.residual_severity


@dataclass(frozen=True)
class DpiaRecipient:
    id: str
    legal_basis: str
    retention: Duration
    justification: str
    registers: str = "rebased"


@dataclass(frozen=True)
class Dpia:
    id: str
    title: str
    controller: str
    template: str
    description: str
    purposes: tuple[str, ...]
    use_cases: tuple[str, ...]
    necessity: str
    minimisation: str
    storage_limitation: str
    data_categories: tuple[str, ...]
    data_subjects: tuple[str, ...]
    recipients: tuple[DpiaRecipient, ...]
    risks: tuple[Risk, ...]
    review_date: str
    file: str

    def recipient(self, recipient_id: str) -> DpiaRecipient | None:
        return next((r for r in self.recipients if r.id == recipient_id), None)


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]
    baselines: tuple[Baseline, ...]
    dpias: tuple[Dpia, ...]
    digest: str
    """SHA-256 over every file read (path and bytes): the policy hash of a run."""

    def policy(self, recipient_id: str) -> Policy | None:
        return next((p for p in self.policies if p.id == recipient_id), None)

    def baseline(self, jurisdiction: str) -> Baseline | None:
        return next((b for b in self.baselines if b.jurisdiction == jurisdiction), None)

    def dpia(self, dpia_id: str) -> Dpia | None:
        return next((d for d in self.dpias if d.id == dpia_id), None)

"""Fail-closed checks of a policy set: every finding is reported, one line each.

A recipient must stay inside its jurisdiction's baseline for its role and inside its DPIA record;
the DPIA's controls must rely on fields the policy really sets.
"""

from __future__ import annotations

from minimeter.errors import PolicyError
from minimeter.policy.model import Baseline, Policy, PolicySet

GRID_OPERATOR_ROLES = frozenset({"dso", "tso", "dno"})
SUPPLIER_ROLES = frozenset({"supplier"})


def check_policy_set(ps: PolicySet) -> list[str]:
    """Every finding as ``file: field: reason``; empty when the set passes."""
    findings: list[str] = []
    seen: dict[str, str] = {}
    for p in ps.policies:
        if p.id in seen:
            findings.append(f"{p.file}: id: {p.id!r} is also defined in {seen[p.id]}")
        seen[p.id] = p.file
        baseline = ps.baseline(p.jurisdiction)
        if baseline is None:
            findings.append(f"{p.file}: jurisdiction: no baseline for {p.jurisdiction!r}")
        else:
            findings += _against_baseline(p, baseline)
        findings += _shape(p)
        findings += _against_dpia(p, ps)
    for d in ps.dpias:
        for r in d.recipients:
            if ps.policy(r.id) is None:
                findings.append(f"{d.file}: recipients: {r.id!r} has no recipient policy")
        for risk in d.risks:
            for c in risk.controls:
                for rid in c.recipients or ():
                    if d.recipient(rid) is None:
                        findings.append(
                            f"{d.file}: risks.{risk.id}: control names {rid!r}, which the record does not list"
                        )
    return findings


def require_valid(ps: PolicySet) -> PolicySet:
    """The policy set, or ``PolicyError`` with every finding (runs stop before any data moves)."""
    findings = check_policy_set(ps)
    if findings:
        raise PolicyError(findings)
    return ps


def _shape(p: Policy) -> list[str]:
    out = []
    if p.delivery == "aggregate":
        if p.k_anonymity is None:
            out.append(f"{p.file}: k_anonymity: aggregate delivery needs k_anonymity (at least 2)")
        if p.identity != "none":
            out.append(f"{p.file}: identity: aggregate delivery carries no identity (use none)")
        if not p.scope.areas:
            out.append(f"{p.file}: scope.areas: aggregates are per grid area; list the areas")
    elif p.k_anonymity is not None:
        out.append(f"{p.file}: k_anonymity: only aggregate delivery uses k_anonymity")
    if p.role in SUPPLIER_ROLES and p.scope.supplier is None:
        out.append(
            f"{p.file}: scope.supplier: a supplier receives only its own customers; set scope.supplier"
        )
    if p.role in GRID_OPERATOR_ROLES and not p.scope.areas:
        out.append(
            f"{p.file}: scope.areas: a grid operator receives only its own grid areas; set scope.areas"
        )
    return out


def _against_baseline(p: Policy, baseline: Baseline) -> list[str]:
    rule = baseline.rule(p.role)
    if rule is None:
        roles = ", ".join(r.role for r in baseline.rules)
        return [
            f"{p.file}: role: {p.role!r} is not a role of the {baseline.jurisdiction} baseline ({roles})"
        ]
    out = []
    where = f"{baseline.file} ({rule.role})"
    allowed_without = rule.min_interval
    if allowed_without is None or p.min_interval < allowed_without:
        tiers = [t for t in rule.consent if t.purpose == p.consent]
        if not tiers:
            need = (
                " or ".join(f"{t.purpose} (down to {t.min_interval})" for t in rule.consent)
                or "none exists"
            )
            floor = f"finer than {allowed_without}" if allowed_without else "any data"
            out.append(
                f"{p.file}: min_interval: {p.min_interval} is {floor} without consent under {where}; "
                f"required consent: {need}"
            )
        elif p.min_interval < tiers[0].min_interval:
            out.append(
                f"{p.file}: min_interval: {p.min_interval} is finer than {tiers[0].min_interval}, the finest "
                f"that consent {p.consent!r} unlocks under {where}"
            )
    elif p.consent is not None and not any(t.purpose == p.consent for t in rule.consent):
        out.append(f"{p.file}: consent: {p.consent!r} is not a consent purpose of {where}")
    if p.retention > rule.max_retention:
        out.append(
            f"{p.file}: retention: {p.retention} exceeds the {rule.max_retention} ceiling of {where}"
        )
    if rule.identity == "aggregate" and p.delivery != "aggregate":
        out.append(f"{p.file}: delivery: {where} allows only aggregated data (delivery: aggregate)")
    if rule.identity in ("pseudonym", "aggregate") and p.identity == "metering-point":
        out.append(
            f"{p.file}: identity: metering-point identity where {where} requires pseudonymisation or aggregation"
        )
    return out


def _against_dpia(p: Policy, ps: PolicySet) -> list[str]:
    dpia = ps.dpia(p.dpia)
    if dpia is None:
        return [f"{p.file}: dpia: no DPIA record {p.dpia!r}"]
    entry = dpia.recipient(p.id)
    if entry is None:
        return [f"{p.file}: dpia: DPIA record {p.dpia!r} does not list this recipient"]
    out = []
    if entry.retention.text != p.retention.text:
        out.append(
            f"{p.file}: retention: {p.retention} differs from {entry.retention} in {dpia.file}"
        )
    if (
        p.registers == "absolute"
        and p.identity != "metering-point"
        and entry.registers != "absolute"
    ):
        out.append(
            f"{p.file}: registers: absolute registers link pseudonymised datasets; "
            f"{dpia.file} must say registers: absolute for {p.id}"
        )
    if entry.legal_basis != p.legal_basis:
        out.append(
            f"{p.file}: legal_basis: Art. {p.legal_basis} differs from Art. {entry.legal_basis} in {dpia.file}"
        )
    for risk in dpia.risks:
        for control in risk.controls:
            if control.recipients is not None and p.id not in control.recipients:
                continue
            if not p.sets(control.relies_on):
                out.append(
                    f"{p.file}: {control.relies_on}: DPIA {dpia.id} risk {risk.id} relies on it "
                    f"({control.description!r}) but the policy does not set it"
                )
    return out

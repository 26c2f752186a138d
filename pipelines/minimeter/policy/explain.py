"""Plain-language summary of what a recipient receives and why (``minimeter policy explain``)."""

from __future__ import annotations

from minimeter.obis import OBIS_TABLE
from minimeter.policy.model import Policy, PolicySet

LEGAL_BASES = {
    "6(1)(a)": "consent",
    "6(1)(b)": "performance of a contract",
    "6(1)(c)": "legal obligation",
    "6(1)(d)": "vital interests",
    "6(1)(e)": "public task",
    "6(1)(f)": "legitimate interests",
}
KIND_SEMANTICS = {
    "register": "register value at the end of each interval",
    "interval": "energy summed over each interval",
    "instantaneous": "mean and maximum over each interval",
}
IDENTITY = {
    "pseudonym": "a keyed pseudonym per recipient (HMAC-SHA256 under a key derived with HKDF from the "
    "pseudonym secret and the recipient id): the meter id never leaves and pseudonyms differ "
    "between recipients, but a pseudonym hides only the id, not the data: recipients who "
    "receive the same values (a cumulative register is unique per meter) can still join their "
    "datasets on them",
    "metering-point": "the metering-point id itself (needed for billing)",
    "none": "no identifier at all",
}


def calendar_text(p: Policy) -> str:
    """Which calendar a recipient's intervals follow (``policy explain`` and the report)."""
    if p.timezone == "UTC":
        how = (
            "UTC days and months (the policy opts out with calendar: utc)"
            if p.calendar == "utc"
            else "UTC days and months"
        )
    else:
        how = (
            f"civil days and months of {p.timezone} (the {p.jurisdiction} baseline's time zone): "
            "a day is 23 or 25 hours on DST change days (92 or 100 quarter hours), a day's "
            "register is the value at local midnight"
        )
    return (
        f"{how}; intervals shorter than a day stay on the UTC grid; ts is the UTC instant of "
        "the interval end, the date= partition the interval's local date."
    )


def obis_lines(policy: Policy) -> list[str]:
    lines = []
    for sel in policy.obis:
        if sel.is_exact:
            code = OBIS_TABLE.get(sel.text)
            if code:
                lines.append(
                    f"{sel.text:<11} {code.name} [{code.unit}; {KIND_SEMANTICS[code.kind]}]"
                )
            else:
                lines.append(
                    f"{sel.text:<11} (not in Minimeter's OBIS table: delivered as a register)"
                )
        else:
            known = [c for c in OBIS_TABLE if sel.matches(c)]
            lines.append(
                f"{sel.text:<11} every code of this group ({len(known)} known, e.g. {', '.join(known[:3])})"
            )
    return lines


def explain(ps: PolicySet, recipient_id: str) -> str:
    p = ps.policy(recipient_id)
    if p is None:
        known = ", ".join(sorted(x.id for x in ps.policies))
        raise KeyError(f"no recipient {recipient_id!r} (known: {known})")
    baseline = ps.baseline(p.jurisdiction)
    rule = baseline.rule(p.role) if baseline else None
    dpia = ps.dpia(p.dpia)
    out = [f"{p.id}: {p.name}", ""]
    out.append(f"Role {p.role} in {p.jurisdiction}" + (f" ({baseline.name})" if baseline else ""))
    out.append(f"Legal basis: GDPR Art. {p.legal_basis} ({LEGAL_BASES[p.legal_basis]})")
    out.append(f"Purpose: {p.purpose}")
    out.append(f"Policy file: {p.file}")
    out.append("")
    if p.delivery == "cms-forward":
        out.append(
            "Delivery: gateway messages encrypted end to end to this recipient's certificate are relayed "
            "unread; the gateway's signature is verified and replaced by the pseudonymiser's, so the "
            "gateway's identity disappears (BSI TR-03109). The content is what the gateway's tariff "
            "configuration put in it:"
        )
    elif p.delivery == "aggregate":
        out.append(
            f"Delivery: sums per grid area and interval over at least {p.k_anonymity} distinct meters; "
            "smaller groups are suppressed and counted. No meter identity. OBIS codes:"
        )
    else:
        out.append("Delivery: Parquet rows per meter, OBIS code and interval. OBIS codes:")
    out += [f"  - {line}" for line in obis_lines(p)]
    out.append("")
    out.append(
        f"Granularity: at most one value per {p.min_interval.describe()} ({p.min_interval}); "
        "a partial interval is not delivered (an interval cut by a daily input is completed "
        "by the run that brings the rest)."
    )
    out.append("  Calendar: " + calendar_text(p))
    if rule:
        without = rule.min_interval.describe() if rule.min_interval else "no data at all"
        tiers = "; ".join(
            f"consent {t.purpose!r} unlocks down to {t.min_interval.describe()}"
            for t in rule.consent
        )
        out.append(
            f"  Baseline {baseline.file if baseline else ''} ({rule.role}): finest without consent: "
            f"{without}" + (f"; {tiers}" if tiers else "") + "."
        )
        out.append(f"  Source: {rule.source}")
        if rule.unconfirmed:
            out.append(
                f"  Unconfirmed in the sources: {', '.join(rule.unconfirmed)}. {rule.note}".rstrip()
            )
    if p.consent:
        out.append(
            f"Consent: only readings captured while a {p.consent!r} grant was valid (granted, not "
            "yet expired or withdrawn), and only while it is still not withdrawn at the delivery "
            "(the run's as-of): a withdrawal also stops readings captured before it; rows of "
            "other meters are dropped."
        )
    else:
        out.append("Consent: not required for this purpose.")
    out.append(
        f"Retention: {p.retention.describe()} ({p.retention}). Two steps: a run does not deliver "
        "rows older than that before its as-of date, and `minimeter expire OUT --as-of DATE "
        "--pki DIR` removes published files once they are older (their manifests are re-signed, "
        "the audit's expirations table records each removal); run it regularly, e.g. daily"
        + (f"; baseline ceiling {rule.max_retention}." if rule else ".")
    )
    out.append(f"Identity: {IDENTITY[p.identity]}.")
    scope = [f"meters of jurisdiction {p.jurisdiction}"]
    if p.scope.areas:
        scope.append(f"in grid areas {', '.join(p.scope.areas)}")
    if p.scope.supplier:
        scope.append(f"supplied by {p.scope.supplier}")
    out.append(f"Scope (checked before anything else): {' '.join(scope)}.")
    if dpia:
        out.append("")
        out.append(f"DPIA {dpia.id} ({dpia.file}): {dpia.title}")
        for risk in dpia.risks:
            controls = [c for c in risk.controls if c.recipients is None or p.id in c.recipients]
            if not controls:
                continue
            out.append(
                f"  {risk.id} (likelihood x severity {risk.likelihood}x{risk.severity} -> residual "
                f"{risk.residual_likelihood}x{risk.residual_severity}): {risk.description}"
            )
            out += [f"     control on {c.relies_on}: {c.description}" for c in controls]
    return "\n".join(out) + "\n"

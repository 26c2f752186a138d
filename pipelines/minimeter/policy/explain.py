"""Plain-language summary of what a recipient receives and why: one ``PolicyExplanation`` per
recipient, shown by ``minimeter policy explain`` (text) and the report (HTML, Markdown)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

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


@dataclass(frozen=True)
class Part:
    """One statement of an explanation: ``label: text``, with indented details."""

    label: str
    text: str
    details: tuple[str, ...] = ()
    sep: str = ": "
    """Between label and text in the text form (``Role dso in DE``: a space)."""


@dataclass(frozen=True)
class RiskNote:
    """A DPIA risk with the controls that concern the recipient."""

    heading: str
    controls: tuple[str, ...]


@dataclass(frozen=True)
class PolicyExplanation:
    """What a recipient receives and why, derived once (``explanation``) and rendered as text
    for ``minimeter policy explain`` and as HTML or Markdown for the report."""

    recipient: str
    name: str
    header: tuple[Part, ...]
    """Role, legal basis, purpose, policy file."""
    delivery: str
    obis: tuple[str, ...]
    parts: tuple[Part, ...]
    """Granularity, consent, retention, identity, scope."""
    dpia: str | None
    risks: tuple[RiskNote, ...]

    def text(self) -> str:
        out = [f"{self.recipient}: {self.name}", ""]
        out += [_line(h) for h in self.header]
        out.append("")
        out.append(f"Delivery: {self.delivery}")
        out += [f"  - {line}" for line in self.obis]
        out.append("")
        for part in self.parts:
            out.append(_line(part))
            out += [f"  {d}" for d in part.details]
        if self.dpia:
            out += ["", self.dpia]
            for risk in self.risks:
                out.append(f"  {risk.heading}")
                out += [f"     {c}" for c in risk.controls]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"- **{h.label}**: {h.text}" for h in self.header]
        out.append(f"- **Delivery**: {self.delivery}")
        out += [f"  - `{line}`" for line in self.obis]
        for part in self.parts:
            out.append(f"- **{part.label}**: {part.text}")
            out += [f"  - {d}" for d in part.details]
        if self.dpia:
            out.append(f"- **DPIA**: {self.dpia}")
            for risk in self.risks:
                out.append(f"  - {risk.heading}")
                out += [f"    - {c}" for c in risk.controls]
        return "\n".join(out) + "\n"

    def html(self) -> str:
        def row(label: str, body: str) -> str:
            return f"<tr><th>{escape(label)}</th><td>{body}</td></tr>"

        def items(lines: tuple[str, ...], code: bool = False) -> str:
            if not lines:
                return ""
            wrap = (lambda t: f"<code>{escape(t)}</code>") if code else escape
            return "<ul>" + "".join(f"<li>{wrap(t)}</li>" for t in lines) + "</ul>"

        rows = [row(h.label, escape(h.text)) for h in self.header]
        rows.append(row("Delivery", escape(self.delivery) + items(self.obis, code=True)))
        rows += [row(p.label, escape(p.text) + items(p.details)) for p in self.parts]
        if self.dpia:
            risks = "".join(f"<li>{escape(r.heading)}{items(r.controls)}</li>" for r in self.risks)
            rows.append(row("DPIA", escape(self.dpia) + (f"<ul>{risks}</ul>" if risks else "")))
        return "<table class='explain'>" + "".join(rows) + "</table>"


def _line(part: Part) -> str:
    return f"{part.label}{part.sep}{part.text}"


def explanation(ps: PolicySet, recipient_id: str) -> PolicyExplanation:
    """The explanation of one recipient's policy; KeyError for an unknown recipient."""
    p = ps.policy(recipient_id)
    if p is None:
        known = ", ".join(sorted(x.id for x in ps.policies))
        raise KeyError(f"no recipient {recipient_id!r} (known: {known})")
    baseline = ps.baseline(p.jurisdiction)
    rule = baseline.rule(p.role) if baseline else None
    dpia = ps.dpia(p.dpia)
    header = (
        Part(
            "Role",
            f"{p.role} in {p.jurisdiction}" + (f" ({baseline.name})" if baseline else ""),
            sep=" ",
        ),
        Part("Legal basis", f"GDPR Art. {p.legal_basis} ({LEGAL_BASES[p.legal_basis]})"),
        Part("Purpose", p.purpose),
        Part("Policy file", p.file),
    )
    if p.delivery == "cms-forward":
        delivery = (
            "gateway messages encrypted end to end to this recipient's certificate are relayed "
            "unread; the gateway's signature is verified and replaced by the pseudonymiser's, so the "
            "gateway's identity disappears (BSI TR-03109). The content is what the gateway's tariff "
            "configuration put in it:"
        )
    elif p.delivery == "aggregate":
        delivery = (
            f"sums per grid area and interval over at least {p.k_anonymity} distinct meters; "
            "smaller groups are suppressed and counted. No meter identity. OBIS codes:"
        )
    else:
        delivery = "Parquet rows per meter, OBIS code and interval. OBIS codes:"
    granularity: list[str] = ["Calendar: " + calendar_text(p)]
    if rule:
        without = rule.min_interval.describe() if rule.min_interval else "no data at all"
        tiers = "; ".join(
            f"consent {t.purpose!r} unlocks down to {t.min_interval.describe()}"
            for t in rule.consent
        )
        granularity.append(
            f"Baseline {baseline.file if baseline else ''} ({rule.role}): finest without consent: "
            f"{without}" + (f"; {tiers}" if tiers else "") + "."
        )
        granularity.append(f"Source: {rule.source}")
        if rule.unconfirmed:
            granularity.append(
                f"Unconfirmed in the sources: {', '.join(rule.unconfirmed)}. {rule.note}".rstrip()
            )
    consent = (
        f"only readings captured while a {p.consent!r} grant was valid (granted, not "
        "yet expired or withdrawn), and only while it is still not withdrawn at the delivery "
        "(the run's as-of): a withdrawal also stops readings captured before it; rows of "
        "other meters are dropped."
        if p.consent
        else "not required for this purpose."
    )
    retention = (
        f"{p.retention.describe()} ({p.retention}). Two steps: a run does not deliver "
        "rows older than that before its as-of date, and `minimeter expire OUT --as-of DATE "
        "--pki DIR` removes published files once they are older (their manifests are re-signed, "
        "the audit's expirations table records each removal); run it regularly, e.g. daily"
        + (f"; baseline ceiling {rule.max_retention}." if rule else ".")
    )
    scope = [f"meters of jurisdiction {p.jurisdiction}"]
    if p.scope.areas:
        scope.append(f"in grid areas {', '.join(p.scope.areas)}")
    if p.scope.supplier:
        scope.append(f"supplied by {p.scope.supplier}")
    parts = (
        Part(
            "Granularity",
            f"at most one value per {p.min_interval.describe()} ({p.min_interval}); "
            "a partial interval is not delivered (an interval cut by a daily input is completed "
            "by the run that brings the rest).",
            tuple(granularity),
        ),
        Part("Consent", consent),
        Part("Retention", retention),
        Part("Identity", f"{IDENTITY[p.identity]}."),
        Part("Scope (checked before anything else)", f"{' '.join(scope)}."),
    )
    risks: list[RiskNote] = []
    if dpia:
        for risk in dpia.risks:
            controls = [c for c in risk.controls if c.recipients is None or p.id in c.recipients]
            if not controls:
                continue
            risks.append(
                RiskNote(
                    f"{risk.id} (likelihood x severity {risk.likelihood}x{risk.severity} -> "
                    f"residual {risk.residual_likelihood}x{risk.residual_severity}): "
                    f"{risk.description}",
                    tuple(f"control on {c.relies_on}: {c.description}" for c in controls),
                )
            )
    return PolicyExplanation(
        recipient=p.id,
        name=p.name,
        header=header,
        delivery=delivery,
        obis=tuple(obis_lines(p)),
        parts=parts,
        dpia=f"DPIA {dpia.id} ({dpia.file}): {dpia.title}" if dpia else None,
        risks=tuple(risks),
    )


def explain(ps: PolicySet, recipient_id: str) -> str:
    """``minimeter policy explain``: the explanation as text."""
    return explanation(ps, recipient_id).text()

"""What a run's audit says, as facts the report states: the verdict and each recipient's status.

Every fact is read through ``Figures`` (its query goes to ``figures.json`` and next to it).
"""

from __future__ import annotations

from dataclasses import dataclass

from minimeter.policy.model import Policy
from minimeter.report import queries
from minimeter.report.queries import Figures

Row = tuple[str, str, str | None]
"""(label, value, SQL) of a figure."""


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str
    delivery: str
    rows: int
    forwarded: int
    checks: int
    failed: int
    quarantined: bool
    figures: tuple[Row, ...]

    @property
    def unchecked(self) -> bool:
        """A recipient whose output should have been checked, with no check in the audit."""
        return self.delivery != "cms-forward" and self.checks == 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.quarantined and not self.unchecked

    def line(self) -> str:
        """The one-line status of the recipient."""
        what = (
            f"{self.forwarded} messages relayed re-signed"
            if self.delivery == "cms-forward"
            else f"{self.rows} rows delivered"
        )
        if self.delivery == "cms-forward":
            checked = "relayed unread (no suite: the content is the gateway's)"
        elif self.unchecked:
            checked = "no conformance check recorded for this run"
        elif self.failed:
            checked = f"{self.failed} of {self.checks} checks not met"
        else:
            checked = f"all {self.checks} checks met"
        verdict = "conforms" if self.ok else "DOES NOT CONFORM"
        return f"{verdict}: {what}; {checked}" + ("; files quarantined" if self.quarantined else "")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    findings: tuple[str, ...]
    notes: tuple[str, ...]
    figures: tuple[Row, ...]

    def line(self) -> str:
        if self.ok:
            return "The run conforms to its policies: " + "; ".join(self.findings) + "."
        return "The run does NOT conform: " + "; ".join(self.findings) + "."


def _value(fig: Figures, rows: list[Row], label: str, sql: str) -> str:
    value = fig.value(label, sql)
    rows.append((label, value, sql))
    return value


def recipient_status(fig: Figures, rid: str, policy: Policy) -> RecipientStatus:
    rows: list[Row] = []

    def counted(label: str, reason: str) -> int:
        return int(
            _value(fig, rows, f"{policy.id} {label}", queries.count(rid, policy.id, reason)) or 0
        )

    delivered = counted("rows delivered", "rows-delivered")
    forwarded = counted("messages relayed re-signed", "messages-forwarded")
    checks = int(_value(fig, rows, f"{policy.id} checks", queries.expectations(rid, policy.id)))
    failed = int(
        _value(
            fig, rows, f"{policy.id} checks not met", queries.failed_expectations(rid, policy.id)
        )
    )
    moved = int(_value(fig, rows, f"{policy.id} quarantined", queries.quarantined(rid, policy.id)))
    return RecipientStatus(
        policy.id, policy.delivery, delivered, forwarded, checks, failed, moved > 0, tuple(rows)
    )


def verdict(fig: Figures, rid: str, statuses: list[RecipientStatus]) -> Verdict:
    rows: list[Row] = []
    balanced = _value(fig, rows, "messages balanced", queries.run_column(rid, "balanced"))
    messages = _value(fig, rows, "messages in", queries.run_column(rid, "messages_in"))
    failed = int(_value(fig, rows, "checks not met", queries.failed_expectations(rid)))
    moved = int(_value(fig, rows, "recipients quarantined", queries.quarantined(rid)))
    rechecked = _value(fig, rows, "latest re-check (minimeter conformance)", queries.rechecks(rid))
    refailed = int(
        _value(fig, rows, "checks not met at the latest re-check", queries.recheck_failures(rid))
    )
    linkable = int(_value(fig, rows, "linkable recipient pairs", queries.linkable_series(rid)))
    bad = [s.recipient for s in statuses if not s.ok]
    findings: list[str] = []
    ok = balanced == "True" and failed == 0 and moved == 0 and refailed == 0 and not bad
    findings.append(
        f"all {messages} messages accounted for"
        if balanced == "True"
        else f"the {messages} messages are NOT accounted for (in != opened + forwarded + dead letters)"
    )
    findings.append(
        f"every recipient's output met its policy's checks ({len(statuses)} recipients)"
        if not bad
        else f"{len(bad)} recipient(s) failed conformance: {', '.join(bad)}"
    )
    if moved:
        findings.append(f"{moved} recipient(s) quarantined")
    if rechecked:
        findings.append(
            f"the re-check of {rechecked} found {refailed} check(s) not met"
            if refailed
            else f"re-checked {rechecked}: still conforms"
        )
    notes = (
        (
            f"{linkable} pair(s) of recipients have series that can be joined on exact values "
            "(see Linkability)",
        )
        if linkable
        else ("no pseudonymised series can be joined exactly to another recipient's",)
    )
    return Verdict(ok, tuple(findings), notes, tuple(rows))

"""The report's sections, in order: verdict and contents, provenance, the message balance, dead
letters, the Art. 30 record, one section per recipient, linkability, expirations, the DPIAs."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from minimeter.conformance.suites import Check, checks, manifest_check
from minimeter.errors import ConfigError
from minimeter.layout import OutLayout
from minimeter.obis import OBIS_TABLE
from minimeter.policy.explain import LEGAL_BASES, explanation
from minimeter.policy.model import Policy, PolicySet
from minimeter.report import facts, queries
from minimeter.report.queries import Figures, q
from minimeter.report.render import Doc
from minimeter.storage import AnyPath

REASONS = {
    "rows-delivered": "rows delivered",
    "kept": "readings kept (used in delivered rows)",
    "readings-in": "readings considered",
    "dropped-scope": "readings dropped: meter outside the recipient's scope",
    "dropped-consent": "readings dropped: no valid consent",
    "dropped-obis": "readings dropped: OBIS code not allowed",
    "dropped-retention": "readings dropped: older than the retention horizon",
    "dropped-incomplete": "readings dropped: in an incomplete interval",
    "dropped-duplicate": "readings dropped: delivered twice by the gateway",
    "dropped-conflict": "readings dropped: two messages disagree",
    "dropped-invalid": "readings dropped: marked invalid by the meter or gateway",
    "dropped-not-present": "readings dropped: placeholders, not measured",
    "dropped-time-invalid": "readings dropped: capture time not trustworthy",
    "dropped-unknown": "readings dropped: unknown reading status",
    "dropped-implausible": "readings dropped: implausible (no meter can produce them)",
    "carried-in": "readings carried in from the previous run (intervals it could not complete)",
    "carried-out": "readings carried to the next run (intervals this run could not complete)",
    "suppressed-k": "readings in groups below k (suppressed)",
    "groups-suppressed-k": "aggregate groups suppressed below k",
    "messages-forwarded": "messages relayed re-signed",
    "messages-relayed": "relayed messages written to the recipient's folder",
    "messages-relay-stripped": "relayed messages whose envelope lost originatorInfo or "
    "unprotected attributes (relay hygiene)",
}


@dataclass(frozen=True)
class Inputs:
    out: AnyPath
    ps: PolicySet
    run_id: str
    raw: pd.DataFrame | None
    meters: pd.DataFrame | None
    secret: bytes | None

    @classmethod
    def load(
        cls, out: AnyPath, ps: PolicySet, run_id: str, raw: Path | None, pki: Path | None
    ) -> Inputs:
        key = pki / "pseudonym-secret.key" if pki else None
        meters_csv = raw.parent.parent / "meters.csv" if raw else None
        try:
            return cls(
                out,
                ps,
                run_id,
                pd.read_parquet(raw) if raw else None,
                pd.read_csv(meters_csv).set_index("meter")
                if meters_csv and meters_csv.is_file()
                else None,
                key.read_bytes() if key and key.is_file() else None,
            )
        except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors are ValueErrors too
            what = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"--raw {raw} / --pki {pki}: cannot read ({what})", "input-unreadable"
            ) from None

    @property
    def rid(self) -> str:
        return q(self.run_id)

    def policies(self) -> list[Policy]:
        return sorted(self.ps.policies, key=lambda p: p.id)


def write_sections(doc: Doc, fig: Figures, inp: Inputs, directory: AnyPath) -> None:
    rid = inp.rid
    statuses = [facts.recipient_status(fig, rid, p) for p in inp.policies()]
    verdict = facts.verdict(fig, rid, statuses)
    doc.raw(
        f"<h1>Minimeter DPIA policy report: run {html.escape(inp.run_id)}</h1>",
        f"# Minimeter DPIA policy report: run {inp.run_id}\n",
    )
    css = "verdict ok" if verdict.ok else "verdict bad"
    doc.p("Verdict: " + verdict.line(), css)
    for note in verdict.notes:
        doc.p(f"Note: {note}.", "note")
    doc.kv(list(verdict.figures))
    doc.p(
        "Every figure below comes from the run's audit database (_audit/audit.duckdb); the "
        "DuckDB query behind it is under \u201cquery\u201d, and all of them are in figures.json."
    )
    doc.contents_here()
    _provenance(doc, fig, rid)
    _art30(doc, inp)
    for p, status in zip(inp.policies(), statuses, strict=True):
        _recipient(doc, fig, inp, p, status, directory)
    _linkability(doc, fig, inp)
    _expirations(doc, fig)
    _dpias(doc, inp.ps)


def _run_figures(fig: Figures, rid: str, columns: list[tuple[str, str]]) -> list[facts.Row]:
    rows: list[facts.Row] = []
    for label, column in columns:
        sql = queries.run_column(rid, column)
        rows.append((label, fig.value(label, sql), sql))
    return rows


def _provenance(doc: Doc, fig: Figures, rid: str) -> None:
    doc.h(2, "Provenance")
    doc.kv(
        _run_figures(
            fig,
            rid,
            [
                ("run id", "run_id"),
                ("as-of date", "as_of"),
                ("policy hash", "policy_hash"),
                ("code version", "code_version"),
                ("runner", "runner"),
                ("started", "started_at"),
                ("finished", "finished_at"),
            ],
        )
    )
    doc.h(2, "Every message accounted for")
    doc.kv(
        _run_figures(
            fig,
            rid,
            [
                ("opened and decoded", "opened"),
                ("forwarded (re-signed, unread)", "forwarded"),
                ("dead letters", "dead_letters"),
                ("readings decoded", "readings"),
            ],
        )
    )
    doc.h(3, "Dead letters by category")
    sql = queries.dead_letters(rid)
    doc.df(fig.table("dead letters by category", sql), sql)


def transfers(p: Policy) -> str:
    """The Art. 30(1)(e) entry of a recipient, from its policy: a recipient's scope holds only
    meters of its own jurisdiction, so a delivery never leaves it."""
    return f"none ({p.jurisdiction} recipient, {p.jurisdiction} meters only)"


def _art30(doc: Doc, inp: Inputs) -> None:
    doc.h(2, "Record of processing activities (GDPR Art. 30)")
    rows = []
    for p in inp.policies():
        d = inp.ps.dpia(p.dpia)
        categories = sorted(
            {OBIS_TABLE[s.text].data_class for s in p.obis if s.text in OBIS_TABLE}
        ) or ["as sent by the gateway"]
        rows.append(
            {
                "recipient (Art. 30(1)(d))": f"{p.id}: {p.name} ({p.role}, {p.jurisdiction})",
                "purpose": p.purpose,
                "legal basis": f"Art. {p.legal_basis} ({LEGAL_BASES[p.legal_basis]})",
                "data categories": ", ".join(categories),
                "data subjects": ", ".join(d.data_subjects) if d else "",
                "transfers to third countries (Art. 30(1)(e))": transfers(p),
                "time limit for erasure": f"{p.retention.describe()} (delivery filter, then "
                "minimeter expire)",
                "safeguards": f"{p.identity} identity; {p.min_interval.describe()} granularity"
                + (f"; consent {p.consent}" if p.consent else "")
                + (f"; k >= {p.k_anonymity}" if p.k_anonymity else ""),
            }
        )
    doc.df(pd.DataFrame(rows))
    controllers = sorted({d.controller for d in inp.ps.dpias})
    doc.p(
        "Transfers are derived from the policy set: every recipient's scope is limited to meters "
        "of its own jurisdiction (checked before anything else, and again by conformance), and "
        "no policy names a recipient in another country or an international organisation. "
        f"Controller (DPIA records): {'; '.join(controllers)}. Where the hub itself is "
        "established is not recorded in the policy set.",
        "note",
    )


_UNEXPECTED = re.compile(r"^(\d+) unexpected of (\d+)$")


def observed_text(check: Check | None, observed: str) -> str:
    """A result's observation in words (``3 unexpected of 480`` -> ``3 of 480 rows fail``)."""
    m = _UNEXPECTED.match(observed or "")
    if m:
        bad, total = m.groups()
        return f"all {total} rows pass" if bad == "0" else f"{bad} of {total} rows fail"
    if check is not None and check.expectation == "expect_table_row_count_to_equal":
        return f"{observed} rows written"
    if check is not None and check.expectation == "files_match_manifest":
        return "every file matches" if observed == "all" else observed
    return observed or ""


def conformance_table(results: pd.DataFrame, planned: list[Check]) -> pd.DataFrame:
    """The results as expectation, parameters, observed, verdict, in suite order (internal
    column names stay out: each result is matched to the check it comes from)."""
    by_key = {c.key: c for c in planned}
    order = {c.key: i for i, c in enumerate(planned)}
    rows = []
    for r in results.itertuples(index=False):
        column = None if pd.isna(r.column) else str(r.column)
        key = (str(r.expectation), column)
        check = by_key.get(key)
        rows.append(
            (
                order.get(key, len(order)),
                {
                    "expectation": check.rule if check else str(r.expectation).replace("_", " "),
                    "parameters": check.parameters if check else "",
                    "observed": observed_text(check, str(r.observed)),
                    "verdict": "met" if bool(r.success) else "NOT MET",
                },
            )
        )
    rows.sort(key=lambda x: x[0])
    return pd.DataFrame(
        [r for _, r in rows], columns=["expectation", "parameters", "observed", "verdict"]
    )


def _recipient(
    doc: Doc,
    fig: Figures,
    inp: Inputs,
    p: Policy,
    status: facts.RecipientStatus,
    directory: AnyPath,
) -> None:
    rid = inp.rid
    doc.h(2, f"Recipient {p.id}", status.line())
    doc.p(status.line(), "status ok" if status.ok else "status bad")
    doc.kv(list(status.figures), folded="the figures of this status")
    e = explanation(inp.ps, p.id)
    doc.raw(f"<p><b>{html.escape(e.name)}</b></p>{e.html()}", f"**{e.name}**\n\n{e.markdown()}")
    doc.h(3, f"{p.id}: counts")
    sql = queries.counts(rid, p.id)
    counted = fig.table(f"{p.id} counts", sql)
    order = list(REASONS)
    shown = pd.DataFrame(
        {
            "what": [REASONS.get(r, r) for r in counted["reason"]],
            "n": [int(n) for n in counted["n"]],
            "_order": [order.index(r) if r in REASONS else len(order) for r in counted["reason"]],
        }
    )
    shown = shown.sort_values("_order")[["what", "n"]]
    doc.df(shown, sql, empty="nothing counted for this recipient")
    if p.delivery != "cms-forward":
        doc.h(3, f"{p.id}: conformance")
        as_of = fig.value(f"{p.id} as-of", queries.run_column(rid, "as_of"))
        day = datetime.fromisoformat(as_of).replace(tzinfo=UTC)
        planned = checks(p, expected_rows=status.rows, as_of=day, scope=True) + [manifest_check()]
        sql = queries.conformance(rid, p.id)
        doc.df(
            conformance_table(fig.table(f"{p.id} conformance", sql), planned),
            sql,
            empty="no conformance results recorded",
        )
    sql = queries.manifest_hash(rid, p.id)
    doc.kv([("manifest SHA-256", fig.value(f"{p.id} manifest", sql), sql)])
    _plot(doc, inp, p, directory)


def _plot(doc: Doc, inp: Inputs, p: Policy, directory: AnyPath) -> None:
    from minimeter.conformance.derived import read_output
    from minimeter.report import plots

    if p.delivery == "cms-forward":
        return
    delivered = read_output(OutLayout(inp.out).published(p.id, inp.run_id).base)
    figure = plots.recipient_figure(p, delivered, inp.raw, inp.meters, inp.secret)
    if figure is None:
        doc.p("(nothing delivered to plot)", "note")
        return
    doc.image(
        plots.png(figure),
        f"{p.id}.png",
        f"a sample series: raw readings against what {p.id} received",
        directory,
    )


def _linkability(doc: Doc, fig: Figures, inp: Inputs) -> None:
    doc.h(2, "Linkability between recipients")
    doc.p(
        "A pseudonym hides a meter's id, not its data. For every pair of recipients of one "
        "jurisdiction of which the first is pseudonymised, the run counts the first recipient's "
        "series (pseudonym, OBIS code) that share at least one exact (OBIS code, time, value) "
        "with the second's rows: such a series can be joined to the other dataset, and through "
        "it to a metering-point id where the other recipient has one. Cumulative registers reach "
        "pseudonymised recipients rebased by a secret offset per recipient and meter, so they do "
        "not join; interval values still can where two recipients get the same granularity."
    )
    sql = queries.linkability(inp.rid)
    df = fig.table("linkability", sql)
    if not df.empty:
        df = df.assign(
            share=[
                f"{m / s:.0%}" if s else ""
                for m, s in zip(df["matched"], df["series"], strict=True)
            ]
        ).rename(
            columns={
                "recipient": "pseudonymised recipient",
                "other": "compared with",
                "series": "its series",
                "matched": "series joinable exactly",
                "share": "share joinable",
            }
        )
    doc.df(df, sql, empty="no pair of recipients to compare in this run")


def _expirations(doc: Doc, fig: Figures) -> None:
    doc.h(2, "Expirations (retention after delivery)")
    doc.p(
        "Retention is a delivery filter plus `minimeter expire OUT --as-of DATE --pki DIR`, which "
        "removes published files older than their recipient's retention, re-signs the manifests "
        "and records each removal here."
    )
    if not fig.has_table("expirations"):
        doc.p("No expiry has run on this output yet (the audit has no expirations table).")
        return
    sql = queries.expirations()
    doc.df(fig.table("expirations", sql), sql, empty="no file has expired")


def _dpias(doc: Doc, ps: PolicySet) -> None:
    doc.h(2, "Data protection impact assessments (GDPR Art. 35(7))")
    for d in ps.dpias:
        doc.h(3, f"{d.id}: {d.title}")
        doc.p(f"Controller: {d.controller}. Template: {d.template}. Review date: {d.review_date}.")
        doc.p(f"(a) Systematic description: {d.description} Purposes: {'; '.join(d.purposes)}.")
        doc.p(
            f"(b) Necessity and proportionality: {d.necessity} {d.minimisation} {d.storage_limitation}".strip()
        )
        doc.p("(c) Risks and (d) measures:")
        doc.df(
            pd.DataFrame(
                [
                    {
                        "risk": r.id,
                        "description": r.description,
                        "likelihood x severity": f"{r.likelihood} x {r.severity} = {r.level}",
                        "controls (policy field)": "; ".join(
                            f"{c.description} ({c.relies_on})" for c in r.controls
                        ),
                        "residual": f"{r.residual_likelihood} x {r.residual_severity} = {r.residual_level}",
                    }
                    for r in d.risks
                ]
            )
        )

"""The DPIA policy report of a run: ``OUT/_report/index.html`` and ``report.md``.

Every figure is read from the audit database by a DuckDB query that is printed next to it, and
``figures.json`` lists (figure, SQL, value) so that anyone can re-run them. The HTML is
self-contained: styles inline, plots embedded as PNG data.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from minimeter.errors import ConfigError
from minimeter.layout import OutLayout
from minimeter.obis import OBIS_TABLE
from minimeter.policy.explain import IDENTITY, KIND_SEMANTICS, LEGAL_BASES, calendar_text
from minimeter.policy.load import load_policy_set
from minimeter.policy.model import Policy, PolicySet
from minimeter.quality import read_output

REASONS = [
    ("rows-delivered", "rows delivered"),
    ("kept", "readings kept (used in delivered rows)"),
    ("dropped-scope", "readings dropped: meter outside the recipient's scope"),
    ("dropped-consent", "readings dropped: no valid consent at capture time"),
    ("dropped-obis", "readings dropped: OBIS code not allowed"),
    ("dropped-retention", "readings dropped: older than the retention horizon"),
    ("dropped-incomplete", "readings dropped: in an incomplete interval"),
    ("dropped-duplicate", "readings dropped: delivered twice by the gateway"),
    ("dropped-invalid", "readings dropped: marked invalid by the meter or gateway"),
    ("dropped-not-present", "readings dropped: placeholders, not measured"),
    ("dropped-time-invalid", "readings dropped: capture time not trustworthy"),
    ("dropped-unknown", "readings dropped: unknown reading status"),
    ("dropped-implausible", "readings dropped: implausible (no meter can produce them)"),
    ("carried-in", "readings carried in from the previous run (intervals it could not complete)"),
    ("carried-out", "readings carried to the next run (intervals this run could not complete)"),
    ("suppressed-k", "readings in groups below k (suppressed)"),
    ("groups-suppressed-k", "aggregate groups suppressed below k"),
    ("messages-forwarded", "messages relayed re-signed"),
]


@dataclass
class Figures:
    con: duckdb.DuckDBPyConnection
    items: list[dict[str, str]] = field(default_factory=list)

    def value(self, label: str, sql: str) -> str:
        row = self.con.execute(sql).fetchone()
        value = "" if row is None or row[0] is None else str(row[0])
        self.items.append({"figure": label, "sql": sql, "value": value})
        return value

    def table(self, label: str, sql: str) -> pd.DataFrame:
        df = self.con.execute(sql).df()
        self.items.append({"figure": label, "sql": sql, "value": df.to_csv(index=False)})
        return df


class Doc:
    """Writes the same content as HTML and Markdown."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def h(self, level: int, text: str) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def kv(self, rows: Sequence[tuple[str, str, str | None]]) -> None:
        """(label, value, SQL or None) rows."""
        self.html.append("<table class='kv'>")
        self.md.append("| | | SQL |\n|---|---|---|")
        for label, value, sql in rows:
            sql_html = f"<code>{html.escape(sql)}</code>" if sql else ""
            self.html.append(
                f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td><td class='sql'>{sql_html}</td></tr>"
            )
            self.md.append(f"| {label} | {value} | {'`' + sql + '`' if sql else ''} |")
        self.html.append("</table>")
        self.md.append("")

    def df(self, frame: pd.DataFrame, sql: str | None = None) -> None:
        if sql:
            self.html.append(f"<p class='sql'>SQL: <code>{html.escape(sql)}</code></p>")
            self.md.append(f"SQL: `{sql}`\n")
        if frame.empty:
            self.p("(none)")
            return
        cols = list(frame.columns)
        self.html.append(
            "<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"
        )
        for row in frame.itertuples(index=False):
            self.html.append(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            )
        self.html.append("</table>")
        self.md.append("| " + " | ".join(map(str, cols)) + " |\n|" + "---|" * len(cols))
        self.md += [
            "| " + " | ".join(str(v).replace("|", "/") for v in row) + " |"
            for row in frame.itertuples(index=False)
        ]
        self.md.append("")

    def image(self, png: bytes, name: str, alt: str, directory: Path) -> None:
        (directory / name).write_bytes(png)
        data = base64.b64encode(png).decode()
        self.html.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'/>")
        self.md.append(f"![{alt}]({name})\n")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;
vertical-align:top;font-size:90%}code{font-size:85%;color:#555}.sql{color:#555}h2{border-bottom:2px solid #2a6}
img{max-width:100%}"""


def _sample_plot(
    policy: Policy,
    tree: Path,
    raw: pd.DataFrame | None,
    meters: pd.DataFrame | None,
    secret: bytes | None,
) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delivered = read_output(tree)
    if delivered.empty:
        return None
    codes = [
        c
        for c in ("1-0:1.29.0", "1-0:1.8.0", "1-0:1.8.1", "1-0:1.7.0")
        if c in set(delivered["obis"])
    ]
    obis = codes[0] if codes else str(delivered["obis"].iloc[0])
    fig, ax = plt.subplots(figsize=(9, 3.2))
    title = f"{policy.id}: {obis} ({OBIS_TABLE[obis].name if obis in OBIS_TABLE else obis})"
    d = delivered[delivered["obis"] == obis]
    if policy.delivery == "aggregate":
        area = str(d["area"].iloc[0])
        d = d[d["area"] == area]
        ax.step(
            d["ts"],
            d["value"] / d["n_meters"],
            where="pre",
            color="#d62",
            label=f"delivered: {area} total / n_meters",
        )
        if raw is not None and meters is not None:
            in_area = meters[meters["area"] == area].index
            sample = raw[(raw["meter"].isin(in_area)) & (raw["obis"] == obis)]
            if not sample.empty:
                one = sample[sample["meter"] == sample["meter"].iloc[0]]
                ax.plot(
                    one["capture_time"],
                    one["value"],
                    lw=0.7,
                    color="#26a",
                    label="raw: one meter of the area",
                )
    else:
        identity = str(d["meter"].dropna().iloc[0]) if d["meter"].notna().any() else None
        raw_meter = None
        if raw is not None and identity is not None:
            if policy.identity == "metering-point":
                raw_meter = identity
            elif secret is not None:
                from minimeter.pseudonym import pseudonym, recipient_key

                key = recipient_key(secret, policy.id)
                raw_meter = next(
                    (m for m in raw["meter"].unique() if pseudonym(key, m) == identity), None
                )
        d = d[d["meter"] == identity] if identity is not None else d
        if raw_meter is not None and raw is not None:
            r = raw[(raw["meter"] == raw_meter) & (raw["obis"] == obis)]
            r = r[
                (r["capture_time"] > d["ts"].min() - pd.Timedelta(days=1))
                & (r["capture_time"] <= d["ts"].max())
            ]
            ax.plot(
                r["capture_time"], r["value"], lw=0.7, color="#26a", label="raw readings (15 min)"
            )
        ax.step(
            d["ts"],
            d["value"],
            where="pre",
            color="#d62",
            lw=1.6,
            label=f"delivered ({policy.min_interval})",
        )
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _run_figures(
    fig: Figures, rid: str, columns: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str | None]]:
    """(label, value, SQL) for columns of the ``runs`` row of the run ``rid`` (a quoted literal)."""
    rows: list[tuple[str, str, str | None]] = []
    for label, column in columns:
        sql = f"SELECT {column} FROM runs WHERE run_id = {rid}"
        rows.append((label, fig.value(label, sql), sql))
    return rows


def write_report(
    out: Path,
    *,
    policies: str | Path | None = None,
    run_id: str | None = None,
    raw: Path | None = None,
    pki: Path | None = None,
) -> tuple[Path, Path]:
    db = out / "_audit" / "audit.duckdb"
    if not db.is_file():
        raise ConfigError(f"{db}: no audit database (run minimeter run first)", "input-unreadable")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return _write(out, con, policies, run_id, raw, pki)
    finally:
        con.close()


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write(
    out: Path,
    con: duckdb.DuckDBPyConnection,
    policies: str | Path | None,
    run_id: str | None,
    raw_path: Path | None,
    pki: Path | None,
) -> tuple[Path, Path]:
    if run_id is None:
        row = con.execute("SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1").fetchone()
        if row is None:
            raise ConfigError(f"{out}: the audit database holds no run")
        run_id = str(row[0])
    known = con.execute("SELECT policy_hash FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not known:
        raise ConfigError(f"--run-id: no run {run_id!r} in the audit database", "unknown-run")
    ps: PolicySet = load_policy_set(policies)
    if ps.digest != known[0][0]:
        raise ConfigError(
            f"the policy set's hash {ps.digest[:16]} is not run {run_id}'s "
            f"({str(known[0][0])[:16]}): the report would describe other policies",
            "policy-mismatch",
        )
    rid = _q(run_id)
    fig = Figures(con)
    doc = Doc()
    directory = out / "_report"
    directory.mkdir(parents=True, exist_ok=True)
    raw = pd.read_parquet(raw_path) if raw_path else None
    meters = None
    secret = (
        (pki / "pseudonym-secret.key").read_bytes()
        if pki and (pki / "pseudonym-secret.key").is_file()
        else None
    )
    meters_csv = raw_path.parent.parent / "meters.csv" if raw_path else None
    if meters_csv and meters_csv.is_file():
        meters = pd.read_csv(meters_csv).set_index("meter")

    doc.h(1, f"Minimeter DPIA policy report: run {run_id}")
    doc.p(
        "Every figure below comes from the run's audit database (_audit/audit.duckdb); the DuckDB "
        "query next to it reproduces it. The same queries are listed in figures.json."
    )
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
                ("messages in", "messages_in"),
                ("opened and decoded", "opened"),
                ("forwarded (re-signed, unread)", "forwarded"),
                ("dead letters", "dead_letters"),
                ("readings decoded", "readings"),
                ("in = opened + forwarded + dead letters", "balanced"),
            ],
        )
    )
    doc.h(2, "Dead letters by category")
    sql = f"SELECT stage, category, n FROM dead_letters_by_category WHERE run_id = {rid} ORDER BY stage, category"
    doc.df(fig.table("dead letters by category", sql), sql)

    doc.h(2, "Record of processing activities (GDPR Art. 30)")
    rows = []
    for p in sorted(ps.policies, key=lambda p: p.id):
        d = ps.dpia(p.dpia)
        categories = sorted(
            {OBIS_TABLE[s.text].data_class for s in p.obis if s.text in OBIS_TABLE}
        ) or ["as sent by the gateway"]
        rows.append(
            {
                "recipient": p.id,
                "purpose": p.purpose,
                "legal basis": f"Art. {p.legal_basis} ({LEGAL_BASES[p.legal_basis]})",
                "data categories": ", ".join(categories),
                "data subjects": ", ".join(d.data_subjects) if d else "",
                "time limit for erasure": f"{p.retention.describe()}: not delivered once older, "
                "and removed from published outputs by `minimeter expire`",
                "safeguards": f"{p.identity} identity; {p.min_interval.describe()} granularity"
                + (f"; consent {p.consent}" if p.consent else "")
                + (f"; k >= {p.k_anonymity}" if p.k_anonymity else ""),
            }
        )
    doc.df(pd.DataFrame(rows))

    for p in sorted(ps.policies, key=lambda p: p.id):
        baseline = ps.baseline(p.jurisdiction)
        rule = baseline.rule(p.role) if baseline else None
        doc.h(2, f"Recipient {p.id}: {p.name}")
        doc.p(f"Purpose: {p.purpose}")
        doc.p(
            f"Legal basis: GDPR Art. {p.legal_basis} ({LEGAL_BASES[p.legal_basis]}); role {p.role} in "
            f"{p.jurisdiction}; delivery {p.delivery}; DPIA {p.dpia}."
        )
        if rule:
            clauses = [
                f"finest without consent {rule.min_interval.describe() if rule.min_interval else 'none'}",
                *(f"consent {t.purpose} unlocks {t.min_interval.describe()}" for t in rule.consent),
                f"retention ceiling {rule.max_retention.describe()}",
                f"identity at most {rule.identity}",
            ]
            unconfirmed = (
                f" Unconfirmed: {', '.join(rule.unconfirmed)}." if rule.unconfirmed else ""
            )
            doc.p(
                f"Baseline ({baseline.file if baseline else ''}, {rule.role}): {'; '.join(clauses)}. "
                f"Source: {rule.source}{unconfirmed}"
            )
        doc.df(
            pd.DataFrame(
                [
                    {
                        "OBIS": s.text,
                        "name": OBIS_TABLE[s.text].name if s.text in OBIS_TABLE else "(group)",
                        "unit": OBIS_TABLE[s.text].unit if s.text in OBIS_TABLE else "",
                        "at the recipient's granularity": KIND_SEMANTICS[OBIS_TABLE[s.text].kind]
                        if s.text in OBIS_TABLE
                        else "as sent",
                    }
                    for s in p.obis
                ]
            )
        )
        doc.p(
            f"Granularity: {p.min_interval.describe()}. Consent: {p.consent or 'not required'}. Retention: "
            f"{p.retention.describe()}. Identity: {IDENTITY[p.identity]}. "
            f"Calendar: {calendar_text(p)}"
        )
        counts = []
        for reason, label in REASONS:
            sql = (
                f"SELECT coalesce(sum(n), 0) FROM counts WHERE run_id = {rid} AND recipient = {_q(p.id)} "
                f"AND reason = {_q(reason)}"
            )
            counts.append((label, fig.value(f"{p.id} {reason}", sql), sql))
        doc.kv(counts)
        sql = (
            f'SELECT expectation, "column", success, observed FROM conformance WHERE run_id = {rid} '
            f'AND recipient = {_q(p.id)} ORDER BY expectation, "column"'
        )
        doc.p("Conformance (Great Expectations suite generated from the policy):")
        doc.df(fig.table(f"{p.id} conformance", sql), sql)
        sql = f"SELECT sha256 FROM manifests WHERE run_id = {rid} AND recipient = {_q(p.id)}"
        qsql = f"SELECT count(*) FROM quarantine WHERE run_id = {rid} AND recipient = {_q(p.id)}"
        doc.kv(
            [
                ("manifest SHA-256", fig.value(f"{p.id} manifest", sql), sql),
                ("quarantined", fig.value(f"{p.id} quarantined", qsql), qsql),
            ]
        )
        png = _sample_plot(p, OutLayout(out).published(p.id, run_id).base, raw, meters, secret)
        if png:
            doc.image(
                png,
                f"{p.id}.png",
                f"sample meter: raw load curve against what {p.id} received",
                directory,
            )

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

    html_text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Minimeter report {html.escape(run_id)}"
        f"</title><style>{CSS}</style></head><body>{''.join(doc.html)}</body></html>"
    )
    (directory / "index.html").write_text(html_text)
    (directory / "report.md").write_text("\n".join(doc.md))
    (directory / "figures.json").write_text(json.dumps(fig.items, indent=1))
    return directory / "index.html", directory / "report.md"


__all__ = ["write_report"]

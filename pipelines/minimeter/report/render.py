"""The report as HTML (self-contained: styles inline, plots embedded) and Markdown, and
``write_report``, which writes ``index.html``, ``report.md`` and ``figures.json``."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from minimeter.auditdb import open_audit
from minimeter.errors import ConfigError
from minimeter.files import atomic_write
from minimeter.policy.load import load_policy_set
from minimeter.report import queries
from minimeter.storage import AnyPath

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.4}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top;font-size:90%}th{background:#f4f4f4}code{font-size:85%;color:#555}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #2a6;margin-top:1.8em}h3{margin-top:1.4em}
img{max-width:100%}details{font-size:80%;color:#555}details summary{cursor:pointer;color:#27a}
details code{white-space:pre-wrap}.verdict{padding:.6em 1em;border-radius:4px;font-weight:600;margin:1em 0}
.ok{background:#e3f4e8;border-left:6px solid #2a6}.bad{background:#fbe4e1;border-left:6px solid #c33}
.status{font-weight:600}.status.ok,.status.bad{padding:.3em .6em}td.num{text-align:right}
.explain th{width:14em}.explain ul{margin:.2em 0 .2em 1.2em;padding:0}nav ol{columns:2}
.note{color:#555;font-size:90%}details.figures{margin:0 0 1em}"""


def cell(value: object) -> str:
    """A table cell's text: no ``nan`` or ``None`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if value is pd.NaT:
        return ""
    return str(value)


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class Doc:
    """Writes the same content as HTML and Markdown; level-2 headings make the contents."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []
        self.contents: list[tuple[str, str, str]] = []
        """(anchor, heading, one-line status or "")."""
        self._contents_at: int | None = None

    def h(self, level: int, text: str, status: str = "") -> None:
        ident = anchor(text)
        if level == 2:
            self.contents.append((ident, text, status))
        self.html.append(f"<h{level} id='{ident}'>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str, css: str = "") -> None:
        klass = f" class='{css}'" if css else ""
        self.html.append(f"<p{klass}>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def raw(self, html_text: str, md_text: str) -> None:
        self.html.append(html_text)
        self.md.append(md_text)

    def sql(self, sql: str) -> str:
        return f"<details><summary>query</summary><code>{html.escape(sql)}</code></details>"

    def kv(self, rows: Sequence[tuple[str, str, str | None]], folded: str = "") -> None:
        """(label, value, SQL or None) rows; inside a closed ``<details>`` titled ``folded``
        when given (figures already stated in words)."""
        if folded:
            self.html.append(f"<details class='figures'><summary>{html.escape(folded)}</summary>")
        self.html.append("<table class='kv'>")
        self.md.append("| | | SQL |\n|---|---|---|")
        for label, value, sql in rows:
            sql_html = self.sql(sql) if sql else ""
            self.html.append(
                f"<tr><th>{html.escape(label)}</th><td>{html.escape(value or '(none)')}</td><td>{sql_html}</td></tr>"
            )
            self.md.append(f"| {label} | {value} | {'`' + sql + '`' if sql else ''} |")
        self.html.append("</table>")
        if folded:
            self.html.append("</details>")
        self.md.append("")

    def df(self, frame: pd.DataFrame, sql: str | None = None, empty: str = "(none)") -> None:
        if sql:
            self.html.append(self.sql(sql))
            self.md.append(f"SQL: `{sql}`\n")
        if frame.empty:
            self.p(empty)
            return
        cols = list(frame.columns)
        self.html.append(
            "<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"
        )
        for row in frame.itertuples(index=False):
            self.html.append(
                "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
            )
        self.html.append("</table>")
        self.md.append("| " + " | ".join(map(str, cols)) + " |\n|" + "---|" * len(cols))
        self.md += [
            "| " + " | ".join(cell(v).replace("|", "/") for v in row) + " |"
            for row in frame.itertuples(index=False)
        ]
        self.md.append("")

    def image(self, png: bytes, name: str, alt: str, directory: AnyPath) -> None:
        atomic_write(directory / name, png)
        data = base64.b64encode(png).decode()
        self.html.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'/>")
        self.md.append(f"![{alt}]({name})\n")

    def contents_here(self) -> None:
        """Where the table of contents goes (filled in by ``page``, once every heading is known)."""
        self._contents_at = len(self.html)
        self.html.append("")
        self.md.append("{{contents}}")

    def page(self, title: str) -> tuple[str, str]:
        items = "".join(
            f"<li><a href='#{a}'>{html.escape(t)}</a>"
            + (f" <span class='note'>{html.escape(s)}</span>" if s else "")
            + "</li>"
            for a, t, s in self.contents
        )
        body = list(self.html)
        if self._contents_at is not None:
            body[self._contents_at] = f"<nav><h2>Contents</h2><ol>{items}</ol></nav>"
        md_contents = "## Contents\n\n" + "\n".join(
            f"1. [{t}](#{a})" + (f": {s}" if s else "") for a, t, s in self.contents
        )
        text = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
        )
        md = "\n".join(md_contents if m == "{{contents}}" else m for m in self.md)
        return text, md


def write_report(
    out: AnyPath,
    *,
    policies: str | Path | None = None,
    run_id: str | None = None,
    raw: Path | None = None,
    pki: Path | None = None,
) -> tuple[AnyPath, AnyPath]:
    """The report of ``run_id`` (the latest run by default) of ``OUT``; refuses a policy set
    whose hash is not the run's. ``raw`` (ground truth readings) and ``pki`` (the pseudonym
    secret) add the plots of raw against delivered values."""
    from minimeter.report.sections import Inputs, write_sections

    db = out / "_audit" / "audit.duckdb"
    if not db.is_file():
        raise ConfigError(f"{db}: no audit database (run minimeter run first)", "input-unreadable")
    con = open_audit(db)
    try:
        if run_id is None:
            run_id = queries.latest_run(con)
            if run_id is None:
                raise ConfigError(f"{out}: the audit database holds no run")
        known = con.execute("SELECT policy_hash FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not known:
            raise ConfigError(f"--run-id: no run {run_id!r} in the audit database", "unknown-run")
        ps = load_policy_set(policies)
        if ps.digest != known[0][0]:
            raise ConfigError(
                f"the policy set's hash {ps.digest[:16]} is not run {run_id}'s "
                f"({str(known[0][0])[:16]}): the report would describe other policies",
                "policy-mismatch",
            )
        inputs = Inputs.load(out, ps, run_id, raw, pki)
        directory = out / "_report"
        fig = queries.Figures(con)
        doc = Doc()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_sections(doc, fig, inputs, directory)
            html_text, md = doc.page(f"Minimeter report {run_id}")
            atomic_write(directory / "index.html", html_text.encode())
            atomic_write(directory / "report.md", md.encode())
            atomic_write(directory / "figures.json", json.dumps(fig.items, indent=1).encode())
        except OSError as exc:
            raise ConfigError(
                f"{directory}: cannot write the report ({exc.strerror or exc})", "output-unwritable"
            ) from None
    finally:
        con.close()
    return directory / "index.html", directory / "report.md"

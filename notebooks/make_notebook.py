"""Writes auditor_walkthrough.ipynb (kept as code so the notebook stays reviewable; outputs are
never committed). Run: python notebooks/make_notebook.py"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# Auditor walkthrough: one Minimeter run, figure by figure\n\n"
        "This notebook opens a run's audit database and its Parquet outputs with DuckDB and checks, "
        "step by step, what each recipient received and why. Set `MINIMETER_OUT` to a run's output "
        "directory (default: the demo's `out/demo/run`)."
    ),
    nbf.v4.new_code_cell(
        "import os\nfrom pathlib import Path\n\nimport duckdb\nimport pandas as pd\n"
        "from IPython.display import Image, display\nfrom matplotlib.figure import Figure\n\n"
        "OUT = Path(os.environ.get('MINIMETER_OUT', '../out/demo/run')).resolve()\n"
        "con = duckdb.connect(str(OUT / '_audit' / 'audit.duckdb'), read_only=True)\n"
        "run_id = con.execute('SELECT run_id FROM runs ORDER BY finished_at DESC LIMIT 1').fetchone()[0]\n"
        "run_id"
    ),
    nbf.v4.new_markdown_cell(
        "## 1. Provenance of the run\nRun id, as-of date, policy hash, code version and runner."
    ),
    nbf.v4.new_code_cell(
        "# the times as text: DuckDB's pandas conversion of TIMESTAMPTZ warns under pandas 3.1\n"
        "con.execute('SELECT * REPLACE (CAST(started_at AS VARCHAR) AS started_at, "
        "CAST(finished_at AS VARCHAR) AS finished_at) FROM runs WHERE run_id = ?', [run_id]).df().T"
    ),
    nbf.v4.new_markdown_cell(
        "## 2. Every message is accounted for\nMessages in = opened + forwarded + dead letters."
    ),
    nbf.v4.new_code_cell(
        "m = con.execute('SELECT messages_in, opened, forwarded, dead_letters FROM runs WHERE run_id = ?', "
        "[run_id]).fetchone()\nassert m[0] == m[1] + m[2] + m[3], m\nm"
    ),
    nbf.v4.new_code_cell(
        "con.execute('SELECT stage, category, n FROM dead_letters_by_category WHERE run_id = ? ORDER BY n DESC', "
        "[run_id]).df()"
    ),
    nbf.v4.new_markdown_cell(
        "## 3. What each recipient kept and dropped\nEvery decoded reading is counted under exactly one "
        "reason per recipient."
    ),
    nbf.v4.new_code_cell(
        'long = con.execute("SELECT recipient, reason, n FROM counts WHERE run_id = ? '
        "AND NOT starts_with(recipient, '_')\", [run_id]).df()\n"
        "counts = long.pivot_table(index='recipient', columns='reason', values='n', aggfunc='sum', fill_value=0)\n"
        "counts"
    ),
    nbf.v4.new_code_cell(
        "parts = [c for c in counts.columns if c.startswith('dropped-') or c in ('kept', 'suppressed-k', 'carried-out')]\n"
        "readings = con.execute('SELECT readings FROM runs WHERE run_id = ?', [run_id]).fetchone()[0]\n"
        "for recipient, row in counts.iterrows():\n"
        "    if row.get('readings-in', 0):\n"
        "        assert sum(row[p] for p in parts) == readings + row.get('carried-in', 0), recipient\n"
        "'every reading accounted for'"
    ),
    nbf.v4.new_markdown_cell("## 4. Policies in force for this run"),
    nbf.v4.new_code_cell(
        "con.execute('SELECT recipient, role, jurisdiction, delivery, obis, min_interval, consent, retention, "
        "identity, k_anonymity FROM policies WHERE run_id = ? ORDER BY recipient', [run_id]).df()"
    ),
    nbf.v4.new_markdown_cell(
        "## 5. Conformance: Great Expectations suites generated from the policies"
    ),
    nbf.v4.new_code_cell(
        "con.execute('SELECT recipient, count(*) AS expectations, bool_and(success) AS all_met FROM conformance "
        "WHERE run_id = ? GROUP BY recipient ORDER BY recipient', [run_id]).df()"
    ),
    nbf.v4.new_markdown_cell(
        "## 6. The delivered data, read directly with DuckDB\nRows per recipient and OBIS code, and the "
        "smallest spacing between consecutive timestamps of one meter (it must be at least the policy's "
        "interval)."
    ),
    nbf.v4.new_code_cell(
        "rows = []\n"
        "for rid, delivery in con.execute('SELECT recipient, delivery FROM policies WHERE run_id = ? "
        "AND delivery <> \\'cms-forward\\' ORDER BY recipient', [run_id]).fetchall():\n"
        "    files = sorted((OUT / rid / 'runs' / run_id / 'data').glob('date=*/*.parquet'))\n"
        "    if not files:\n"
        "        rows.append((rid, None, 0, None))\n"
        "        continue\n"
        "    key = 'area' if delivery == 'aggregate' else 'meter'\n"
        "    q = f'''SELECT obis, count(*) AS n, min(gap) AS min_gap FROM (SELECT obis, ts - lag(ts) OVER "
        "(PARTITION BY {key}, obis ORDER BY ts) AS gap FROM read_parquet({[str(f) for f in files]})) GROUP BY obis'''\n"
        "    for obis, n, gap in duckdb.sql(q).fetchall():\n"
        "        rows.append((rid, obis, n, gap))\n"
        "pd.DataFrame(rows, columns=['recipient', 'obis', 'rows', 'smallest spacing'])"
    ),
    nbf.v4.new_markdown_cell(
        "## 7. One recipient's delivery, plotted\nThe report's own figure (`minimeter.report.plots`): "
        "a sample series of the recipient, registers as energy per interval, gaps left as gaps."
    ),
    nbf.v4.new_code_cell(
        "from minimeter.conformance.derived import read_output\n"
        "from minimeter.policy.load import load_policy_set\n"
        "from minimeter.report.plots import png, recipient_figure\n\n"
        "rid = next(r for r, obis, n, gap in rows if n)\n"
        "policy = load_policy_set(None).policy(rid)\n"
        "fig = recipient_figure(policy, read_output(OUT / rid / 'runs' / run_id), None, None, None)\n"
        "assert isinstance(fig, Figure) and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)\n"
        "display(Image(png(fig)))"
    ),
    nbf.v4.new_markdown_cell(
        "## 8. The manifests verify\nEvery recipient's run tree carries a `manifest.json` (files, "
        "SHA-256, rows) with a detached CMS signature by the pseudonymiser, and each recipient an "
        "`index.json` of its runs. `minimeter verify` checks the signatures against the "
        "pseudonymiser's root, every hash and row count, and missing or extra files (the same "
        "signature check as `openssl cms -verify -binary -inform DER -purpose any -CAfile "
        "pseudonymiser-root.pem -in manifest.json.p7s -content manifest.json`)."
    ),
    nbf.v4.new_code_cell(
        "import re\nimport subprocess\nimport sys\n\n"
        "PKI = Path(os.environ.get('MINIMETER_PKI', OUT.parent / 'fleet' / 'pki'))\n"
        "proc = subprocess.run([sys.executable, '-m', 'minimeter', 'verify', str(OUT), "
        "'--trust-anchor', str(PKI / 'pseudonymiser-root.pem')], capture_output=True, text=True)\n"
        "print(proc.stdout or proc.stderr)\n"
        "assert proc.returncode == 0\n"
        "checked = int(re.search(r'(\\d+) files', proc.stdout).group(1))\nchecked"
    ),
]
nb = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
Path(__file__).with_name("auditor_walkthrough.ipynb").write_text(nbf.writes(nb))

"""The DPIA policy report of a run: ``OUT/_report/index.html``, ``report.md``, ``figures.json``.

``queries``: the DuckDB queries behind every figure; ``facts``: what the run's audit says
(verdict, each recipient's status); ``plots``: matplotlib figures of what a recipient received
against the raw readings; ``sections``: the report's sections; ``render``: HTML and Markdown, and
``write_report``.
"""

from __future__ import annotations

from minimeter.report.render import write_report

__all__ = ["write_report"]

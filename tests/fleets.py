"""The session's synthetic fleet (``synth_dir``), shared by tests/ and tests_stores/."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

SYNTH_ARGS = dict(meters=14, days=3, faults=0.25, forward_share=0.1, zlib_share=0.3, seed=3)
"""Fourteen meters, three days from 2026-01-09 (messages/<day>/), a quarter of them faulty."""


def session_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from minimeter.synth.generate import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(SynthConfig(out=out, start=date(2026, 1, 9), **SYNTH_ARGS), progress=False)  # type: ignore[arg-type]
    return out

"""The README's engine commands are the ones these tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("engine_helpers")
from engine_helpers import ROOT, engines  # noqa: E402


def test_readme_has_the_tested_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running on other runners") :]
    section = section[: section.index("\n## ", 3)]
    cache = Path(".cache/engines/jars")
    flink = engines.flink_args(
        cache / f"beam-runners-flink-{engines.settings('flink')['FLINK_MINOR']}-job-server-"
        f"{engines.settings('flink')['BEAM_VERSION']}.jar",
        parallelism=2,
        pool_port=50000,
    )
    spark = engines.spark_args(
        cache / f"beam-runners-spark-3-job-server-{engines.settings('spark')['BEAM_VERSION']}.jar",
        pool_port=50000,
    )
    for arg in [*flink, *spark]:
        assert arg in section, arg
    for command in ("make flink-up", "make flink-down", "make spark-up", "make test-engines"):
        assert command in section, command

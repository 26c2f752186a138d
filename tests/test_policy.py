"""Policy model: every check proven by a real failing mutation of the shipped examples."""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from minimeter.errors import PolicyError
from minimeter.policy.check import check_policy_set
from minimeter.policy.duration import INTERVALS, Duration
from minimeter.policy.explain import explain
from minimeter.policy.load import load_policy_set
from minimeter.policy.model import ObisSelector

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "dpia", tmp_path / "dpia")
    return tmp_path


def mutate(project: Path, rel: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = project / rel
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def findings(project: Path) -> list[str]:
    try:
        return check_policy_set(load_policy_set(project))
    except PolicyError as exc:
        return exc.findings


def assert_finding(found: list[str], file: str, field: str, *words: str) -> None:
    hits = [f for f in found if f.startswith(f"{file}: {field}: ")]
    assert hits, f"no finding for {file}: {field} in {found}"
    assert any(all(w in h for w in words) for h in hits), hits


def test_shipped_examples_pass() -> None:
    ps = load_policy_set(ROOT)
    assert check_policy_set(ps) == []
    roles = {(p.jurisdiction, p.role, p.delivery) for p in ps.policies}
    for needed in [
        ("FR", "dso", "parquet"),
        ("FR", "supplier", "parquet"),
        ("FR", "esco", "parquet"),
        ("DE", "dso", "parquet"),
        ("DE", "supplier", "parquet"),
        ("DE", "tso", "aggregate"),
        ("NL", "dso", "parquet"),
        ("GB", "supplier", "parquet"),
        ("GB", "dno", "aggregate"),
        ("DE", "supplier", "cms-forward"),
    ]:
        assert needed in roles, needed
    assert {b.jurisdiction for b in ps.baselines} == {"FR", "DE", "NL", "GB"}
    assert all(r.source for b in ps.baselines for r in b.rules)


REC = "policies/recipients"


def test_finer_interval_without_required_consent(project: Path) -> None:
    mutate(project, f"{REC}/fr-supplier-historique.yaml", lambda d: d.update(min_interval="P1D"))
    assert_finding(
        findings(project),
        f"{REC}/fr-supplier-historique.yaml",
        "min_interval",
        "without consent",
        "fr-load-curve",
    )


def test_finer_than_the_consent_unlocks(project: Path) -> None:
    mutate(project, f"{REC}/fr-esco-flex.yaml", lambda d: d.update(min_interval="PT15M"))
    assert_finding(findings(project), f"{REC}/fr-esco-flex.yaml", "min_interval", "PT30M")


def test_consent_gated_role_without_consent(project: Path) -> None:
    mutate(project, f"{REC}/fr-esco-flex.yaml", lambda d: d.update(consent=None))
    found = findings(project)
    assert_finding(found, f"{REC}/fr-esco-flex.yaml", "min_interval", "any data")
    assert_finding(found, f"{REC}/fr-esco-flex.yaml", "consent", "relies on it")  # DPIA R1 control


def test_longer_retention_than_baseline(project: Path) -> None:
    mutate(project, f"{REC}/nl-dso-monthly.yaml", lambda d: d.update(retention="P5Y"))
    mutate(
        project, "dpia/dpia-nl-metering.yaml", lambda d: d["recipients"][0].update(retention="P5Y")
    )
    found = findings(project)
    assert_finding(found, f"{REC}/nl-dso-monthly.yaml", "retention", "exceeds", "P2Y")
    assert not any("differs" in f for f in found)


def test_identity_where_aggregation_is_required(project: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d.update(delivery="parquet", identity="metering-point")
        d.pop("k_anonymity")

    mutate(project, f"{REC}/gb-dno-aggregate.yaml", change)
    found = findings(project)
    assert_finding(found, f"{REC}/gb-dno-aggregate.yaml", "delivery", "only aggregated")
    assert_finding(
        found,
        f"{REC}/gb-dno-aggregate.yaml",
        "identity",
        "requires pseudonymisation or aggregation",
    )


def test_identity_where_pseudonymisation_is_required(project: Path) -> None:
    mutate(project, f"{REC}/de-dso-hamburg.yaml", lambda d: d.update(identity="metering-point"))
    found = findings(project)
    assert_finding(found, f"{REC}/de-dso-hamburg.yaml", "identity", "requires pseudonymisation")
    assert_finding(found, f"{REC}/de-dso-hamburg.yaml", "identity", "DPIA dpia-de-metering risk R1")


def test_supplier_without_supplier_scope(project: Path) -> None:
    mutate(project, f"{REC}/de-supplier-stadtwerk.yaml", lambda d: d.update(scope={}))
    assert_finding(
        findings(project), f"{REC}/de-supplier-stadtwerk.yaml", "scope.supplier", "own customers"
    )


def test_grid_operator_without_areas(project: Path) -> None:
    mutate(project, f"{REC}/fr-enedis-daily.yaml", lambda d: d.update(scope={}))
    assert_finding(findings(project), f"{REC}/fr-enedis-daily.yaml", "scope.areas", "grid operator")


def test_missing_dpia_record(project: Path) -> None:
    mutate(project, f"{REC}/nl-dso-monthly.yaml", lambda d: d.update(dpia="dpia-nowhere"))
    assert_finding(findings(project), f"{REC}/nl-dso-monthly.yaml", "dpia", "no DPIA record")


def test_dpia_does_not_list_the_recipient(project: Path) -> None:
    mutate(
        project,
        "dpia/dpia-gb-metering.yaml",
        lambda d: d.update(
            recipients=[r for r in d["recipients"] if r["id"] != "gb-supplier-daily"],
            risks=[
                {
                    **r,
                    "controls": [
                        {
                            **c,
                            "recipients": [
                                x for x in c.get("recipients", []) if x != "gb-supplier-daily"
                            ]
                            or ["gb-supplier-halfhourly"],
                        }
                        if "recipients" in c
                        else c
                        for c in r["controls"]
                    ],
                }
                for r in d["risks"]
            ],
        ),
    )
    assert_finding(findings(project), f"{REC}/gb-supplier-daily.yaml", "dpia", "does not list")


def test_dpia_control_relies_on_a_field_the_policy_does_not_set(project: Path) -> None:
    mutate(project, f"{REC}/de-tso-balancing.yaml", lambda d: d.pop("k_anonymity"))
    found = findings(project)
    assert_finding(found, f"{REC}/de-tso-balancing.yaml", "k_anonymity", "risk R2 relies on it")


def test_retention_and_legal_basis_differ_from_dpia(project: Path) -> None:
    mutate(
        project,
        f"{REC}/fr-esco-flex.yaml",
        lambda d: d.update(retention="P6M", legal_basis="6(1)(f)"),
    )
    found = findings(project)
    assert_finding(found, f"{REC}/fr-esco-flex.yaml", "retention", "differs", "P1Y")
    assert_finding(found, f"{REC}/fr-esco-flex.yaml", "legal_basis", "6(1)(f)", "6(1)(a)")


def test_unknown_obis_syntax(project: Path) -> None:
    mutate(project, f"{REC}/nl-dso-monthly.yaml", lambda d: d.update(obis=["1-0:1.8.1", "1.8.2"]))
    assert_finding(findings(project), f"{REC}/nl-dso-monthly.yaml", "obis.1", "not an OBIS code")


def test_unknown_jurisdiction_and_role(project: Path) -> None:
    mutate(project, f"{REC}/nl-dso-monthly.yaml", lambda d: d.update(jurisdiction="XX"))
    mutate(project, f"{REC}/gb-supplier-daily.yaml", lambda d: d.update(role="broker"))
    found = findings(project)
    assert_finding(found, f"{REC}/nl-dso-monthly.yaml", "jurisdiction", "no baseline")
    assert_finding(found, f"{REC}/gb-supplier-daily.yaml", "role", "'broker' is not a role")


def test_schema_errors_name_file_and_field(project: Path) -> None:
    mutate(project, f"{REC}/fr-esco-flex.yaml", lambda d: d.update(min_interval="PT10M"))
    mutate(project, f"{REC}/nl-dso-monthly.yaml", lambda d: d.pop("purpose"))
    mutate(
        project, "policies/baselines/GB.yaml", lambda d: d["rules"][0].update(identity="anything")
    )
    (project / REC / "broken.yaml").write_text("id: [unclosed\n")
    found = findings(project)
    assert_finding(found, f"{REC}/fr-esco-flex.yaml", "min_interval", "PT10M")
    assert_finding(found, f"{REC}/nl-dso-monthly.yaml", "-", "'purpose' is a required property")
    assert_finding(found, "policies/baselines/GB.yaml", "rules.0.identity", "anything")
    assert_finding(found, f"{REC}/broken.yaml", "line 2", "not valid YAML")


def test_cli_check(project: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "minimeter.cli", "policy", "check", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "all pass" in ok.stdout
    mutate(
        project, f"{REC}/fr-enedis-daily.yaml", lambda d: d.update(min_interval="PT30M", scope={})
    )
    bad = subprocess.run(
        [sys.executable, "-m", "minimeter.cli", "policy", "check", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2  # configuration
    lines = bad.stdout.splitlines()
    assert len(lines) == 3 and all(
        line.startswith(f"{REC}/fr-enedis-daily.yaml: ") for line in lines
    )
    assert {line.split(": ")[1] for line in lines} == {"min_interval", "scope.areas", "scope"}
    assert "Traceback" not in bad.stderr


def test_explain_mentions_sources_obis_and_risks() -> None:
    ps = load_policy_set(ROOT)
    text = explain(ps, "de-dso-hamburg")
    assert "MsbG § 60(3) Nr. 2" in text and "§ 52(3)" in text
    assert "1-0:1.29.0" in text and "Active energy import (A+) in the capture period" in text
    assert "R1" in text and "keyed pseudonym" in text
    gb = explain(ps, "gb-supplier-daily")
    assert "SLC 47" in gb and "'gb-daily-readings'" in gb and "Unconfirmed" in gb
    with pytest.raises(KeyError):
        explain(ps, "nobody")


def test_policy_explain_and_the_report_share_one_explanation() -> None:
    """``policy explain`` prints the text of the same ``PolicyExplanation`` the report renders
    as HTML (tests/test_auditor.py checks the report holds that HTML)."""
    from minimeter.policy.explain import PolicyExplanation, explanation

    ps = load_policy_set(ROOT)
    for p in ps.policies:
        e = explanation(ps, p.id)
        assert isinstance(e, PolicyExplanation) and explain(ps, p.id) == e.text()
        page = e.html()
        for part in e.parts:
            assert html.escape(part.text) in page
            assert all(html.escape(d) in page for d in part.details)
        assert e.text().startswith(f"{p.id}: {p.name}\n\nRole {p.role} in {p.jurisdiction}")


def test_cli_explain_unknown_recipient() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "minimeter.cli",
            "policy",
            "explain",
            "nobody",
            "--policies",
            str(ROOT / "policies"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("minimeter: unknown-recipient: ")


# --- property tests of the semantics ------------------------------------------------------------

group = st.one_of(st.integers(0, 255).map(str), st.just("*"))


@settings(max_examples=300, derandomize=True)
@given(st.tuples(group, group, group, group, group), st.tuples(*[st.integers(0, 255)] * 5))
def test_obis_selector_matches_exactly_its_groups(
    sel: tuple[str, ...], code: tuple[int, ...]
) -> None:
    selector = ObisSelector.parse("{}-{}:{}.{}.{}".format(*sel))
    text = "{}-{}:{}.{}.{}".format(*code)
    assert selector.matches(text) == all(
        s == "*" or int(s) == c for s, c in zip(sel, code, strict=True)
    )


@settings(max_examples=200, derandomize=True)
@given(st.sampled_from(INTERVALS), st.sampled_from(INTERVALS))
def test_duration_order_is_the_calendar_order(a: str, b: str) -> None:
    da, db = Duration.parse(a), Duration.parse(b)
    assert (da < db) == (INTERVALS.index(a) < INTERVALS.index(b))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.sampled_from(INTERVALS),
    st.sampled_from([None, "gb-daily-readings", "gb-half-hourly", "other"]),
)
def test_gb_supplier_interval_consent_semantics(
    tmp_path_factory: pytest.TempPathFactory, interval: str, consent: str | None
) -> None:
    project = tmp_path_factory.mktemp("p")
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "dpia", project / "dpia")
    mutate(
        project,
        f"{REC}/gb-supplier-daily.yaml",
        lambda d: d.update(min_interval=interval, consent=consent),
    )
    found = [
        f for f in findings(project) if f.startswith(f"{REC}/gb-supplier-daily.yaml: min_interval")
    ]
    finest = {None: "P1M", "other": "P1M", "gb-daily-readings": "P1D", "gb-half-hourly": "PT30M"}[
        consent
    ]
    allowed = Duration.parse(interval) >= Duration.parse(finest)
    assert (not found) == allowed, (interval, consent, found)

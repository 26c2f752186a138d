"""The main job end to end, checked against the synthetic ground truth."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from pipeline_helpers import ROOT, read_recipient, run_cli

from minimeter.manifest import digest_file
from minimeter.policy.load import load_policy_set
from minimeter.pseudonym import PSEUDONYM_PATTERN, pseudonym, recipient_key
from minimeter.synth.generate import SynthConfig, synthesize

from opensslkit import AUTH_ENVELOPED, Identity, decrypt, openssl, verify, wrap_content_info

AS_OF = "2026-02-01"
WIDTH = {
    "PT15M": pd.Timedelta(minutes=15),
    "PT30M": pd.Timedelta(minutes=30),
    "P1D": pd.Timedelta(days=1),
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    synthesize(
        SynthConfig(
            out=out,
            meters=40,
            days=3,
            start=date(2026, 1, 9),
            seed=5,
            faults=0.12,
            forward_share=0.08,
            zlib_share=0.3,
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def run(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    proc = run_cli(fleet, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[balanced]" in proc.stdout
    return out


@pytest.fixture(scope="module")
def policies():  # noqa: ANN201
    return {p.id: p for p in load_policy_set(ROOT / "policies").policies}


@pytest.fixture(scope="module")
def meters(fleet: Path) -> pd.DataFrame:
    return pd.read_csv(fleet / "meters.csv").set_index("meter")


@pytest.fixture(scope="module")
def truth(fleet: Path) -> pd.DataFrame:
    """Valid readings of the messages the hub can open (forwarded ones stay encrypted to
    others; readings the gateway marked invalid or not present, PPC status 4 and 3, are never
    delivered and complete no interval)."""
    messages = pd.read_csv(fleet / "truth" / "messages.csv")
    readings = pd.read_parquet(fleet / "truth" / "readings.parquet")
    readings = readings[readings["status"] == 0]
    return readings[readings["message"].isin(messages[messages.route == "hub"]["message"])]


def in_scope(policy, meters: pd.DataFrame) -> set[str]:  # noqa: ANN001
    m = meters[meters["jurisdiction"] == policy.jurisdiction]
    if policy.scope.areas:
        m = m[m["area"].isin(policy.scope.areas)]
    if policy.scope.supplier:
        m = m[m["supplier"] == policy.scope.supplier]
    return set(m.index)


def identity_map(policy, fleet: Path, meters: pd.DataFrame) -> dict[str, str]:  # noqa: ANN001
    """Delivered identity -> raw meter id, for every meter in the fleet."""
    if policy.identity == "metering-point":
        return {m: m for m in meters.index}
    key = recipient_key((fleet / "pki" / "pseudonym-secret.key").read_bytes(), policy.id)
    return {pseudonym(key, m): m for m in meters.index}


ROW_RECIPIENTS = [
    "de-dso-hamburg",
    "de-supplier-stadtwerk",
    "fr-enedis-daily",
    "fr-esco-flex",
    "gb-supplier-daily",
    "gb-supplier-halfhourly",
]


def test_every_fault_is_a_dead_letter_with_its_category(fleet: Path, run: Path) -> None:
    dead = pd.read_parquet(run / "_dead_letters" / "t1.parquet")
    faults = pd.read_csv(fleet / "faults.csv")
    assert len(faults) >= 8
    got = {("messages/" + r.message, r.stage, r.category) for r in dead.itertuples()}
    want = {(r.message, r.stage, r.category) for r in faults.itertuples()}
    assert got == want
    # dead letters carry no meter ids and no content
    raw = (run / "_dead_letters" / "t1.parquet").read_bytes()
    meters = pd.read_csv(fleet / "meters.csv")["meter"]
    assert not any(m.encode() in raw for m in meters)


def test_messages_are_all_accounted_for(fleet: Path, run: Path) -> None:
    messages = pd.read_csv(fleet / "truth" / "messages.csv")
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"), read_only=True)
    row = con.execute(
        "SELECT messages_in, opened, forwarded, dead_letters, balanced FROM runs WHERE run_id='t1'"
    ).fetchone()
    assert row == (
        len(messages),
        (messages.route == "hub").sum() + 0,
        (messages.route == "forward").sum() + 0,
        (messages.route == "fault").sum() + 0,
        True,
    )
    # per recipient, every reading is accounted for under exactly one reason
    counts = con.execute("SELECT recipient, reason, n FROM counts WHERE run_id='t1'").fetchall()
    by = {}
    for rid, reason, n in counts:
        by.setdefault(rid, {})[reason] = n
    readings = con.execute("SELECT readings FROM runs WHERE run_id='t1'").fetchone()[0]
    for rid, c in by.items():
        if rid.startswith("_") or "readings-in" not in c:
            continue
        assert c["readings-in"] == readings
        parts = sum(
            v
            for k, v in c.items()
            if k.startswith("dropped-") or k in ("kept", "suppressed-k", "carried-out")
        )
        assert "carried-in" not in c  # the first run into this output takes nothing over
        assert parts == readings, (rid, c)
    assert not (run / "_staging").exists()  # the job's staging and spill are gone


def test_scope_and_obis(run: Path, policies, meters: pd.DataFrame, fleet: Path) -> None:  # noqa: ANN001
    for rid in ROW_RECIPIENTS:
        policy = policies[rid]
        df = read_recipient(run, rid)
        assert len(df), rid
        ids = identity_map(policy, fleet, meters)
        delivered = {ids[m] for m in df["meter"]}
        assert delivered <= in_scope(policy, meters), rid
        assert all(policy.allows_obis(o) for o in df["obis"].unique()), rid
    for rid in ("de-tso-balancing", "gb-dno-aggregate"):
        df = read_recipient(run, rid)
        assert len(df) and set(df["area"]) <= set(policies[rid].scope.areas)
        assert "meter" not in df.columns


def test_spacing_alignment_and_values_against_truth(
    run: Path, policies, meters, truth, fleet
) -> None:  # noqa: ANN001
    for rid in ROW_RECIPIENTS:
        policy = policies[rid]
        width = WIDTH[policy.min_interval.text]
        df = read_recipient(run, rid)
        ids = identity_map(policy, fleet, meters)
        df["raw"] = df["meter"].map(ids)
        civil = policy.min_interval.text == "P1D"  # days follow the recipient's time zone
        zone = policy.timezone
        for (raw, obis), g in df.groupby(["raw", "obis"]):
            shifts: set[float] = set()
            ts = g["ts"].sort_values()
            if civil:
                local = ts.dt.tz_convert(zone)
                assert (local == local.dt.normalize()).all(), (rid, obis)  # local midnights
                assert (ts.diff().dropna() >= pd.Timedelta(hours=23)).all(), (rid, obis)
            else:
                assert (ts.diff().dropna() >= width).all(), (rid, obis)
                assert (
                    (ts - pd.Timestamp("2026-01-01", tz="UTC")) % width == pd.Timedelta(0)
                ).all()
            t = (
                truth[(truth.meter == raw) & (truth.obis == obis)]
                .set_index("capture_time")["value"]
                .sort_index()
            )
            kind = {"1-0:1.29.0": "interval", "1-0:1.7.0": "instantaneous"}.get(obis, "register")
            for row in g.itertuples():
                start = (
                    (row.ts.tz_convert(zone) - pd.DateOffset(days=1)).tz_convert("UTC")
                    if civil
                    else row.ts - width
                )
                window = t[(t.index > start) & (t.index <= row.ts)]
                assert len(window) == (row.ts - start) // pd.Timedelta(minutes=15), (rid, row.ts)
                if kind == "register" and policy.rebases_registers:
                    shifts.add(row.value - t[row.ts])  # one secret shift per series
                elif kind == "register":
                    assert row.value == t[row.ts], (rid, obis, row.ts)
                elif kind == "interval":
                    assert row.value == window.sum(), (
                        rid,
                        obis,
                        row.ts,
                    )  # energy conserved exactly
                else:
                    assert (
                        row.value == pytest.approx(window.mean()) and row.value_max == window.max()
                    )
            if shifts:  # rebased registers: consumption (differences) kept, the level hidden
                assert max(shifts) - min(shifts) < 1e-6 and 0 <= min(shifts) < 1e9, (rid, obis)


def test_consent_gated_recipients_only_in_granted_windows(run, policies, meters, fleet) -> None:  # noqa: ANN001
    grants: dict[tuple[str, str], list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    with (fleet / "consent.csv").open() as f:
        for r in csv.DictReader(f):
            end = min(
                [pd.Timestamp(x) for x in (r["granted_until"], r["withdrawn_at"]) if x]
                or [pd.Timestamp.max.tz_localize("UTC")]
            )
            grants.setdefault((r["meter"], r["purpose"]), []).append(
                (pd.Timestamp(r["granted_from"]), end)
            )
    checked = 0
    for rid in ROW_RECIPIENTS:
        policy = policies[rid]
        if policy.consent is None:
            continue
        width = WIDTH[policy.min_interval.text]
        df = read_recipient(run, rid)
        ids = identity_map(policy, fleet, meters)
        for row in df.itertuples():
            windows = grants.get((ids[row.meter], policy.consent), [])
            start = row.ts - width + pd.Timedelta(minutes=15)
            assert any(a <= start and row.ts < b for a, b in windows), (rid, row)
            checked += 1
    assert checked > 0


def test_no_raw_meter_id_in_pseudonymised_or_aggregated_outputs(run, policies, meters) -> None:  # noqa: ANN001
    raw_ids = [m.encode() for m in meters.index]
    for rid, policy in policies.items():
        if policy.identity == "metering-point":
            continue
        for f in (run / rid).rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert not any(m in data for m in raw_ids), (rid, f)
        df = read_recipient(run, rid)
        if "meter" in df.columns and len(df):
            assert df["meter"].map(lambda v: bool(PSEUDONYM_PATTERN.match(v))).all()


def test_pseudonyms_differ_between_recipients(fleet: Path, meters: pd.DataFrame) -> None:
    secret = (fleet / "pki" / "pseudonym-secret.key").read_bytes()
    a, b = recipient_key(secret, "fr-esco-flex"), recipient_key(secret, "de-dso-hamburg")
    for m in meters.index:
        assert pseudonym(a, m) != pseudonym(b, m)
        assert pseudonym(a, m) == pseudonym(a, m)


def test_groups_below_k_are_absent(run, policies, meters, truth) -> None:  # noqa: ANN001
    for rid in ("de-tso-balancing", "gb-dno-aggregate"):
        policy = policies[rid]
        df = read_recipient(run, rid)
        assert (df["n_meters"] >= policy.k_anonymity).all()
        width = WIDTH[policy.min_interval.text]
        scoped = in_scope(policy, meters)
        t = truth[truth.meter.isin(scoped) & (truth.obis == "1-0:1.29.0")].copy()
        t["ts"] = t["capture_time"].dt.ceil(width)
        t["area"] = t["meter"].map(meters["area"])
        per_meter = t.groupby(["area", "ts", "meter"])["value"].agg(["sum", "count"]).reset_index()
        per_meter = per_meter[per_meter["count"] == width // pd.Timedelta(minutes=15)]
        groups = (
            per_meter.groupby(["area", "ts"])
            .agg(total=("sum", "sum"), n=("meter", "nunique"))
            .reset_index()
        )
        expected = groups[groups["n"] >= policy.k_anonymity]
        got = df.set_index(["area", "ts"])
        assert len(got) == len(expected), rid
        for g in expected.itertuples():
            assert (
                got.loc[(g.area, g.ts), "value"] == g.total
                and got.loc[(g.area, g.ts), "n_meters"] == g.n
            )
        assert (groups["n"] < policy.k_anonymity).any(), "the fleet should exercise suppression"


def test_forwarded_messages_verify_under_the_pseudonymiser_root(
    fleet: Path, run: Path, tmp_path: Path
) -> None:
    messages = pd.read_csv(fleet / "truth" / "messages.csv")
    forward = messages[messages.route == "forward"]
    assert len(forward) > 0
    files = sorted((run / "de-supplier-forward" / "runs" / "t1" / "forward").glob("*.cms"))
    assert len(files) == len(forward)
    gateway_ders = [
        openssl("x509", "-in", p, "-outform", "DER")
        for p in (fleet / "pki").glob("intermediates.pem")
    ]
    pki = fleet / "pki"
    who = Identity(
        pki / "forward-de-supplier-forward-key.pem", pki / "forward-de-supplier-forward-cert.pem"
    )
    for f in files:
        content = verify(f, pki / "pseudonymiser-root.pem")
        data = f.read_bytes()
        assert not any(der in data for der in gateway_ders)
        env = tmp_path / "env.der"
        env.write_bytes(wrap_content_info(content, AUTH_ENVELOPED))
        assert decrypt(env, who)  # still readable by its recipient, and only re-signed
        with pytest.raises(RuntimeError):
            verify(f, pki / "trust-anchor.pem")


def test_manifests_are_signed_and_match_the_files(run: Path, fleet: Path, policies) -> None:  # noqa: ANN001
    hashes = set()
    for rid in policies:
        base = run / rid / "runs" / "t1"
        manifest = json.loads((base / "manifest.json").read_text())
        assert manifest["recipient"] == rid and manifest["run_id"] == "t1"
        for f in manifest["files"]:
            assert digest_file(base / f["path"]) == f["sha256"]
            if f["kind"] == "data":
                assert pq.ParquetFile(base / f["path"]).metadata.num_rows == f["rows"]
        assert manifest["rows"] == len(read_recipient(run, rid))  # the true count, not 0
        hashes.add(manifest["policy_hash"])
        openssl(
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            base / "manifest.json.p7s",
            "-content",
            base / "manifest.json",
            "-CAfile",
            fleet / "pki" / "pseudonymiser-root.pem",
            "-purpose",
            "any",
        )
    assert len(hashes) == len(policies)  # each recipient's own policy hash
    meta = pq.read_metadata(
        next((run / "fr-esco-flex" / "runs" / "t1" / "data").glob("*/*.parquet"))
    ).metadata
    assert meta[b"minimeter.run_id"] == b"t1" and len(meta[b"minimeter.policy_hash"]) == 64


def test_rerun_with_the_same_run_id_replaces(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        proc = run_cli(fleet, out, run_id="same")
        assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert all(p.name == "same.parquet" for p in files)
    assert len(files) == len(set(files))
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    n = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert n == len(pd.read_csv(fleet / "faults.csv"))


def test_invalid_policy_stops_the_run_before_any_data_moves(fleet: Path, tmp_path: Path) -> None:
    policies = tmp_path / "project" / "policies"
    shutil.copytree(ROOT / "policies", policies)
    shutil.copytree(ROOT / "dpia", tmp_path / "project" / "dpia")
    path = policies / "recipients" / "fr-supplier-historique.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["min_interval"] = "PT15M"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    proc = run_cli(fleet, out, policies=policies)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "minimeter: policy-invalid: policies/recipients/fr-supplier-historique.yaml: min_interval"
    )
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_retention_relative_to_as_of(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 2027-01-10: the 1-year recipients' horizon (2026-01-10) cuts the first day of data
    proc = run_cli(fleet, out, as_of="2027-01-10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    esco = read_recipient(out, "fr-esco-flex")
    assert len(esco) and (esco["ts"] > pd.Timestamp("2026-01-10", tz="UTC")).all()
    assert "retention" in proc.stdout
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    dropped = con.execute(
        "SELECT n FROM counts WHERE recipient='fr-esco-flex' AND reason='dropped-retention'"
    ).fetchone()
    assert dropped and dropped[0] > 0


def test_values_are_finite(run: Path, policies) -> None:  # noqa: ANN001
    for rid in policies:
        df = read_recipient(run, rid)
        if len(df):
            assert np.isfinite(df["value"]).all()


def test_dead_letters_never_name_a_meter(fleet: Path, tmp_path: Path) -> None:
    """Gateways may name files after the meter; dead letters replace registered ids."""
    copy = tmp_path / "fleet"
    shutil.copytree(fleet, copy)
    faults = pd.read_csv(copy / "faults.csv")
    meter = pd.read_csv(copy / "meters.csv")["meter"].iloc[0]
    victim = copy / faults["message"].iloc[0]
    renamed = victim.with_name(f"{meter}.sm_data.xml.cms")
    victim.rename(renamed)
    out = tmp_path / "out"
    proc = run_cli(copy, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dead = pd.read_parquet(out / "_dead_letters" / "t1.parquet")
    assert len(dead) == len(faults)
    assert f"{renamed.parent.name}/<meter>.sm_data.xml.cms" in set(dead["message"])
    assert meter.encode() not in (out / "_dead_letters" / "t1.parquet").read_bytes()
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    assert (
        con.execute(
            "SELECT count(*) FROM dead_letters WHERE message LIKE ?", [f"%{meter}%"]
        ).fetchone()[0]
        == 0
    )


def test_a_join_on_register_values_fails_after_rebasing(run: Path, truth: pd.DataFrame) -> None:
    """The attack the issue describes: join the DSO's pseudonymised 15-minute registers with the
    supplier's identified daily registers on (time, value). On absolute values (the truth) it
    links meters; on what the DSO received it links none, and the audit says so."""
    dso = read_recipient(run, "de-dso-hamburg")
    supplier = read_recipient(run, "de-supplier-stadtwerk")
    assert len(dso) and len(supplier)
    registers = ["1-0:1.8.0", "1-0:2.8.0"]
    dso_reg = dso[dso.obis.isin(registers)]
    attack = dso_reg.merge(supplier, on=["obis", "ts", "value"])
    assert attack.empty
    absolute = truth[truth.obis.isin(registers)].rename(columns={"capture_time": "ts"})
    would = absolute.merge(supplier, on=["obis", "ts", "value"])
    assert len(would) > 0  # the same join on absolute values does link meters
    con = duckdb.connect(str(run / "_audit" / "audit.duckdb"), read_only=True)
    links = con.execute(
        "SELECT series, matched FROM linkability WHERE recipient = 'de-dso-hamburg' "
        "AND other = 'de-supplier-stadtwerk'"
    ).fetchall()
    assert links and links[0][0] > 0 and links[0][1] == 0

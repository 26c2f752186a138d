"""``minimeter synth``: PKI files, fleet, consent, faults, ground truth, checked with OpenSSL."""

from __future__ import annotations

import csv
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from minimeter.keys import PKI_FILES as RUN_PKI_FILES
from minimeter.synth.fleet import METER_PATTERN
from minimeter.synth.generate import FAULTS, SynthConfig, synthesize
from minimeter.synth.load import daylight

from opensslkit import AUTH_ENVELOPED, Identity, decrypt, verify, wrap_content_info

NS = {"p": "urn:k461-dke-de:profile_generic-1", "e": "urn:k461-dke-de:extension-1"}
PKI_FILES = [  # what minimeter run reads, plus the pseudonymiser root and the forward identity
    *RUN_PKI_FILES,
    "pseudonymiser-root.pem",
    "forward-de-supplier-forward-cert.pem",
    "forward-de-supplier-forward-key.pem",
]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def parse_k461(xml: bytes) -> list[tuple[str, str, str, int, int, int, int]]:
    """An independent reading of the XML: (meter, obis hex, time as sent, long64, scaler, unit,
    status), the status bare or wrapped in ``<unsigned>``."""
    root = ET.fromstring(xml)
    names = {
        co.get("id"): co.findtext("e:logical_name", namespaces=NS)
        for co in root.findall("p:attributes/p:capture_objects/p:capture_object", NS)
    }
    out = []
    for column in root.findall("p:attributes/p:buffer/p:simple_data/p:column", NS):
        obis_hex, meter, _ = names[column.get("id")].split(".")
        for e in column.findall("p:entry_gateway_signed", NS):
            status = e.find("e:status", NS)
            assert status is not None
            wrapped = status.find("e:unsigned", NS)
            out.append(
                (
                    meter,
                    obis_hex,
                    e.findtext("e:capture_time", namespaces=NS),
                    int(e.findtext("e:value/e:long64", namespaces=NS)),
                    int(e.findtext("e:scaler", namespaces=NS)),
                    int(e.findtext("e:unit", namespaces=NS)),
                    int((wrapped if wrapped is not None else status).text or ""),
                )
            )
    return out


def test_files_and_columns(synth_dir: Path) -> None:
    for name in PKI_FILES:
        assert (synth_dir / "pki" / name).is_file(), name
    assert len((synth_dir / "pki" / "pseudonym-secret.key").read_bytes()) == 32
    meters = rows(synth_dir / "meters.csv")
    assert list(meters[0]) == [
        "meter",
        "jurisdiction",
        "area",
        "supplier",
        "customer_type",
        "annual_kwh",
        "gateway",
    ]
    assert len(meters) == 14
    import re

    assert all(re.match(METER_PATTERN, m["meter"]) for m in meters)
    consent = rows(synth_dir / "consent.csv")
    assert list(consent[0]) == ["meter", "purpose", "granted_from", "granted_until", "withdrawn_at"]
    faults = rows(synth_dir / "faults.csv")
    assert {f["fault"] for f in faults} == set(FAULTS)  # every kind appears
    assert all(f["category"] == FAULTS[f["fault"]][0] for f in faults)
    truth = pd.read_parquet(synth_dir / "truth" / "readings.parquet")
    assert list(truth.columns)[:5] == ["meter", "obis", "capture_time", "value", "unit"]
    assert {"captured_at", "status"} <= set(truth.columns)
    assert (
        str(truth["capture_time"].dtype).startswith("datetime64")
        and truth["capture_time"].dt.tz is not None
    )
    # message file names carry no meter id
    assert not any(
        m["meter"] in str(p) for p in (synth_dir / "messages").rglob("*.cms") for m in meters
    )


def test_every_good_message_verifies_and_decrypts_with_openssl(
    synth_dir: Path, tmp_path: Path
) -> None:
    pki = synth_dir / "pki"
    hub = Identity(pki / "hub-key.pem", pki / "hub-cert.pem")
    forward = Identity(
        pki / "forward-de-supplier-forward-key.pem", pki / "forward-de-supplier-forward-cert.pem"
    )
    truth = pd.read_parquet(synth_dir / "truth" / "readings.parquet")
    messages = rows(synth_dir / "truth" / "messages.csv")
    good = [m for m in messages if m["route"] != "fault"]
    assert {m["route"] for m in good} == {"hub", "forward"}
    assert any(m["zlib"] == "1" for m in good)
    for m in good:
        econtent = verify(synth_dir / m["message"], pki / "trust-anchor.pem")
        env = tmp_path / "env.der"
        env.write_bytes(wrap_content_info(econtent, AUTH_ENVELOPED))
        plain = decrypt(env, forward if m["route"] == "forward" else hub)
        if m["zlib"] == "1":
            plain = zlib.decompress(plain)
        parsed = parse_k461(plain)
        expected = truth[truth["message"] == m["message"]]
        assert len(parsed) == len(expected) == int(m["readings"])
        got = sorted(
            (meter.upper(), t, v * 10.0**s if s >= 0 else v / 10 ** (-s), status)
            for meter, _, t, v, s, _, status in parsed
        )
        want = sorted(
            zip(
                expected["meter"],
                expected["captured_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                expected["value"],
                expected["status"],
                strict=True,
            )
        )
        assert got == want


def test_cms_open_cli_on_every_message(synth_dir: Path) -> None:
    pki = synth_dir / "pki"
    messages = {m["message"]: m for m in rows(synth_dir / "truth" / "messages.csv")}
    faults = {f["message"]: f for f in rows(synth_dir / "faults.csv")}
    for rel, m in messages.items():
        key, cert = ("hub-key.pem", "hub-cert.pem")
        if m["route"] == "forward":
            key, cert = (
                "forward-de-supplier-forward-key.pem",
                "forward-de-supplier-forward-cert.pem",
            )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "minimeter.cli",
                "cms",
                "open",
                str(synth_dir / rel),
                "--key",
                str(pki / key),
                "--cert",
                str(pki / cert),
                "--trust-anchor",
                str(pki / "trust-anchor.pem"),
                "--intermediate",
                str(pki / "intermediates.pem"),
            ],
            capture_output=True,
            check=False,
        )
        fault = faults.get(rel)
        if fault is None or fault["stage"] == "decode":
            assert proc.returncode == 0, (rel, proc.stderr)
        else:
            assert proc.returncode == 1
            assert proc.stderr.decode().startswith(f"minimeter: {fault['category']}: "), (
                fault,
                proc.stderr,
            )


def test_load_shapes_are_sane(synth_dir: Path) -> None:
    truth = pd.read_parquet(synth_dir / "truth" / "readings.parquet")
    meters = {m["meter"]: m for m in rows(synth_dir / "meters.csv")}
    for (meter, obis), g in truth.groupby(["meter", "obis"]):
        g = g.sort_values("capture_time")
        if obis.split(":")[1].split(".")[1] == "8":  # registers never decrease, across days too
            assert (g["value"].diff().dropna() >= 0).all(), (meter, obis)
    wide = truth.pivot_table(index=["meter", "capture_time"], columns="obis", values="value")
    assert (wide["1-0:1.8.0"] == wide["1-0:1.8.1"] + wide["1-0:1.8.2"]).all()
    # the interval quantity is exactly the register's increase (between two valid readings: a
    # status-3 placeholder repeats the previous value of every column)
    valid = truth.pivot_table(index=["meter", "capture_time"], values="status", aggfunc="max")
    for meter, g in wide.groupby(level=0):
        g = g.droplevel(0).sort_index()
        ok = valid.loc[meter]["status"].reindex(g.index) == 0
        steps = g["1-0:1.8.0"].diff().dropna()
        contiguous = (g.index.to_series().diff().dropna() == pd.Timedelta(minutes=15)) & (
            ok[1:] & ok.shift(1)[1:].astype(bool)
        )
        assert (steps[contiguous] == g["1-0:1.29.0"][1:][contiguous]).all()
    daily = (
        truth[truth["obis"] == "1-0:1.29.0"]
        .groupby(["meter", (truth["capture_time"] - pd.Timedelta(minutes=15)).dt.floor("D")])[
            "value"
        ]
        .sum()
    )
    for (meter, _day), wh in daily.items():
        mean_day = float(meters[meter]["annual_kwh"]) * 1000 / 365
        assert 0.1 * mean_day <= wh <= 5 * mean_day, (meter, wh, mean_day)
    exports = truth[truth["obis"] == "1-0:2.8.0"].sort_values(["meter", "capture_time"])
    assert len(exports), "the fleet has PV households"
    for _meter, g in exports.groupby("meter"):
        rising = g[g["value"].diff() > 0]
        for t in rising["capture_time"]:
            rise, set_ = daylight(t.date())
            end_h = t.hour + t.minute / 60 or 24.0
            assert rise <= end_h <= set_ + 0.25, (t, rise, set_)
    pv = {m for m, v in meters.items() if v["customer_type"] == "household-pv"}
    assert set(exports["meter"]) <= pv


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        synthesize(
            SynthConfig(out=out, meters=4, days=2, start=date(2026, 3, 1), seed=11, faults=0.2),
            progress=False,
        )
    for name in (
        "meters.csv",
        "consent.csv",
        "faults.csv",
        "truth/messages.csv",
        "pki/trust-anchor.pem",
        "pki/hub-cert.pem",
        "pki/pseudonym-secret.key",
    ):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert pd.read_parquet(a / "truth/readings.parquet").equals(
        pd.read_parquet(b / "truth/readings.parquet")
    )


def test_cli_summary_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "minimeter.cli",
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--meters",
            "3",
            "--days",
            "1",
            "--interval",
            "PT30M",
        ],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("synth: 3 messages")
    truth = pd.read_parquet(tmp_path / "s" / "truth" / "readings.parquet")
    assert truth["capture_time"].dt.minute.isin([0, 30]).all()


@pytest.mark.parametrize(
    "bad", [["--interval", "PT7M"], ["--faults", "2"], ["--start", "yesterday"]]
)
def test_cli_rejects_bad_options(tmp_path: Path, bad: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter.cli", "synth", "--out", str(tmp_path), *bad],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 2  # usage or configuration
    assert proc.stderr.decode().count("\n") == 1 and proc.stderr.decode().startswith("minimeter: ")


def test_real_style_features(synth_dir: Path, tmp_path: Path) -> None:
    """The payloads look as real gateways write them (gateway-data-real.md 1), the truth says
    how: late capture times, statuses 3 and 4, a placeholder repeating the previous value."""
    truth = pd.read_parquet(synth_dir / "truth" / "readings.parquet")
    late = (truth["captured_at"] - truth["capture_time"]).dt.total_seconds()
    assert late.between(0, 5).all() and late.nunique() == 6
    assert (truth["capture_time"].dt.second == 0).all()
    counts = truth.drop_duplicates(["meter", "capture_time"])["status"].value_counts()
    assert set(counts.index) <= {0, 3, 4} and len(counts) > 1  # a few not valid
    assert counts.drop(0).sum() < 0.01 * counts.sum()
    # the same status for every column of a capture
    assert (truth.groupby(["meter", "capture_time"])["status"].nunique() == 1).all()
    for _, g in truth[truth["obis"] == "1-0:1.8.0"].sort_values("capture_time").groupby("meter"):
        values = g["value"].to_numpy()
        at = (g["status"].to_numpy() == 3).nonzero()[0]
        assert (at > 0).all() and (values[at] == values[at - 1]).all()

    pki = synth_dir / "pki"
    hub = Identity(pki / "hub-key.pem", pki / "hub-cert.pem")
    meters = {m["meter"] for m in rows(synth_dir / "meters.csv")}
    one = next(m for m in rows(synth_dir / "truth" / "messages.csv") if m["route"] == "hub")
    env = tmp_path / "env.der"
    env.write_bytes(
        wrap_content_info(
            verify(synth_dir / one["message"], pki / "trust-anchor.pem"), AUTH_ENVELOPED
        )
    )
    plain = decrypt(env, hub)
    if one["zlib"] == "1":
        plain = zlib.decompress(plain)
    text = plain.decode()
    assert "<ns2:status>\n" in text and "<ns2:class_id>32822</ns2:class_id>" in text
    assert one["meter"] in meters and f".{one['meter'].lower()}.sm<" in text
    assert one["meter"] not in text  # upper-case only in meters.csv
    root = ET.fromstring(plain)
    column = root.find("p:attributes/p:buffer/p:simple_data/p:column", NS)
    assert column is not None
    times = [e.findtext("e:capture_time", namespaces=NS) for e in column]
    assert times == sorted(times, reverse=True)  # newest first
    signatures = {e.findtext("e:smgw_signature", namespaces=NS) for e in column}
    assert len(signatures) == len(times) and all(len(s or "") == 256 for s in signatures)
    assert len({(s or "")[128:] for s in signatures}) == 1  # the gateway's 64 bytes


def test_simple_style_keeps_the_old_shape(tmp_path: Path) -> None:
    import numpy as np

    from minimeter.payload.k461 import encode_profile
    from minimeter.synth.fleet import make_fleet
    from minimeter.synth.generate import _meter_days

    cfg = SynthConfig(out=tmp_path, meters=1, days=1, k461_style="simple")
    (meter,) = make_fleet(1, np.random.default_rng(1))
    ((_, series),) = _meter_days(cfg, meter, np.random.default_rng(1))
    assert all(s.statuses is None and s.sent_times is None for s in series)
    real = SynthConfig(out=tmp_path, meters=1, days=1)
    ((_, real_series),) = _meter_days(real, meter, np.random.default_rng(1))
    for simple, real_one in zip(series, real_series, strict=True):  # the same values
        assert real_one.capture_times == simple.capture_times
        kept = [k for k, st in enumerate(real_one.statuses or []) if st != 3]
        assert [real_one.values[k] for k in kept] == [simple.values[k] for k in kept]
    xml = encode_profile(meter.meter, series[:1]).decode()
    assert xml.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ns1:object xmlns:ns1="urn:k461-dke-de:'
        'profile_generic-1" xmlns:ns2="urn:k461-dke-de:extension-1" class_id="7">\n'
        f"<ns1:logical_name>0100630100ff.{meter.meter}.sm</ns1:logical_name>\n"
    )
    assert "<ns2:status>0</ns2:status></ns1:entry_gateway_signed>\n" in xml

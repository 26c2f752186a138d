"""The trust model in a real run: gateways bound to their meters, unknown meters, readings
captured after the signing time, conflicting readings, and redacted dead-letter names.

The messages are made at test time: an existing message of the fleet is opened with the hub's
key, its payload changed where the case needs it, encrypted to the hub with ``openssl cms
-encrypt`` and signed with ``openssl cms -sign`` by a gateway key of the fleet's own test
SM-PKI (re-derived from its seed). Only the backdated case is signed by Minimeter's CMS core,
because the OpenSSL CLI always signs with the current time.
"""

from __future__ import annotations

import re
import shutil
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from asn1crypto import cms
from pipeline_helpers import read_recipient, run_cli

from minimeter.cms import TrustStore, make_signed_data, open_message
from minimeter.keys import load_certificates, load_private_key
from minimeter.synth.generate import DEFAULT_FORWARD_RECIPIENT
from minimeter.synth.pki import TestPki as SynthPki

from conftest import SYNTH_ARGS
from opensslkit import AUTH_ENVELOPED, Identity, encrypt, sign

pytestmark = pytest.mark.slow
START = date(2026, 1, 9)


def gateway_identity(meters: pd.DataFrame, meter: str, where: Path) -> Identity:
    """The fleet's gateway key and certificate of ``meter``, as PEM files for OpenSSL."""
    pki = SynthPki.create(
        f"minimeter-synth/{SYNTH_ARGS['seed']}".encode(),
        start=datetime(START.year, START.month, START.day, tzinfo=UTC),
        forward_recipients=(DEFAULT_FORWARD_RECIPIENT,),
    )
    gateway = meters.set_index("meter").loc[meter, "gateway"]
    identity = pki.gateway(gateway)
    key, cert = where / f"{gateway}.key", where / f"{gateway}.pem"
    identity.write(key, cert)
    return Identity(key, cert)


def payload_of(fleet: Path, message: str) -> bytes:
    """The K461 XML of a fleet message (opened with the hub's key, inflated if zlib)."""
    pki = fleet / "pki"
    data = open_message(
        (fleet / message).read_bytes(),
        recipient_key=load_private_key(pki / "hub-key.pem"),
        recipient_cert=load_certificates(pki / "hub-cert.pem")[0],
        trust=TrustStore.from_files([pki / "trust-anchor.pem"], [pki / "intermediates.pem"]),
        at=datetime.now(UTC),
    ).payload
    return zlib.decompress(data) if data[:1] == b"\x78" else data


def seal(fleet: Path, payload: bytes, signer: Identity, out: Path, work: Path) -> None:
    plain = work / f"{out.stem}.xml"
    plain.write_bytes(payload)
    envelope = encrypt(plain, [fleet / "pki" / "hub-cert.pem"], work / f"{out.stem}.env")
    sign(envelope, signer, out, econtent_type=AUTH_ENVELOPED)


@pytest.fixture(scope="module")
def case(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("pipeline-trust")
    fleet = base / "fleet"
    shutil.copytree(synth_dir, fleet)
    work = base / "work"
    work.mkdir()
    meters = pd.read_csv(fleet / "meters.csv")
    messages = pd.read_csv(fleet / "truth" / "messages.csv")
    hub = messages[messages.route == "hub"]
    a, b = hub.iloc[0], hub[hub.meter != hub.iloc[0].meter].iloc[0]
    extra = fleet / "messages" / "extra"
    extra.mkdir()
    payload_a = payload_of(fleet, a.message)
    gw_a = gateway_identity(meters, a.meter, work)
    gw_b = gateway_identity(meters, b.meter, work)
    # a) readings of meter A, signed by meter B's gateway
    seal(fleet, payload_a, gw_b, extra / "cross-gateway.cms", work)
    # b) a meter missing from meters.csv, signed by A's gateway
    unknown = re.sub(re.escape(a.meter), "1ZZZ9999999999", payload_a.decode(), flags=re.I)
    seal(fleet, unknown.encode(), gw_a, extra / "unknown-meter.cms", work)
    # c) A's message again, one value changed: a conflict with the original message
    changed = re.sub(
        r"(<(?:\w+:)?long64>)(\d+)(</)",
        lambda m: f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}",
        payload_a.decode(),
        count=1,
    )
    assert changed != payload_a.decode()
    seal(fleet, changed.encode(), gw_a, extra / "conflicting.cms", work)
    # d) B's readings, signed with a signingTime before they were captured
    payload_b = payload_of(fleet, b.message)
    plain = work / "backdated.xml"
    plain.write_bytes(payload_b)
    envelope = encrypt(plain, [fleet / "pki" / "hub-cert.pem"], work / "backdated.env")
    bare = cms.ContentInfo.load(envelope.read_bytes())["content"].untag().dump()
    (extra / "backdated.cms").write_bytes(
        make_signed_data(
            bare,
            AUTH_ENVELOPED,
            signer_key=load_private_key(gw_b.key),  # type: ignore[arg-type]
            signer_cert=load_certificates(gw_b.cert)[0],
            at=datetime(START.year, START.month, START.day, tzinfo=UTC) - timedelta(days=1),
        )
    )
    # f-j) bad numbers, each in one message of meter A (a dead letter each, the rest delivered)
    text = payload_a.decode()

    def first(pattern: str, new: str) -> bytes:
        changed, n = re.subn(pattern, new, text, count=1)
        assert n == 1, pattern
        return changed.encode()

    bad = {
        "huge-value": first(r"(?<=long64>)\d+(?=<)", "9" * 401),
        "huge-status": first(
            r"(?<=status>)(\s*(?:<(?:\w+:)?unsigned>)?)\d+", lambda m: m.group(1) + str(2**64)
        ),
        "year-9999": first(r"(?<=capture_time>)[^<]+", "9999-01-01T00:00:00Z"),
        "nat": first(r"(?<=capture_time>)[^<]+", "NaTZ"),
    }
    for name, data in bad.items():
        seal(fleet, data, gw_a, extra / f"bad-{name}.cms", work)
    seal(fleet, zlib.compress(payload_a) + b"trailing garbage", gw_a, extra / "bad-zlib.cms", work)
    # k) an implausible register: meter C's message rewritten with one register value falling
    c = hub[~hub.meter.isin([a.meter, b.meter])].iloc[0]
    payload_c = payload_of(fleet, c.message).decode()
    values = [m for m in re.finditer(r"(?<=long64>)\d+(?=<)", payload_c)]
    drop = values[len(values) // 6]  # inside the first column: the total import register
    falling = payload_c[: drop.start()] + "1" + payload_c[drop.end() :]
    seal(fleet, falling.encode(), gateway_identity(meters, c.meter, work), fleet / c.message, work)
    signatures = re.findall(r"smgw_signature>\s*([0-9a-fA-F]{64,})\s*<", text)
    # e) a broken message whose name carries a meter id and a gateway id, glued to letters
    gateway_b = meters.set_index("meter").loc[b.meter, "gateway"]
    broken = extra / f"x{a.meter.lower()}-{gateway_b}y.cms"
    broken.write_bytes(b"not CMS")
    out = base / "out"
    # processing time now: OpenSSL signed these messages today
    proc = run_cli(fleet, out, "--no-progress", as_of=date.today().isoformat())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {
        "fleet": fleet,
        "out": out,
        "a": a,
        "b": b,
        "broken": broken.name,
        "bad": [*bad, "zlib"],
        "signatures": signatures,
        "stdout": proc.stdout,
    }


def dead_letters(out: Path) -> dict[str, str]:
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)
    return dict(con.execute("SELECT message, category FROM dead_letters").fetchall())


def test_gateways_may_report_only_their_own_meters(case: dict[str, object]) -> None:
    dead = dead_letters(case["out"])  # type: ignore[arg-type]
    assert dead["extra/cross-gateway.cms"] == "gateway-not-authorised"
    assert dead["extra/unknown-meter.cms"] == "meter-unknown"


def test_readings_captured_after_the_signing_time_are_refused(case: dict[str, object]) -> None:
    assert dead_letters(case["out"])["extra/backdated.cms"] == "untrusted-signer"  # type: ignore[arg-type]


def test_conflicting_readings_are_reported_and_never_delivered(case: dict[str, object]) -> None:
    out, a = case["out"], case["a"]
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)  # type: ignore[operator]
    rows = con.execute("SELECT messages, meter, obis, ts FROM conflicts").fetchall()
    assert len(rows) == 1
    messages, meter, obis, ts = rows[0]
    assert sorted(messages) == sorted(
        [a.message.removeprefix("messages/"), "extra/conflicting.cms"]
    )  # type: ignore[union-attr]
    assert meter != a.meter and len(meter) == 32  # the audit's pseudonym, never the raw id  # type: ignore[union-attr]
    dropped = con.execute("SELECT sum(n) FROM counts WHERE reason = 'dropped-conflict'").fetchall()[
        0
    ][0]
    assert dropped and dropped > 0
    # the disputed time is delivered to nobody with a metering-point identity
    for rid in ("fr-enedis-daily", "de-supplier-stadtwerk", "gb-supplier-daily"):
        df = read_recipient(out, rid)  # type: ignore[arg-type]
        if len(df) and "meter" in df.columns:
            hit = df[(df.meter == a.meter) & (df.obis == obis) & (df.ts == pd.Timestamp(ts))]  # type: ignore[union-attr]
            assert hit.empty


def test_dead_letter_names_carry_no_meter_or_gateway_id(case: dict[str, object]) -> None:
    dead = dead_letters(case["out"])  # type: ignore[arg-type]
    assert "extra/x<meter>-<gateway>y.cms" in dead
    raw = (case["out"] / "_audit" / "audit.duckdb").read_bytes()  # type: ignore[operator]
    a = case["a"]
    assert a.meter.lower().encode() not in raw.lower()  # type: ignore[union-attr]
    assert case["broken"] not in dead


def test_bad_numbers_are_dead_letters_and_the_rest_is_delivered(case: dict[str, object]) -> None:
    out = case["out"]
    dead = dead_letters(out)  # type: ignore[arg-type]
    for name in case["bad"]:  # type: ignore[attr-defined]
        assert dead[f"extra/bad-{name}.cms"] == "payload-invalid", name
    assert "[balanced]" in case["stdout"]  # type: ignore[operator]
    con = duckdb.connect(str(out / "_audit" / "audit.duckdb"), read_only=True)  # type: ignore[operator]
    implausible = con.execute(
        "SELECT coalesce(sum(n), 0) FROM counts WHERE reason = 'dropped-implausible'"
    ).fetchall()[0][0]
    assert implausible > 0  # the falling register was dropped, its message was not
    rows = con.execute("SELECT coalesce(sum(n), 0) FROM counts WHERE reason = 'rows-delivered'")
    assert rows.fetchall()[0][0] > 0
    for rid in ("de-tso-balancing", "gb-dno-aggregate", "de-dso-hamburg"):
        df = read_recipient(out, rid)  # type: ignore[arg-type]
        if len(df):
            assert df["value"].map(lambda v: v == v and abs(v) < float("inf")).all()


def test_no_gateway_signature_reaches_any_written_file(case: dict[str, object]) -> None:
    signatures = case["signatures"]
    assert signatures, "the fleet writes real-shape K461 with per-entry signatures"
    needles = {s.lower() for s in signatures} | {s.upper() for s in signatures}
    keys = {bytes.fromhex(s[-128:]) for s in signatures}  # the gateway's public key
    for path in Path(case["out"]).rglob("*"):  # type: ignore[arg-type]
        if path.is_file():
            data = path.read_bytes()
            assert not any(n.encode() in data for n in needles), path
            assert not any(k in data for k in keys), path

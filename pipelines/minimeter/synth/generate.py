"""``minimeter synth``: a synthetic SMGW fleet, encrypted and signed like real messages.

Deterministic for a given seed: the PKI keys, the fleet, the readings, consent, the choice of
faults and forwards, and the message plaintexts. (Ciphertexts differ run to run: ECDH ephemeral
keys and GCM nonces come from the operating system's random source, as they must.)

The K461 payloads are written as real gateways write them (``k461_style="real"``, the default;
gateway-data-real.md 1): wrapped status, class 32822, newest first, pretty-printed, a per-entry
``smgw_signature``, meter ids lower-case in logical names, capture times 0-5 s late, and a few
readings with status 3 (not present: a placeholder repeating the previous value) and 4
(invalid). ``k461_style="simple"`` keeps the old shape exactly (on time, all valid). The ground
truth (``truth/readings.parquet``) has, per reading, the grid time it belongs to
(``capture_time``), the time as sent (``captured_at``), the value as sent and the raw status.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from asn1crypto import cms
from cryptography import x509

from minimeter.cms import CmsSigner, encrypt_envelope
from minimeter.errors import ConfigError
from minimeter.obis import OBIS_TABLE, scale
from minimeter.payload.k461 import STYLES, Series, encode_profile
from minimeter.synth.fleet import Meter, make_consent, make_fleet, write_consent, write_meters
from minimeter.synth.load import day_profile
from minimeter.synth.pki import CURVES, Identity, TestPki, issue

DEFAULT_FORWARD_RECIPIENT = "de-supplier-forward"

#: Fault kind -> (category the pipeline must report, stage that reports it).
FAULTS: dict[str, tuple[str, str]] = {
    "tampered-ciphertext": ("decryption-failed", "open"),
    "bad-signature": ("signature-invalid", "open"),
    "expired-certificate": ("untrusted-signer", "open"),
    "wrong-recipient": ("not-a-recipient", "open"),
    "truncated": ("malformed", "open"),
    "garbage": ("malformed", "open"),
    "not-k461": ("payload-unsupported", "decode"),
    "xml-bomb": ("payload-invalid", "decode"),
}

NOT_K461 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<telegram xmlns="urn:example:not-k461">'
    b"<line>1-0:1.8.1(000004.426*kWh)</line></telegram>\n"
)
XML_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>\n"
)


INTERVALS = (1, 5, 10, 15, 30, 60)
"""Capture periods in minutes: the standard periods the decoder detects (sub-daily)."""
STATUS_METERS = 5
"""Real style: every fifth meter (index % 5 == 2) has now and then readings with PPC status 3
(not present) or 4 (invalid); the others never do, so that whole days and months of them can
be delivered (real gateways mark few readings)."""
STATUS_DAY_SHARE = 0.3
"""On this share of such a meter's days, one or two readings carry status 3 or 4."""
MAX_LATE_S = 5
"""Real style: capture times are 0 to this many seconds late."""


@dataclass(frozen=True)
class SynthConfig:
    out: Path
    meters: int = 50
    days: int = 3
    start: date = date(2026, 1, 5)
    seed: int = 1
    interval_minutes: int = 15
    faults: float = 0.05
    forward_share: float = 0.05
    forward_recipient: str = DEFAULT_FORWARD_RECIPIENT
    curve: str = "brainpoolP256r1"
    zlib_share: float = 0.1
    k461_style: str = "real"

    def __post_init__(self) -> None:
        if self.meters < 1 or self.days < 1:
            raise ConfigError("--meters and --days must be at least 1")
        if self.interval_minutes not in INTERVALS:
            raise ConfigError("--interval must be PT1M, PT5M, PT10M, PT15M, PT30M or PT1H")
        if self.k461_style not in STYLES:
            raise ConfigError(f"--k461-style must be one of {', '.join(STYLES)}")
        for name in ("faults", "forward_share", "zlib_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if self.curve not in CURVES:
            raise ConfigError(f"--curve must be one of {', '.join(CURVES)}")


@dataclass(frozen=True)
class SynthSummary:
    messages: int
    readings: int
    faults: int
    forwarded: int
    seconds: float


def parse_interval(text: str) -> int:
    """ISO 8601 ``PT15M`` / ``PT1H`` -> minutes."""
    t = text.upper()
    try:
        if t.startswith("PT") and t.endswith("M"):
            return int(t[2:-1])
        if t.startswith("PT") and t.endswith("H"):
            return int(t[2:-1]) * 60
    except ValueError:
        pass
    raise ConfigError(f"--interval: {text!r} is not an ISO 8601 duration like PT15M or PT1H")


@dataclass
class _Plan:
    fault: dict[tuple[int, int], str]
    forward: set[tuple[int, int]]
    zlib: set[tuple[int, int]]


def _plan(cfg: SynthConfig, meters: list[Meter], rng: np.random.Generator) -> _Plan:
    keys = [(m.index, d) for m in meters for d in range(cfg.days)]
    order = rng.permutation(len(keys))
    n_fault = round(cfg.faults * len(keys))
    kinds = list(FAULTS)
    fault = {keys[int(i)]: kinds[n % len(kinds)] for n, i in enumerate(order[:n_fault])}
    german = [
        k for k in (keys[int(i)] for i in order[n_fault:]) if meters[k[0]].jurisdiction == "DE"
    ]
    forward = set(german[: round(cfg.forward_share * len(keys))])
    zlib_keys = {
        keys[int(i)] for i in rng.permutation(len(keys))[: round(cfg.zlib_share * len(keys))]
    }
    return _Plan(fault, forward, zlib_keys)


def _us(times: list[datetime]) -> np.ndarray:
    return np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[us]")


class _Truth:
    """Every reading of every good message: ``capture_time`` is the grid time (the period end
    it belongs to), ``captured_at`` the time as sent, ``value`` the value as sent (a status-3
    placeholder repeats the previous one), ``status`` the raw PPC status."""

    def __init__(self) -> None:
        self.meter: list[str] = []
        self.obis: list[str] = []
        self.time: list[np.ndarray] = []
        self.sent: list[np.ndarray] = []
        self.value: list[float] = []
        self.unit: list[str] = []
        self.message: list[str] = []
        self.status: list[int] = []

    def add(self, meter: str, series: list[Series], message: str) -> int:
        n = 0
        for s in series:
            unit = OBIS_TABLE[s.obis].unit
            k = len(s.values)
            self.meter += [meter] * k
            self.obis += [s.obis] * k
            grid = _us(list(s.capture_times))
            self.time.append(grid)
            self.sent.append(_us(list(s.sent_times)) if s.sent_times else grid)
            self.value += [scale(v, s.scaler) for v in s.values]
            self.unit += [unit] * k
            self.message += [message] * k
            self.status += list(s.statuses) if s.statuses else [0] * k
            n += k
        return n

    def write(self, path: Path) -> None:
        def times(parts: list[np.ndarray]) -> pa.Array:
            joined = np.concatenate(parts) if parts else np.array([], dtype="datetime64[us]")
            return pa.array(joined, pa.timestamp("us", tz="UTC"))

        table = pa.table(
            {
                "meter": pa.array(self.meter, pa.string()),
                "obis": pa.array(self.obis, pa.string()),
                "capture_time": times(self.time),
                "value": pa.array(self.value, pa.float64()),
                "unit": pa.array(self.unit, pa.string()),
                "message": pa.array(self.message, pa.string()),
                "captured_at": times(self.sent),
                "status": pa.array(self.status, pa.uint8()),
            }
        )
        pq.write_table(table, path)


def _meter_days(
    cfg: SynthConfig,
    meter: Meter,
    rng: np.random.Generator,
    quirks: np.random.Generator | None = None,
) -> list[tuple[date, list[Series]]]:
    """All days of one meter, registers continuous across days. In the real style, ``quirks``
    (default: a stream of its own per seed and meter, so the values do not depend on the
    style) makes capture times late and marks a few readings not present or invalid."""
    if quirks is None:
        quirks = np.random.default_rng([cfg.seed, meter.index, 461])
    minutes = cfg.interval_minutes
    n = 24 * 60 // minutes
    kwp = float(rng.uniform(3.0, 8.0)) if meter.customer_type == "household-pv" else 0.0
    years = float(rng.uniform(1.0, 6.0))
    t1 = int(meter.annual_kwh * 1000 * years * 0.7)
    t2 = int(meter.annual_kwh * 1000 * years * 0.3)
    export = int(kwp * 900 * 1000 * float(rng.uniform(0.5, 4.0))) if kwp else 0
    offsets = (np.arange(1, n + 1) * minutes).astype("timedelta64[m]")
    hour_utc = (np.arange(n) * minutes) / 60.0
    is_t1 = (hour_utc >= 5.0) & (hour_utc < 21.0)  # high tariff 06:00-22:00 local (UTC+1)
    days = []
    for d in range(cfg.days):
        day = cfg.start + timedelta(days=d)
        profile = day_profile(meter.customer_type, meter.annual_kwh, day, minutes, rng, kwp=kwp)
        net = profile.consumption - profile.generation
        imp = np.rint(np.clip(net, 0.0, None)).astype(np.int64)
        exp = np.rint(np.clip(-net, 0.0, None)).astype(np.int64)
        reg1 = t1 + np.cumsum(imp * is_t1)
        reg2 = t2 + np.cumsum(imp * ~is_t1)
        reg_exp = export + np.cumsum(exp)
        t1, t2, export = int(reg1[-1]), int(reg2[-1]), int(reg_exp[-1])
        power = (
            imp * (60 // minutes)
            if 60 % minutes == 0
            else np.rint(imp * 60.0 / minutes).astype(np.int64)
        )
        volts = np.rint(
            2300
            + 40 * np.sin(2 * np.pi * hour_utc / 24)
            - 0.002 * power
            + rng.normal(0, 15, size=n)
        ).astype(np.int64)
        times = list((np.datetime64(day.isoformat(), "m") + offsets).astype(datetime))
        times = [t.replace(tzinfo=UTC) for t in times]
        series = [
            Series("1-0:1.8.0", 0, 30, times, (reg1 + reg2).tolist()),
            Series("1-0:1.8.1", 0, 30, times, reg1.tolist()),
            Series("1-0:1.8.2", 0, 30, times, reg2.tolist()),
            Series("1-0:1.29.0", 0, 30, times, imp.tolist()),
            Series("1-0:1.7.0", 0, 27, times, power.tolist()),
            Series("1-0:32.7.0", -1, 35, times, volts.tolist()),
        ]
        if kwp:
            series.insert(3, Series("1-0:2.8.0", 0, 30, times, reg_exp.tolist()))
        if cfg.k461_style == "real":
            series = _real_quirks(series, quirks, marks=meter.index % STATUS_METERS == 2)
        days.append((day, series))
    return days


def _real_quirks(
    series: list[Series], rng: np.random.Generator, *, marks: bool = True
) -> list[Series]:
    """Capture times 0-5 s late and a few statuses 3 and 4, the same for every column of a
    capture (a profile captures its columns together). A status-3 reading is a placeholder
    that repeats the previous value (never the first of a day, so that the day's message
    holds the value it repeats)."""
    n = len(series[0].values)
    late = rng.integers(0, MAX_LATE_S + 1, size=n)
    statuses = np.zeros(n, dtype=np.int64)
    if marks and n > 2 and rng.random() < STATUS_DAY_SHARE:
        for k in rng.choice(np.arange(1, n), size=int(rng.integers(1, 3)), replace=False):
            statuses[k] = 3 if rng.random() < 0.5 else 4
    sent = [
        t + timedelta(seconds=int(s)) for t, s in zip(series[0].capture_times, late, strict=True)
    ]
    out = []
    for s in series:
        values = list(s.values)
        for k in np.flatnonzero(statuses == 3):
            values[k] = values[k - 1]
        out.append(
            Series(s.obis, s.scaler, s.dlms_unit, s.capture_times, values, statuses.tolist(), sent)
        )
    return out


def _flip_inside(data: bytes, needle: bytes, offset: int) -> bytes:
    at = data.index(needle) + offset
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]


def synthesize(cfg: SynthConfig, *, progress: bool = True) -> SynthSummary:
    started = time.perf_counter()
    out = cfg.out
    seed_bytes = f"minimeter-synth/{cfg.seed}".encode()
    rng = np.random.default_rng(cfg.seed)
    start_dt = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC)
    pki = TestPki.create(
        seed_bytes, start=start_dt, forward_recipients=(cfg.forward_recipient,), curve=cfg.curve
    )
    pki.write(out / "pki")
    stranger = issue(
        seed_bytes,
        "stranger",
        "Somebody else (encryption)",
        kind="encrypt",
        issuer=pki.subca,
        curve=cfg.curve,
        not_before=start_dt - timedelta(days=365),
        not_after=start_dt + timedelta(days=1825),
    )
    meters = make_fleet(cfg.meters, rng)
    write_meters(meters, out / "meters.csv")
    write_consent(make_consent(meters, start_dt, cfg.days, rng), out / "consent.csv")
    plan = _plan(cfg, meters, rng)
    (out / "truth").mkdir(exist_ok=True)
    truth = _Truth()
    fault_rows: list[list[str]] = []
    message_rows: list[list[object]] = []
    forward_cert = pki.forward[cfg.forward_recipient].cert
    total = cfg.meters * cfg.days
    bar = _progress(total, enabled=progress)
    for meter in meters:
        gateway_id = meter.gateway
        gateway = pki.gateway(gateway_id)
        signer = CmsSigner(gateway.key, gateway.cert, [pki.subca.cert])  # one per meter, once
        gateway_key = hashlib.sha512(seed_bytes + b"/smgw-key/" + gateway_id.encode()).digest()
        written_id = meter.meter.lower() if cfg.k461_style == "real" else meter.meter
        meter_rng = np.random.default_rng([cfg.seed, meter.index])
        for d, (day, series) in enumerate(_meter_days(cfg, meter, meter_rng)):
            key = (meter.index, d)
            name = hmac.new(
                seed_bytes, f"{meter.meter}/{day}".encode(), hashlib.sha256
            ).hexdigest()[:20]
            rel = f"messages/{day.isoformat()}/{name}.cms"
            payload = encode_profile(
                written_id, series, style=cfg.k461_style, gateway_key=gateway_key
            )
            fault = plan.fault.get(key)
            if fault == "not-k461":
                payload = NOT_K461
            elif fault == "xml-bomb":
                payload = XML_BOMB
            compressed = key in plan.zlib
            if compressed:
                payload = zlib.compress(payload, 6)
            sent_at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                days=1, minutes=5
            )
            forward = key in plan.forward
            recipient = forward_cert if forward else pki.hub.cert
            message = _message(
                fault, payload, recipient, signer, pki, stranger, gateway_id, sent_at
            )
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(message)
            if fault:
                category, stage = FAULTS[fault]
                fault_rows.append([rel, fault, category, stage])
                route, n_readings = "fault", 0
            else:
                n_readings = truth.add(meter.meter, series, rel)
                route = "forward" if forward else "hub"
            message_rows.append(
                [
                    rel,
                    meter.meter,
                    day.isoformat(),
                    route,
                    cfg.forward_recipient if forward else "hub",
                    n_readings,
                    int(compressed),
                ]
            )
            bar(1)
    bar(0, close=True)
    truth.write(out / "truth" / "readings.parquet")
    _write_csv(out / "faults.csv", ["message", "fault", "category", "stage"], fault_rows)
    _write_csv(
        out / "truth" / "messages.csv",
        ["message", "meter", "day", "route", "recipient", "readings", "zlib"],
        message_rows,
    )
    return SynthSummary(
        total, len(truth.value), len(fault_rows), len(plan.forward), time.perf_counter() - started
    )


def _message(
    fault: str | None,
    payload: bytes,
    recipient: x509.Certificate,
    signer: CmsSigner,
    pki: TestPki,
    stranger: Identity,
    gateway_id: str,
    at: datetime,
) -> bytes:
    if fault == "expired-certificate":
        expired = pki.gateway(gateway_id, expired=True)
        signer = CmsSigner(expired.key, expired.cert, signer.chain)
    if fault == "wrong-recipient":
        recipient = stranger.cert
    if fault == "tampered-ciphertext":
        content_type, envelope = encrypt_envelope(payload, [recipient])
        ciphertext = cms.AuthEnvelopedData.load(envelope)["auth_encrypted_content_info"][
            "encrypted_content"
        ].native
        envelope = _flip_inside(envelope, ciphertext, len(ciphertext) // 2)
        return signer.sign(envelope, content_type, at=at)
    content_type, envelope = encrypt_envelope(payload, [recipient])
    message = signer.sign(envelope, content_type, at=at)
    if fault == "bad-signature":
        signature = cms.ContentInfo.load(message)["content"]["signer_infos"][0]["signature"].native
        return _flip_inside(message, signature, len(signature) // 2)
    if fault == "truncated":
        return message[: len(message) * 3 // 5]
    if fault == "garbage":
        return hashlib.shake_256(message).digest(len(message))
    return message


def _write_csv(path: Path, header: list[str], rows: list[list[str]] | list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _progress(total: int, *, enabled: bool) -> Callable[..., None]:
    """A tqdm bar on stderr when it is a terminal; a no-op otherwise."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        unit="msg",
        desc="messages",
        file=sys.stderr,
        disable=not enabled or None,
        leave=False,
    )

    def step(n: int, *, close: bool = False) -> None:
        if n:
            bar.update(n)
        if close:
            bar.close()

    return step

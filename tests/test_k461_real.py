"""K461 as real gateways write it: the fixtures of tests/vectors/k461 (see its README.md).

Expected values come from the fixtures' own numbers, read here with a few lines of
``xml.etree`` and plain datetime arithmetic, never from the decoder under test. Properties
(hypothesis): entry order does not matter, capture-time jitter within 1 % of the period gives
the same attributed times, no ``smgw_signature`` reaches the decoded profile, and bad numbers
are ``PayloadError``, never another exception.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimeter.errors import PayloadError, PayloadUnsupported
from minimeter.payload import decode_payload
from minimeter.readings import DecodedProfile, ReadingStatus

VECTORS = Path(__file__).parent / "vectors" / "k461"
NS = {"p": "urn:k461-dke-de:profile_generic-1", "e": "urn:k461-dke-de:extension-1"}
LATEST = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
BERLIN = ZoneInfo("Europe/Berlin")
QUARTER = 900


@dataclass
class Entry:
    time: str
    value: int
    scaler: int
    unit: int
    status: str
    form: str  # "bare", "unsigned" or "octet-string"
    signature: str


def read(path: Path) -> tuple[str, dict[str, list[Entry]]]:
    """Independent reading: the meter id and, per OBIS hex code, the entries as written."""
    root = ET.parse(path).getroot()
    names = {
        o.get("id"): (o.findtext("e:logical_name", namespaces=NS) or "").split(".")
        for o in root.iterfind("p:attributes/p:capture_objects/p:capture_object", NS)
    }
    out: dict[str, list[Entry]] = {}
    meters = set()
    for column in root.iterfind("p:attributes/p:buffer/p:simple_data/p:column", NS):
        obis_hex, meter, _ = names[column.get("id")]
        meters.add(meter)
        entries = out.setdefault(obis_hex, [])
        for e in column.iterfind("p:entry_gateway_signed", NS):
            status = e.find("e:status", NS)
            assert status is not None
            child = next(iter(status), None)
            entries.append(
                Entry(
                    e.findtext("e:capture_time", namespaces=NS) or "",
                    int(e.findtext("e:value/e:long64", namespaces=NS) or ""),
                    int(e.findtext("e:scaler", namespaces=NS) or ""),
                    int(e.findtext("e:unit", namespaces=NS) or ""),
                    ((child.text if child is not None else status.text) or "").strip(),
                    "bare" if child is None else child.tag.split("}")[1],
                    e.findtext("e:smgw_signature", namespaces=NS) or "",
                )
            )
    (meter,) = meters
    return meter, out


def epoch_us(text: str) -> int:
    return (
        int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()) * 10**6
    )


def snapped_us(text: str, period_s: int = QUARTER) -> int:
    """The grid boundary within 1 % of the period (9 s of a quarter hour), else the time."""
    seconds = epoch_us(text) // 10**6
    nearest = (seconds + period_s // 2) // period_s * period_s
    return (nearest if abs(seconds - nearest) <= period_s // 100 else seconds) * 10**6


def decoded(name: str) -> DecodedProfile:
    return decode_payload((VECTORS / name).read_bytes(), latest_us=LATEST)


def obis_hex(code: str) -> str:
    a, rest = code.split("-")
    b, rest = rest.split(":")
    c, d, e = rest.split(".")
    return bytes([int(a), int(b), int(c), int(d), int(e), 255]).hex()


def check_against_fixture(profile: DecodedProfile, name: str) -> None:
    meter, columns = read(VECTORS / name)
    assert profile.meter == meter  # as written
    assert {obis_hex(s.obis) for s in profile.series} == set(columns)
    for s in profile.series:
        entries = sorted(columns[obis_hex(s.obis)], key=lambda e: e.time)
        assert s.captured_us.tolist() == [epoch_us(e.time) for e in entries]
        assert s.times_us.tolist() == [snapped_us(e.time) for e in entries]
        # the double nearest the exact decimal value
        assert s.values.tolist() == [float(Decimal(e.value).scaleb(e.scaler)) for e in entries]
        assert s.step_us == QUARTER * 10**6


def test_ppc_wrapped_export() -> None:
    profile = decoded("ppc_wrapped.xml")
    check_against_fixture(profile, "ppc_wrapped.xml")
    _, columns = read(VECTORS / "ppc_wrapped.xml")
    (entries,) = columns.values()
    assert [e.time for e in entries] == sorted((e.time for e in entries), reverse=True)
    assert {e.form for e in entries} == {"unsigned"}
    assert {e.time[-3:-1] for e in entries} != {"00"}  # late capture times
    (s,) = profile.series
    assert s.unit == "Wh" and s.obis == "1-0:1.8.0"
    ordered = sorted(entries, key=lambda e: e.time)
    assert s.status_raw.tolist() == [int(e.status) for e in ordered]
    expected = {
        "0": ReadingStatus.VALID,
        "3": ReadingStatus.NOT_PRESENT,
        "4": ReadingStatus.INVALID,
    }
    assert [ReadingStatus(c) for c in s.status] == [expected[e.status] for e in ordered]
    placeholders = [k for k, e in enumerate(ordered) if e.status == "3"]
    assert placeholders and all(ordered[k].value == ordered[k - 1].value for k in placeholders)
    assert any(e.status == "4" for e in ordered)


def test_taf10_octet_string_status() -> None:
    profile = decoded("taf10_octet_status.xml")
    check_against_fixture(profile, "taf10_octet_status.xml")
    _, columns = read(VECTORS / "taf10_octet_status.xml")
    ordered = sorted(next(iter(columns.values())), key=lambda e: e.time)
    (s,) = profile.series
    assert {e.form for e in ordered} == {"octet-string"}
    assert s.status_raw.tolist() == [
        int.from_bytes(bytes.fromhex(e.status), "little") for e in ordered
    ]
    assert [ReadingStatus(c) for c in s.status] == [  # the words' meaning (README, in order)
        ReadingStatus.VALID,
        ReadingStatus.INVALID,
        ReadingStatus.NOT_PRESENT,
        ReadingStatus.WARNING,
        ReadingStatus.INVALID,
        ReadingStatus.TIME_INVALID,
        ReadingStatus.INVALID,
        ReadingStatus.UNKNOWN,
    ]


def test_multi_column_export_with_voltage() -> None:
    profile = decoded("multi_column_voltage.xml")
    check_against_fixture(profile, "multi_column_voltage.xml")
    assert [s.obis for s in profile.series] == ["1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0"]
    assert [s.unit for s in profile.series] == ["Wh", "Wh", "V"]
    _, columns = read(VECTORS / "multi_column_voltage.xml")
    volts = sorted(columns["0100200700ff"], key=lambda e: e.time)
    assert {e.unit for e in volts} == {35} and {e.scaler for e in volts} == {-1}
    assert profile.series[2].values.tolist() == [float(Decimal(f"{e.value}e-1")) for e in volts]
    text = (VECTORS / "multi_column_voltage.xml").read_text()
    assert "<pg:object" in text and "<x:long64>" in text and "ns1:" not in text


@pytest.mark.parametrize(
    "name,day,quarters",
    [
        ("dst_spring_2026-03-29.xml", date(2026, 3, 29), 92),
        ("dst_autumn_2025-10-26.xml", date(2025, 10, 26), 100),
    ],
)
def test_dst_days(name: str, day: date, quarters: int) -> None:
    profile = decoded(name)
    check_against_fixture(profile, name)
    (s,) = profile.series
    start = datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)
    end = (datetime(day.year, day.month, day.day, tzinfo=BERLIN) + timedelta(days=1)).astimezone(
        UTC
    )
    first, last = int(start.timestamp()) * 10**6, int(end.timestamp()) * 10**6
    assert s.times_us[0] == first and s.times_us[-1] == last  # the two local midnights
    inside = s.times_us[(s.times_us > first) & (s.times_us <= last)]
    assert len(inside) == quarters  # quarter hours ending in the local day
    assert (np.diff(s.times_us) == QUARTER * 10**6).all()
    assert (end - start) == timedelta(minutes=15 * quarters)


def test_simple_shape_still_reads() -> None:
    profile = decoded("simple_shape.xml")
    check_against_fixture(profile, "simple_shape.xml")
    assert profile.meter == "1EMH0012345678"
    assert (profile.series[0].status == ReadingStatus.VALID).all()


@pytest.mark.parametrize(
    "name,reason",
    [
        ("too_many_records.txt", "plain text"),
        ("vde_ar_2418_6.xml", "VDE-AR-E 2418-6"),
        ("lmn_container.xml", "K461 document of another kind"),
        ("dsmr_p1.txt", "DSMR"),
    ],
)
def test_other_formats_are_unsupported(name: str, reason: str) -> None:
    with pytest.raises(PayloadUnsupported) as info:
        decoded(name)
    assert info.value.category == "payload-unsupported" and reason in info.value.detail


# --- properties -----------------------------------------------------------------------------

_ENTRY = re.compile(
    r"[ \t]*<(\w+):entry_gateway_signed\b.*?</\1:entry_gateway_signed>\n", re.DOTALL
)
_COLUMN = re.compile(r"(<(\w+):column\b[^>]*>\n)(.*?)([ \t]*</\2:column>)", re.DOTALL)


def with_entries(text: str, rewrite: object) -> str:
    """The document with each column's entries (strings) passed through ``rewrite``."""

    def column(m: re.Match[str]) -> str:
        entries = [e.group(0) for e in _ENTRY.finditer(m.group(3))]
        assert "".join(entries) == m.group(3)
        return m.group(1) + "".join(rewrite(entries)) + m.group(4)  # type: ignore[operator]

    return _COLUMN.sub(column, text)


def arrays(profile: DecodedProfile) -> list[list[object]]:
    return [
        [
            s.obis,
            s.unit,
            s.step_us,
            *(a.tolist() for a in (s.times_us, s.values, s.status, s.status_raw, s.captured_us)),
        ]
        for s in profile.series
    ]


FIXTURES = ["ppc_wrapped.xml", "taf10_octet_status.xml", "multi_column_voltage.xml"]


@settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.sampled_from(FIXTURES), st.randoms(use_true_random=False))
def test_any_permutation_of_entries_gives_the_same_readings(name: str, rnd: object) -> None:
    text = (VECTORS / name).read_text()

    def shuffle(entries: list[str]) -> list[str]:
        out = list(entries)
        rnd.shuffle(out)  # type: ignore[attr-defined]
        return out

    shuffled = with_entries(text, shuffle)
    assert sorted(shuffled.splitlines()) == sorted(text.splitlines())
    assert arrays(decode_payload(shuffled.encode(), latest_us=LATEST)) == arrays(decoded(name))


def document(times: list[str], values: list[int]) -> bytes:
    """A minimal real-shape document of one column (test-local, independent of the encoder)."""
    entries = "".join(
        f'<a:entry_gateway_signed id="{k}"><b:value><b:long64>{v}</b:long64></b:value>'
        f"<b:scaler>0</b:scaler><b:unit>30</b:unit><b:status><b:unsigned>0</b:unsigned></b:status>"
        f"<b:capture_time>{t}</b:capture_time><b:smgw_signature>{'ab' * 128}</b:smgw_signature>"
        "</a:entry_gateway_signed>\n"
        for k, (t, v) in enumerate(zip(times, values, strict=True))
    )
    return (
        f'<a:object xmlns:a="{NS["p"]}" xmlns:b="{NS["e"]}" class_id="7" id="x">\n<a:attributes>'
        '<a:capture_objects><a:capture_object id="1"><b:logical_name>0100010800ff.m1.sm</b:logical_name>'
        "<b:class_id>32822</b:class_id></a:capture_object></a:capture_objects><a:buffer><a:simple_data>"
        f'<a:column id="1">\n{entries}</a:column></a:simple_data></a:buffer></a:attributes></a:object>\n'
    ).encode()


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(st.integers(-9, 9), min_size=2, max_size=40))
def test_jitter_within_one_percent_gives_the_exact_times(jitter: list[int]) -> None:
    grid = [
        datetime(2026, 3, 29, 0, 15, tzinfo=UTC) + timedelta(minutes=15 * k)
        for k in range(len(jitter))
    ]
    values = list(range(len(jitter)))
    exact = decode_payload(document([iso(t) for t in grid], values), latest_us=LATEST).series[0]
    late = [iso(t + timedelta(seconds=j)) for t, j in zip(grid, jitter, strict=True)]
    jittered = decode_payload(document(late, values), latest_us=LATEST).series[0]
    assert (
        jittered.times_us.tolist()
        == exact.times_us.tolist()
        == [int(t.timestamp()) * 10**6 for t in grid]
    )
    assert jittered.captured_us.tolist() == [epoch_us(t) for t in late]
    assert jittered.step_us == exact.step_us == QUARTER * 10**6


def signature(seed: int) -> bytes:
    """128 bytes that look like a real signature and key: random, never runs of zeros."""
    head = seed.to_bytes(9, "big")
    return hashlib.sha512(b"sig" + head).digest() + hashlib.sha512(b"key" + head).digest()


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.lists(st.integers(0, 2**64).map(signature), min_size=3, max_size=12),
    st.sampled_from(FIXTURES),
)
def test_no_signature_reaches_the_decoded_profile(signatures: list[bytes], name: str) -> None:
    text = (VECTORS / name).read_text()
    pool = iter(signatures * 100)
    text = re.sub(
        r"(smgw_signature>)[0-9a-fA-F]+(<)",
        lambda m: m.group(1) + next(pool).hex() + m.group(2),
        text,
    )
    profile = decode_payload(text.encode(), latest_us=LATEST)
    haystack = [repr(profile), str(profile), profile.meter]
    for s in profile.series:
        haystack += [s.obis, s.unit, repr(s), str(s)]
        for a in (s.times_us, s.values, s.status, s.status_raw, s.captured_us):
            haystack += [repr(a.tolist()), a.tobytes().hex(), str(a)]
    joined = "\n".join(haystack).lower()
    for sig in signatures:
        for k in range(0, 256, 16):  # no 8-byte piece of any signature
            assert sig.hex()[k : k + 16] not in joined


_BAD_TEXT = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=2**63 - 3, max_value=2**64 + 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["NaN", "inf", "-inf", "NaTZ", "NaT", "1e308", "٣", "１", "1_0", "0x10", "", " ", "9" * 401]
    ),
    st.text(alphabet="0123456789+-.eEZT: ", max_size=30),
    st.builds(
        lambda y, mo, d, h: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:00:00Z",
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
    ),
)
_FIELDS = [
    ("ppc_wrapped.xml", f) for f in ("long64", "scaler", "unit", "unsigned", "capture_time")
] + [("taf10_octet_status.xml", "octet-string"), ("taf10_octet_status.xml", "long64")]


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    st.sampled_from(_FIELDS),
    _BAD_TEXT | st.text(alphabet="0123456789abcdefABCDEF", max_size=20),
    st.integers(0, 23),
)
def test_bad_numbers_are_payload_errors_never_crashes(
    where: tuple[str, str], text: str, which: int
) -> None:
    name, field = where
    doc = (VECTORS / name).read_text()
    spots = [m.span(1) for m in re.finditer(rf"<ns2:{field}>([^<]*)</ns2:{field}>", doc)]
    a, b = spots[which % len(spots)]
    mutated = doc[:a] + text.replace("<", "").replace("&", "") + doc[b:]
    try:
        profile = decode_payload(mutated.encode(), latest_us=LATEST)
    except PayloadError as exc:
        assert exc.category == "payload-invalid"
        quoted = text.strip()
        if len(quoted) >= 6 and quoted not in "1-0:1.8.0 2000-01-01":
            assert quoted not in exc.detail
        return
    (s,) = profile.series
    assert np.isfinite(s.values).all() and len(s) == len(spots)
    assert (s.status <= ReadingStatus.UNKNOWN).all()
    assert (np.diff(s.times_us) > 0).all()

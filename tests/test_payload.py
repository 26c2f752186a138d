"""Payload decoding: the decoders' seam, K461 round trips (simple and real style), zlib, hostile
XML, bad numbers, the status tables, capture period and time attribution, fuzzing."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimeter.errors import PayloadError, PayloadUnsupported
from minimeter.obis import scale
from minimeter.payload import DECODERS, PayloadDecoder, decode_payload, register_decoder
from minimeter.payload.k461 import NS_EXTENSION, NS_PROFILE, Series, decode_profile, encode_profile
from minimeter.payload.status import FNN_RULES, PPC_STATUS, fnn_octets, fnn_status, ppc_status
from minimeter.payload.timing import STANDARD_PERIODS_US, attribute, detect_period
from minimeter.readings import ReadingStatus
from minimeter.synth.generate import NOT_K461, XML_BOMB

T0 = datetime(2026, 1, 5, tzinfo=UTC)
US = 1_000_000
LATEST = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * US


def us(t: datetime) -> int:
    return int(t.timestamp()) * US


def series(obis: str, values: list[int], scaler: int = 0, unit: int = 30, step: int = 15) -> Series:
    times = [T0 + timedelta(minutes=step * (i + 1)) for i in range(len(values))]
    return Series(obis, scaler, unit, times, values)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50),
    st.integers(-6, 6),
    st.sampled_from([27, 30, 33, 35]),
    st.booleans(),
    st.sampled_from(["simple", "real"]),
)
def test_round_trip(values: list[int], scaler: int, unit: int, compress: bool, style: str) -> None:
    xml = encode_profile("1EMH0012345678", [series("1-0:1.8.0", values, scaler, unit)], style=style)
    payload = zlib.compress(xml) if compress else xml
    for profile in (decode_profile(payload), decode_payload(payload, latest_us=LATEST)):
        assert profile.meter == "1EMH0012345678"
        (s,) = profile.series
        assert s.obis == "1-0:1.8.0"
        assert s.values.tolist() == [scale(v, scaler) for v in values]
        assert s.step_us == (900 * US if len(values) > 1 else 0)
        assert s.times_us[0] == us(T0 + timedelta(minutes=15))
        assert (s.status == ReadingStatus.VALID).all() and (s.status_raw == 0).all()


def test_a_single_reading_has_no_period_unless_another_series_tells() -> None:
    (s,) = decode_profile(encode_profile("M1", [series("1-0:1.8.0", [5])])).series
    assert s.step_us == 0 and s.times_us.tolist() == s.captured_us.tolist()
    grid = [T0 + timedelta(minutes=15)]
    late = Series("1-0:1.7.0", 0, 27, grid, [7], None, [grid[0] + timedelta(seconds=4)])
    profile = decode_profile(encode_profile("M1", [series("1-0:1.8.0", [1, 2, 3]), late]))
    assert profile.series[1].step_us == 900 * US
    assert profile.series[1].times_us.tolist() == [us(T0 + timedelta(minutes=15))]
    assert profile.series[1].captured_us.tolist() == [us(T0 + timedelta(minutes=15, seconds=4))]


def test_real_style_round_trip_with_statuses_and_late_times() -> None:
    n = 8
    grid = [T0 + timedelta(minutes=15 * (i + 1)) for i in range(n)]
    sent = [t + timedelta(seconds=i % 6) for i, t in enumerate(grid)]
    statuses = [0, 0, 3, 0, 4, 0, 1, 2]
    s = Series("1-0:1.8.0", 0, 30, grid, list(range(100, 100 + n)), statuses, sent)
    xml = encode_profile("1lgz0072999211", [s], style="real")
    assert b"<ns2:unsigned>3</ns2:unsigned>" in xml and b"32822" in xml
    assert xml.index(b"2026-01-05T02:00:01Z") < xml.index(b"2026-01-05T00:15:00Z")  # newest first
    (d,) = decode_payload(xml, latest_us=LATEST).series
    assert d.times_us.tolist() == [us(t) for t in grid]
    assert d.captured_us.tolist() == [us(t) for t in sent]
    assert d.status_raw.tolist() == statuses
    assert [ReadingStatus(c) for c in d.status] == [
        ReadingStatus.VALID,
        ReadingStatus.VALID,
        ReadingStatus.NOT_PRESENT,
        ReadingStatus.VALID,
        ReadingStatus.INVALID,
        ReadingStatus.VALID,
        ReadingStatus.WARNING,
        ReadingStatus.INVALID,
    ]


def test_real_style_octet_string_status() -> None:
    words = [
        int.from_bytes(bytes.fromhex(w), "little") for w in ("A000000020000000", "A084000020000000")
    ]
    s = Series("1-0:1.8.0", 0, 30, [T0 + timedelta(minutes=15 * k) for k in (1, 2)], [1, 2], words)
    xml = encode_profile("m1", [s], style="real", status_form="octet-string")
    assert b"<ns2:octet-string>A084000020000000</ns2:octet-string>" in xml
    (d,) = decode_profile(xml).series
    assert d.status_raw.tolist() == words
    assert d.status.tolist() == [ReadingStatus.VALID, ReadingStatus.INVALID]


def test_several_columns_and_units() -> None:
    profile = decode_profile(
        encode_profile(
            "1ABC0000000001",
            [series("1-0:1.8.0", [1, 2, 3]), series("1-0:32.7.0", [2301, 2299, 2310], -1, 35)],
        )
    )
    assert [s.unit for s in profile.series] == ["Wh", "V"]
    assert profile.series[1].values.tolist() == [230.1, 229.9, 231.0]
    assert profile.readings == 6


@pytest.mark.parametrize(
    "payload,reason",
    [
        (XML_BOMB, "DTD"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            "DTD",
        ),
        (b"<x>&undefined;</x>", "well-formed"),
        ('<?xml version="1.0" encoding="UTF-16"?><x/>'.encode("utf-16"), "ASCII-compatible"),
        (b"not xml at all", "well-formed"),
        (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<x/>', "well-formed"),
        (b"", "well-formed"),
        (zlib.compress(b"<a>" * 10)[:-4], "zlib"),
        (zlib.compress(b"<a/>") + b"garbage", "trailing"),
        (zlib.compress(b"\0" * (40 * 1024 * 1024)), "exceeds"),
    ],
)
def test_hostile_or_broken_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_profile(payload)
    assert reason in info.value.detail and info.value.category == "payload-invalid"


def test_nesting_limit_when_asked() -> None:
    deep = f'<p:object xmlns:p="{NS_PROFILE}" class_id="7">'.encode() + b"<a>" * 40 + b"</a>" * 40
    with pytest.raises(PayloadError, match="deeper"):
        decode_profile(deep + b"</p:object>", max_depth=12)


@pytest.mark.parametrize(
    "payload,reason",
    [
        (NOT_K461, "no known format"),
        (b"<x/>", "no known format"),
        (b'<?xml version="1.0"?>\n<!-- a comment -->\n<r xmlns="urn:other"/>', "no known format"),
        (b'<UsagePoints xmlns="http://vde.de/AR_2418-6.xsd"/>', "VDE-AR-E 2418-6"),
        (b'<v:UsagePoints xmlns:v="http://vde.de/AR_2418-6.xsd"/>', "VDE-AR-E 2418-6"),
        (b'<k:container xmlns:k="urn:k461-dke-de:kaf_lmn_container-1"/>', "K461 document"),
        (b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000004.426*kWh)\r\n!ABCD\r\n", "DSMR"),
        (b"Too many records (more than 1000). Please narrow the query.\n", "plain text"),
        (zlib.compress(b"Too many records\n"), "plain text"),
        (b"\x00\x01\x02binary", "no known format"),
    ],
)
def test_the_seam_refuses_other_formats_as_unsupported(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadUnsupported) as info:
        decode_payload(payload, latest_us=LATEST)
    assert info.value.category == "payload-unsupported" and reason in info.value.detail
    assert isinstance(info.value, PayloadError)  # every payload-error handler dead-letters it


@pytest.mark.parametrize(
    "payload,reason",
    [
        (XML_BOMB, "DTD"),
        (b"", "empty"),
        (b"  \n", "empty"),
        (f'<p:object xmlns:p="{NS_PROFILE}" class_id="7"><p:attributes>'.encode(), "well-formed"),
        (f'<p:object xmlns:p="{NS_PROFILE}"/>'.encode(), "class_id"),
        (zlib.compress(b"<a/>")[:-3], "zlib"),
    ],
)
def test_the_seam_refuses_broken_k461_and_hostile_xml_as_invalid(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(payload, latest_us=LATEST)
    assert info.value.category == "payload-invalid" and reason in info.value.detail


def test_k461_of_another_class_is_unsupported() -> None:
    with pytest.raises(PayloadUnsupported, match="another class"):
        decode_payload(
            f'<p:object xmlns:p="{NS_PROFILE}" class_id="3"/>'.encode(), latest_us=LATEST
        )


def test_decoders_register_and_content_type_hints() -> None:
    calls: list[bytes] = []

    def decode(payload: bytes, *, latest_us: int, max_readings: int) -> object:
        calls.append(payload)
        return decode_profile(encode_profile("M9", [series("1-0:1.8.0", [1, 2])]))

    register_decoder(
        PayloadDecoder(
            "test-format",
            "a test format",
            lambda data: data.startswith(b"TEST"),
            decode,  # type: ignore[arg-type]
            ("application/x-test",),
        )
    )
    try:
        assert decode_payload(b"TEST 1", latest_us=LATEST).meter == "M9"
        assert decode_payload(b"other", latest_us=LATEST, content_type="application/x-test; v=1")
        assert calls == [b"TEST 1", b"other"]
        xml = encode_profile("M1", [series("1-0:1.8.0", [1, 2])])
        assert decode_payload(xml, latest_us=LATEST, content_type="k461").meter == "M1"
        assert decode_payload(xml, latest_us=LATEST, content_type="text/unknown").meter == "M1"
    finally:
        DECODERS.pop("test-format")
    assert list(DECODERS)[0] == "k461"


def _profile(body: str, root: str = "") -> bytes:
    return (
        f'<ns1:object xmlns:ns1="{NS_PROFILE}" xmlns:ns2="{NS_EXTENSION}" class_id="7">{root}'
        f"<ns1:attributes>{body}</ns1:attributes></ns1:object>"
    ).encode()


def _capture(i: int, name: str) -> str:
    return f'<ns1:capture_object id="{i}"><ns2:logical_name>{name}</ns2:logical_name></ns1:capture_object>'


def _entry(
    t: str = "2026-01-05T00:15:00Z",
    v: str = "1",
    scaler: str = "0",
    unit: str = "30",
    status: str = "0",
    extra: str = "",
) -> str:
    return (
        f"<ns1:entry_gateway_signed><ns2:capture_time>{t}</ns2:capture_time><ns2:value><ns2:long64>{v}"
        f"</ns2:long64></ns2:value><ns2:scaler>{scaler}</ns2:scaler><ns2:unit>{unit}</ns2:unit>"
        f"<ns2:status>{status}</ns2:status>{extra}</ns1:entry_gateway_signed>"
    )


def _doc(captures: list[str], columns: dict[str, list[str]], root: str = "") -> bytes:
    body = (
        f"<ns1:capture_objects>{''.join(captures)}</ns1:capture_objects><ns1:buffer><ns1:simple_data>"
        + "".join(f'<ns1:column id="{i}">{"".join(e)}</ns1:column>' for i, e in columns.items())
        + "</ns1:simple_data></ns1:buffer>"
    )
    return _profile(body, root)


M1 = _capture(1, "0100010800ff.M1.sm")
SIGNATURE = f"<ns2:smgw_signature>{'ab' * 128}</ns2:smgw_signature>"
T2 = "2026-01-05T00:30:00Z"


@pytest.mark.parametrize(
    "captures,columns,reason",
    [
        (
            [M1, _capture(2, "0100020800ff.M2.sm")],
            {"1": [_entry()], "2": [_entry()]},
            "more than one meter",
        ),
        ([_capture(1, "zz.M1.sm")], {"1": [_entry()]}, "logical_name"),
        ([_capture(1, "0100010800fe.M1.sm")], {"1": [_entry()]}, "invalid OBIS"),
        ([_capture(1, "0100010800ff-M1")], {"1": [_entry()]}, "logical_name"),
        ([M1], {"1": [_entry(), _entry()]}, "attributed to the same time"),
        (
            [M1],
            {
                "1": [
                    _entry(),
                    *(_entry(t=f"2026-01-05T00:{m}Z") for m in ("15:07", "30:00", "45:00")),
                ]
            },
            "attributed to the same time",
        ),
        ([M1], {"1": [_entry(), _entry(t=T2, unit="27")]}, "more than one unit"),
        ([M1], {"1": [_entry(), _entry(t=T2, scaler="1")]}, "more than one unit or scaler"),
        ([], {}, "no capture objects"),
        ([M1], {}, "no buffer column"),
        ([M1], {"1": [_entry()], "2": [_entry()]}, "no capture object"),
        ([M1, _capture(1, "0100020800ff.M1.sm")], {"1": [_entry()]}, "reuses"),
        ([M1, _capture(2, "0100010800ff.M1.sm")], {"1": [_entry()], "2": [_entry()]}, "twice"),
        ([M1], {"1": [_entry(extra=SIGNATURE + "<ns2:unit>30</ns2:unit>")]}, "lacks or repeats"),
        ([M1], {"1": [_entry(extra=SIGNATURE + "<ns2:other/>")]}, "lacks or repeats"),
        ([M1], {"1": [_entry(extra=SIGNATURE * 2)]}, "lacks or repeats"),
        ([M1], {"1": [_entry(t="")]}, "empty"),
        ([M1], {"1": [_entry(v=" ")]}, "empty"),
        (
            [M1],
            {"1": [_entry(), _entry(t=T2, status="<ns2:unsigned>0</ns2:unsigned>")]},
            "empty status",
        ),
        (
            [M1],
            {"1": [_entry(status="<ns2:unsigned>0</ns2:unsigned>"), _entry(t=T2)]},
            "status forms",
        ),
        ([M1], {"1": [_entry(status="<ns2:long>0</ns2:long>")]}, "status forms"),
    ],
)
def test_malformed_profiles(
    captures: list[str], columns: dict[str, list[str]], reason: str
) -> None:
    with pytest.raises(PayloadError) as info:
        decode_profile(_doc(captures, columns))
    assert reason in info.value.detail, info.value.detail
    assert info.value.category == "payload-invalid"


def test_profile_logical_name_must_name_the_same_meter() -> None:
    ok = decode_profile(
        _doc([M1], {"1": [_entry()]}, "<ns1:logical_name>01005e31803c.m1.sm</ns1:logical_name>")
    )
    assert ok.meter == "M1"  # as written in the capture objects; compared case-insensitively
    with pytest.raises(PayloadError, match="another meter"):
        decode_profile(
            _doc([M1], {"1": [_entry()]}, "<ns1:logical_name>01005e31803c.M2.sm</ns1:logical_name>")
        )


@pytest.mark.parametrize(
    "field,text,reason",
    [
        ("v", str(2**63), "does not fit long64"),
        ("v", str(-(2**63) - 1), "does not fit long64"),
        ("v", "9" * 401, "too many digits"),
        ("v", "1.5", "not an integer"),
        ("v", "1e3", "not an integer"),
        ("v", "1_000", "not an integer"),
        ("v", "\uff11", "not an integer"),  # a full-width digit: int() would take it
        ("v", "NaN", "not an integer"),
        ("v", "inf", "not an integer"),
        ("scaler", "10", "out of range"),
        ("scaler", "-10", "out of range"),
        ("scaler", "9" * 5000, "too many digits"),
        ("scaler", "x", "not an integer"),
        ("unit", "30.0", "not an integer"),
        ("unit", "256", "not a DLMS unit code"),
        ("unit", "-1", "not a DLMS unit code"),
        ("status", str(2**64), "does not fit 64 bits"),
        ("status", "-1", "not a non-negative integer"),
        ("status", "0x1", "not a non-negative integer"),
        ("t", "NaTZ", "NaT"),
        ("t", "NaT", "NaT"),
        ("t", "2026-01-05T00:15:00", "not UTC"),
        ("t", "2026-01-05T00:15:00+01:00", "not UTC"),
        ("t", "nowZ", "not YYYY-MM-DDThh:mm:ssZ"),
        ("t", "2026-01-05Z", "not YYYY-MM-DDThh:mm:ssZ"),
        ("t", "2026-01-05 00:15:00Z", "malformed"),
        ("t", "2026-02-30T00:15:00Z", "out of range"),
        ("t", "2026-01-05T24:00:00Z", "out of range"),
        ("t", "1999-12-31T23:45:00Z", "before 2000-01-01"),
        ("t", "9999-12-31T23:45:00Z", "after the latest plausible time"),
        ("t", "+10000-01-01T00:00:00Z", "not YYYY-MM-DDThh:mm:ssZ"),
    ],
)
def test_bad_numbers_are_payload_errors(field: str, text: str, reason: str) -> None:
    good = {"t": "2026-01-05T00:15:00Z", "v": "1", "scaler": "0", "unit": "30", "status": "0"}
    entry = _entry(**{**good, field: text})
    with pytest.raises(PayloadError) as info:
        decode_payload(_doc([M1], {"1": [entry]}), latest_us=LATEST)
    assert reason in info.value.detail, info.value.detail
    assert info.value.category == "payload-invalid"
    if len(text) >= 4:
        assert text not in info.value.detail and text not in str(info.value)


def test_more_readings_than_allowed_are_refused_before_decoding() -> None:
    xml = encode_profile("M1", [series("1-0:1.8.0", list(range(10)))], style="real")
    assert len(decode_payload(xml, latest_us=LATEST, max_readings=10).series[0]) == 10
    with pytest.raises(PayloadError, match="more than 9 readings"):
        decode_payload(xml, latest_us=LATEST, max_readings=9)
    with pytest.raises(PayloadError, match="more than 9 readings"):
        decode_profile(zlib.compress(xml), max_readings=9)


def test_capture_times_after_the_latest_bound_are_refused() -> None:
    xml = encode_profile("M1", [series("1-0:1.8.0", [1, 2, 3])])
    last = us(T0 + timedelta(minutes=45))
    assert decode_payload(xml, latest_us=last).readings == 3
    with pytest.raises(PayloadError, match="latest plausible"):
        decode_payload(xml, latest_us=last - 1)


def test_signatures_are_never_read() -> None:
    xml = encode_profile(
        "m1", [series("1-0:1.8.0", [1, 2, 3])], style="real", gateway_key=b"\xab" * 64
    )
    assert xml.count(b"ab" * 64) == 3
    profile = decode_payload(xml, latest_us=LATEST)
    haystack = repr(profile) + "".join(
        repr(a.tolist()) + a.tobytes().hex()
        for s in profile.series
        for a in (s.times_us, s.values, s.status, s.status_raw, s.captured_us)
    )
    assert "abab" not in haystack


# --- status tables --------------------------------------------------------------------------


def test_ppc_status_table() -> None:
    raw = np.array([0, 1, 2, 3, 4, 5, 2**64 - 1], dtype=np.uint64)
    assert [ReadingStatus(c) for c in ppc_status(raw)] == [
        ReadingStatus.VALID,
        ReadingStatus.WARNING,
        ReadingStatus.INVALID,
        ReadingStatus.NOT_PRESENT,
        ReadingStatus.INVALID,
        ReadingStatus.UNKNOWN,
        ReadingStatus.UNKNOWN,
    ]
    assert set(PPC_STATUS) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    "word,expected",
    [  # PTB TRuDI StatusFNN tests: the words and their PTB status
        ("A000000020000000", ReadingStatus.VALID),
        ("A084000020000000", ReadingStatus.INVALID),  # fatal error (PTB 4)
        ("A004000020000000", ReadingStatus.NOT_PRESENT),  # temporary error (PTB 2)
        ("A008000020000000", ReadingStatus.WARNING),  # warning (PTB 1)
        ("A002000020000000", ReadingStatus.INVALID),  # critical temporary error (PTB 3)
        ("A040000020000000", ReadingStatus.TIME_INVALID),  # SMGW bit 9: system time invalid
        ("A000000020004000", ReadingStatus.INVALID),  # meter fatal error (BZ bit 17)
        ("A000000020400000", ReadingStatus.INVALID),  # magnetic influence (BZ bit 9)
        ("E000000020000000", ReadingStatus.VALID),  # SMGW bit 1: informational only
        ("0000000000000000", ReadingStatus.UNKNOWN),  # no identification bits
        ("A000000000000000", ReadingStatus.UNKNOWN),
    ],
)
def test_fnn_status_words(word: str, expected: ReadingStatus) -> None:
    raw = np.array([int.from_bytes(bytes.fromhex(word), "little")], dtype=np.uint64)
    assert ReadingStatus(int(fnn_status(raw)[0])) == expected


def test_fnn_octets_inverts_the_bit_order() -> None:
    assert fnn_octets(0x2105, 0x4) == "A084000020000000"  # TRuDI: StatusFNN(0x210500000004)
    assert [r.status for r in FNN_RULES][0] == ReadingStatus.INVALID


# --- capture period and attribution ---------------------------------------------------------


def test_period_detection() -> None:
    def spaced(*seconds: int) -> np.ndarray:
        return np.cumsum([0, *seconds]).astype(np.int64) * US

    assert detect_period(spaced(896, 900, 904, 901)) == 900 * US
    assert detect_period(spaced(900, 900, 1800, 1800, 1800)) == 1800 * US
    assert detect_period(spaced(900, 1800)) == 900 * US  # a tie: the shorter
    assert detect_period(spaced(1200, 1200)) == 0  # 20 minutes is no standard period
    assert detect_period(spaced(918)) == 900 * US and detect_period(spaced(882)) == 900 * US
    assert detect_period(spaced(919)) == 0 and detect_period(spaced(881)) == 0  # beyond +-2 %
    assert detect_period(spaced(86400 - 1700)) == 86400 * US
    usable = np.array([True, True, False, True])
    assert detect_period(spaced(60, 900, 900), usable) == 60 * US
    assert detect_period(spaced(60, 900, 900)) == 900 * US
    assert detect_period(np.zeros(1, dtype=np.int64)) == 0
    assert set(STANDARD_PERIODS_US) == {m * 60 * US for m in (1, 5, 10, 15, 30, 60, 1440)}


def test_attribution_within_one_percent() -> None:
    base = us(T0)
    times = np.array(
        [base + 9 * US, base - 9 * US, base + 10 * US, base + 899 * US], dtype=np.int64
    )
    assert attribute(times, 900 * US).tolist() == [base, base, base + 10 * US, base + 900 * US]
    assert attribute(times, 0).tolist() == times.tolist()
    day = 86400 * US
    assert attribute(np.array([base + 14 * 60 * US]), day).tolist() == [base]  # 1 % = 14.4 min
    assert attribute(np.array([base + 15 * 60 * US]), day).tolist() == [base + 15 * 60 * US]


# --- fuzzing --------------------------------------------------------------------------------


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_payload_errors(blob: bytes) -> None:
    for decode in (lambda b: decode_profile(b), lambda b: decode_payload(b, latest_us=LATEST)):
        try:
            decode(blob)
        except PayloadError:
            pass


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.data(), st.sampled_from(["simple", "real"]))
def test_mutated_profiles_raise_only_payload_errors(data: st.DataObject, style: str) -> None:
    xml = bytearray(
        encode_profile(
            "1EMH0012345678",
            [series("1-0:1.8.0", [5, 6, 7]), series("1-0:1.7.0", [1, 2, 3], 0, 27)],
            style=style,
        )
    )
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(xml) - 1))
        xml[pos] = data.draw(st.integers(0, 255))
    try:
        profile = decode_payload(bytes(xml), latest_us=LATEST)
    except PayloadError:
        return
    assert all(np.isfinite(s.values).all() for s in profile.series)
    assert all((s.status <= ReadingStatus.UNKNOWN).all() for s in profile.series)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**6), 10**6), max_size=40),
    st.integers(-9, 9),
)
def test_vectorised_scaling_equals_scale_value_by_value(raw: list[int], scaler: int) -> None:
    from minimeter.payload.k461 import _scaled

    expected = np.array([scale(v, scaler) for v in raw], dtype=np.float64)
    assert np.array_equal(_scaled(raw, scaler), expected)


# --- fast paths of the K461 decoder against the general ones ---------------------------------

_TIME_TEXT = st.builds(
    lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
    st.integers(0, 9999),
    st.integers(0, 19),
    st.integers(0, 39),
    st.integers(0, 29),
    st.integers(0, 69),
    st.integers(0, 69),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        _TIME_TEXT
        | st.sampled_from(
            ["2026-01-05T00:15:00", "2026-01-05 00:15:00Z", "2026-01-05T00:15:00.5Z", "NaTZ"]
        )
        | st.text(alphabet="0123456789-T:Z \n\uff11", min_size=19, max_size=21),
        min_size=1,
        max_size=8,
    )
)
def test_fast_capture_times_equal_the_general_path(texts: list[str]) -> None:
    """``_fast_times`` takes exactly the texts of the plain form and converts them as the
    general path (``_field`` + ``_times``) does, refusals included."""
    from minimeter.payload.k461 import _TIMES, _fast_times, _Fields, _plain_times

    fields = _Fields.__new__(_Fields)
    fields.total, fields.bounds, fields.obis_by_column = len(texts), [0, len(texts)], ["1-0:1.8.0"]

    def outcome(f: object) -> object:
        try:
            result = f()  # type: ignore[operator]
        except PayloadError as e:
            return ("refused", e.detail)
        return None if result is None else result.tolist()  # type: ignore[attr-defined]

    fast = outcome(lambda: _fast_times(texts))
    general = outcome(lambda: fields._times(fields._field(texts, "capture_time", _TIMES)))
    if _plain_times(texts):
        assert fast == general
    else:
        assert fast is None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from([0, 1, 3, 8, 9, 10, 450, 900, 904, 1800, 3600]), st.booleans()
            ),
            min_size=0,
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_uniform_period_equals_detect_periods(columns: list[list[tuple[int, bool]]]) -> None:
    """Where ``_uniform_period`` finds one period for all columns, ``detect_periods`` finds
    that period for every column."""
    from minimeter.payload.k461 import _uniform_period
    from minimeter.payload.timing import detect_periods

    captured, usable, groups, bounds = [], [], [], [0]
    for g, column in enumerate(columns):
        t = us(T0)
        for spacing, ok in column:
            t += spacing * US
            captured.append(t)
            usable.append(ok)
            groups.append(g)
        bounds.append(len(captured))
    times = np.array(captured, dtype=np.int64)
    mask = np.array(usable, dtype=bool)
    found = _uniform_period(times, bounds, mask)
    expected = detect_periods(times, np.array(groups, dtype=np.int64), len(columns), mask)
    if found:
        assert expected.tolist() == [found] * len(columns)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**6), 10**6), max_size=8),
            st.integers(-9, 9),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_scaling_all_columns_at_once_equals_column_by_column(
    columns: list[tuple[list[int], int]],
) -> None:
    from minimeter.payload.k461 import _scaled, _scaled_columns

    values = np.array([v for vs, _ in columns for v in vs], dtype=np.int64)
    bounds = [0]
    for vs, _ in columns:
        bounds.append(bounds[-1] + len(vs))
    scalers = [s for _, s in columns]
    got = _scaled_columns(values, bounds, scalers)
    for part, (vs, s) in zip(got, columns, strict=True):
        assert part.dtype == np.float64
        assert np.array_equal(part, _scaled(vs, s))

"""K461 payload decoding: round trips, zlib, hostile XML, fuzzing."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimeter.errors import PayloadError
from minimeter.obis import scale
from minimeter.payload.k461 import NS_EXTENSION, NS_PROFILE, Series, decode_profile, encode_profile
from minimeter.synth.generate import NOT_K461, XML_BOMB

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def series(obis: str, values: list[int], scaler: int = 0, unit: int = 30, step: int = 15) -> Series:
    times = [T0 + timedelta(minutes=step * (i + 1)) for i in range(len(values))]
    return Series(obis, scaler, unit, times, values)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50),
    st.integers(-6, 6),
    st.sampled_from([27, 30, 33, 35]),
    st.booleans(),
)
def test_round_trip(values: list[int], scaler: int, unit: int, compress: bool) -> None:
    xml = encode_profile("1EMH0012345678", [series("1-0:1.8.0", values, scaler, unit)])
    profile = decode_profile(zlib.compress(xml) if compress else xml)
    assert profile.meter == "1EMH0012345678"
    (s,) = profile.series
    assert s.obis == "1-0:1.8.0"
    assert s.values.tolist() == [scale(v, scaler) for v in values]
    assert s.step_us == (900_000_000 if len(values) > 1 else 0)
    assert s.times_us[0] == int((T0 + timedelta(minutes=15)).timestamp() * 1e6)


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
        (NOT_K461, "not a K461"),
        ('<?xml version="1.0" encoding="UTF-16"?><x/>'.encode("utf-16"), "ASCII-compatible"),
        (b"<a>" * 40 + b"</a>" * 40, "deeper"),
        (b"not xml at all", "well-formed"),
        (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<x/>', "well-formed"),
        (b"", "well-formed"),
        (zlib.compress(b"<a>" * 10)[:-4], "zlib"),
        (zlib.compress(b"\0" * (40 * 1024 * 1024)), "exceeds"),
    ],
)
def test_hostile_or_wrong_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_profile(payload)
    assert reason in info.value.detail and info.value.category == "payload-invalid"


def _profile(body: str) -> bytes:
    return (
        f'<ns1:object xmlns:ns1="{NS_PROFILE}" xmlns:ns2="{NS_EXTENSION}" class_id="7">'
        f"<ns1:attributes>{body}</ns1:attributes></ns1:object>"
    ).encode()


def _capture(i: int, name: str) -> str:
    return f'<ns1:capture_object id="{i}"><ns2:logical_name>{name}</ns2:logical_name></ns1:capture_object>'


def _entry(
    t: str = "2026-01-05T00:15:00Z", v: str = "1", scaler: str = "0", unit: str = "30"
) -> str:
    return (
        f"<ns1:entry_gateway_signed><ns2:capture_time>{t}</ns2:capture_time><ns2:value><ns2:long64>{v}"
        f"</ns2:long64></ns2:value><ns2:scaler>{scaler}</ns2:scaler><ns2:unit>{unit}</ns2:unit>"
        "<ns2:status>0</ns2:status></ns1:entry_gateway_signed>"
    )


@pytest.mark.parametrize(
    "captures,entries,reason",
    [
        (
            [_capture(1, "0100010800ff.M1.sm"), _capture(2, "0100020800ff.M2.sm")],
            [_entry()],
            "more than one meter",
        ),
        ([_capture(1, "zz.M1.sm")], [_entry()], "invalid OBIS"),
        ([_capture(1, "0100010800ff-M1")], [_entry()], "logical_name"),
        ([_capture(1, "0100010800ff.M1.sm")], [_entry(t="yesterday")], "invalid time"),
        ([_capture(1, "0100010800ff.M1.sm")], [_entry(t="2026-01-05T00:15:00")], "invalid time"),
        ([_capture(1, "0100010800ff.M1.sm")], [_entry(v="1.5")], "invalid"),
        ([_capture(1, "0100010800ff.M1.sm")], [_entry(scaler="40")], "out of range"),
        ([_capture(1, "0100010800ff.M1.sm")], [_entry(), _entry()], "repeat a capture time"),
        (
            [_capture(1, "0100010800ff.M1.sm")],
            [_entry(), _entry(t="2026-01-05T00:30:00Z", unit="27")],
            "more than one unit",
        ),
        ([], [], "no capture objects"),
    ],
)
def test_malformed_profiles(captures: list[str], entries: list[str], reason: str) -> None:
    body = (
        f"<ns1:capture_objects>{''.join(captures)}</ns1:capture_objects><ns1:buffer><ns1:simple_data>"
        f'<ns1:column id="1">{"".join(entries)}</ns1:column>'
        f'<ns1:column id="2">{"".join(entries)}</ns1:column></ns1:simple_data></ns1:buffer>'
    )
    with pytest.raises(PayloadError) as info:
        decode_profile(_profile(body))
    assert reason in info.value.detail, info.value.detail


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_payload_errors(blob: bytes) -> None:
    try:
        decode_profile(blob)
    except PayloadError:
        pass


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.data())
def test_mutated_profiles_raise_only_payload_errors(data: st.DataObject) -> None:
    xml = bytearray(
        encode_profile(
            "1EMH0012345678",
            [series("1-0:1.8.0", [5, 6, 7]), series("1-0:1.7.0", [1, 2, 3], 0, 27)],
        )
    )
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(xml) - 1))
        xml[pos] = data.draw(st.integers(0, 255))
    try:
        profile = decode_profile(bytes(xml))
    except PayloadError:
        return
    assert all(np.isfinite(s.values).all() for s in profile.series)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**6), 10**6), max_size=40),
    st.integers(-9, 9),
)
def test_vectorised_scaling_equals_scale_value_by_value(raw: list[int], scaler: int) -> None:
    from minimeter.payload.k461 import _scaled

    expected = np.array([scale(v, scaler) for v in raw], dtype=np.float64)
    assert np.array_equal(_scaled(raw, scaler), expected)

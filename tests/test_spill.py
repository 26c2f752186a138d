"""The spill between the decode and the policy stage: exact round trip, sealed, fails closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimeter.errors import SpillError
from minimeter.readings import COLUMNS, DecodedProfile, DecodedSeries
from minimeter.spill import Spill, decode_profile_blob, encode_profile, remove_spill, spill_key

SECRET = bytes(range(32))

series = st.builds(
    lambda obis, unit, step, rows: DecodedSeries(
        obis,
        unit,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] % 6 for r in rows], dtype=np.uint8),
        np.array([r[2] for r in rows], dtype=np.uint64),
        np.array([r[0] - r[3] for r in rows], dtype=np.int64),
        step,
    ),
    st.text(min_size=1, max_size=20),
    st.text(max_size=8),
    st.integers(0, 2**40),
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(0, 2**64 - 1),
            st.integers(0, 10**7),
        ),
        max_size=30,
    ),
)
profiles = st.builds(
    DecodedProfile,
    st.text(max_size=30),
    st.lists(series, max_size=5).map(tuple),
    st.text(max_size=20),
)


def same(a: DecodedProfile, b: DecodedProfile) -> bool:
    if a.meter != b.meter or a.source != b.source or len(a.series) != len(b.series):
        return False
    for x, y in zip(a.series, b.series, strict=True):
        if (x.obis, x.unit, x.step_us) != (y.obis, y.unit, y.step_us):
            return False
        for name, _ in COLUMNS:
            u, v = getattr(x, name), getattr(y, name)
            if u.dtype != v.dtype or not np.array_equal(u, v, equal_nan=name == "values"):
                return False
    return True


@settings(max_examples=150, deadline=None)
@given(profiles)
def test_encoding_round_trips_exactly(profile: DecodedProfile) -> None:
    assert same(decode_profile_blob(encode_profile(profile)), profile)


@settings(max_examples=150, deadline=None)
@given(profiles, st.data())
def test_a_cut_or_grown_encoding_is_refused(profile: DecodedProfile, data: st.DataObject) -> None:
    blob = encode_profile(profile)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(SpillError):
        decode_profile_blob(blob[:cut])
    with pytest.raises(SpillError):
        decode_profile_blob(blob + b"\0" * data.draw(st.integers(1, 30)))


def sample(n: int) -> list[DecodedProfile]:
    out = []
    for i in range(n):
        t = np.arange(96, dtype=np.int64) * 900_000_000 + i
        out.append(
            DecodedProfile(
                f"1LGZ{i:010d}",
                (DecodedSeries.measured("1-0:1.8.0", "Wh", t, t * 0.5, 900_000_000),),
            )
        )
    return out


def test_profiles_come_back_by_reference(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill", spill_key(SECRET, "run-1"))
    first, second = sample(5), sample(3)
    refs = spill.put(first) + spill.put(second)
    assert len({name for name, _, _ in refs}) == 2  # one file per put
    for ref, profile in sorted(zip(refs, first + second, strict=True), reverse=True):
        assert same(spill.take(ref), profile)
    # nothing readable at rest: no meter id, no value in the files
    for f in (tmp_path / "spill").iterdir():
        assert b"1LGZ" not in f.read_bytes() and b"1-0:1.8.0" not in f.read_bytes()


def test_altered_moved_or_foreign_segments_are_refused(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill", spill_key(SECRET, "run-1"))
    (a, b) = spill.put(sample(2))
    path = tmp_path / "spill" / a[0]
    data = bytearray(path.read_bytes())
    data[a[1] + a[2] // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SpillError, match="authentication"):
        spill.take(a)
    with pytest.raises(SpillError, match="authentication"):  # b's bytes read at a's place
        spill.take((b[0], a[1], b[2]))
    other_run = Spill(tmp_path / "spill", spill_key(SECRET, "run-2"))
    with pytest.raises(SpillError, match="authentication"):
        other_run.take(b)
    with pytest.raises(SpillError, match="malformed"):
        spill.take(("../" + b[0][3:], 0, 10))
    with pytest.raises(SpillError, match="cannot be read"):
        spill.take(("0" * 32, 0, 10))
    assert SpillError("x").category == "spill-invalid"


def test_remove_spill_deletes_the_run_directory(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "work" / "profiles", spill_key(SECRET, "r1"))
    spill.put(sample(1))
    remove_spill(tmp_path / "work")
    assert not (tmp_path / "work").exists() and tmp_path.is_dir()

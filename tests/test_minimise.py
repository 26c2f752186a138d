"""Policy semantics of the core (no Beam): coarsening, completeness, scope, consent, privacy boundary."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimeter.minimise import (
    AreaTotal,
    Deliverable,
    aggregate_group,
    coarsen,
    deliver_meter,
    implausible,
    in_scope,
    interval_bounds,
    merge,
    select,
)
from minimeter.pipeline.outputs import deliverable_table
from minimeter.policy.load import load_policy_set
from minimeter.readings import DecodedProfile, DecodedSeries, ReadingStatus
from minimeter.registry import ConsentRegistry, Grant, MeterInfo

US = 1_000_000
STEP = 900 * US
JAN1 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * US
POLICIES = {p.id: p for p in load_policy_set().policies}


def make_series(
    obis: str, start_index: int, n: int, values: np.ndarray, holes: set[int] = frozenset()
) -> DecodedSeries:
    idx = np.array(
        [i for i in range(start_index, start_index + n) if i not in holes], dtype=np.int64
    )
    times = JAN1 + (idx + 1) * STEP
    vals = values[: len(idx)].astype(float)
    return DecodedSeries.measured(obis, "Wh", times, vals, STEP)


def month_end(t: int) -> int:
    return int(interval_bounds(np.array([t]), "P1M", STEP)[1][0])


@settings(max_examples=120, derandomize=True, deadline=None)
@given(
    st.sampled_from(["PT15M", "PT30M", "PT1H", "P1D", "P1M"]),
    st.integers(0, 3000),
    st.integers(1, 96 * 40),
    st.sets(st.integers(0, 96 * 45), max_size=5),
    st.integers(0, 2**31),
)
def test_interval_quantities_conserve_energy_over_complete_intervals(
    interval: str, start: int, n: int, holes: set[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    deltas = rng.integers(0, 500, size=n)
    s = make_series("1-0:1.29.0", start, n, deltas, {start + h for h in holes})
    coarse, leftover = coarsen(s, interval)
    dropped = 0 if leftover is None else len(leftover.times_us)
    kept = 0 if coarse is None else int(coarse.readings.sum())
    assert kept + dropped == len(s.times_us)
    if leftover is not None:  # the leftover is exactly the readings outside complete intervals
        delivered = set() if coarse is None else set(coarse.ts_us.tolist())
        ends = interval_bounds(leftover.times_us, interval, STEP)[1]
        assert not set(ends.tolist()) & delivered
    if coarse is None:
        return
    for ts, value, k in zip(coarse.ts_us, coarse.value, coarse.readings, strict=True):
        lo = int(interval_bounds(np.array([ts]), interval, STEP)[0][0])
        window = (s.times_us > lo) & (s.times_us <= ts)
        assert value == s.values[window].sum()  # exactly: integers in floats
        assert window.sum() == k == (ts - lo) // STEP  # complete: every capture of the interval
        if interval == "P1M":
            assert month_end(ts - 1) == ts
        else:
            width = {"PT15M": 900, "PT30M": 1800, "PT1H": 3600, "P1D": 86400}[interval] * US
            assert ts % width == 0


@settings(max_examples=80, derandomize=True, deadline=None)
@given(
    st.sampled_from(["PT30M", "P1D", "P1M"]),
    st.integers(0, 200),
    st.integers(96, 96 * 35),
    st.integers(0, 2**31),
)
def test_registers_keep_the_value_at_the_interval_end(
    interval: str, start: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    register = np.cumsum(rng.integers(0, 100, size=n)) + 10**6
    s = make_series("1-0:1.8.0", start, n, register)
    coarse, _ = coarsen(s, interval)
    if coarse is None:
        return
    lookup = dict(zip(s.times_us.tolist(), s.values.tolist(), strict=True))
    for ts, value in zip(coarse.ts_us.tolist(), coarse.value.tolist(), strict=True):
        assert value == lookup[ts]
    assert (np.diff(coarse.ts_us) > 0).all()


def test_instantaneous_mean_and_max() -> None:
    s = make_series("1-0:1.7.0", 0, 96 * 2, np.arange(96 * 2))
    coarse, leftover = coarsen(s, "P1D")
    assert leftover is None and coarse is not None
    assert coarse.value.tolist() == [np.arange(96).mean(), np.arange(96, 192).mean()]
    assert coarse.value_max is not None and coarse.value_max.tolist() == [95.0, 191.0]


def test_partial_interval_at_the_end_is_not_delivered() -> None:
    s = make_series("1-0:1.29.0", 0, 96 + 40, np.ones(96 + 40))
    coarse, leftover = coarsen(s, "P1D")
    assert coarse is not None and len(coarse.ts_us) == 1
    assert leftover is not None and leftover.times_us.tolist() == s.times_us[96:].tolist()


def test_duplicate_readings_from_two_messages_are_counted_once() -> None:
    a = make_series("1-0:1.29.0", 0, 96, np.ones(96))
    merged, duplicates = merge([a, a])
    assert duplicates == 96 and len(merged[0].times_us) == 96


def meter(
    jurisdiction: str = "FR", area: str = "FR-IDF-01", supplier: str = "fr-fournisseur-historique"
) -> MeterInfo:
    return MeterInfo("1LGZ0000000001", jurisdiction, area, supplier, "household")


def test_scope_is_habilitation() -> None:
    enedis, supplier = POLICIES["fr-enedis-daily"], POLICIES["fr-supplier-historique"]
    assert in_scope(enedis, meter())
    assert not in_scope(enedis, meter(area="FR-XXX"))
    assert not in_scope(enedis, meter(jurisdiction="DE"))
    assert in_scope(supplier, meter())
    assert not in_scope(supplier, meter(supplier="fr-fournisseur-alternatif"))
    assert not in_scope(supplier, None)  # unknown meter: nobody is entitled


def test_select_order_and_counts() -> None:
    esco = POLICIES["fr-esco-flex"]
    s1 = make_series("1-0:1.29.0", 0, 96, np.ones(96))
    s2 = make_series("1-0:32.7.0", 0, 96, np.ones(96))
    profile = DecodedProfile("1LGZ0000000001", (s1, s2))
    grant_from = int(s1.times_us[48])
    consent = ConsentRegistry({"1LGZ0000000001": (Grant("fr-load-curve", grant_from, 2**62),)})
    kept, counts = select(esco, meter(), consent, profile, horizon_us=int(s1.times_us[72]))
    assert counts["readings-in"] == 192
    assert counts["dropped-consent"] == 48 * 2  # consent first, on both series
    assert counts["dropped-obis"] == 48  # voltage is not in the list
    assert counts["dropped-retention"] == 24
    assert [len(k.times_us) for k in kept] == [24]
    _, counts = select(esco, meter(jurisdiction="DE"), consent, profile, 0)
    assert counts["dropped-scope"] == 192


def test_only_valid_readings_go_on_each_status_counted() -> None:
    enedis = replace(POLICIES["fr-enedis-daily"], timezone="UTC")
    status = np.zeros(96 * 2, dtype=np.uint8)
    status[10] = ReadingStatus.INVALID
    status[11] = ReadingStatus.NOT_PRESENT
    status[12] = ReadingStatus.WARNING  # measured: still delivered
    s = make_series("1-0:1.8.0", 0, 96 * 2, np.arange(96 * 2) + 1000.0)
    s = DecodedSeries.measured(s.obis, s.unit, s.times_us, s.values, STEP, status)
    kept, counts = select(enedis, meter(), ConsentRegistry({}), DecodedProfile("m", (s,)), 0)
    assert counts["dropped-invalid"] == 1 and counts["dropped-not-present"] == 1
    assert sum(len(k) for k in kept) == 96 * 2 - 2
    rows, _, c, carried = deliver_meter(enedis, "m", kept, key=None, carry_from_us=0)
    # the day holding the invalid readings is never complete: only the second day is delivered
    assert [len(r) for r in rows] == [1] and int(rows[0].ts_us[0]) == int(s.times_us[-1])
    assert c["carried-out"] == 96 - 2 and c["kept"] == 96


def test_implausible_readings_are_found() -> None:
    values = np.arange(96, dtype=float) * 100 + 10_000  # 100 Wh per quarter hour: 400 W
    values[20] = 5  # a register that falls back
    values[40] = values[39] + 300_000  # 300 kWh in 15 minutes: 1.2 MW
    s = make_series("1-0:1.8.0", 0, 96, values)
    energy = make_series("1-0:1.29.0", 0, 96, np.ones(96))
    energy = DecodedSeries.measured(
        energy.obis, "Wh", energy.times_us, np.where(np.arange(96) == 7, -1.0, 1.0), STEP
    )
    wrong = implausible([DecodedProfile("m", (s, energy))])
    assert wrong["1-0:1.8.0"].tolist() == [int(s.times_us[20]), int(s.times_us[40])]
    assert wrong["1-0:1.29.0"].tolist() == [int(energy.times_us[7])]
    kept, counts = select(
        POLICIES["fr-enedis-daily"],
        meter(),
        ConsentRegistry({}),
        DecodedProfile("m", (s,)),
        0,
        wrong,
    )
    assert counts["dropped-implausible"] == 2 and sum(len(k) for k in kept) == 94
    assert (
        implausible(
            [DecodedProfile("m", (make_series("1-0:1.8.0", 0, 96, values * 0 + np.arange(96)),))]
        )
        == {}
    )


def test_pseudonymised_delivery_hides_the_meter() -> None:
    esco = POLICIES["fr-esco-flex"]
    s = make_series("1-0:1.29.0", 0, 96, np.ones(96))
    rows, _, _, _ = deliver_meter(esco, "1LGZ0000000001", [s], key=b"k" * 32)
    assert rows and all(r.meter != "1LGZ0000000001" and len(r.meter or "") == 32 for r in rows)
    rows2, _, _, _ = deliver_meter(replace(esco, id="other"), "1LGZ0000000001", [s], key=b"j" * 32)
    assert rows[0].meter != rows2[0].meter


def test_only_the_policy_stage_creates_deliverables() -> None:
    with pytest.raises(TypeError):
        Deliverable(
            object(),
            recipient="x",
            meter=None,
            area=None,
            obis="1-0:1.8.0",
            unit="Wh",
            ts_us=np.array([0]),
            value=np.array([1.0]),
        )
    with pytest.raises(TypeError):
        deliverable_table([{"meter": "1LGZ0000000001"}], aggregate=False)  # type: ignore[list-item]
    s = make_series("1-0:1.29.0", 0, 96, np.ones(96))
    rows, _, _, _ = deliver_meter(
        replace(POLICIES["fr-enedis-daily"], timezone="UTC"), "1LGZ0000000001", [s], key=None
    )
    table = deliverable_table(rows, aggregate=False)
    assert isinstance(table, pa.Table) and table.num_rows == 1
    import pickle

    clone = pickle.loads(pickle.dumps(rows[0]))
    assert isinstance(clone, Deliverable) and clone.value.tolist() == rows[0].value.tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e12, 1e12), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
    st.integers(1, 6),
)
def test_area_totals_do_not_depend_on_order_or_split(
    values: list[float], rnd: random.Random, parts: int
) -> None:
    """A runner combines partial totals in any order and split: the total is the same, exactly
    the correctly rounded sum."""
    shuffled = values[:]
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.randrange(len(shuffled) + 1) for _ in range(parts - 1))
    chunks = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    partials = []
    for chunk in chunks:
        total = AreaTotal()
        for v in chunk:
            total.add(v, 4)
        partials.append(total)
    rnd.shuffle(partials)
    merged = AreaTotal()
    for p in partials:
        merged.merge(p)
    assert merged.value == math.fsum(values)
    assert merged.meters == len(values) and merged.readings == 4 * len(values)


def test_aggregate_group_suppresses_below_k() -> None:
    policy = POLICIES["de-tso-balancing"]
    k = policy.k_anonymity
    assert k is not None
    small, enough = AreaTotal(), AreaTotal()
    for i in range(k - 1):
        small.add(1.0 + i, 4)
        enough.add(1.0 + i, 4)
    enough.add(0.1, 4)
    row, counts = aggregate_group(policy, "DE-HH-1", "1-0:1.29.0", "Wh", JAN1, small)
    assert row is None and counts == {"suppressed-k": 4 * (k - 1), "groups-suppressed-k": 1}
    row, counts = aggregate_group(policy, "DE-HH-1", "1-0:1.29.0", "Wh", JAN1, enough)
    assert row is not None and counts == {"kept": 4 * k}
    assert row.n_meters.tolist() == [k] and row.value.tolist() == [math.fsum([*range(1, k), 0.1])]


@pytest.mark.parametrize(
    "day,quarter_hours", [("2026-03-29", 92), ("2025-10-26", 100), ("2026-01-15", 96)]
)
def test_local_days_follow_the_civil_calendar(day: str, quarter_hours: int) -> None:
    """A Berlin day is 92 / 100 quarter hours on DST change days; its register is the value at
    local midnight; ``ts`` is the UTC instant of the interval end, ``date=`` the local date."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")
    d = datetime.fromisoformat(day).date()
    start = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
    end = datetime.fromordinal(d.toordinal() + 1).replace(tzinfo=zone).astimezone(UTC)
    assert (end - start).total_seconds() == quarter_hours * 900  # the truth, from zoneinfo
    first = int(start.timestamp()) * US - 96 * STEP  # the local day before, and after
    n = quarter_hours + 2 * 96 + 96
    times = first + (np.arange(n) + 1) * STEP
    values = np.arange(n, dtype=float) * 7 + 100
    s = DecodedSeries.measured("1-0:1.8.0", "Wh", times, values, STEP)
    policy = replace(POLICIES["de-supplier-stadtwerk"], timezone="Europe/Berlin")
    coarse, _ = coarsen(s, "P1D", policy.timezone)
    assert coarse is not None
    end_us = int(end.timestamp()) * US
    i = int(np.where(coarse.ts_us == end_us)[0][0])
    assert coarse.readings[i] == quarter_hours  # complete with exactly that many
    assert coarse.value[i] == values[times == end_us][0]  # the register at local midnight
    rows, *_ = deliver_meter(policy, "m", [s], key=None)
    days = dict(r for row in rows for r in row.split_by_day(policy.timezone))
    assert day in days and end_us in days[day].ts_us.tolist()


@pytest.mark.parametrize(
    "until,withdrawn,delivered",
    [
        (None, "2026-01-04", 0),  # withdrawn before the data
        (None, "2026-01-06", 0),  # between the two days: the first day is not delivered either
        (None, "2026-01-08", 0),  # after the data, before the as-of
        (None, "2026-01-12", 192),  # after the as-of: this delivery is still allowed
        ("2026-01-06", None, 95),  # a grant that ran out is no withdrawal (00:00 is past it)
    ],
)
def test_consent_is_checked_at_capture_and_at_delivery(
    until: str | None, withdrawn: str | None, delivered: int
) -> None:
    def us(day: str) -> int:
        return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * US

    start = us("2026-01-05")
    ends = [us(t) for t in (until, withdrawn) if t]
    grant = Grant(
        "fr-load-curve",
        us("2026-01-01"),
        min(ends, default=2**62),
        us(withdrawn) if withdrawn else np.iinfo(np.int64).max,
    )
    registry = ConsentRegistry({"m": (grant,)})
    times = start + (np.arange(192) + 1) * STEP  # Jan 5 00:15 .. Jan 7 00:00
    s = DecodedSeries.measured("1-0:1.29.0", "Wh", times, np.ones(192), STEP)
    esco = replace(POLICIES["fr-esco-flex"], timezone="UTC")
    kept, counts = select(
        esco, meter(), registry, DecodedProfile("m", (s,)), 0, delivered_at_us=us("2026-01-10")
    )
    assert sum(len(k) for k in kept) == delivered
    assert counts["dropped-consent"] == 192 - delivered


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 30)),
    st.sampled_from(["Europe/Berlin", "Europe/Paris", "Europe/Amsterdam", "Europe/London"]),
)
def test_any_local_day_is_complete_with_its_own_quarter_hours(day: date, zone_name: str) -> None:
    """Property: a civil day holds exactly as many quarter hours as zoneinfo says (92 / 96 /
    100), and its register is the truth at local midnight."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = date.fromordinal(day.toordinal() + 1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    quarter_hours = int((end - start).total_seconds()) // 900
    first = int(start.timestamp()) * US - 8 * STEP
    n = quarter_hours + 16
    times = first + (np.arange(n) + 1) * STEP
    values = np.cumsum(np.arange(n) % 5 + 1).astype(float)
    coarse, _ = coarsen(
        DecodedSeries.measured("1-0:1.8.0", "Wh", times, values, STEP), "P1D", zone_name
    )
    assert coarse is not None
    end_us = int(end.timestamp()) * US
    hit = np.where(coarse.ts_us == end_us)[0]
    assert len(hit) == 1 and coarse.readings[hit[0]] == quarter_hours
    assert coarse.value[hit[0]] == values[times == end_us][0]

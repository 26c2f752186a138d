"""The synthetic fleet: meters, their grid areas and suppliers, and consent decisions."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Jurisdiction:
    weight: float
    areas: tuple[str, ...]
    suppliers: tuple[str, ...]
    manufacturers: tuple[str, ...]


#: Grid areas and suppliers per jurisdiction; shipped policies refer to these ids.
JURISDICTIONS: dict[str, Jurisdiction] = {
    "DE": Jurisdiction(
        0.4,
        ("DE-HH-01", "DE-HH-02", "DE-BY-01"),
        ("de-stadtwerk-nord", "de-oekostrom"),
        ("EMH", "ESY", "EBZ"),
    ),
    "FR": Jurisdiction(
        0.25,
        ("FR-IDF-01", "FR-ARA-01"),
        ("fr-fournisseur-historique", "fr-fournisseur-alternatif"),
        ("LGZ", "ITF"),
    ),
    "NL": Jurisdiction(
        0.15, ("NL-AMS-01", "NL-UTR-01"), ("nl-energieleverancier",), ("KFM", "ISK")
    ),
    "GB": Jurisdiction(
        0.2, ("GB-LON-01", "GB-MAN-01"), ("gb-supplier-a", "gb-supplier-b"), ("EDM", "SEC")
    ),
}

CUSTOMER_TYPES = {  # share, median annual kWh, spread (lognormal sigma)
    "household": (0.55, 3200.0, 0.35),
    "household-pv": (0.2, 4000.0, 0.3),
    "heat-pump": (0.15, 7500.0, 0.25),
    "small-business": (0.1, 22000.0, 0.4),
}

#: Consent purposes per jurisdiction: (purpose, share granting, default granted (opt-out model)).
CONSENT_PURPOSES: dict[str, list[tuple[str, float, bool]]] = {
    "FR": [("fr-load-curve", 0.25, False)],
    "DE": [("de-energy-services", 0.15, False)],
    "NL": [("nl-energy-advice", 0.2, False)],
    "GB": [("gb-daily-readings", 0.9, True), ("gb-half-hourly", 0.2, False)],
}
WITHDRAW_SHARE = 0.2

METER_PATTERN = r"^1[A-Z]{3}\d{10}$"
"""DIN 43863-5 style meter ids (sparte 1 = electricity, manufacturer, block, serial)."""


@dataclass(frozen=True)
class Meter:
    meter: str
    jurisdiction: str
    area: str
    supplier: str
    customer_type: str
    annual_kwh: float
    index: int

    @property
    def gateway(self) -> str:
        """The id of the meter's gateway as its content-signature certificate names it (the
        subject CN, in the form real PPC gateways use: ``EPPC<10 digits>.SMGW``)."""
        return f"EPPC{1_000_000_000 + self.index:010d}.SMGW"


@dataclass(frozen=True)
class ConsentRow:
    meter: str
    purpose: str
    granted_from: datetime
    granted_until: datetime | None
    withdrawn_at: datetime | None


def make_fleet(n: int, rng: np.random.Generator) -> list[Meter]:
    codes = list(JURISDICTIONS)
    weights = np.array([JURISDICTIONS[c].weight for c in codes])
    types = list(CUSTOMER_TYPES)
    type_weights = np.array([CUSTOMER_TYPES[t][0] for t in types])
    serials = rng.choice(10**8, size=n, replace=False)
    meters = []
    for i in range(n):
        j = codes[int(rng.choice(len(codes), p=weights / weights.sum()))]
        info = JURISDICTIONS[j]
        kind = types[int(rng.choice(len(types), p=type_weights / type_weights.sum()))]
        _, median, sigma = CUSTOMER_TYPES[kind]
        manufacturer = info.manufacturers[int(rng.integers(len(info.manufacturers)))]
        block = int(rng.integers(0, 100))
        meters.append(
            Meter(
                meter=f"1{manufacturer}{block:02d}{int(serials[i]):08d}",
                jurisdiction=j,
                area=info.areas[int(rng.integers(len(info.areas)))],
                supplier=info.suppliers[int(rng.integers(len(info.suppliers)))],
                customer_type=kind,
                annual_kwh=round(float(median * rng.lognormal(0.0, sigma)), 1),
                index=i,
            )
        )
    return meters


def make_consent(
    meters: list[Meter], start: datetime, days: int, rng: np.random.Generator
) -> list[ConsentRow]:
    end = start + timedelta(days=days)
    rows = []
    for m in meters:
        for purpose, share, default in CONSENT_PURPOSES[m.jurisdiction]:
            grants = rng.random() < share
            if default:  # opt-out model: granted unless the customer opted out
                granted = start - timedelta(days=365)
                if not grants:
                    rows.append(
                        ConsentRow(m.meter, purpose, granted, None, start - timedelta(days=30))
                    )
                    continue
            elif not grants:
                continue
            else:  # opt-in: some granted before the period, some during it
                offset = float(rng.uniform(-60, days * 0.5))
                granted = start + timedelta(hours=round(offset * 24))
            withdrawn = None
            if rng.random() < WITHDRAW_SHARE:
                lo = max(granted, start)
                span_h = (end - lo).total_seconds() / 3600
                withdrawn = lo + timedelta(hours=round(float(rng.uniform(0.1, 0.9)) * span_h))
            rows.append(ConsentRow(m.meter, purpose, granted, None, withdrawn))
    return rows


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_meters(meters: list[Meter], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["meter", "jurisdiction", "area", "supplier", "customer_type", "annual_kwh", "gateway"]
        )
        for m in meters:
            w.writerow(
                [
                    m.meter,
                    m.jurisdiction,
                    m.area,
                    m.supplier,
                    m.customer_type,
                    m.annual_kwh,
                    m.gateway,
                ]
            )


def write_consent(rows: list[ConsentRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "purpose", "granted_from", "granted_until", "withdrawn_at"])
        for r in rows:
            w.writerow(
                [
                    r.meter,
                    r.purpose,
                    _iso(r.granted_from),
                    _iso(r.granted_until),
                    _iso(r.withdrawn_at),
                ]
            )

"""Writes the K461 test fixtures of this folder (run: python tests/vectors/k461/make_fixtures.py).

Standard library only and independent of Minimeter's encoder: the fixtures reproduce what real
gateway exports look like (see README.md), with numbers made up here. Deterministic: the same
files every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
NS1 = "urn:k461-dke-de:profile_generic-1"
NS2 = "urn:k461-dke-de:extension-1"
METER = "1lgz0099000001"
Q = timedelta(minutes=15)


@dataclass
class Column:
    obis_hex: str
    unit: int
    scaler: int
    times: list[datetime]  # as sent (late)
    values: list[int]
    statuses: list[str]  # the status element's content, as written
    order: list[int] = field(default_factory=list)  # entry order in the document


def signature(rng: random.Random, gateway: bytes) -> str:
    return rng.randbytes(64).hex() + gateway.hex()


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def real_document(
    columns: list[Column],
    *,
    profile_hex: str = "01005e31803c",
    p: str = "ns1",
    e: str = "ns2",
    seed: int = 1,
    column_order: list[int] | None = None,
    meter: str = METER,
) -> str:
    """A PPC-style export: root id, the profile's name under attributes (ns2), capture objects of
    class 32822 with their extra children, wrong count attributes, one entry per capture,
    pretty-printed with two spaces a level, a signature per entry."""
    rng = random.Random(seed)
    gateway = random.Random(f"gateway-{seed}").randbytes(64)
    name = f"{profile_hex}.{meter}.sm"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<{p}:object xmlns:{p}="{NS1}" xmlns:{e}="{NS2}" class_id="7" class_version="1" id="{name}">',
        f'  <{p}:attributes count="3">',
        f'    <{e}:logical_name id="1">{name}</{e}:logical_name>',
        f'    <{p}:capture_objects id="2" count="{len(columns) + 5}">',
    ]
    for i, c in enumerate(columns, start=1):
        out += [
            f'      <{p}:capture_object id="{i}">',
            f"        <{e}:logical_name>{c.obis_hex}.{meter}.sm</{e}:logical_name>",
            f"        <{e}:class_id>32822</{e}:class_id>",
            f"        <{e}:class_version>0</{e}:class_version>",
            f"        <{e}:attr_reference>2</{e}:attr_reference>",
            f"        <{e}:index_reference>0</{e}:index_reference>",
            f"      </{p}:capture_object>",
        ]
    out += [
        f"    </{p}:capture_objects>",
        f'    <{p}:buffer id="3">',
        f'      <{p}:simple_data count="{len(columns)}">',
    ]
    for i in column_order or range(1, len(columns) + 1):
        c = columns[i - 1]
        order = c.order or list(range(len(c.values) - 1, -1, -1))  # newest first
        out.append(f'        <{p}:column id="{i}" count="{len(order) + 1}">')
        for n, k in enumerate(order, start=1):
            out += [
                f'          <{p}:entry_gateway_signed id="{n}">',
                f"            <{e}:value>",
                f"              <{e}:long64>{c.values[k]}</{e}:long64>",
                f"            </{e}:value>",
                f"            <{e}:scaler>{c.scaler}</{e}:scaler>",
                f"            <{e}:unit>{c.unit}</{e}:unit>",
                f"            <{e}:status>",
                f"              {c.statuses[k].format(e=e)}",
                f"            </{e}:status>",
                f"            <{e}:capture_time>{iso(c.times[k])}</{e}:capture_time>",
                f"            <{e}:smgw_signature>{signature(rng, gateway)}</{e}:smgw_signature>",
                f"          </{p}:entry_gateway_signed>",
            ]
        out.append(f"        </{p}:column>")
    out += [f"      </{p}:simple_data>", f"    </{p}:buffer>", f"  </{p}:attributes>"]
    out.append(f"</{p}:object>")
    return "\n".join(out) + "\n"


def unsigned(n: int) -> str:
    return "<{e}:unsigned>" + str(n) + "</{e}:unsigned>"


def octets(word: str) -> str:
    return "<{e}:octet-string>" + word + "</{e}:octet-string>"


def register(
    start: datetime, n: int, seed: int, first: int, statuses: dict[int, int] | None = None
) -> tuple[list[datetime], list[int], list[int]]:
    """``n`` quarter-hour register readings ending at ``start`` + 15 min ..., sent 0-5 s late;
    a status-3 reading repeats the previous value (a placeholder)."""
    rng = random.Random(seed)
    times, values, codes = [], [], []
    value = first
    for k in range(n):
        value += rng.randint(20, 400)
        code = (statuses or {}).get(k, 0)
        shown = values[-1] if code == 3 and values else value
        times.append(start + Q * (k + 1) + timedelta(seconds=rng.randint(0, 5)))
        values.append(shown)
        codes.append(code)
    return times, values, codes


def ppc_wrapped() -> str:
    times, values, codes = register(
        datetime(2026, 1, 15, tzinfo=UTC), 24, 11, 11_483_207, {9: 3, 10: 3, 17: 4}
    )
    return real_document(
        [Column("0100010800ff", 30, 0, times, values, [unsigned(c) for c in codes])]
    )


# FNN combined status words (16 hex: SMGW word then meter word, bit 0 first; PTB TRuDI's
# StatusFNN tests use the first five)
FNN_WORDS = [
    "A000000020000000",  # no error
    "A084000020000000",  # SMGW fatal error (+ temporary error)
    "A004000020000000",  # SMGW temporary error, signed invalid (no value)
    "A008000020000000",  # SMGW warning
    "A002000020000000",  # SMGW temporary error, invalid
    "A040000020000000",  # SMGW system time invalid (bit 9)
    "A000000020004000",  # meter fatal error (BZ bit 17)
    "0000000000000000",  # no identification bits: not an FNN word
]


def taf10_octets() -> str:
    times, values, _ = register(datetime(2026, 2, 2, tzinfo=UTC), len(FNN_WORDS), 12, 4_100)
    column = Column("0100010800ff", 30, 0, times, values, [octets(w) for w in FNN_WORDS])
    return real_document([column], profile_hex="01005e31803f")


def multi_column() -> str:
    start = datetime(2026, 1, 20, 11, tzinfo=UTC)
    t, imp, _ = register(start, 8, 21, 2_000_000)
    _, exp, _ = register(start, 8, 22, 350_000)
    rng = random.Random(23)
    volts = [2300 + rng.randint(-60, 60) for _ in t]
    status = [unsigned(0)] * 8
    columns = [
        Column("0100010800ff", 30, 0, t, imp, status),
        Column("0100020800ff", 30, 0, t, exp, status),
        Column("0100200700ff", 35, -1, t, volts, status),
    ]
    # prefixes of the document's choice; buffer columns in another order than capture objects
    return real_document(columns, p="pg", e="x", column_order=[3, 1, 2], seed=2)


def dst_day(local_midnight_utc: datetime, next_midnight_utc: datetime, seed: int) -> str:
    n = int((next_midnight_utc - local_midnight_utc) / Q) + 1  # both local midnights
    times, values, codes = register(local_midnight_utc - Q, n, seed, 9_871_000)
    return real_document(
        [Column("0100010800ff", 30, 0, times, values, [unsigned(c) for c in codes])], seed=seed
    )


def simple_shape() -> str:
    times = [datetime(2026, 1, 5, 0, 15, tzinfo=UTC) + Q * k for k in range(4)]
    entries = "".join(
        f"<ns1:entry_gateway_signed><ns2:capture_time>{iso(t)}</ns2:capture_time>"
        f"<ns2:value><ns2:long64>{1000 + 7 * k}</ns2:long64></ns2:value><ns2:scaler>0</ns2:scaler>"
        f"<ns2:unit>30</ns2:unit><ns2:status>0</ns2:status></ns1:entry_gateway_signed>\n"
        for k, t in enumerate(times)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ns1:object xmlns:ns1="{NS1}" xmlns:ns2="{NS2}" class_id="7">\n'
        "<ns1:logical_name>0100630100ff.1EMH0012345678.sm</ns1:logical_name>\n"
        "<ns1:attributes>\n<ns1:capture_objects>\n"
        '<ns1:capture_object id="1"><ns2:class_id>3</ns2:class_id>'
        "<ns2:logical_name>0100010800ff.1EMH0012345678.sm</ns2:logical_name>"
        "<ns2:attribute_index>2</ns2:attribute_index></ns1:capture_object>\n"
        "</ns1:capture_objects>\n<ns1:buffer>\n<ns1:simple_data>\n"
        f'<ns1:column id="1">\n{entries}</ns1:column>\n'
        "</ns1:simple_data>\n</ns1:buffer>\n</ns1:attributes>\n</ns1:object>\n"
    )


TOO_MANY_RECORDS = (
    "Error: the requested period holds more than 1000 records.\r\n"
    "Please request a shorter period.\r\n"
)

VDE = """<?xml version="1.0" encoding="UTF-8"?>
<UsagePoints xmlns="http://vde.de/AR_2418-6.xsd" xmlns:espi="http://naesb.org/espi">
  <UsagePoint>
    <usagePointId>up-0001</usagePointId>
    <MeterReading>
      <Meter><meterId>0a01454d480000b4a5c1</meterId></Meter>
      <meterReadingId>mr-1</meterReadingId>
      <ReadingType>
        <powerOfTenMultiplier>0</powerOfTenMultiplier>
        <uom>72</uom>
        <scaler>-1</scaler>
        <obisCode>0100010800ff</obisCode>
      </ReadingType>
      <IntervalBlock>
        <IntervalReading>
          <value>1234567</value>
          <timePeriod><duration>0</duration><start>2026-03-29T03:00:00+02:00</start></timePeriod>
          <statusFNN>A000000020000000</statusFNN>
        </IntervalReading>
      </IntervalBlock>
    </MeterReading>
  </UsagePoint>
</UsagePoints>
"""

LMN_CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<klc:container xmlns:klc="urn:k461-dke-de:kaf_lmn_container-1">
  <klc:entry>0100010800ff</klc:entry>
</klc:container>
"""


def crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def dsmr() -> bytes:
    body = (
        b"/XMX5TEST0000000001\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(260115120000W)\r\n"
        b"1-0:1.8.1(000123.456*kWh)\r\n1-0:1.8.2(000045.678*kWh)\r\n1-0:32.7.0(0229.0*V)\r\n!"
    )
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def main() -> None:
    files: dict[str, str | bytes] = {
        "ppc_wrapped.xml": ppc_wrapped(),
        "taf10_octet_status.xml": taf10_octets(),
        "multi_column_voltage.xml": multi_column(),
        # Europe/Berlin: 2026-03-29 00:00 CET = 03-28 23:00Z .. 00:00 CEST = 03-29 22:00Z
        "dst_spring_2026-03-29.xml": dst_day(
            datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC), 31
        ),
        # 2025-10-26 00:00 CEST = 10-25 22:00Z .. 00:00 CET = 10-26 23:00Z
        "dst_autumn_2025-10-26.xml": dst_day(
            datetime(2025, 10, 25, 22, tzinfo=UTC), datetime(2025, 10, 26, 23, tzinfo=UTC), 32
        ),
        "simple_shape.xml": simple_shape(),
        "too_many_records.txt": TOO_MANY_RECORDS,
        "vde_ar_2418_6.xml": VDE,
        "lmn_container.xml": LMN_CONTAINER,
        "dsmr_p1.txt": dsmr(),
    }
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()

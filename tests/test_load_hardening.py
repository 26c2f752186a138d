"""Load-time checks (issue 15 item 7): policy YAML, durations, the CSV registries and the PKI
directory are refused with one clear line, before any data moves.

Every case writes real files to ``tmp_path``; the PKI cases break a copy of the synthetic
fleet's ``pki/`` (made by ``minimeter synth``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimeter.errors import ConfigError, PolicyError
from minimeter.keys import PKI_FILES, check_pki
from minimeter.minimise import horizon_us
from minimeter.policy.check import check_policy_set
from minimeter.policy.duration import AS_OF_YEARS, Duration
from minimeter.policy.load import MAX_YAML_BYTES, MAX_YAML_NODES, _StrictLoader, load_policy_set
from minimeter.registry import CONSENT_COLUMNS, METER_COLUMNS, ConsentRegistry, MeterRegistry

ROOT = Path(__file__).resolve().parents[1]
REC = "policies/recipients"
ESCO = f"{REC}/fr-esco-flex.yaml"
SECRET_ID = "MTRSECRET0042"
"""A meter id that must never show in an error message."""


def _done_within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result, failing (not hanging) when it blocks, e.g. on a FIFO."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- 1. YAML ---------------------------------------------------------------------------------


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "dpia", tmp_path / "dpia")
    return tmp_path


def findings(project: Path) -> list[str]:
    try:
        return check_policy_set(load_policy_set(project))
    except PolicyError as exc:
        return exc.findings


def _append(rel: str, text: str) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        path = project / rel
        path.write_text(path.read_text() + text)

    return change


def _write(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        path = project / rel
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return change


def _replace_line(rel: str, start: str, line: str) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        path = project / rel
        lines = path.read_text().splitlines()
        assert any(x.startswith(start) for x in lines), (rel, start)
        path.write_text(
            "\n".join(line if x.startswith(start) else x for x in lines) + "\n", encoding="utf-8"
        )

    return change


def _both(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        for c in changes:
            c(project)

    return change


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _mkfifo(rel: str) -> Callable[[Path], None]:
    return lambda project: os.mkfifo(project / rel)


def _mkdir(rel: str) -> Callable[[Path], None]:
    return lambda project: (project / rel).mkdir()


# (name, change to the shipped project, file of the finding, field, words of the reason)
YAML_CASES: list[tuple[str, Callable[[Path], None], str, str, tuple[str, ...]]] = [
    (
        "duplicate top-level key",
        _append(ESCO, "purpose: again\n"),
        ESCO,
        "line",
        ("duplicate key 'purpose'", "first at line"),
    ),
    (
        "duplicate nested key",
        _append(ESCO, "scope:\n  areas: [FR-A]\n  areas: [FR-B]\n"),
        ESCO,
        "line",
        ("duplicate key",),
    ),
    (
        "duplicate key in a baseline",
        _append("policies/baselines/NL.yaml", "name: twice\n"),
        "policies/baselines/NL.yaml",
        "line",
        ("duplicate key 'name'",),
    ),
    (
        "duplicate key in a DPIA record",
        _append("dpia/dpia-fr-metering.yaml", "title: twice\n"),
        "dpia/dpia-fr-metering.yaml",
        "line",
        ("duplicate key 'title'",),
    ),
    ("alias bomb", _write(f"{REC}/bomb.yaml", _alias_bomb()), f"{REC}/bomb.yaml", "line 2", ("alias *a0", "refused")),
    (
        "one harmless alias",
        _write(f"{REC}/alias.yaml", "id: &x alias\nname: *x\n"),
        f"{REC}/alias.yaml",
        "line 2",
        ("alias *x", "may not use aliases"),
    ),
    (
        "too many nodes",
        _write(f"{REC}/wide.yaml", "obis:\n" + "  - x\n" * (MAX_YAML_NODES + 5)),
        f"{REC}/wide.yaml",
        "line",
        (f"more than {MAX_YAML_NODES} nodes",),
    ),
    (
        "nesting too deep",
        _write(f"{REC}/deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        f"{REC}/deep.yaml",
        "line 1",
        ("nested deeper than",),
    ),
    (
        "file larger than 1 MiB",
        _write(f"{REC}/big.yaml", "# " + "x" * MAX_YAML_BYTES + "\nid: big\n"),
        f"{REC}/big.yaml",
        "-",
        ("files larger than", str(MAX_YAML_BYTES)),
    ),
    ("FIFO as a policy file", _mkfifo(f"{REC}/fifo.yaml"), f"{REC}/fifo.yaml", "-", ("not a regular file",)),
    ("directory as a policy file", _mkdir(f"{REC}/dir.yaml"), f"{REC}/dir.yaml", "-", ("not a regular file",)),
    (
        "key that is not text",
        _append(ESCO, "on: true\n"),
        ESCO,
        "line",
        ("key True is not text",),
    ),
    (
        "impossible date",
        _replace_line("dpia/dpia-fr-metering.yaml", "review_date:", "review_date: 2026-13-45"),
        "dpia/dpia-fr-metering.yaml",
        "-",
        ("not valid YAML", "month"),
    ),
    (
        "not UTF-8",
        _write(f"{REC}/latin.yaml", "id: caf\xe9\n".encode("latin-1")),
        f"{REC}/latin.yaml",
        "-",
        ("not valid YAML",),
    ),
]  # fmt: skip


@pytest.mark.parametrize("name,change,file,field,words", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_is_refused_with_a_finding(
    project: Path,
    name: str,
    change: Callable[[Path], None],
    file: str,
    field: str,
    words: tuple[str, ...],
) -> None:
    change(project)
    found = _done_within(60, lambda: findings(project))
    hits = [f for f in found if f.startswith(f"{file}: {field}")]
    assert hits, f"no finding for {file}: {field} in {found}"
    assert any(all(w in h for w in words) for h in hits), hits


def test_shipped_files_load_with_the_strict_loader() -> None:
    for path in sorted((ROOT / "policies").rglob("*.yaml")) + sorted(
        (ROOT / "dpia").glob("*.yaml")
    ):
        data = path.read_bytes()
        assert yaml.load(data, Loader=_StrictLoader) == yaml.safe_load(data), path  # noqa: S506
    assert check_policy_set(load_policy_set(ROOT)) == []


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz -", max_size=20),
    st.booleans(),
    st.none(),
)


def _pair(key: str, value: Any, indent: str = "") -> str:
    flow: str = yaml.safe_dump({key: value}, default_flow_style=True)
    return indent + flow[1:-2] + "\n"


@given(
    st.dictionaries(_keys, _scalars, min_size=1, max_size=8),
    st.data(),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_any_duplicate_key_is_refused(
    mapping: dict[str, Any], data: st.DataObject, nested: bool
) -> None:
    keys = list(mapping)
    twice = data.draw(st.sampled_from(keys))
    value = data.draw(_scalars)
    where = data.draw(st.integers(0, len(keys)))
    pairs = [_pair(k, v, "  " if nested else "") for k, v in mapping.items()]
    pairs.insert(where, _pair(twice, value, "  " if nested else ""))
    text = ("outer:\n" if nested else "") + "".join(pairs)
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        yaml.load(text, Loader=_StrictLoader)  # noqa: S506
    # without the repetition the strict loader means what PyYAML means
    plain = ("outer:\n" if nested else "") + "".join(
        _pair(k, v, "  " if nested else "") for k, v in mapping.items()
    )
    assert yaml.load(plain, Loader=_StrictLoader) == yaml.safe_load(plain)  # noqa: S506


# --- 2. Retention ----------------------------------------------------------------------------


def _retention(rel: str, start: str, value: str) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        path = project / rel
        text = path.read_text()
        assert start in text, (rel, start)
        path.write_text(text.replace(start, f"{start.split(':')[0]}: {value}", 1))

    return change


NL_POLICY = f"{REC}/nl-dso-monthly.yaml"
NL_DPIA = "dpia/dpia-nl-metering.yaml"
NL_BASE = "policies/baselines/NL.yaml"

RETENTION_CASES: list[tuple[str, Callable[[Path], None], str, str, tuple[str, ...]]] = [
    (
        "P10000Y in a policy and its DPIA record",
        _both(
            _retention(NL_POLICY, "retention: P2Y", "P10000Y"),
            _retention(NL_DPIA, "retention: P2Y", "P10000Y"),
        ),
        NL_POLICY,
        "retention",
        ("'P10000Y' is too long", f"{AS_OF_YEARS[0]}..{AS_OF_YEARS[1]}"),
    ),
    (
        "P10000Y everywhere, the baseline too",
        _both(
            _retention(NL_POLICY, "retention: P2Y", "P10000Y"),
            _retention(NL_DPIA, "retention: P2Y", "P10000Y"),
            _retention(NL_BASE, "max_retention: P2Y", "P10000Y"),
        ),
        NL_BASE,
        "rules.0.max_retention",
        ("'P10000Y' is too long",),
    ),
    (
        "P10000Y in a DPIA record",
        _retention(NL_DPIA, "retention: P2Y", "P10000Y"),
        NL_DPIA,
        "recipients.0.retention",
        ("too long",),
    ),
    (
        "days beyond the calendar",
        _retention(ESCO, "retention: P1Y", "P99999999999D"),
        ESCO,
        "retention",
        ("too long",),
    ),
    (
        "seconds beyond timedelta",
        _retention(ESCO, "retention: P1Y", "PT99999999999999999999S"),
        ESCO,
        "retention",
        ("too long",),
    ),
    (
        "longer than the baseline's maximum",
        _both(
            _retention(NL_POLICY, "retention: P2Y", "P5Y"),
            _retention(NL_DPIA, "retention: P2Y", "P5Y"),
        ),
        NL_POLICY,
        "retention",
        ("P5Y exceeds the P2Y ceiling", NL_BASE, "(dso)"),
    ),
    (
        "a long retention the baseline allows is still above another's",
        _both(
            _retention(NL_POLICY, "retention: P2Y", "P1000Y"),
            _retention(NL_DPIA, "retention: P2Y", "P1000Y"),
        ),
        NL_POLICY,
        "retention",
        ("P1000Y exceeds the P2Y ceiling",),
    ),
]


@pytest.mark.parametrize(
    "name,change,file,field,words", RETENTION_CASES, ids=[c[0] for c in RETENTION_CASES]
)
def test_retention_is_refused_at_load(
    project: Path,
    name: str,
    change: Callable[[Path], None],
    file: str,
    field: str,
    words: tuple[str, ...],
) -> None:
    change(project)
    found = findings(project)
    hits = [f for f in found if f.startswith(f"{file}: {field}: ")]
    assert hits, f"no finding for {file}: {field} in {found}"
    assert any(all(w in h for w in words) for h in hits), hits


def test_policy_check_refuses_p10000y(project: Path) -> None:
    _retention(ESCO, "retention: P1Y", "P10000Y")(project)
    _retention("dpia/dpia-fr-metering.yaml", "retention: P1Y", "P10000Y")(project)
    proc = subprocess.run(
        [sys.executable, "-m", "minimeter", "policy", "check", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    assert f"{ESCO}: retention: 'P10000Y' is too long" in proc.stdout + proc.stderr


_instants = st.datetimes(
    min_value=datetime(AS_OF_YEARS[0], 1, 1),
    max_value=datetime(AS_OF_YEARS[1], 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


@given(
    st.integers(0, 30_000),
    st.integers(0, 800_000),
    st.integers(0, 10**11),
    _instants,
)
@settings(max_examples=300, deadline=None)
def test_every_accepted_duration_can_be_applied(
    months: int, days: int, seconds: int, when: datetime
) -> None:
    text = f"P{months}M{days}DT{seconds}S"
    try:
        duration = Duration.parse(text)
    except ValueError as exc:
        assert "too long" in str(exc) or "zero duration" in str(exc)
        return
    start = duration.subtract_from(when)  # never overflows
    assert start <= when
    policy = SimpleNamespace(retention=duration)
    assert horizon_us(policy, when) <= int(when.timestamp() * 1_000_000)  # type: ignore[arg-type]


@given(st.integers(1, 1998))
def test_years_up_to_the_calendar_are_accepted(years: int) -> None:
    Duration.parse(f"P{years}Y").subtract_from(datetime(AS_OF_YEARS[0], 1, 1, tzinfo=UTC))


@given(st.integers(1999, 10**6))
def test_years_beyond_the_calendar_are_refused(years: int) -> None:
    with pytest.raises(ValueError, match="too long"):
        Duration.parse(f"P{years}Y")


# --- 3. CSV registries -----------------------------------------------------------------------


def _meters_csv(*rows: str, header: str = ",".join(METER_COLUMNS)) -> str:
    return "\n".join([header, *rows]) + "\n"


METERS_OK = _meters_csv(
    f"{SECRET_ID},DE,DE-A,s1,household,3500,EPPC0000000001.SMGW",
    "MTR0002,DE,DE-A,s1,household,2500,EPPC0000000002.SMGW",
    "MTR0003,FR,FR-B,s2,business,9000,EPPC0000000003.SMGW",
)
CONSENT_OK = (
    ",".join(CONSENT_COLUMNS)
    + "\n"
    + f"{SECRET_ID},de-flex,2026-01-01T00:00:00Z,,\n"
    + "MTR0002,de-flex,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z,\n"
)

Loader = Callable[[Path], object]
M: Loader = MeterRegistry.load
C: Loader = ConsentRegistry.load

# (name, loader, file contents (bytes, text, or "fifo" / "dir" / "missing"), category, words)
CSV_CASES: list[tuple[str, Loader, bytes | str, str, tuple[str, ...]]] = [
    (
        "non-UTF-8 meters.csv",
        M,
        METERS_OK.encode() + f"{SECRET_ID}\xe9,DE,a,s,c,1\n".encode("latin-1"),
        "config-invalid",
        ("line 5", "not UTF-8"),
    ),
    (
        "non-UTF-8 consent.csv",
        C,
        CONSENT_OK.encode().replace(b"de-flex", b"de-fl\xe9x", 1),
        "config-invalid",
        ("line 2", "not UTF-8"),
    ),
    ("short meters.csv row", M, METERS_OK + "onlyone\n", "config-invalid", ("line 5", "1 field(s)", "header has 7")),
    ("long meters.csv row", M, METERS_OK + f"{SECRET_ID}9,DE,a,s,c,1,g,extra\n", "config-invalid", ("line 5", "8 fields", "header has 7")),
    ("short consent.csv row", C, CONSENT_OK + "MTR0003,de-flex\n", "config-invalid", ("line 4", "2 field(s)", "header has 5")),
    ("long consent.csv row", C, CONSENT_OK + "MTR0003,de-flex,2026-01-01T00:00:00Z,,,x\n", "config-invalid", ("line 4", "6 fields")),
    (
        "duplicate meter row",
        M,
        METERS_OK + f"{SECRET_ID},DE,DE-A,s1,household,3500,EPPC0000000001.SMGW\n",
        "config-invalid",
        ("line 5", "line 2"),
    ),
    (
        "duplicate meter, other case",
        M,
        METERS_OK + f"{SECRET_ID.lower()},DE,DE-A,s1,household,3500,EPPC0000000001.SMGW\n",
        "config-invalid",
        ("line 5", "line 2", "ignoring case"),
    ),
    ("duplicate header column", M, _meters_csv("a,b,c,d,e,f,g", header=",".join(METER_COLUMNS) + ",area"), "config-invalid", ("header", "area")),
    ("missing column", M, _meters_csv("a,b", header="meter,area"), "config-invalid", ("header", "missing", "jurisdiction")),
    ("bad consent time", C, CONSENT_OK + "MTR0003,de-flex,yesterday,,\n", "config-invalid", ("line 4", "granted_from")),
    ("FIFO as meters.csv", M, "fifo", "input-unreadable", ("not a regular file",)),
    ("FIFO as consent.csv", C, "fifo", "input-unreadable", ("not a regular file",)),
    ("directory as meters.csv", M, "dir", "input-unreadable", ("not a regular file",)),
    ("missing meters.csv", M, "missing", "config-invalid", ("cannot read",)),
]  # fmt: skip


def _place(tmp_path: Path, contents: bytes | str) -> Path:
    path = tmp_path / "registry.csv"
    if contents == "fifo":
        os.mkfifo(path)
    elif contents == "dir":
        path.mkdir()
    elif contents == "missing":
        pass
    elif isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name,load,contents,category,words", CSV_CASES, ids=[c[0] for c in CSV_CASES]
)
def test_bad_registries_are_one_config_error(
    tmp_path: Path,
    name: str,
    load: Loader,
    contents: bytes | str,
    category: str,
    words: tuple[str, ...],
) -> None:
    path = _place(tmp_path, contents)
    with pytest.raises(ConfigError) as info:
        _done_within(30, lambda: load(path))
    err = info.value
    assert err.category == category
    assert err.detail.startswith(f"{path}: "), err.detail
    assert all(w in err.detail for w in words), err.detail
    assert SECRET_ID not in err.detail and SECRET_ID.lower() not in err.detail
    assert "\n" not in str(err)


def test_registries_with_a_bom_and_exact_duplicate_consent(tmp_path: Path) -> None:
    plain, bom = tmp_path / "m.csv", tmp_path / "m-bom.csv"
    plain.write_text(METERS_OK)
    bom.write_bytes(b"\xef\xbb\xbf" + METERS_OK.encode())
    assert MeterRegistry.load(bom).meters == MeterRegistry.load(plain).meters
    assert len(MeterRegistry.load(plain).meters) == 3
    consent = tmp_path / "c.csv"
    lines = CONSENT_OK.splitlines()
    consent.write_bytes(b"\xef\xbb\xbf" + "\n".join([*lines, lines[1]]).encode() + b"\n")
    grants = ConsentRegistry.load(consent).grants
    assert len(grants[SECRET_ID]) == 2 and len(set(grants[SECRET_ID])) == 1
    assert len(grants["MTR0002"]) == 1


_field = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00\ufeff"),
    max_size=12,
)


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"\A[A-Za-z0-9]{1,10}\Z"),
            *[_field] * 5,
            st.from_regex(r"\AEPPC[0-9]{10}\.SMGW\Z"),  # the gateway column may not be empty
        ),
        max_size=12,
        unique_by=lambda r: r[0].casefold(),
    ),
    st.sampled_from(["\n", "\r\n"]),
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_meters_csv_with_a_bom_parses_equal(rows: list[tuple[str, ...]], newline: str) -> None:
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator=newline)
    writer.writerow(METER_COLUMNS)
    writer.writerows(rows)
    data = text.getvalue().encode()
    with tempfile.TemporaryDirectory() as d:
        plain, bom = Path(d) / "m.csv", Path(d) / "b.csv"
        plain.write_bytes(data)
        bom.write_bytes(b"\xef\xbb\xbf" + data)
        assert MeterRegistry.load(bom).meters == MeterRegistry.load(plain).meters
        assert len(MeterRegistry.load(plain).meters) == len(rows)


# --- 4. PKI files that do not belong together ------------------------------------------------


FORWARD = ("de-supplier-forward",)


@pytest.fixture()
def pki(synth_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synth_dir / "pki", tmp_path / "pki"))


def _swap(a: str, b: str) -> Callable[[Path], None]:
    def change(pki: Path) -> None:
        data_a, data_b = (pki / a).read_bytes(), (pki / b).read_bytes()
        (pki / a).write_bytes(data_b)
        (pki / b).write_bytes(data_a)

    return change


def _copy(src: str, dst: str) -> Callable[[Path], object]:
    return lambda pki: shutil.copyfile(pki / src, pki / dst)


def _put(name: str, data: bytes) -> Callable[[Path], object]:
    return lambda pki: (pki / name).write_bytes(data)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda pki: (pki / name).unlink()


def _replace_by(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(pki: Path) -> None:
        (pki / name).unlink()
        make(pki / name)

    return change


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, signer: Any
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(signer, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _impostor_chain(pki: Path) -> None:
    """A chain certificate with the real issuer's name but another key."""
    real = x509.load_pem_x509_certificate((pki / "pseudonymiser-cert.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    (pki / "pseudonymiser-chain.pem").write_bytes(_pem(_cert(real.issuer, real.issuer, key, key)))


def _self_signed_pseudonymiser(pki: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (pki / "pseudonymiser-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    name = _name("self-signed pseudonymiser")
    (pki / "pseudonymiser-cert.pem").write_bytes(_pem(_cert(name, name, key, key)))


def _forged_self_signed(pki: Path) -> None:
    """Subject equals issuer, but signed by another key: not self-signed."""
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (pki / "pseudonymiser-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    name = _name("forged")
    (pki / "pseudonymiser-cert.pem").write_bytes(_pem(_cert(name, name, key, other)))


# (name, how to break a copy of the synthetic PKI, words of the error; None = accepted)
PKI_CASES: list[tuple[str, Callable[[Path], object], tuple[str, ...] | None]] = [
    ("untouched", lambda pki: None, None),
    ("hub key of the pseudonymiser", _copy("pseudonymiser-key.pem", "hub-key.pem"), ("hub-key.pem is not the key of hub-cert.pem",)),
    ("hub and pseudonymiser keys swapped", _swap("hub-key.pem", "pseudonymiser-key.pem"), ("hub-key.pem is not the key of hub-cert.pem", "pseudonymiser-key.pem is not the key of pseudonymiser-cert.pem")),
    ("hub certificate of another identity", _copy("forward-de-supplier-forward-cert.pem", "hub-cert.pem"), ("hub-key.pem is not the key of hub-cert.pem",)),
    ("pseudonymiser chain of the SM-PKI", _copy("intermediates.pem", "pseudonymiser-chain.pem"), ("pseudonymiser-cert.pem is neither self-signed nor issued by a certificate of pseudonymiser-chain.pem",)),
    ("pseudonymiser chain: right name, wrong key", _impostor_chain, ("pseudonymiser-chain.pem", "issuer's name but not its key")),
    ("self-signed pseudonymiser", _self_signed_pseudonymiser, None),
    ("forged self-signed pseudonymiser", _forged_self_signed, ("pseudonymiser-cert.pem is neither self-signed",)),
    ("pseudonym secret of 16 bytes", _put("pseudonym-secret.key", b"s" * 16), ("pseudonym-secret.key has 16 bytes",)),
    ("empty pseudonym secret", _put("pseudonym-secret.key", b""), ("pseudonym-secret.key has 0 bytes",)),
    ("trust anchor missing", _remove("trust-anchor.pem"), ("trust-anchor.pem is missing",)),
    ("forward certificate missing", _remove("forward-de-supplier-forward-cert.pem"), ("forward-de-supplier-forward-cert.pem is missing",)),
    ("hub key not a key", _put("hub-key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ("hub-key.pem: not a PEM private key",)),
    ("intermediates not certificates", _put("intermediates.pem", b"garbage"), ("intermediates.pem: not a PEM or DER certificate",)),
    ("FIFO as hub certificate", _replace_by("hub-cert.pem", lambda p: os.mkfifo(p)), ("hub-cert.pem is not a regular file",)),
    ("directory as pseudonym secret", _replace_by("pseudonym-secret.key", lambda p: p.mkdir()), ("pseudonym-secret.key is not a regular file",)),
]  # fmt: skip


@pytest.mark.parametrize("name,change,words", PKI_CASES, ids=[c[0] for c in PKI_CASES])
def test_pki_files_must_belong_together(
    pki: Path, name: str, change: Callable[[Path], object], words: tuple[str, ...] | None
) -> None:
    assert {p.name for p in pki.iterdir()} >= set(PKI_FILES)
    change(pki)
    if words is None:
        check_pki(pki, FORWARD)
        return
    with pytest.raises(ConfigError) as info:
        _done_within(30, lambda: check_pki(pki, FORWARD))
    err = info.value
    assert err.category == "config-invalid"
    assert err.detail.startswith(f"{pki}: "), err.detail
    assert all(w in err.detail for w in words), err.detail
    assert "BEGIN" not in err.detail and "\n" not in str(err)


def test_pki_forward_ids_are_checked(pki: Path) -> None:
    check_pki(pki, ())
    with pytest.raises(ConfigError, match="forward-nobody-cert.pem is missing"):
        check_pki(pki, ("nobody",))

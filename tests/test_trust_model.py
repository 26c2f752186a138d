"""The SM-PKI trust model, each case a real message made by the OpenSSL CLI at test time:
the content-signature certificate profile, validity that does not trust the sender's clock,
revocation by CRLs, and bounded path building (a path bomb)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives.serialization import Encoding

from minimeter.cms import TrustStore, make_signed_data, open_message, resign
from minimeter.cms.envelope import strip_envelope
from minimeter.cms.trust import MAX_SIGNATURE_CHECKS
from minimeter.errors import CmsError, ConfigError
from minimeter.keys import load_certificates, load_private_key

from opensslkit import (
    AUTH_ENVELOPED,
    Identity,
    Pki,
    decrypt,
    encrypt,
    openssl,
    sign,
    verify,
    wrap_content_info,
)

PAYLOAD = b'<?xml version="1.0"?><profile>' + b"<v>1</v>" * 50 + b"</profile>"


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        pki = self.pki = Pki(base / "pki")
        since = "20240101000000Z"  # an SM-PKI older than its gateways
        self.root = pki.root("sm-root", start=since)
        self.subca = pki.issue(
            "sm-subca", self.root, profile="ca", start=since, end="20350101000000Z"
        )
        self.subca2 = pki.issue("sm-subca-2", self.root, profile="ca")
        self.gateway = pki.issue("EPPC0000000001.SMGW", self.subca)
        self.cms_eku = pki.issue("EPPC0000000002.SMGW", self.subca, profile="cmssign")
        self.no_usage = pki.issue("gw-no-keyusage", self.subca, profile="nokeyusage")
        self.code_sign = pki.issue("gw-codesigning", self.subca, profile="codesign")
        self.ca_leaf = pki.issue("gw-ca-leaf", self.subca, profile="caleaf")
        self.expired = pki.issue(
            "gw-expired", self.subca, start="20250101000000Z", end="20251201000000Z"
        )
        self.not_yet = pki.issue(
            "gw-not-yet", self.subca, start="20400101000000Z", end="20410101000000Z"
        )
        self.revoked = pki.issue("gw-revoked", self.subca)
        self.under_revoked_ca = pki.issue("gw-under-revoked-ca", self.subca2)
        self.hub = pki.issue("hub", self.subca, profile="enc_ec")
        pki.revoke(self.revoked, self.subca)
        pki.revoke(self.subca2, self.root)
        self.subca_crl = pki.crl(self.subca, "subca")
        self.root_crl = pki.crl(self.root, "root")
        self.stale_crl = pki.crl(self.subca, "stale", hours=1)
        self.other_root = pki.root("other-root")
        self.foreign_crl = pki.crl(self.other_root, "foreign")
        self.payload = base / "payload.xml"
        self.payload.write_bytes(PAYLOAD)
        self.envelope = encrypt(self.payload, [self.hub.cert], base / "env.der")
        self.count = 0

    def message(self, signer: Identity, *, certfile: Path | None = None) -> bytes:
        self.count += 1
        out = self.base / f"msg-{self.count}.der"
        return sign(
            self.envelope, signer, out, econtent_type=AUTH_ENVELOPED, certfile=certfile
        ).read_bytes()

    def trust(self, *, crls: bool = True, at: datetime | None = None) -> TrustStore:
        return TrustStore.from_files(
            [self.root.cert],
            [self.subca.cert, self.subca2.cert],
            [self.subca_crl, self.root_crl] if crls else [],
            at=at or datetime.now(UTC),
        )

    def open(self, data: bytes, *, at: datetime | None = None, trust: TrustStore | None = None):
        return open_message(
            data,
            recipient_key=load_private_key(self.hub.key),
            recipient_cert=load_certificates(self.hub.cert)[0],
            trust=trust or self.trust(),
            at=at or datetime.now(UTC),
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("trust-model"))


def refused(world: World, data: bytes, category: str, text: str, **kw: object) -> None:
    with pytest.raises(CmsError) as info:
        world.open(data, **kw)  # type: ignore[arg-type]
    assert info.value.category == category, info.value
    assert text in info.value.detail, info.value.detail


def test_a_gateway_with_the_content_signature_profile_opens(world: World) -> None:
    assert world.open(world.message(world.gateway)).payload == PAYLOAD
    assert world.open(world.message(world.cms_eku)).payload == PAYLOAD  # emailProtection EKU


@pytest.mark.parametrize(
    "who,text",
    [
        ("no_usage", "no keyUsage"),
        ("code_sign", "extendedKeyUsage excludes content signing"),
        ("ca_leaf", "is a CA certificate"),
    ],
)
def test_certificates_outside_the_profile_are_untrusted(world: World, who: str, text: str) -> None:
    refused(world, world.message(getattr(world, who)), "untrusted-signer", text)


def _signed_at(world: World, signer: Identity, when: datetime) -> bytes:
    """A message whose signingTime the signer chose (the CLI always signs with 'now')."""
    inner = world.envelope.read_bytes()
    from asn1crypto import cms

    bare = cms.ContentInfo.load(inner)["content"].untag().dump()
    return make_signed_data(
        bare,
        AUTH_ENVELOPED,
        signer_key=load_private_key(signer.key),  # type: ignore[arg-type]
        signer_cert=load_certificates(signer.cert)[0],
        at=when,
    )


def test_validity_does_not_trust_the_senders_clock(world: World) -> None:
    # expired in December: signed now, it is refused
    refused(
        world, world.message(world.expired), "untrusted-signer", "not valid at the signing time"
    )
    # expired with a backdated signingTime: the signature holds at that time; the pipeline then
    # refuses every reading captured after it (test_pipeline_trust)
    backdated = _signed_at(world, world.expired, datetime(2025, 11, 30, tzinfo=UTC))
    assert world.open(backdated).signing_time == datetime(2025, 11, 30, tzinfo=UTC)
    # not yet valid, with a post-dated signingTime inside its validity
    postdated = _signed_at(world, world.not_yet, datetime(2040, 6, 1, tzinfo=UTC))
    refused(world, postdated, "untrusted-signer", "signing time lies after the processing time")
    # a valid certificate, signing time 900 days ahead
    ahead = _signed_at(world, world.gateway, datetime.now(UTC) + timedelta(days=900))
    refused(world, ahead, "untrusted-signer", "signing time lies after the processing time")
    # a few seconds ahead is clock skew, not a lie
    skew = _signed_at(world, world.gateway, datetime.now(UTC) + timedelta(seconds=30))
    assert world.open(skew).payload == PAYLOAD


def test_revoked_gateway_and_revoked_sub_ca(world: World) -> None:
    refused(world, world.message(world.revoked), "revoked", "revoked")
    refused(world, world.message(world.under_revoked_ca), "revoked", "revoked")
    # without the CRLs they open: it is the CRL that refuses them
    assert world.open(world.message(world.revoked), trust=world.trust(crls=False)).payload


def test_crls_must_be_current_and_signed_by_a_configured_ca(world: World) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(ConfigError, match="not current"):
        TrustStore.from_files([world.root.cert], [world.subca.cert], [world.stale_crl], at=later)
    with pytest.raises(ConfigError, match="not signed by a configured CA"):
        TrustStore.from_files([world.root.cert], [], [world.foreign_crl], at=datetime.now(UTC))


def test_a_path_bomb_is_refused_within_a_bounded_number_of_signature_checks(
    world: World, tmp_path: Path
) -> None:
    """16 look-alike CAs (the sub-CA's name, the attacker's one key), each 'issued' by the
    others: every ordering is a chain, none reaches the root."""
    key = world.pki.key("attacker", "brainpoolP256r1")
    bombs = []
    for i in range(16):
        cert = tmp_path / f"lookalike-{i}.pem"
        openssl(
            "req", "-x509", "-new", "-key", key, "-subj", "/CN=sm-subca", "-set_serial", str(100 + i),
            "-days", "365", "-config", world.pki.ext, "-extensions", "ext_ca", "-out", cert,
        )  # fmt: skip
        bombs.append(cert.read_bytes())
    csr = tmp_path / "leaf.csr"
    leaf_key = world.pki.key("attacker-leaf", "brainpoolP256r1")
    openssl("req", "-new", "-key", leaf_key, "-subj", "/CN=EPPC0000000009.SMGW", "-out", csr)
    leaf = tmp_path / "leaf.pem"
    openssl(
        "x509", "-req", "-in", csr, "-CA", tmp_path / "lookalike-0.pem", "-CAkey", key,
        "-set_serial", "7", "-days", "30", "-extfile", world.pki.ext, "-extensions", "ext_sign",
        "-out", leaf,
    )  # fmt: skip
    pool = tmp_path / "pool.pem"
    pool.write_bytes(b"".join(bombs))
    data = world.message(Identity(leaf_key, leaf), certfile=pool)
    assert len(data) > 16 * 350  # the message carries the look-alikes
    trust = world.trust()
    started = time.perf_counter()
    refused(world, data, "untrusted-signer", "no certification path", trust=trust)
    seconds = time.perf_counter() - started
    assert len(trust._links) <= MAX_SIGNATURE_CHECKS  # every link checked once, within the cap
    print(f"path bomb (16 look-alike CAs) refused in {seconds * 1000:.1f} ms")


def test_relay_hygiene_strips_originator_info_and_unprotected_attributes(world: World) -> None:
    """An OpenSSL envelope given originatorInfo (the gateway's certificate) and an unprotected
    attribute, signed by OpenSSL: re-signing removes both, the recipient still decrypts it with
    ``openssl cms -decrypt``; an envelope without them stays byte-identical."""
    env = acms.ContentInfo.load(world.envelope.read_bytes())["content"]
    gateway_der = load_certificates(world.gateway.cert)[0].public_bytes(Encoding.DER)
    fields = {
        name: env[name]
        for name, *_ in acms.AuthEnvelopedData._fields
        if not isinstance(env[name], core.Void)
    }
    fields["originator_info"] = acms.OriginatorInfo(
        {"certs": [acms.CertificateChoices({"certificate": ax509.Certificate.load(gateway_der)})]}
    )
    fields["unauth_attrs"] = acms.CMSAttributes(
        [{"type": "1.2.3.4.5", "values": [core.OctetString(b"gw")]}]
    )
    bare = world.base / "dressed-bare.der"
    bare.write_bytes(acms.AuthEnvelopedData(fields).dump())
    message = sign(bare, world.gateway, world.base / "dressed.der", econtent_type=AUTH_ENVELOPED)
    assert gateway_der in message.read_bytes()
    out = resign(
        message.read_bytes(),
        signer_key=load_private_key(world.cms_eku.key),
        signer_cert=load_certificates(world.cms_eku.cert)[0],
        chain=load_certificates(world.subca.cert),
        trust=world.trust(),
        at=datetime.now(UTC),
    )
    relayed = world.base / "relayed.der"
    relayed.write_bytes(out)
    econtent = verify(relayed, world.root.cert)
    stripped = acms.AuthEnvelopedData.load(econtent)
    assert isinstance(stripped["originator_info"], core.Void)
    assert isinstance(stripped["unauth_attrs"], core.Void)
    assert gateway_der not in out
    ci = world.base / "relayed-env.der"
    ci.write_bytes(wrap_content_info(econtent, AUTH_ENVELOPED))
    assert decrypt(ci, world.hub) == PAYLOAD
    plain = env.untag().dump()
    assert strip_envelope(plain, AUTH_ENVELOPED) == (plain, ())


def test_a_prepared_hub_keeps_its_caches_and_nothing_is_remembered_process_wide(
    world: World,
) -> None:
    """``Hub`` (built once per worker in ``DoFn.setup()``) owns its caches: the trust store its
    checked links, the recipient its identifier answers and key-agreement checks, the signer its
    DER template. No module of the CMS core holds a memo of certificates or keys."""
    import minimeter.cms as cms_package
    from minimeter.cms import (
        CmsSigner,
        EnvelopeRecipient,
        Hub,
        OpenedMessage,
        _memo,
        api,
        envelope,
        signed,
        trust,
    )

    def hub() -> Hub:
        return Hub(
            recipient=EnvelopeRecipient(
                load_private_key(world.hub.key), load_certificates(world.hub.cert)[0]
            ),
            signer=CmsSigner(
                load_private_key(world.cms_eku.key),
                load_certificates(world.cms_eku.cert)[0],
                load_certificates(world.subca.cert),
            ),
            trust=world.trust(),
        )

    first, second = hub(), hub()
    message = world.message(world.gateway)
    for _ in range(3):
        opened = first.open_or_relay(message, at=datetime.now(UTC))
        assert isinstance(opened, OpenedMessage) and opened.payload == PAYLOAD
    assert len(first.recipient.identity._answers) == 1
    assert first.recipient._agreements and not second.recipient._agreements
    assert not second.recipient.identity._answers
    opened, resigned = second.open_and_resign(message, at=datetime.now(UTC))
    assert opened.payload == PAYLOAD
    relayed, ci = world.base / "prepared-resigned.der", world.base / "prepared-env.der"
    relayed.write_bytes(resigned)
    ci.write_bytes(verify(relayed, world.root.cert))  # OpenSSL's eContent: the ContentInfo
    assert decrypt(ci, world.hub) == PAYLOAD  # openssl verifies our signature and decrypts
    for module in (cms_package, api, envelope, signed, trust):
        for name, value in vars(module).items():
            assert not isinstance(value, _memo.IdentityMemo), (module.__name__, name)
            wrapped = getattr(value, "__wrapped__", None)
            if hasattr(value, "cache_info") and wrapped is not None:  # pure memos of DER bytes
                types = " ".join(map(str, wrapped.__annotations__.values()))
                assert "Certificate" not in types and "Key" not in types, (module.__name__, name)


@pytest.mark.parametrize(
    "cipher,field,kept",
    [
        ("aes128-gcm", "auth_attrs", True),  # authenticated: part of the MAC, never stripped
        ("aes128-gcm", "unauth_attrs", False),
        ("aes128-cbc", "unprotected_attrs", False),
        ("aes128-cbc", None, True),
    ],
)
def test_relay_hygiene_tells_removable_fields_by_their_tags(
    world: World, cipher: str, field: str | None, kept: bool
) -> None:
    """The quick look at the envelope's top-level tags agrees with asn1crypto's full parse:
    only originatorInfo and the unprotected attributes go, in both envelope types."""
    from minimeter.cms import encrypt_envelope

    hub_cert = load_certificates(world.hub.cert)[0]
    content_type, bare = encrypt_envelope(PAYLOAD, [hub_cert], cipher=cipher)
    spec = acms.AuthEnvelopedData if cipher.endswith("gcm") else acms.EnvelopedData
    env = spec.load(bare)
    if field is not None:
        fields = {n: env[n] for n, *_ in spec._fields if not isinstance(env[n], core.Void)}
        if field == "auth_attrs":  # a content-type attribute: authenticated like the content
            fields["auth_attrs"] = acms.CMSAttributes(
                [{"type": "content_type", "values": ["data"]}]
            )
        else:
            fields[field] = acms.CMSAttributes(
                [{"type": "1.2.3.4.5", "values": [core.OctetString(b"gw")]}]
            )
        bare = spec(fields).dump()
    stripped, removed = strip_envelope(bare, content_type)
    assert (stripped == bare) is kept and (removed == ()) is kept
    if not kept:
        assert removed == (field,) and isinstance(spec.load(stripped)[field], core.Void)


def test_a_broken_envelope_is_never_re_signed(world: World) -> None:
    """A well-formed DER SEQUENCE that is no envelope, signed by a trusted gateway: re-signing
    (relay, ``cms resign``) refuses it as ``malformed`` instead of passing it on."""
    bare = world.base / "not-an-envelope.der"
    bare.write_bytes(
        b"\x30\x45\x02\x01\x00\x04\x40" + b"x" * 64
    )  # SEQUENCE {INTEGER 0, OCTET STRING}
    message = sign(
        bare, world.gateway, world.base / "not-an-envelope.cms", econtent_type=AUTH_ENVELOPED
    )
    with pytest.raises(CmsError) as info:
        resign(
            message.read_bytes(),
            signer_key=load_private_key(world.cms_eku.key),
            signer_cert=load_certificates(world.cms_eku.cert)[0],
            trust=world.trust(),
            at=datetime.now(UTC),
        )
    assert info.value.category == "malformed"

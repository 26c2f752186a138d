"""Every CmsError category, each produced by a real broken message, plus fuzzing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asn1crypto import cms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimeter.cms import DEFAULT_MAX_SIZE, TrustStore, open_message, resign
from minimeter.errors import CMS_CATEGORIES, CmsError
from minimeter.keys import load_certificates, load_private_key

from conftest import CmsWorld
from mutations import mutate
from opensslkit import AUTH_ENVELOPED, encrypt, sign, strip_content_info
from test_cms_interop import _name, make_message, now, open_with, trust

PRODUCED: set[str] = set()


def expect(world: CmsWorld, data: bytes, category: str, **kw: object) -> CmsError:
    with pytest.raises(CmsError) as info:
        open_with(world, data, kw.pop("recipient", world.hub), **kw)  # type: ignore[arg-type]
    assert info.value.category == category, info.value
    PRODUCED.add(category)
    # never any plaintext in an error
    assert b"<v>42</v>".decode() not in str(info.value)
    return info.value


def flip(data: bytes, needle: bytes, offset: int = 0, mask: int = 0x01) -> bytes:
    at = data.index(needle) + offset
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


def test_flipped_signature_byte(world: CmsWorld) -> None:
    data = make_message(world, [world.hub]).read_bytes()
    sig = cms.ContentInfo.load(data)["content"]["signer_infos"][0]["signature"].native
    expect(world, flip(data, sig, len(sig) // 2), "signature-invalid")


def test_tampered_signed_content_breaks_message_digest(world: CmsWorld) -> None:
    data = make_message(world, [world.hub]).read_bytes()
    econtent = bytes(cms.ContentInfo.load(data)["content"]["encap_content_info"]["content"])
    expect(world, flip(data, econtent, len(econtent) - 3), "signature-invalid")


def test_content_type_attribute_must_match_econtent_type(world: CmsWorld) -> None:
    env = strip_content_info(
        encrypt(world.payload, [world.hub.cert], _name(world, "e")), _name(world, "b")
    )
    enveloped_oid = bytes.fromhex("06092a864886f70d010703")
    data_oid = bytes.fromhex("06092a864886f70d010701")
    msg = sign(
        env, world.gateway, _name(world, "m"), econtent_type="1.2.840.113549.1.7.3"
    ).read_bytes()
    # the first occurrence is eContentType (unsigned); the signed contentType attribute follows
    assert msg.count(enveloped_oid) == 2
    relabelled = msg.replace(enveloped_oid, data_oid, 1)
    expect(world, relabelled, "signature-invalid")


def _resigned_tampered_envelope(world: CmsWorld, cipher: str, part: str) -> bytes:
    env_path = strip_content_info(
        encrypt(world.payload, [world.hub.cert], _name(world, "e"), cipher=cipher),
        _name(world, "b"),
    )
    env = env_path.read_bytes()
    kind = cms.AuthEnvelopedData if cipher.endswith("gcm") else cms.EnvelopedData
    parsed = kind.load(env)
    eci = parsed[
        "auth_encrypted_content_info" if cipher.endswith("gcm") else "encrypted_content_info"
    ]
    ciphertext = eci["encrypted_content"].native
    if part == "ciphertext":
        tampered = flip(env, ciphertext, 5)
    elif part == "tag":
        tampered = flip(env, parsed["mac"].native, 3)
    else:  # last byte of the next-to-last CBC block: padding becomes invalid, deterministically
        tampered = flip(env, ciphertext, len(ciphertext) - 17, 0xFF)
    env_path.write_bytes(tampered)
    econtent_type = AUTH_ENVELOPED if cipher.endswith("gcm") else "1.2.840.113549.1.7.3"
    return sign(
        env_path, world.gateway, _name(world, "m"), econtent_type=econtent_type
    ).read_bytes()


@pytest.mark.parametrize("part", ["ciphertext", "tag"])
def test_tampered_gcm_ciphertext_or_tag(world: CmsWorld, part: str) -> None:
    expect(world, _resigned_tampered_envelope(world, "aes-128-gcm", part), "decryption-failed")


def test_tampered_cbc_ciphertext(world: CmsWorld) -> None:
    expect(world, _resigned_tampered_envelope(world, "aes-256-cbc", "padding"), "decryption-failed")


def test_wrong_recipient(world: CmsWorld) -> None:
    data = make_message(world, [world.hubs["prime256v1"]]).read_bytes()
    expect(world, data, "not-a-recipient", recipient=world.stranger)


def test_expired_signer(world: CmsWorld) -> None:
    err = expect(
        world,
        make_message(world, [world.hub], signer=world.expired).read_bytes(),
        "untrusted-signer",
    )
    assert "gw-expired" not in str(err)  # no gateway identity in errors


def test_signer_under_another_root(world: CmsWorld) -> None:
    expect(
        world,
        make_message(world, [world.hub], signer=world.foreign).read_bytes(),
        "untrusted-signer",
    )


def test_signer_certificate_without_digital_signature(world: CmsWorld) -> None:
    expect(
        world,
        make_message(world, [world.hub], signer=world.no_sign).read_bytes(),
        "untrusted-signer",
    )


def test_missing_intermediate(world: CmsWorld) -> None:
    data = make_message(world, [world.hub]).read_bytes()
    expect(world, data, "untrusted-signer", trust=trust(world, intermediates=False))


def test_truncated(world: CmsWorld) -> None:
    data = make_message(world, [world.hub]).read_bytes()
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        expect(world, data[:cut], "malformed")


def test_declared_length_beyond_the_data(world: CmsWorld) -> None:
    # a SEQUENCE header claiming 2 GiB of content, followed by a few bytes
    expect(
        world, bytes([0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF]) + b"\x06\x09" + b"\x00" * 16, "malformed"
    )


@pytest.mark.parametrize("data", [b"", b"   \n", b"garbage, not CMS at all", bytes(range(256))])
def test_garbage_and_empty(world: CmsWorld, data: bytes) -> None:
    expect(world, data, "malformed")


def test_signed_plaintext(world: CmsWorld) -> None:
    data = sign(
        world.payload, world.gateway, _name(world, "plain"), econtent_type=None
    ).read_bytes()
    expect(world, data, "not-encrypted")


def test_unsigned_envelope(world: CmsWorld) -> None:
    env = encrypt(world.payload, [world.hub.cert], _name(world, "e"))
    expect(world, env.read_bytes(), "not-signed")


def test_detached_signature(world: CmsWorld) -> None:
    env = encrypt(world.payload, [world.hub.cert], _name(world, "e"))
    data = sign(env, world.gateway, _name(world, "d"), detached=True).read_bytes()
    expect(world, data, "malformed")


def test_sha1_signature_is_unsupported(world: CmsWorld) -> None:
    expect(world, make_message(world, [world.hub], md="sha1").read_bytes(), "unsupported-algorithm")


def test_bsi_cbc_cmac_is_known_but_unsupported(world: CmsWorld) -> None:
    env_path = strip_content_info(
        encrypt(world.payload, [world.hub.cert], _name(world, "e")), _name(world, "b")
    )
    env = cms.AuthEnvelopedData.load(env_path.read_bytes())
    env["auth_encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "0.4.0.127.0.7.1.3.1.1.2",
        "parameters": cms.OctetString(b"\x00" * 16),
    }
    env_path.write_bytes(env.dump(force=True))
    data = sign(env_path, world.gateway, _name(world, "m")).read_bytes()
    err = expect(world, data, "unsupported-algorithm")
    assert "bsi-aes128-cbc-cmac" in str(err)


def test_revoked_signer(world: CmsWorld) -> None:
    revoked = world.pki.issue("gw-revoked-f", world.subca)
    world.pki.revoke(revoked, world.subca)
    crl = world.pki.crl(world.subca, "subca-f")
    store = TrustStore.from_files([world.root.cert], [world.subca.cert], [crl], at=now())
    data = make_message(world, [world.hub], signer=revoked).read_bytes()
    expect(world, data, "revoked", trust=store)


def test_payload_too_large(world: CmsWorld) -> None:
    data = make_message(world, [world.hub]).read_bytes()
    expect(world, data, "payload-too-large", max_size=len(data) - 1)
    expect(world, b"0" * (DEFAULT_MAX_SIZE + 1), "payload-too-large")


def test_resign_fails_closed_like_open(world: CmsWorld) -> None:
    kw = dict(
        signer_key=load_private_key(world.pseudonymiser.key),
        signer_cert=load_certificates(world.pseudonymiser.cert)[0],
        trust=trust(world),
        at=now(),
    )
    plain = sign(
        world.payload, world.gateway, _name(world, "plain"), econtent_type=None
    ).read_bytes()
    foreign = make_message(world, [world.hub], signer=world.foreign).read_bytes()
    for data, category in (
        (plain, "not-encrypted"),
        (foreign, "untrusted-signer"),
        (b"", "malformed"),
    ):
        with pytest.raises(CmsError) as info:
            resign(data, **kw)  # type: ignore[arg-type]
        assert info.value.category == category


# --- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_context(world: CmsWorld) -> tuple[bytes, dict[str, object]]:
    data = make_message(world, [world.hub], certfile=world.subca.cert).read_bytes()
    return data, {
        "recipient_key": load_private_key(world.hub.key),
        "recipient_cert": load_certificates(world.hub.cert)[0],
        "trust": trust(world),
        "at": now() + timedelta(days=1),  # the module's messages are all signed before this
    }


def _only_cms_errors(data: bytes, context: dict[str, object]) -> None:
    try:
        open_message(data, **context)  # type: ignore[arg-type]
    except CmsError as exc:
        assert exc.category in CMS_CATEGORIES


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_cms_errors(fuzz_context, blob: bytes) -> None:  # noqa: ANN001
    _only_cms_errors(blob, fuzz_context[1])


@FUZZ
@given(st.data())
def test_mutated_messages_raise_only_cms_errors(fuzz_context, data: st.DataObject) -> None:  # noqa: ANN001
    message, context = fuzz_context
    mutated = mutate(data, message, ops=("flip", "cut", "insert", "delete"), most=4, width=8)
    _only_cms_errors(mutated, context)


@FUZZ
@given(st.integers(0, 3000), st.integers(1, 255))
def test_single_byte_flips_never_open_silently(fuzz_context, pos: int, mask: int) -> None:  # noqa: ANN001
    """A flip anywhere under the signature is detected; unsigned fields may still open."""
    message, context = fuzz_context
    pos %= len(message)
    buf = bytearray(message)
    buf[pos] ^= mask
    try:
        opened = open_message(bytes(buf), **context)  # type: ignore[arg-type]
    except CmsError:
        return
    # Opened despite the flip: the payload must still be the authentic one.
    assert opened.payload == open_message(message, **context).payload  # type: ignore[arg-type]


def test_every_category_was_produced_by_a_real_message() -> None:
    """Runs last in this module: the tests above produced every category at least once."""
    if not PRODUCED:
        pytest.skip("run the whole module to check category coverage")
    assert PRODUCED == CMS_CATEGORIES

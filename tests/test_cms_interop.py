"""OpenSSL -> Minimeter and Minimeter -> OpenSSL interoperability of the CMS core."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms

from minimeter.cms import TrustStore, open_message, resign, seal_message
from minimeter.keys import load_certificates, load_private_key

from conftest import CmsWorld
from opensslkit import (
    AUTH_ENVELOPED,
    ENVELOPED,
    Identity,
    decrypt,
    encrypt,
    openssl,
    sign,
    strip_content_info,
    verify,
    wrap_content_info,
)

CURVES = ["brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "prime256v1", "secp384r1"]
KDFS = ["sha1", "sha224", "sha256", "sha384", "sha512"]
_counter = itertools.count()


def _name(world: CmsWorld, stem: str) -> Path:
    return world.path(f"{stem}-{next(_counter)}")


def trust(world: CmsWorld, *, intermediates: bool = True) -> TrustStore:
    return TrustStore.from_files([world.root.cert], [world.subca.cert] if intermediates else [])


def now() -> datetime:
    """The processing time of a test: the real clock (OpenSSL signs with it)."""
    return datetime.now(UTC)


def open_with(world: CmsWorld, message: bytes, recipient: Identity, **kw: object):
    kw.setdefault("at", now())
    return open_message(
        message,
        recipient_key=load_private_key(recipient.key),
        recipient_cert=load_certificates(recipient.cert)[0],
        trust=kw.pop("trust", None) or trust(world),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def make_message(
    world: CmsWorld,
    recipients: list[Identity],
    *,
    cipher: str = "aes-128-gcm",
    kdf: str | None = "sha256",
    signer: Identity | None = None,
    bare: bool = False,
    **sign_kw: object,
) -> Path:
    env = encrypt(
        world.payload,
        [r.cert for r in recipients],
        _name(world, "env"),
        cipher=cipher,
        kdf=kdf,
        keyid=bool(sign_kw.pop("recipient_keyid", False)),
        oaep=bool(sign_kw.pop("oaep", False)),
    )
    if bare:
        env = strip_content_info(env, _name(world, "bare"))
    econtent_type = AUTH_ENVELOPED if cipher.endswith("gcm") else ENVELOPED
    return sign(
        env, signer or world.gateway, _name(world, "msg"), econtent_type=econtent_type, **sign_kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("curve,kdf", list(itertools.product(CURVES, KDFS)))
def test_openssl_kari_every_curve_and_kdf(world: CmsWorld, curve: str, kdf: str) -> None:
    msg = make_message(world, [world.hubs[curve]], kdf=kdf)
    opened = open_with(world, msg.read_bytes(), world.hubs[curve])
    assert opened.payload == world.payload.read_bytes()
    assert opened.recipient.kind == "kari"
    assert opened.cipher == "aes128-gcm"


@pytest.mark.parametrize(
    "cipher",
    ["aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "aes-128-cbc", "aes-192-cbc", "aes-256-cbc"],
)
@pytest.mark.parametrize("bare", [False, True], ids=["contentinfo-econtent", "bare-econtent"])
def test_openssl_every_cipher_and_wrap(world: CmsWorld, cipher: str, bare: bool) -> None:
    # OpenSSL picks the AES key wrap of the content key's size: 128/192/256 are all covered here.
    msg = make_message(world, [world.hub], cipher=cipher, bare=bare)
    opened = open_with(world, msg.read_bytes(), world.hub)
    assert opened.payload == world.payload.read_bytes()
    assert opened.cipher == cipher.replace("-", "", 1)
    assert opened.econtent_wrapped is not bare
    expected_type = AUTH_ENVELOPED if cipher.endswith("gcm") else ENVELOPED
    assert opened.signed_content_type == expected_type


@pytest.mark.parametrize("oaep", [False, True], ids=["pkcs1v15", "oaep"])
@pytest.mark.parametrize("cipher", ["aes-128-gcm", "aes-256-cbc"])
def test_openssl_rsa_key_transport(world: CmsWorld, oaep: bool, cipher: str) -> None:
    msg = make_message(world, [world.hub_rsa], cipher=cipher, kdf=None, oaep=oaep)
    opened = open_with(world, msg.read_bytes(), world.hub_rsa)
    assert opened.payload == world.payload.read_bytes()
    assert opened.recipient.kind == "ktri"


@pytest.mark.parametrize("recipient", ["ec", "rsa"])
def test_openssl_recipient_by_subject_key_identifier(world: CmsWorld, recipient: str) -> None:
    who = world.hub if recipient == "ec" else world.hub_rsa
    msg = make_message(
        world, [who], kdf=None if recipient == "rsa" else "sha256", recipient_keyid=True, keyid=True
    )
    opened = open_with(world, msg.read_bytes(), who)
    assert opened.payload == world.payload.read_bytes()
    assert opened.recipient.identifier == "subject-key-identifier"


def test_openssl_two_recipients_each_finds_its_entry(world: CmsWorld) -> None:
    msg = make_message(world, [world.hubs["brainpoolP384r1"], world.hub]).read_bytes()
    first = open_with(world, msg, world.hubs["brainpoolP384r1"])
    second = open_with(world, msg, world.hub)
    assert first.payload == second.payload == world.payload.read_bytes()
    assert {first.recipient.index, second.recipient.index} == {0, 1}


def test_openssl_mixed_ec_and_rsa_recipients(world: CmsWorld) -> None:
    msg = make_message(world, [world.hub_rsa, world.hub]).read_bytes()
    assert open_with(world, msg, world.hub).recipient.kind == "kari"
    assert open_with(world, msg, world.hub_rsa).recipient.kind == "ktri"


@pytest.mark.parametrize("md", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("signer", ["brainpool", "p384", "rsa", "rsa-pss"])
def test_openssl_signature_algorithms(world: CmsWorld, md: str, signer: str) -> None:
    who = {"brainpool": world.gateway, "p384": world.gateway_p384}.get(signer, world.gateway_rsa)
    msg = make_message(world, [world.hub], signer=who, md=md, pss=signer == "rsa-pss")
    opened = open_with(world, msg.read_bytes(), world.hub)
    assert opened.payload == world.payload.read_bytes()
    assert opened.signer == load_certificates(who.cert)[0]


def test_openssl_signer_by_subject_key_identifier(world: CmsWorld) -> None:
    msg = make_message(world, [world.hub], keyid=True)
    info = cms.ContentInfo.load(msg.read_bytes())
    assert info["content"]["signer_infos"][0]["sid"].name == "subject_key_identifier"
    assert open_with(world, msg.read_bytes(), world.hub).payload == world.payload.read_bytes()


def test_openssl_without_signed_attributes(world: CmsWorld) -> None:
    msg = make_message(world, [world.hub], noattr=True)
    info = cms.ContentInfo.load(msg.read_bytes())
    assert not info["content"]["signer_infos"][0]["signed_attrs"].contents
    at = datetime.now(UTC)
    opened = open_with(world, msg.read_bytes(), world.hub, at=at)
    assert opened.payload == world.payload.read_bytes()
    assert opened.signing_time == at  # no signingTime attribute: the injected time is used


def test_id_ec_public_key_as_signature_algorithm(world: CmsWorld) -> None:
    """Some signers write id-ecPublicKey + digestAlgorithm instead of ecdsa-with-SHA256."""
    msg = make_message(world, [world.hub], bare=True)
    info = cms.ContentInfo.load(msg.read_bytes())
    si = info["content"]["signer_infos"][0]
    assert si["signature_algorithm"]["algorithm"].dotted == "1.2.840.10045.4.3.2"
    si["signature_algorithm"] = {"algorithm": "1.2.840.10045.2.1"}
    rewritten = info.dump(force=True)
    assert open_with(world, rewritten, world.hub).payload == world.payload.read_bytes()


def test_openssl_pem_armour_cms_and_pkcs7(world: CmsWorld) -> None:
    msg = make_message(world, [world.hub], outform="PEM").read_bytes()
    assert msg.startswith(b"-----BEGIN CMS-----")
    assert open_with(world, msg, world.hub).payload == world.payload.read_bytes()
    pkcs7 = msg.replace(b"BEGIN CMS", b"BEGIN PKCS7").replace(b"END CMS", b"END PKCS7")
    assert open_with(world, pkcs7, world.hub).payload == world.payload.read_bytes()


def test_openssl_ber_streamed_message(world: CmsWorld) -> None:
    env = encrypt(world.payload, [world.hub.cert], _name(world, "env"))
    out = _name(world, "ber")
    openssl(
        "cms",
        "-sign",
        "-signer",
        world.gateway.cert,
        "-inkey",
        world.gateway.key,
        "-binary",
        "-nodetach",
        "-stream",
        "-econtent_type",
        AUTH_ENVELOPED,
        "-outform",
        "DER",
        "-in",
        env,
        "-out",
        out,
    )
    assert out.read_bytes()[1] == 0x80  # indefinite length
    assert open_with(world, out.read_bytes(), world.hub).payload == world.payload.read_bytes()


def test_intermediate_from_message_or_configuration(world: CmsWorld) -> None:
    in_message = make_message(world, [world.hub], certfile=world.subca.cert).read_bytes()
    not_in_message = make_message(world, [world.hub]).read_bytes()
    only_root = trust(world, intermediates=False)
    assert open_with(world, in_message, world.hub, trust=only_root).payload
    assert open_with(world, not_in_message, world.hub).payload  # configured intermediate


# --- Minimeter -> OpenSSL --------------------------------------------------------------------------


@pytest.mark.parametrize("bare", [False, True], ids=["contentinfo-econtent", "bare-econtent"])
def test_resign_output_verifies_with_openssl(world: CmsWorld, bare: bool) -> None:
    original = make_message(world, [world.hub], certfile=world.subca.cert, bare=bare)
    original_econtent = verify(original, world.root.cert)
    out = resign(
        original.read_bytes(),
        signer_key=load_private_key(world.pseudonymiser.key),
        signer_cert=load_certificates(world.pseudonymiser.cert)[0],
        trust=trust(world),
        at=now(),
    )
    resigned = _name(world, "resigned")
    resigned.write_bytes(out)
    assert verify(resigned, world.ps_root.cert) == original_econtent
    with pytest.raises(RuntimeError):  # the gateway's root no longer vouches for it
        verify(resigned, world.root.cert)
    signed = cms.ContentInfo.load(out)["content"]
    assert signed["encap_content_info"]["content_type"].dotted == AUTH_ENVELOPED
    assert len(signed["signer_infos"]) == 1
    certs = [c.chosen.dump() for c in signed["certificates"]]
    assert certs == [load_certificates(world.pseudonymiser.cert)[0].public_bytes(_der())]
    gateway_der = load_certificates(world.gateway.cert)[0].public_bytes(_der())
    subca_der = load_certificates(world.subca.cert)[0].public_bytes(_der())
    assert gateway_der not in out and subca_der not in out
    assert not signed["crls"]
    attrs = {a["type"].native for a in signed["signer_infos"][0]["signed_attrs"]}
    assert attrs == {"content_type", "message_digest", "signing_time"}
    # the hub can still decrypt the relayed envelope with OpenSSL
    env = _name(world, "relayed-env")
    econtent = verify(resigned, world.ps_root.cert)
    env.write_bytes(econtent if not bare else wrap_content_info(econtent, AUTH_ENVELOPED))
    assert decrypt(env, world.hub) == world.payload.read_bytes()


def test_resign_with_chain_in_certificate_set(world: CmsWorld) -> None:
    original = make_message(world, [world.hub])
    chain = load_certificates(world.ps_root.cert)
    out = resign(
        original.read_bytes(),
        signer_key=load_private_key(world.pseudonymiser.key),
        signer_cert=load_certificates(world.pseudonymiser.cert)[0],
        chain=chain,
        trust=trust(world),
        at=now(),
    )
    signed = cms.ContentInfo.load(out)["content"]
    assert len(signed["certificates"]) == 2


@pytest.mark.parametrize("cipher", ["aes128-gcm", "aes256-gcm", "aes128-cbc", "aes256-cbc"])
@pytest.mark.parametrize("curve", ["brainpoolP256r1", "brainpoolP512r1", "secp384r1"])
def test_seal_message_opens_with_openssl(world: CmsWorld, cipher: str, curve: str) -> None:
    recipient = world.hubs[curve]
    message = seal_message(
        world.payload.read_bytes(),
        load_certificates(recipient.cert),
        signer_key=load_private_key(world.gateway.key),
        signer_cert=load_certificates(world.gateway.cert)[0],
        chain=load_certificates(world.subca.cert),
        cipher=cipher,
    )
    path = _name(world, "sealed")
    path.write_bytes(message)
    bare = verify(path, world.root.cert)
    content_type = AUTH_ENVELOPED if cipher.endswith("gcm") else ENVELOPED
    env = _name(world, "sealed-env")
    env.write_bytes(wrap_content_info(bare, content_type))
    assert decrypt(env, recipient) == world.payload.read_bytes()


def test_seal_message_to_rsa_recipient_opens_with_openssl(world: CmsWorld) -> None:
    message = seal_message(
        b"rsa payload",
        load_certificates(world.hub_rsa.cert),
        signer_key=load_private_key(world.gateway_rsa.key),
        signer_cert=load_certificates(world.gateway_rsa.cert)[0],
        chain=load_certificates(world.subca.cert),
    )
    path = _name(world, "sealed-rsa")
    path.write_bytes(message)
    env = _name(world, "sealed-rsa-env")
    env.write_bytes(wrap_content_info(verify(path, world.root.cert), AUTH_ENVELOPED))
    assert decrypt(env, world.hub_rsa) == b"rsa payload"


def _der():  # noqa: ANN202
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER

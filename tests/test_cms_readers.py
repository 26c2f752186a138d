"""The fast CMS readers agree with asn1crypto's classes wherever they answer.

``minimeter.cms._read`` reads messages of the usual shape element by element and hands anything
else to asn1crypto's classes. These tests hold the fast readers to the full ones: on OpenSSL-made
and Minimeter-made messages of every shape the interop tests cover, and on mutated messages
(hypothesis), the fast reader either declines (None) or returns exactly the full reader's parts.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimeter.cms import seal_message
from minimeter.cms._read import (
    read_envelope,
    read_envelope_fast,
    read_signed,
    read_signed_fast,
)
from minimeter.cms.envelope import unwrap_envelope
from minimeter.cms.signed import ENVELOPE_TYPES, read_content_info
from minimeter.errors import CmsError
from minimeter.keys import load_certificates, load_private_key

from conftest import CmsWorld
from mutations import mutate
from test_cms_interop import make_message


def _full_signed(der: bytes):  # noqa: ANN202
    return read_signed(read_content_info(der))


def _envelope_of(der: bytes) -> tuple[bytes, str] | None:
    parts = _full_signed(der)
    if parts.econtent_type not in ENVELOPE_TYPES:
        return None
    envelope, _wrapped = unwrap_envelope(parts.econtent, parts.econtent_type)
    return bytes(envelope), parts.econtent_type


def _agree(der: bytes) -> tuple[bool, bool]:
    """Check both readers on ``der``; returns whether the fast ones answered (signed, envelope)."""
    fast = read_signed_fast(der)
    try:
        full = _full_signed(der)
    except CmsError:
        assert fast is None, "the fast reader accepted what asn1crypto's classes refuse"
        return False, False
    if fast is not None:
        assert fast == full
    try:
        found = _envelope_of(der)
    except CmsError:
        return fast is not None, False
    if found is None:
        return fast is not None, False
    envelope, kind = found
    fast_env = read_envelope_fast(envelope, kind)
    try:
        full_env = read_envelope(envelope, kind)
    except CmsError:
        assert fast_env is None, "the fast envelope reader accepted what asn1crypto refuses"
        return fast is not None, False
    if fast_env is not None:
        assert fast_env == full_env
    return fast is not None, fast_env is not None


@pytest.fixture(scope="module")
def openssl_messages(world: CmsWorld) -> dict[str, bytes]:
    made = {
        "gcm": make_message(world, [world.hub]),
        "gcm-bare": make_message(world, [world.hub], bare=True),
        "cbc": make_message(world, [world.hub], cipher="aes-256-cbc", bare=True),
        "two-recipients": make_message(
            world, [world.stranger, world.hub], bare=True, certfile=world.subca.cert
        ),
        "keyid": make_message(world, [world.hub], bare=True, recipient_keyid=True, keyid=True),
        "sha1-kdf": make_message(world, [world.hub], kdf="sha1", bare=True),
        "p384": make_message(world, [world.hubs["secp384r1"]], bare=True),
        "rsa-ktri": make_message(world, [world.hub_rsa], kdf=None, bare=True),
        "rsa-signer": make_message(world, [world.hub], signer=world.gateway_rsa, bare=True),
        "no-attributes": make_message(world, [world.hub], bare=True, noattr=True),
    }
    return {name: path.read_bytes() for name, path in made.items()}


def test_readers_agree_on_openssl_messages(openssl_messages: dict[str, bytes]) -> None:
    answered = {name: _agree(der) for name, der in openssl_messages.items()}
    # The usual SMGW shapes take the fast path (else this test would compare nothing) ...
    for name in ("gcm-bare", "cbc", "two-recipients", "keyid", "sha1-kdf", "p384", "rsa-signer"):
        assert answered[name] == (True, True), name
    # ... and the unusual ones are left to asn1crypto: RSA key transport, no signed attributes.
    assert answered["rsa-ktri"] == (True, False)
    assert answered["no-attributes"][0] is False


@pytest.fixture(scope="module")
def own_message(world: CmsWorld) -> bytes:
    return seal_message(
        b"<profile>" + b"<v>1</v>" * 20 + b"</profile>",
        load_certificates(world.hub.cert),
        signer_key=load_private_key(world.gateway.key),
        signer_cert=load_certificates(world.gateway.cert)[0],
        chain=load_certificates(world.subca.cert),
        kdf_hash="sha384",
        identifier="subject-key-identifier",
    )


def test_readers_agree_on_minimeter_messages(own_message: bytes) -> None:
    assert _agree(own_message) == (True, True)


MUTATIONS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@MUTATIONS
@given(st.data())
def test_readers_agree_on_mutated_messages(own_message: bytes, data: st.DataObject) -> None:
    _agree(mutate(data, own_message, ops=("flip", "set", "insert", "delete"), most=3, width=4))

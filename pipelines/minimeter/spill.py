"""Decoded profiles parked on disk between the decode and the policy stage (no Beam here).

Grouping a meter's messages needs a shuffle. A runner that keeps its shuffle in memory (Beam's
FnApiRunner) would otherwise hold every decoded profile of the run, several times over, until the
policy stage reads them: memory grows with the input. Instead the decode stage writes each profile
to a spill file and the shuffle carries only the file's name.

Spill files hold readings and raw meter ids, so they are encrypted and authenticated
(AES-256-GCM, the file name as associated data) under a key derived with HKDF from the pseudonym
secret and the run id: no plaintext at rest, and a file that was altered, swapped or truncated is
refused before it is parsed. The format inside is a JSON header and raw arrays (no pickle). The run deletes its spill
directory when the job ends, whatever the outcome.
"""

from __future__ import annotations

import json
import secrets
import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from minimeter.errors import SpillError
from minimeter.readings import COLUMNS, DecodedProfile, DecodedSeries
from minimeter.storage import AnyPath, location, remove_tree

_SALT = b"minimeter spill v1"
_NONCE = 12


def spill_key(secret: bytes, run_id: str) -> bytes:
    """The run's spill key: HKDF-SHA256 of the pseudonym secret, bound to the run id."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=run_id.encode()).derive(
        secret
    )


_HEADER = struct.Struct("<I")
_ROW_BYTES = sum(np.dtype(d).itemsize for _, d in COLUMNS)


def encode_profile(profile: DecodedProfile) -> bytes:
    """A profile as bytes: a length-prefixed JSON header (meter, and per series its OBIS code,
    unit, capture period and reading count), then each per-reading column of
    ``minimeter.readings.COLUMNS`` (times, values, status, raw status, capture times) of every
    series, little-endian."""
    series = profile.series
    header = json.dumps(
        {
            "meter": profile.meter,
            "source": profile.source,
            "series": [[s.obis, s.unit, int(s.step_us), len(s.times_us)] for s in series],
        }
    ).encode()
    parts = [_HEADER.pack(len(header)), header]
    for name, dtype in COLUMNS:
        parts += [np.ascontiguousarray(getattr(s, name), dtype=dtype).tobytes() for s in series]
    return b"".join(parts)


def decode_profile_blob(data: bytes) -> DecodedProfile:
    """The inverse of ``encode_profile``; anything but an exact fit is refused."""
    try:
        (size,) = _HEADER.unpack_from(data)
        meta = json.loads(data[_HEADER.size : _HEADER.size + size])
        described = [(str(o), str(u), int(step), int(n)) for o, u, step, n in meta["series"]]
        total = sum(n for *_, n in described)
        if any(n < 0 for *_, n in described):
            raise ValueError("length")
        if len(data) != _HEADER.size + size + _ROW_BYTES * total:
            raise ValueError("length")
        at = _HEADER.size + size
        columns = []
        for _, stored in COLUMNS:
            dtype = np.dtype(stored)
            columns.append(np.frombuffer(data, dtype, total, at).astype(dtype.newbyteorder("=")))
            at += dtype.itemsize * total
        out, start = [], 0
        for obis, unit, step, n in described:
            end = start + n
            cut = [c[start:end] for c in columns]
            out.append(DecodedSeries(obis, unit, cut[0], cut[1], cut[2], cut[3], cut[4], step))
            start = end
        return DecodedProfile(str(meta["meter"]), tuple(out), str(meta.get("source", "")))
    except (struct.error, KeyError, ValueError, TypeError) as exc:
        raise SpillError(f"spill content is not a profile ({type(exc).__name__})") from None


SpillRef = tuple[str, int, int]
"""Where one profile waits: spill file name, offset and length of its sealed segment."""


@dataclass(frozen=True)
class Spill:
    """One run's spill files. ``put`` seals several profiles into one new file (a file per
    profile would cost a file creation each) and returns a reference per profile; ``take`` reads
    one profile back by its reference, reading only its segment."""

    directory: AnyPath
    key: bytes

    @cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(self.key)

    def put(self, profiles: list[DecodedProfile]) -> list[SpillRef]:
        name = secrets.token_hex(16)
        aead = self._aead
        segments, refs, offset = [], [], 0
        for profile in profiles:
            nonce = secrets.token_bytes(_NONCE)
            sealed = nonce + aead.encrypt(nonce, encode_profile(profile), _aad(name, offset))
            segments.append(sealed)
            refs.append((name, offset, len(sealed)))
            offset += len(sealed)
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / name).open("wb") as f:  # read only after put() has returned
            f.write(b"".join(segments))
        return refs

    def take(self, ref: SpillRef) -> DecodedProfile:
        name, offset, length = ref
        if len(name) != 32 or not all(c in "0123456789abcdef" for c in name):
            raise SpillError("spill file name is malformed")
        try:
            with (self.directory / name).open("rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            raise SpillError(f"spill file cannot be read ({exc.strerror})") from None
        try:
            plain = self._aead.decrypt(data[:_NONCE], data[_NONCE:], _aad(name, offset))
        except (InvalidTag, ValueError):
            raise SpillError("spill segment fails authentication") from None
        return decode_profile_blob(plain)


def _aad(name: str, offset: int) -> bytes:
    """A segment authenticates its place: moved to another file or offset, it is refused."""
    return f"{name}:{offset}".encode()


def remove_spill(directory: AnyPath | str) -> None:
    """Delete a spill directory and everything in it."""
    remove_tree(
        directory if not isinstance(directory, str) else location(directory), ignore_errors=True
    )

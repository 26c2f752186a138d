"""Mutations of valid messages for the hypothesis tests: byte flips, cuts, inserts, deletions and
header-shaped bytes (tags, indefinite and long-form lengths)."""

from __future__ import annotations

from hypothesis import strategies as st

HEADER_BYTES = [0x00, 0x04, 0x30, 0x80, 0x81, 0xA0, 0xA1, 0xFF]


def mutate(
    data: st.DataObject, message: bytes, *, ops: tuple[str, ...], most: int, width: int
) -> bytes:
    """Up to ``most`` of ``ops`` ("flip", "cut", "set", "insert", "delete") applied to
    ``message``; inserts and deletions span up to ``width`` bytes. Never empty."""
    buf = bytearray(message)
    for _ in range(data.draw(st.integers(1, most))):
        op = data.draw(st.sampled_from(ops))
        pos = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[pos:]
        elif op == "set":
            buf[pos] = data.draw(st.sampled_from(HEADER_BYTES))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=width))
        else:
            del buf[pos : pos + data.draw(st.integers(1, width * 2))]
        if not buf:
            buf = bytearray(b"\x30\x00")
    return bytes(buf)

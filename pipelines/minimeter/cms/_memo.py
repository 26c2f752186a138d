"""A memo keyed by object identity, for arguments that are costly to hash.

pyca/cryptography certificates hash their whole DER (about 3.5 µs a call), which a per-message
``functools.lru_cache`` keyed by certificates pays every time. The certificates Minimeter passes
around are the same objects message after message (configuration, ``TrustStore`` parses), so an
identity key is exact; the memo holds the objects so their ids cannot be reused.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

R = TypeVar("R")


class IdentityMemo(Generic[R]):
    """Results remembered per (hashable key, argument objects by identity)."""

    def __init__(self, limit: int = 1024) -> None:
        self._items: dict[tuple[Hashable, ...], tuple[tuple[object, ...], R]] = {}
        self._limit = limit

    def get(self, key: Hashable, objects: tuple[object, ...], compute: Callable[[], R]) -> R:
        full_key = (key, *map(id, objects))
        hit = self._items.get(full_key)
        if hit is not None:  # the entry holds its objects alive, so their ids are still theirs
            return hit[1]
        value = compute()
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[full_key] = (objects, value)
        return value

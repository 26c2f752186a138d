"""Removing registered identifiers from names Minimeter writes (dead letters, conflicts).

Gateways name files after meters (``1lgz0072999211.sm_data.xml.cms``) or themselves. Every
registered meter id and gateway id is replaced wherever it occurs in a name, ignoring case and
glued to other letters or not: ``<meter>``, ``<gateway>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class Redactor:
    def __init__(self, meters: Iterable[str], gateways: Iterable[str]) -> None:
        self._tags: dict[str, str] = {}
        for gateway in gateways:
            if gateway:
                self._tags[gateway.casefold()] = "<gateway>"
        for meter in meters:
            if meter:
                self._tags[meter.casefold()] = "<meter>"
        ids = sorted(self._tags, key=len, reverse=True)  # the longest id wins where two overlap
        self._pattern = (
            re.compile("|".join(re.escape(i) for i in ids), re.IGNORECASE) if ids else None
        )

    def __call__(self, name: str) -> str:
        if self._pattern is None:
            return name
        return self._pattern.sub(lambda m: self._tags[m.group(0).casefold()], name)

"""Formats Minimeter recognises but does not read (yet): refused by name as
``payload-unsupported`` (gateway-data-real.md 3). Registered after every real decoder."""

from __future__ import annotations

import re

from minimeter.payload.base import xml_root
from minimeter.payload.k461 import K461_NAMESPACE_PREFIX
from minimeter.payload.registry import PayloadDecoder, register_decoder

NS_VDE_AR_2418_6 = "http://vde.de/AR_2418-6.xsd"

_DSMR = re.compile(rb"\s*/[ -~]{1,96}\r?\n")
_TEXT = re.compile(rb"[\t\n\r -~\x80-\xff]*")


def _root_namespace(data: bytes) -> str | None:
    root = xml_root(data)
    return None if root is None else root[0]


def is_vde_ar_2418_6(data: bytes) -> bool:
    """A VDE-AR-E 2418-6 (PTB TRuDI) document: its root in the AR 2418-6 namespace."""
    return _root_namespace(data) == NS_VDE_AR_2418_6


def is_other_k461(data: bytes) -> bool:
    """A K461 document other than a profile (e.g. a TAF or LMN container)."""
    namespace = _root_namespace(data)
    return namespace is not None and namespace.startswith(K461_NAMESPACE_PREFIX)


def is_dsmr_p1(data: bytes) -> bool:
    """A DSMR P1 telegram: a first line of ``/`` and the meter's identification."""
    return _DSMR.match(data[:128]) is not None


def is_plain_text(data: bytes) -> bool:
    """Text that is no markup, e.g. a gateway's answer that a query has too many records."""
    head = data[:4096]
    return not head.lstrip().startswith(b"<") and _TEXT.fullmatch(head) is not None


for _decoder in (
    PayloadDecoder("vde-ar-e-2418-6", "a VDE-AR-E 2418-6 (TRuDI) document", is_vde_ar_2418_6),
    PayloadDecoder("k461-other", "a K461 document of another kind than a profile", is_other_k461),
    PayloadDecoder("dsmr-p1", "a DSMR P1 telegram", is_dsmr_p1),
    PayloadDecoder("text", "plain text (e.g. a gateway's answer, not data)", is_plain_text),
):
    register_decoder(_decoder)

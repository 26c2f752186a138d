"""Gateway payloads: the decoders' seam and its formats.

``decode_payload`` inflates a zlib payload, picks the format by content-type hint or by sniffing
the first bytes, and decodes it into a ``DecodedProfile`` (``minimeter.readings``). DKE K461
``profile_generic`` XML (``minimeter.payload.k461``, also the encoder synth uses) is the first
format; formats recognised but not read are refused as ``payload-unsupported``
(``minimeter.payload.others``).
"""

from __future__ import annotations

from minimeter.payload import k461, others  # noqa: F401  (registration, in this order)
from minimeter.payload.registry import (
    DECODERS,
    PayloadDecoder,
    decode_payload,
    find_decoder,
    register_decoder,
)

__all__ = ["DECODERS", "PayloadDecoder", "decode_payload", "find_decoder", "register_decoder"]

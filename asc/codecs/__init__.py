"""The codec engine shared by edge, server and training: one grammar, real encoders.

- ``parse_spec`` / ``resolve``: the spec grammar and its validation against each codec;
- ``encode`` / ``decode``: whole clips in real containers;
- ``roundtrip``: coded audio of the same length, aligned with the input (for training pairs);
- ``StreamEncoder`` / ``StreamDecoder``: incremental, for the edge and the server;
- ``codec_delay``: what a ``StreamDecoder`` drops to align its output, measured once per path.
"""

from asc.codecs.alignment import codec_delay
from asc.codecs.clip import decode, encode, roundtrip
from asc.codecs.errors import CodecError, CodecUnavailable, DecodeError
from asc.codecs.registry import CODECS, CodecInfo, Resolved, resolve, unavailable_reason
from asc.codecs.spec import CodecSpec, Stage, parse_spec
from asc.codecs.stream import StreamDecoder, StreamEncoder

__all__ = [
    "CODECS",
    "CodecError",
    "CodecInfo",
    "CodecSpec",
    "CodecUnavailable",
    "DecodeError",
    "Resolved",
    "Stage",
    "StreamDecoder",
    "StreamEncoder",
    "codec_delay",
    "decode",
    "encode",
    "parse_spec",
    "resolve",
    "roundtrip",
    "unavailable_reason",
]

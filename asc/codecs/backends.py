"""The raw packet encoder and decoder of one resolved stage, without the stream's framing.

Both the stream (``stream.py``) and the delay measurement (``alignment.py``) open codecs here,
so neither needs the other to reach a backend.
"""

from __future__ import annotations

from asc.codecs.registry import Resolved


def open_encoder(r: Resolved):
    """The packet encoder for one resolved stage: PyAV, libfdk-aac or libvorbis."""
    if r.info.backend == "fdk":
        from asc.codecs.fdk_backend import FdkEncoder

        return FdkEncoder(r)
    if r.info.backend == "vorbis":
        from asc.codecs.vorbis_backend import VorbisEncoder

        return VorbisEncoder(r)
    from asc.codecs.pyav_backend import PyAVEncoder

    return PyAVEncoder(r)


def read_by_numpy(r: Resolved) -> bool:
    """Whether the stage's packets are raw PCM that numpy reads (the same samples FFmpeg
    gives, without a call into FFmpeg per packet): cheap enough to decode anywhere."""
    return r.name == "pcm16"


def open_decoder(r: Resolved, header: bytes):
    """The packet decoder for one resolved stage: FFmpeg's, whoever encoded it, or numpy's
    for raw PCM (``read_by_numpy``)."""
    if read_by_numpy(r):
        from asc.codecs.pcm import Pcm16Decoder

        return Pcm16Decoder(str(r.stage), r.channels)
    from asc.codecs.pyav_backend import PyAVDecoder

    return PyAVDecoder(r, header)

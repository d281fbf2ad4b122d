"""Whole clips: ``encode`` to container bytes, ``decode`` any container, ``roundtrip`` aligned."""

from __future__ import annotations

import io

import av
import numpy as np
import soxr

from asc.codecs.alignment import codec_delay
from asc.codecs.backends import open_encoder
from asc.codecs.errors import CodecError, DecodeError
from asc.codecs.pcm import as_pcm
from asc.codecs.pyav_backend import PyAVEncoder, frames_to_array
from asc.codecs.registry import resolve
from asc.codecs.spec import CodecSpec, parse_spec
from asc.codecs.stream import StreamDecoder, StreamEncoder
from asc.codecs.vorbis_backend import write_ogg

# FFmpeg muxer per codec for the whole-clip container (fdk writes ADTS itself, vorbis via libogg).
_MUXER = {
    "pcm16": "wav",
    "flac": "flac",
    "opus": "ogg",
    "mp3": "mp3",
    "aac": "adts",
    "sbc": "sbc",
    "aptx": "aptx",
    "mp2": "mp2",
    "ac3": "ac3",
}
# Raw formats FFmpeg cannot recognise from content alone.
_DEMUXER = {"sbc": "sbc", "aptx": "aptx"}


def roundtrip(pcm: np.ndarray, rate: int, spec: str | CodecSpec) -> np.ndarray:
    """Code and decode ``pcm`` through ``spec``: same length, time-aligned with the input."""
    x = np.asarray(pcm)
    channels = 1 if x.ndim == 1 else x.shape[1]
    x = as_pcm(x, channels)
    encoder = StreamEncoder(spec, rate, channels)
    decoder = StreamDecoder(spec, rate, channels, codec_delay(spec, rate, channels))
    y = np.concatenate([decoder.feed(encoder.encode(x) + encoder.finish()), decoder.finish()])
    if len(y) != len(x):  # the stream carries the length, so this would be an engine bug
        raise CodecError(f"{spec}: roundtrip returned {len(y)} samples for {len(x)}")
    return y.reshape(np.asarray(pcm).shape)


def encode(pcm: np.ndarray, rate: int, spec: str | CodecSpec) -> bytes:
    """Code a whole clip into the last stage's container (wav, flac, ogg, mp3, aac, sbc, aptx)."""
    parsed = parse_spec(spec)
    x = np.asarray(pcm)
    channels = 1 if x.ndim == 1 else x.shape[1]
    x = as_pcm(x, channels)
    r = resolve(parsed, rate, channels)[-1]
    if len(parsed.stages) > 1:
        x = roundtrip(x, rate, CodecSpec(parsed.stages[:-1]))
    if r.info.backend == "pyav":
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=_MUXER[r.name]) as container:
            encoder = PyAVEncoder(r, container)
            encoder.encode(x)
            encoder.flush()
        return buffer.getvalue()
    encoder = open_encoder(r)
    packets = encoder.encode(x) + encoder.flush()
    if r.info.backend == "vorbis":
        return write_ogg(encoder.header_packets, packets, encoder.granules)
    return b"".join(packets)  # ADTS frames are a file as they stand


def decode(
    data: bytes,
    rate: int | None = None,
    channels: int | None = None,
    spec: str | CodecSpec | None = None,
) -> tuple[np.ndarray, int]:
    """Decode container bytes to float32 (samples, channels) at ``rate`` (default: the file's).

    ``spec`` names the codec for raw formats that cannot be probed (sbc, aptx); priming samples
    are removed where the container records them (mp3, opus, vorbis), not otherwise.
    """
    options, fmt = {}, None
    if spec is not None:
        name = parse_spec(spec).last.name
        fmt = _DEMUXER.get(name)
        if name == "aptx":
            options["sample_rate"] = str(rate or 44100)
    if not data:
        raise DecodeError("no bytes to decode")
    try:
        with av.open(io.BytesIO(data), "r", format=fmt, options=options) as container:
            if not container.streams.audio:
                raise DecodeError("no audio stream in the data")
            stream = container.streams.audio[0]
            frames = list(container.decode(stream))
            source_rate = stream.codec_context.sample_rate or stream.rate
            if not frames:
                raise DecodeError(f"no audio decoded from {len(data)} bytes")
            # converted in runs of frames, not one by one (SBC's frames are 128 samples)
            x = frames_to_array(frames, channels or len(frames[0].layout.channels))
    except av.error.FFmpegError as e:
        raise DecodeError(f"undecodable audio data ({len(data)} bytes): {e}") from e
    if rate is not None and rate != source_rate:
        x = soxr.resample(x, source_rate, rate, quality="HQ").astype(np.float32)
        return x, rate
    return x, int(source_rate)

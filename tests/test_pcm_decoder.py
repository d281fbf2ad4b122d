"""pcm16 is read by numpy rather than FFmpeg: it must give exactly FFmpeg's samples and refuse
what FFmpeg's packets could never be."""

from __future__ import annotations

import numpy as np
import pytest

from asc.codecs.backends import open_decoder
from asc.codecs.errors import DecodeError
from asc.codecs.pcm import Pcm16Decoder
from asc.codecs.pyav_backend import PyAVDecoder
from asc.codecs.registry import resolve


@pytest.mark.parametrize("channels", [1, 2])
def test_numpy_reads_pcm16_exactly_as_ffmpeg_does(channels: int) -> None:
    (r,) = resolve("pcm16", 44100, channels)
    ours = open_decoder(r, b"")
    assert isinstance(ours, Pcm16Decoder)
    ffmpeg = PyAVDecoder(r, b"")
    rng = np.random.default_rng(channels)
    for samples in (1, 1024, 4410):
        payload = rng.integers(-32768, 32768, samples * channels, dtype=np.int16).tobytes()
        want, got = ffmpeg.decode(payload), ours.decode(payload)
        assert got.dtype == want.dtype == np.float32
        assert np.array_equal(got, want)
    assert ours.flush().shape == (0, channels)


def test_a_packet_of_part_samples_is_refused() -> None:
    decoder = Pcm16Decoder("pcm16", 2)
    with pytest.raises(DecodeError, match="not a whole number of 2-channel 16-bit samples"):
        decoder.decode(b"\x00" * 6)
    with pytest.raises(DecodeError, match="empty packet"):
        decoder.decode(b"")


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_packets_carry_each_call_at_once_in_few_packets(channels: int) -> None:
    """The encoder holds no samples back for the next call (a window's end would wait a
    packet interval for them) and cuts a call into few packets (the server's cost is per
    packet); the samples come back exactly, through the stream's framing."""
    from asc.codecs.stream import StreamDecoder, StreamEncoder

    rate = 44100
    encoder = StreamEncoder("pcm16", rate, channels)
    decoder = StreamDecoder("pcm16", rate, channels, 0)
    rng = np.random.default_rng(0)
    for samples in (22050, 1, 8192, 20000):  # 0.5 s, one sample, one packet, an odd length
        pcm = (rng.integers(-32768, 32768, (samples, channels)) / 32768).astype(np.float32)
        packets_before = encoder.packets
        got = decoder.feed(encoder.encode(pcm))
        assert np.array_equal(got, pcm)  # every sample of the call, none held back
        assert encoder.packets - packets_before == -(-samples // 8192)
    assert decoder.feed(encoder.finish()).shape == (0, channels)
    decoder.finish()

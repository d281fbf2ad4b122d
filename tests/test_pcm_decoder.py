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

"""The SBC grid test (asc.codecs.sbc_trace) on real codecs: real recordings and generated tracks,
coded by the engine's own SBC, aptX and MP3, never a stand-in."""

from __future__ import annotations

import numpy as np
import pytest

from asc.audio import load
from asc.codecs import roundtrip
from asc.codecs.sbc_trace import FRAME, UNTESTED, sbc_trace
from tests.real_data import kitchen20_clips
from training.corpora import write_lossless_corpus

RATE = 44100


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[np.ndarray]:
    root = write_lossless_corpus(
        tmp_path_factory.mktemp("grid"), 3, seed=11, seconds=3.0, workers=1
    )
    waves = [load(p)[0] for p in sorted((root / "audio").iterdir())]
    assert len(waves) == 3
    return waves


@pytest.fixture(scope="module")
def real() -> list[np.ndarray]:
    return kitchen20_clips(("blender", "cutlery", "drawer", "peel"), RATE)


def test_generated_originals_show_no_grid_and_sbc_copies_do(generated):
    for wave in generated:
        original = sbc_trace(wave, RATE)
        assert original.lossy_probability < 0.5, original
        for bitpool in (53, 19):
            coded = sbc_trace(roundtrip(wave, RATE, f"sbc:bitpool={bitpool}"), RATE)
            assert coded.lossy_probability >= 0.5 and coded.bitpool == bitpool, (bitpool, coded)


def test_real_recordings_and_their_sbc_copies(real):
    for wave in real:
        assert sbc_trace(wave, RATE).lossy_probability < 0.5
        for bitpool in (35, 53):
            coded = sbc_trace(roundtrip(wave, RATE, f"sbc:bitpool={bitpool}"), RATE)
            assert coded.lossy_probability >= 0.5, (bitpool, coded)


def test_other_codecs_leave_no_sbc_grid(generated):
    wave = generated[0]
    for spec in ("aptx", "mp3:128k", "sbc:bitpool=53>aac:64k"):
        assert sbc_trace(roundtrip(wave, RATE, spec), RATE).lossy_probability < 0.5, spec


def test_the_grid_is_found_wherever_the_wave_starts(generated):
    coded = roundtrip(generated[1], RATE, "sbc:bitpool=45")
    cut = 77  # the wave now starts 77 samples into the first SBC frame
    trace = sbc_trace(coded[cut:], RATE)
    assert trace.lossy_probability >= 0.5
    assert trace.offset == (-cut) % FRAME


def test_what_cannot_be_tested_says_so(generated):
    wave = generated[0]
    assert sbc_trace(wave[: RATE // 2], RATE) == UNTESTED  # too short for two segments
    assert sbc_trace(np.zeros((3 * RATE, 2), np.float32), RATE) == UNTESTED  # silence
    assert sbc_trace(wave, 22050) == UNTESTED  # SBC has no 22.05 kHz mode
    assert UNTESTED.lossy_probability < 0.01

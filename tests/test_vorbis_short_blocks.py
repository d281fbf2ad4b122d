"""Vorbis's lattice on its short blocks (asc.codecs.vorbis_short_blocks), on real recordings
coded by the engine's own libvorbis and the other codecs, never a stand-in. The clips are from
Kitchen20's training recordings, not the detector report's held-out ones."""

from __future__ import annotations

import numpy as np
import pytest

from asc.audio import load
from asc.codecs import roundtrip, vorbis_short_blocks
from asc.codecs.grid_tests import grid_call
from asc.codecs.mdct_trace import MIDPOINT, mdct_trace
from asc.codecs.vorbis_short_blocks import SHORT, UNTESTED, short_block_trace
from tests.real_data import kitchen20_root

RATE = 44100
# Two clips whose 320 kbit/s copies libvorbis codes in many short blocks (at their onsets), and
# whose long blocks' lattice stays below the call.
CLIPS = ("0-157341-B-16.flac", "7-440856-B-6.flac")


def as_stored(wave: np.ndarray) -> np.ndarray:
    """A decoded copy as a 16-bit file holds it."""
    return (np.round(np.asarray(wave, np.float64) * 32768) / 32768).astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> list[tuple[np.ndarray, np.ndarray]]:
    """Each clip and its vorbis:320k copy (the clip on both channels: libvorbis has no 320
    kbit/s mode for one)."""
    out = []
    for name in CLIPS:
        wave = load(next(kitchen20_root().rglob(name)), rate=RATE, channels=1)[0][:, 0]
        out.append((wave, as_stored(roundtrip(np.stack([wave, wave], 1), RATE, "vorbis:320k"))))
    return out


def test_short_blocks_show_the_lattice_the_long_blocks_miss(clips):
    for wave, coded in clips:
        assert mdct_trace(coded, RATE).strength < MIDPOINT  # the long blocks' lattice misses
        trace = short_block_trace(coded, RATE)
        assert trace.excess >= 2 * MIDPOINT and trace.offset == 0, trace  # the engine's grid
        call = grid_call(coded, RATE)
        assert call is not None and call.family == "vorbis" and call.probability > 0.99
        assert short_block_trace(wave, RATE).excess < MIDPOINT
        assert grid_call(wave, RATE).probability < 0.5


def test_the_grid_moves_with_the_wave(clips):
    coded = clips[0][1]
    for cut in (1, 301):
        trace = short_block_trace(coded[cut:], RATE)
        assert trace.excess >= MIDPOINT and trace.offset == (-cut) % SHORT, (cut, trace)


def test_the_levels_phase_fits_best(clips, monkeypatch):
    """The floor levels' phase in this MDCT scale: off by a quarter or half a level, the
    lattice stands out less."""
    coded = clips[1][1]
    at_phase = short_block_trace(coded, RATE).excess
    for off in (0.25, 0.5):
        monkeypatch.setattr(vorbis_short_blocks, "PHASE", vorbis_short_blocks.PHASE + off)
        assert short_block_trace(coded, RATE).excess < at_phase
    monkeypatch.undo()


def test_other_codecs_short_blocks_are_not_vorbis(clips):
    """AAC codes onsets in short blocks of the same length, on its own quantiser's lattice;
    neither it nor the codecs without such blocks show Vorbis's."""
    wave = clips[0][0]
    for spec in ("aac:256k", "mp3:320k", "opus:64k", "sbc:bitpool=53", "aptx"):
        coded = as_stored(roundtrip(np.stack([wave, wave], 1), RATE, spec))
        assert short_block_trace(coded, RATE).excess < MIDPOINT, spec


def test_what_cannot_be_tested_says_so(clips):
    assert short_block_trace(clips[0][1][: RATE // 4], RATE) == UNTESTED  # too few frames
    assert short_block_trace(np.zeros(3 * RATE, np.float32), RATE) == UNTESTED  # silence
    assert UNTESTED.lossy_probability < 0.01

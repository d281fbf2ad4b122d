"""The MP3 grid test (asc.codecs.mp3_trace) on real codecs: real recordings coded by the engine's
own MP3, AAC, Opus, Vorbis and SBC encoders, and FFmpeg's Layer II decoder for the filters."""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np
import pytest

from asc.codecs import mp3_trace as mp3_trace_module
from asc.codecs import roundtrip
from asc.codecs.grid_tests import grid_call, join_detector, named_family, surer_call
from asc.codecs.mdct_trace import mdct_trace
from asc.codecs.mp3_trace import (
    GRANULE,
    LATTICE_PHASE,
    MIDPOINT,
    SUBBANDS,
    UNTESTED,
    _analysis,
    _decode_layer2,
    _layer2_frame,
    mp3_trace,
)
from asc.codecs.registry import CODEC_FAMILIES
from asc.codecs.sbc_trace import sbc_trace
from asc.codecs.vorbis_short_blocks import short_block_trace
from tests.real_data import kitchen20_clips

RATE = 44100
# Where the engine's MP3 encoder (LAME through PyAV, its priming trimmed) lays its granules.
ENGINE_OFFSET = 47


def as_stored(wave: np.ndarray) -> np.ndarray:
    """A decoded copy as a 16-bit file holds it."""
    return (np.round(np.asarray(wave, np.float64) * 32768) / 32768).astype(np.float32)


@pytest.fixture(scope="module")
def real() -> list[np.ndarray]:
    clips = kitchen20_clips(("blender", "cutlery", "drawer", "peel"), RATE)
    return [c.reshape(len(c), -1)[: 4 * RATE, 0] for c in clips]


def test_the_measured_filters_take_a_layer2_stream_back_to_its_subbands():
    """One sample in one subband of a hand-built Layer II frame, decoded by FFmpeg, analysed
    again: that subband holds nearly all the energy, at one sample phase."""
    for k in (0, 5, 17):
        codes = [8] + [7] * 35
        wave = _decode_layer2(_layer2_frame(k, codes) + _layer2_frame(k, [7] * 36))
        subbands = _analysis(np.concatenate([np.zeros(512), wave]).astype(np.float32))
        best = max(range(SUBBANDS), key=lambda p: np.sum(np.square(subbands[p::SUBBANDS, k])))
        energy = np.sum(np.square(subbands[best::SUBBANDS]), axis=0)
        assert int(np.argmax(energy)) == k
        assert energy[k] > 1e5 * np.delete(energy, k).max(), (k, energy)


def test_real_recordings_show_no_grid_and_their_mp3_copies_do(real):
    """At every bitrate a device would use up to 192k, a 16-bit copy of a real recording shows
    MP3's grid, at the offset the engine's encoder lays its granules; the recording itself, and
    its AAC, Opus, Vorbis and SBC copies, show none."""
    for wave in real:
        assert mp3_trace(wave, RATE).excess < MIDPOINT
        for spec in ("mp3:64k", "mp3:128k", "mp3:192k"):
            trace = mp3_trace(as_stored(roundtrip(wave, RATE, spec)), RATE)
            assert trace.lossy_probability > 0.99, (spec, trace)
            assert trace.offset == ENGINE_OFFSET, (spec, trace)
        for spec in ("aac:128k", "opus:96k", "vorbis:160k", "sbc:bitpool=53"):
            trace = mp3_trace(as_stored(roundtrip(wave, RATE, spec)), RATE)
            assert trace.lossy_probability < 0.5, (spec, trace)


def test_at_320k_the_quantisers_lattice_finds_what_the_zeros_miss(real):
    """LAME at 320 kbit/s leaves few zeros in a 16-bit copy, but its lines keep Layer III's
    lattice: most real clips' copies show it on the engine's grid; no recording shows one."""
    found = 0
    for wave in real:
        assert mp3_trace(wave, RATE).lattice < MIDPOINT
        trace = mp3_trace(as_stored(roundtrip(wave, RATE, "mp3:320k")), RATE)
        if trace.lattice > 4 * MIDPOINT:
            assert trace.offset == ENGINE_OFFSET, trace
            found += 1
    assert found >= 3


def test_the_lattices_constant_fits_the_engines_copies(real, monkeypatch):
    """The lattice's steps are 2^((3s + 1)/16) in the test's scale (LATTICE_PHASE): halfway
    between two such lattices no copy's lines lie on one."""
    coded = as_stored(roundtrip(real[1], RATE, "mp3:320k"))
    assert mp3_trace(coded, RATE).lattice > 4 * MIDPOINT
    monkeypatch.setattr(mp3_trace_module, "LATTICE_PHASE", LATTICE_PHASE + 3 / 32)
    assert mp3_trace(coded, RATE).lattice < MIDPOINT


def test_the_grid_moves_with_the_wave_and_holds_in_stereo(real):
    """A copy cut by some samples shows its grid that many samples earlier; a stereo copy of
    two different recordings (joint stereo) shows it too, at 48 kHz as at 44.1."""
    coded = as_stored(roundtrip(real[0], RATE, "mp3:128k"))
    for cut in (1, 100, 1000):
        assert mp3_trace(coded[cut:], RATE).offset == (ENGINE_OFFSET - cut) % GRANULE
    stereo = np.stack([real[1], 0.5 * (real[1] + real[3])], axis=1)
    trace = mp3_trace(as_stored(roundtrip(stereo, 48000, "mp3:192k")), 48000)
    assert trace.lossy_probability > 0.99 and trace.offset == ENGINE_OFFSET
    assert mp3_trace(stereo, 48000).excess < MIDPOINT


def test_the_grid_names_mp3_where_the_network_names_another_family(real):
    """The server's join: a copy the network takes for Opus is named MP3 where its grid shows."""
    coded = as_stored(roundtrip(real[3], RATE, "mp3:128k"))
    call = grid_call(coded, RATE)
    assert call is not None and call.family == "mp3" and call.probability > 0.99
    opus = np.array([0.9 if f == "opus" else 0.1 / 8 for f in CODEC_FAMILIES])
    assert named_family(*join_detector(0.6, opus, call)) == "mp3"
    assert grid_call(real[3], RATE).probability < 0.5


def test_the_server_runs_the_dearer_tests_only_where_the_cheaper_find_no_grid(real):
    """grid_call stops at the first test that finds a grid (SBC, then MP3, then the MDCT codecs,
    then Vorbis's short blocks) and answers what all four would: on an SBC copy it takes the SBC
    test's steps alone, on an MP3 copy no MDCT step, and on an original every test's."""
    for spec in ("sbc:bitpool=53", "mp3:128k", None):
        wave = as_stored(roundtrip(real[1], RATE, spec)) if spec else real[1]
        steps: Counter[str] = Counter()
        sbc = sbc_trace(wave, RATE, partial(steps.update, ["sbc"]))
        mp3 = mp3_trace(wave, RATE, partial(steps.update, ["mp3"]))
        mdct = mdct_trace(wave, RATE, partial(steps.update, ["mdct"]))
        short = short_block_trace(wave, RATE, partial(steps.update, ["short"]))
        call = grid_call(wave, RATE, partial(steps.update, ["grid"]))
        assert call == surer_call(sbc, mdct, mp3, short), spec
        ran = {"sbc:bitpool=53": ("sbc",), "mp3:128k": ("sbc", "mp3")}.get(
            spec, ("sbc", "mp3", "mdct", "short")
        )
        assert steps["grid"] == sum(steps[t] for t in ran), (spec, steps)
        assert (call.probability >= 0.5) == (spec is not None), spec


def test_waves_the_test_cannot_read_are_untested(real):
    assert mp3_trace(real[0][: RATE // 2], RATE) == UNTESTED  # too short for its segments
    assert mp3_trace(np.zeros((3 * RATE, 2), np.float32), RATE) == UNTESTED  # silence
    assert mp3_trace(real[0], 8000) == UNTESTED  # MP3 has no 8 kHz mode
    assert UNTESTED.lossy_probability == 0.0

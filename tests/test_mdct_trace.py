"""The MDCT grid test (asc.codecs.mdct_trace) and the join of the grid tests to the network
(asc.codecs.grid_tests), on real codecs: real recordings and generated tracks, coded by the
engine's own AAC, Vorbis, MP3, Opus, HE-AAC, SBC and aptX, never a stand-in."""

from __future__ import annotations

import numpy as np
import pytest

from asc.audio import load
from asc.codecs import mdct_frames, roundtrip, vorbis_lattice
from asc.codecs.grid_tests import GridCall, grid_call, join_detector, named_family
from asc.codecs.mdct_frames import FRAME
from asc.codecs.mdct_trace import MIDPOINT, UNTESTED, mdct_trace
from asc.codecs.registry import CODEC_FAMILIES
from tests.real_data import kitchen20_clips, kitchen20_root
from training.corpora import write_lossless_corpus

RATE = 44100


def as_stored(wave: np.ndarray) -> np.ndarray:
    """A decoded copy as a 16-bit file holds it."""
    return (np.round(np.asarray(wave, np.float64) * 32768) / 32768).astype(np.float32)


@pytest.fixture(scope="module")
def real() -> list[np.ndarray]:
    return kitchen20_clips(("blender", "cutlery", "drawer", "peel"), RATE)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[np.ndarray]:
    root = write_lossless_corpus(tmp_path_factory.mktemp("mdct"), 2, seed=3, seconds=3.0, workers=1)
    return [load(p)[0] for p in sorted((root / "audio").iterdir())]


def test_real_recordings_show_no_grid_and_their_aac_copies_do(real):
    at_256k = []
    for wave in real:
        assert mdct_trace(wave, RATE).lossy_probability < 0.5
        trace = mdct_trace(as_stored(roundtrip(wave, RATE, "aac:128k")), RATE)
        assert trace.lossy_probability >= 0.5 and trace.family == "aac", trace
        at_256k.append(mdct_trace(as_stored(roundtrip(wave, RATE, "aac:256k")), RATE))
    # At 256 kbit/s fewer coefficients quantise to zero, and a quiet clip can show too few;
    # AAC's lattice shows in every copy (the originals' stays below the call).
    assert all(t.lossy_probability >= 0.5 and t.family == "aac" for t in at_256k), at_256k
    assert all(t.lattice >= 4 * MIDPOINT and t.offset == 0 for t in at_256k), at_256k
    assert sum(t.excess < MIDPOINT for t in at_256k) >= 1, at_256k  # zeros alone miss one
    assert all(mdct_trace(wave, RATE).lattice < MIDPOINT for wave in real)


def test_the_window_names_the_codec(generated):
    for wave in generated:
        trace = mdct_trace(as_stored(roundtrip(wave, RATE, "vorbis:96k")), RATE)
        assert trace.family == "vorbis" and trace.lossy_probability >= 0.5, trace
        trace = mdct_trace(as_stored(roundtrip(wave, RATE, "fdk-aac:128k")), RATE)
        assert trace.family == "aac" and trace.lossy_probability >= 0.5, trace


def test_vorbis_moves_its_grid_and_leaves_its_floors_lattice(real):
    """Vorbis's short blocks move its long ones by 128 samples, and at 256 kbit/s few of its
    coefficients are zero; the lattice of its floor's levels shows in every copy, on the
    levels' phase, and the window names Vorbis. The originals show no such lattice."""
    for wave in real:
        assert mdct_trace(wave, RATE).vorbis_lattice < MIDPOINT
        trace = mdct_trace(as_stored(roundtrip(stereo(wave), RATE, "vorbis:256k")), RATE)
        assert trace.family == "vorbis" and trace.vorbis_lattice >= MIDPOINT, trace
    # the phase of the levels: the steps that best fit groups on the grid, off by less than
    # a tenth of a level from VORBIS_PHASE
    coded = as_stored(roundtrip(stereo(real[0]), RATE, "vorbis:256k"))
    trace = mdct_trace(coded, RATE)
    fitted = _fitted_phases(coded, trace.offset)
    assert len(fitted) >= 20
    assert abs(np.median(fitted) - vorbis_lattice.VORBIS_PHASE) < 0.1, np.median(fitted)


@pytest.mark.parametrize("name", ["1-209611-B-8.flac", "1-185842-A-11.flac"])
def test_at_320k_the_lattice_is_found_where_the_zeros_miss(name):
    """Two real clips whose 320 kbit/s copies the zeros miss: few coefficients quantise to zero,
    the residues are large, and the grid is found only by searching every search frame (each
    may be short blocks) with both the coarse and the fine steps. The original shows none."""
    wave = load(next(kitchen20_root().rglob(name)), rate=RATE, channels=1)[0]
    assert mdct_trace(wave, RATE).vorbis_lattice < MIDPOINT
    trace = mdct_trace(as_stored(roundtrip(stereo(wave), RATE, "vorbis:320k")), RATE)
    assert trace.family == "vorbis" and trace.excess < MIDPOINT <= trace.vorbis_lattice, trace


def test_offsets_that_count_nothing_are_no_evidence():
    """A quiet real sweep: on its Opus copy most offsets count no band loud enough for
    AAC's lattice, and held as off the lattice they made the few offsets that counted one band
    look like HE-AAC's grid at half the rate (72 to 94 spreads in a report run)."""
    wave = load(next(kitchen20_root().rglob("2-325956-A-19.flac")), rate=RATE, channels=1)[0]
    trace = mdct_trace(as_stored(roundtrip(stereo(wave), RATE, "opus:24k")), RATE)
    assert trace.lossy_probability < 0.5, trace
    assert mdct_frames.lattice_excess(0.4, [0.0] * 9 + [0.3] * 7) == 0.0


def stereo(wave: np.ndarray) -> np.ndarray:
    """libvorbis has no 256 kbit/s mode for one channel: the clip on both, as the detector's
    copies are coded."""
    mono = wave[:, 0] if wave.ndim > 1 else wave
    return np.stack([mono, mono], axis=1)


def _fitted_phases(wave: np.ndarray, offset: int) -> np.ndarray:
    """Per group of bins that sits closely on some lattice, on frames of the grid at
    ``offset`` and 128 samples apart, the phase of its best step among 20,000 tried."""
    signal = wave[:, 0] if wave.ndim > 1 else wave
    steps = np.exp(np.linspace(np.log(1e-4), np.log(0.3), 20000))
    phases = []
    for start in range(offset % 128, len(signal) - 2 * FRAME, 1024 + 128 * 3):
        frame = signal[start : start + 2 * FRAME] * mdct_frames.WINDOWS["vorbis"]
        c = np.abs(mdct_frames.mdct(frame))
        for low in range(40, 700, vorbis_lattice.VORBIS_GROUP):
            g = c[low : low + vorbis_lattice.VORBIS_GROUP].astype(np.float64)
            g = g[g >= mdct_frames.ZERO]
            if len(g) < vorbis_lattice.VORBIS_GROUP - 1:
                continue
            span = g.max() / steps
            fit = np.where(
                (span >= 3) & (span <= 40), np.cos(2 * np.pi * g[:, None] / steps).mean(0), -1
            )
            if fit.max() > 0.95:
                phases.append((np.log(steps[np.argmax(fit)]) / vorbis_lattice.VORBIS_RATIO) % 1)
    return np.array(phases)


def test_codecs_without_such_a_grid_are_not_called(real):
    wave = real[0]
    for spec in ("mp3:128k", "opus:64k", "sbc:bitpool=53", "aptx"):
        trace = mdct_trace(as_stored(roundtrip(wave, RATE, spec)), RATE)
        assert trace.lossy_probability < 0.5, (spec, trace)


def test_he_aacs_core_shows_at_half_the_rate(real):
    """HE-AAC's AAC core runs at half the rate: its grid shows in the wave taken back down,
    on the decoder's sample phase, and names HE-AAC, where the network may name Opus."""
    for wave in real:
        for spec in ("he-aac:32k", "he-aac:64k"):
            coded = as_stored(roundtrip(wave, RATE, spec))
            trace = mdct_trace(coded, RATE)
            assert trace.family == "he-aac" and trace.lossy_probability >= 0.5, (spec, trace)
            assert trace.vorbis_lattice == 0.0  # Vorbis has no such core: not measured there
            lossy, families = join_detector(0.2, _opus_named(), grid_call(coded, RATE))
            assert named_family(lossy, families) == "he-aac"
    # An odd cut moves the core onto the wave's other samples, and the grid with it (on a clip
    # with sound throughout: the frames of a sparse one may fall where it is silent).
    coded = as_stored(roundtrip(real[0], RATE, "he-aac:32k"))
    whole, cut = mdct_trace(coded, RATE), mdct_trace(coded[301:], RATE)
    assert cut.family == "he-aac" and cut.lossy_probability >= 0.5, cut
    assert cut.offset == (whole.offset - 301) % (2 * FRAME), (whole, cut)


def test_the_grid_is_found_wherever_the_wave_starts(real):
    coded = as_stored(roundtrip(real[1], RATE, "aac:128k"))
    cut = 301  # the wave now starts 301 samples into an AAC frame
    trace = mdct_trace(coded[cut:], RATE)
    assert trace.lossy_probability >= 0.5
    assert trace.offset == (-cut) % FRAME
    # AAC's lattice too, where its zeros do not stand out: it searches every offset itself
    coded = as_stored(roundtrip(real[1], RATE, "aac:256k"))
    trace = mdct_trace(coded[cut:], RATE)
    assert trace.lattice >= 4 * MIDPOINT and trace.family == "aac", trace
    assert trace.offset == (-cut) % FRAME


def test_what_cannot_be_tested_says_so(real):
    assert mdct_trace(real[0][: RATE // 4], RATE) == UNTESTED  # too short for its frames
    assert mdct_trace(np.zeros((3 * RATE, 2), np.float32), RATE) == UNTESTED  # silence
    assert UNTESTED.lossy_probability < 0.01
    # long enough for the full rate's frames, not for half the rate's: still measured
    assert mdct_trace(real[1][60000 : 60000 + 40 * FRAME], RATE).family in ("aac", "vorbis")
    assert grid_call(np.zeros(RATE // 8, np.float32), RATE) is None  # neither test can run


def test_the_join_takes_the_surer_and_names_the_grids_family():
    network = np.array([0.7, 0.3] + [0.0] * (len(CODEC_FAMILIES) - 2))  # lossless, then mp3
    lossy, families = join_detector(0.2, network, GridCall("aac", 0.9))
    assert lossy == 0.9 and CODEC_FAMILIES[int(np.argmax(families))] == "aac"
    assert families.sum() == pytest.approx(1.0)
    lossy, families = join_detector(0.2, network, GridCall("vorbis", 0.3))
    assert lossy == 0.3 and np.array_equal(families, network)  # a doubtful test names nothing
    assert join_detector(0.8, network, None) == (0.8, network)


def test_a_wave_without_an_sbc_grid_is_not_named_sbc():
    """The SBC test's own probability scales the network's SBC share, even where the MDCT test
    is the surer: a network that names SBC for a copy whose grid the SBC test does not find
    names the next lossy family instead; where the SBC test finds its grid, SBC stays."""
    names = list(CODEC_FAMILIES)
    network = np.zeros(len(names))
    network[[names.index("lossless"), names.index("sbc"), names.index("vorbis")]] = 0.4, 0.35, 0.25
    unsure = GridCall("vorbis", 0.3, sbc_probability=0.01)
    lossy, families = join_detector(0.6, network, unsure)
    assert families.sum() == pytest.approx(1.0) and lossy == 0.6
    assert named_family(lossy, families) == "vorbis"
    assert named_family(*join_detector(0.6, network, GridCall("vorbis", 0.3))) == "sbc"
    found = GridCall("sbc", 0.99, sbc_probability=0.99)
    assert named_family(*join_detector(0.6, network, found)) == "sbc"


def test_the_name_never_contradicts_the_call():
    """A wave called lossy is named by its likeliest lossy family though "lossless" holds the
    largest single share; one not called lossy is named "lossless" whatever the shares."""
    names = list(CODEC_FAMILIES)
    network = np.zeros(len(names))
    network[[names.index("lossless"), names.index("opus"), names.index("mp3")]] = 0.4, 0.35, 0.25
    assert named_family(0.6, network) == "opus"
    assert named_family(0.4, network) == "lossless"
    assert named_family(0.4, np.eye(len(names))[names.index("aac")]) == "lossless"
    custom = ["sbc", "lossless", "aac"]  # a checkpoint's own order of families
    assert named_family(0.9, np.array([0.1, 0.6, 0.3]), custom) == "aac"


def _opus_named() -> np.ndarray:
    """A family head that takes the copy for Opus, as the network did for many real HE-AAC
    copies at 64 kbit/s."""
    network = np.zeros(len(CODEC_FAMILIES))
    network[[CODEC_FAMILIES.index("lossless"), CODEC_FAMILIES.index("opus")]] = 0.3, 0.7
    return network

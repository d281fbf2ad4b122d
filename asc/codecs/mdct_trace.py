"""AAC's and Vorbis's frame grid: the zeros an MDCT codec leaves where its analysis frames lay.

An MDCT codec quantises each frame's coefficients, and many quantise to zero: at high bitrates
too, in every band the psychoacoustic model hides under its neighbours. Its decoder adds the
frames back up, and the MDCT is lapped so that analysing the decoded audio again on the same
frames, with the same window, gives back the quantised coefficients: its zeros reappear, up to
16-bit rounding. A few samples off those frames, or with another window, they smear into their
neighbours. A lossless recording has no such frames, and every offset looks alike. So the test
counts, at every offset of a 1024-sample frame (AAC-LC's, and Vorbis's long block's hop), the
share of coefficients within two 16-bit steps of zero, with AAC's Kaiser-Bessel window and with
Vorbis's: an offset whose zeros stand out is a codec's frame grid, and the window that gives
back more of them names the codec. AAC's frames lie 1024 samples apart from the first to the
last; Vorbis's long blocks do only until a short block: each short block between two long ones
moves the later ones by 128 samples, so on Vorbis's window each frame takes the best of the eight
offsets 128 apart (an off-grid offset gets the same choice, so an original gains nothing).

At high bitrates few coefficients quantise to zero, but AAC's quantiser leaves a second trace on
the same frames: every coefficient it keeps is q^(4/3) 2^(s/4) for integers q and s (s one per
scalefactor band), so on AAC's grid |c|^(3/4) falls on multiples of 2^(3s/16) in each band, up
to 16-bit rounding, where a lossless recording's coefficients fall anywhere. The lattice test
takes the offsets whose zeros stand out most, keeps the one whose bands lie closest to such a
lattice, and measures that on other frames against off-grid offsets, as the zero test does.

Vorbis's quantiser leaves a lattice of its own: each coefficient it keeps is its floor curve's
level there times an integer (the residue), and the floor's levels come from one table of 256
levels about 0.55 dB apart, so groups of neighbouring bins, which mostly share a level, fall on
integer multiples of one of those levels. It is searched and measured as AAC's is, each frame
free to take the best of its eight offsets 128 apart; where a lattice stands out and the zeros
do not, the surer lattice names the codec. At high bitrates the integers grow large, so a
group's least coefficient no longer gives its level: a fine measure then tries every level the
group's loudest coefficient allows. Each channel has its own floor, so only the first channel
is measured (their mean lies on no floor's lattice). The zeros above 15 kHz, which a codec at
a high bitrate still leaves where few fall lower, add candidates for both lattices' grids.

This reaches what the lossy detector's network misses on real recordings, FFmpeg's AAC at 256
kbit/s and Vorbis at 256 to 320 kbit/s, whose noise hides under the recording's own, without
any cue in the spectrum. MP3's
hybrid filter bank and Opus's 48 kHz frames (which resampling moves off the wave's samples)
leave no such grid, and HE-AAC's core runs at half the rate, so those stay the network's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import scipy.fft

FRAME = 1024  # AAC-LC's frame; Vorbis's long block (2048 samples) hops by as much
# Frames spread over the wave: every third finds the grid, the rest measure it, so the search
# cannot lend an original the best of its own offsets.
FRAMES = 24
# The bands counted, as shares of the Nyquist frequency: about 0.9 to 15 kHz at 44.1 kHz.
LOW, HIGH = 0.04, 0.68
# Above them, to about 21 kHz, a codec at a high bitrate still quantises to zero what its
# masking hides, where an original's coefficients seldom vanish: there its zeros point at the
# grid when few fall below 15 kHz, and add candidates for the lattices (not to the measure).
TOP = 0.95
ZERO = 2.0 / 32768  # within two 16-bit steps of zero: what a quantised zero becomes on output
NULL_OFFSETS = 48  # off-grid offsets the measured share is held against
OFFSETS_AT_ONCE = 64  # offsets transformed together (64 x 8 frames: about 4 MB)
# The excess (in standard deviations of the off-grid shares) at which a wave is as likely coded
# as not, and how fast the call turns.
MIDPOINT = 5.0
SCALE = 0.5
# AAC-LC's long-block scalefactor bands at 44.1 and 48 kHz (ISO/IEC 14496-3, swb_offset_long_48),
# those within the counted bins; AAC's quantiser's exponent and the lattice steps it leaves.
AAC_BANDS = np.array(
    [
        *(40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160, 176, 196, 216, 240, 264),
        *(292, 320, 352, 384, 416, 448, 480, 512, 544, 576, 608, 640, 672, 704),
    ]
)
AAC_POWER = 0.75
# A band's largest coefficient spans this many steps of a lattice tried on it: fewer tell no
# lattice apart, more make the steps finer than 16-bit rounding at low levels.
LATTICE_STEPS = (1.5, 40.0)
LATTICE_FLOOR = 64.0 / 32768  # a band whose largest coefficient is below this is not counted
LATTICE_KEPT = 4  # nor one with fewer coefficients that are not zero
# The steps tried on a band, as multiples of its finest: 2^(3/16) apart, AAC's scalefactor step
# seen through the 3/4 power (in this module's MDCT scale the steps are 2^(3s/16) exactly).
_STEPS = np.exp2(
    3 / 16 * np.arange(math.ceil(16 / 3 * math.log2(LATTICE_STEPS[1] / LATTICE_STEPS[0])) + 1)
).astype(np.float32)
LATTICE_CANDIDATES = 8  # offsets with the most zeros whose lattice is tried, and as many more:
LATTICE_SEARCH_BANDS = 13  # those whose lowest bands (0.9 to 3.8 kHz) lie closest on the
LATTICE_SEARCH_FRAMES = 3  # loudest search frames
LATTICE_NULL = 16  # off-grid offsets the lattice is held against
LATTICE_SPREAD = 0.004  # the least spread of off-grid lattice scores (their noise on real clips)
LATTICE_FRAMES_AT_ONCE = 64  # frames analysed together (64 x 664 bins x 24 steps: about 4 MB)
# Vorbis's quantiser: each coefficient it keeps is its floor curve's value there times an integer
# (the residue), and the floor takes its values from one table of 256 levels about 0.55 dB apart
# (the Vorbis I specification's floor1_inverse_dB_table, 1.0649863e-07 to 1) at every rate. In
# this module's MDCT scale libvorbis's levels are exp(VORBIS_RATIO (n + VORBIS_PHASE)) for
# integers n (tests/test_mdct_trace.py fits the phase on real clips' copies).
VORBIS_RATIO = math.log(1 / 1.0649863e-07) / 255
VORBIS_PHASE = 0.54
VORBIS_GROUP = 12  # neighbouring bins, which mostly share one floor level
VORBIS_GROUPS = (AAC_BANDS[-1] - AAC_BANDS[0]) // VORBIS_GROUP  # over AAC's counted bins
VORBIS_SEARCH_GROUPS = 20  # the lowest (0.9 to 6 kHz) searched on the loudest search frames
VORBIS_CANDIDATES = 4  # offsets (modulo the hop) that search keeps for all search frames
# A group's least coefficient that is not zero is taken as 1, 2 or 3 levels of the floor's
# table: each gives a step, and the group counts at the one it lies closest to.
_VORBIS_MULTIPLES = np.array([1.0, 2.0, 3.0], np.float32)
# At high bitrates the residues are large (a group's loudest coefficient tens of levels), and
# its least coefficient no longer gives the step: there the fine steps try every level on which
# a group's loudest spans VORBIS_FINE_SPAN steps, on its lowest groups (0.9 to 8.6 kHz), at
# several times the coarse steps' cost.
VORBIS_FINE_GROUPS = 30
VORBIS_FINE_SPAN = (6.0, LATTICE_STEPS[1])
_VORBIS_LEVELS = np.arange(
    math.ceil(math.log(VORBIS_FINE_SPAN[1] / VORBIS_FINE_SPAN[0]) / VORBIS_RATIO) + 1,
    dtype=np.float32,
)


def _windows() -> dict[str, np.ndarray]:
    """The codecs' long-block windows, 2 x FRAME samples."""
    n = np.arange(2 * FRAME)
    kaiser = np.kaiser(FRAME + 1, 4 * np.pi)  # AAC's Kaiser-Bessel-derived window, alpha 4
    rise = np.sqrt(np.cumsum(kaiser[:FRAME]) / kaiser.sum())
    return {
        "aac": np.concatenate([rise, rise[::-1]]),
        "vorbis": np.sin(np.pi / 2 * np.sin(np.pi * (n + 0.5) / (2 * FRAME)) ** 2),
    }


_WINDOWS = {name: w.astype(np.float32) for name, w in _windows().items()}
# How far each codec's long blocks may move along the wave: AAC's frames never do; a Vorbis
# short block (256 samples) between long ones moves the later ones by a multiple of 128.
_HOPS = {"aac": FRAME, "vorbis": 128}
_SCALE = np.float32(0.5 * math.sqrt(2 / FRAME))  # scipy's DCT-IV is twice the sum


def _mdct(frames: np.ndarray) -> np.ndarray:
    """The MDCT of windowed 2 x FRAME-sample frames, as the DCT-IV of their time-domain-aliased
    fold: a quarter of the work of a 2 x FRAME FFT, in float32 like the samples."""
    h = FRAME // 2
    a, b, c, d = frames[..., :h], frames[..., h:FRAME], frames[..., FRAME:-h], frames[..., -h:]
    folded = np.concatenate([-c[..., ::-1] - d, a - b[..., ::-1]], axis=-1)
    return scipy.fft.dct(folded, type=4, axis=-1) * _SCALE


@dataclass(frozen=True)
class MdctTrace:
    """How far the zeros on the wave's best MDCT grid stand out from its other offsets."""

    family: str | None  # "aac" or "vorbis": whose window gives back more zeros; None: untested
    excess: float  # the on-grid share of zeros over the off-grid ones, in their standard deviations
    offset: int  # the grid's offset from the wave's start, in samples
    lattice: float = 0.0  # AAC's lattice on its best grid over off-grid offsets, likewise
    vorbis_lattice: float = 0.0  # Vorbis's lattice, likewise

    @property
    def strength(self) -> float:
        """The surest of the three measures: zeros, AAC's lattice, Vorbis's lattice."""
        return max(self.excess, self.lattice, self.vorbis_lattice)

    @property
    def lossy_probability(self) -> float:
        return 1.0 / (1.0 + math.exp(-(self.strength - MIDPOINT) / SCALE))


UNTESTED = MdctTrace(None, 0.0, 0)


def mdct_trace(wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None) -> MdctTrace:
    """The grid test of a wave (samples, or samples x channels, as it was decoded): the first
    channel and, for more than one, their mean (a codec's mid/side bands); ``UNTESTED`` where
    the wave is too short for its frames or silent. ``pace``: called after each batch of
    offsets' transforms (see ``asc.codecs.grid_tests.grid_call``)."""
    x = np.asarray(wave, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    if len(x) < (FRAMES + 3) * FRAME or not np.any(x):
        return UNTESTED
    signals = [x[:, 0]] if x.shape[1] == 1 else [x[:, 0], x.mean(axis=1)]
    starts = np.unique(np.linspace(1, len(x) // FRAME - 3, FRAMES).astype(int)) * FRAME
    search, measure = starts[::3], np.delete(starts, np.s_[::3])
    bins = slice(int(LOW * FRAME), int(HIGH * FRAME)), slice(int(HIGH * FRAME), int(TOP * FRAME))
    best = UNTESTED
    for signal in signals:  # Vorbis scales each channel by its own floor: their mean is on none
        trace = _trace(signal, search, measure, bins, pace, vorbis=signal is signals[0])
        if best.family is None or trace.strength > best.strength:
            best = trace
    return best


def _trace(
    signal: np.ndarray,
    search: np.ndarray,
    measure: np.ndarray,
    bins: tuple[slice, slice],
    pace: Callable[[], None] | None,
    vorbis: bool,
) -> MdctTrace:
    """The zeros' grid and the lattices of one signal (``vorbis``: Vorbis's lattice too)."""
    # Each lattice's search scores the zero test's own spectra: AAC's low bands on the loudest
    # search frames, Vorbis's low groups on every search frame.
    energy = [float(np.mean(np.square(signal[s : s + 2 * FRAME]))) for s in search]
    loudest = np.argsort(energy)[-LATTICE_SEARCH_FRAMES:]
    searches = {"aac": partial(_aac_search, loudest=loudest), "vorbis": None}
    if vorbis:
        searches["vorbis"] = _vorbis_search
    grids, searched = {}, {}
    for f, w in _WINDOWS.items():
        grids[f], searched[f] = _grid(signal, w, _HOPS[f], search, measure, bins, pace, searches[f])
    excess = max(g.excess for g in grids.values())
    nearest = np.argsort(-searched["aac"], kind="stable")[:LATTICE_CANDIDATES]
    candidates = np.unique(np.concatenate([g.candidates for g in grids.values()] + [nearest]))
    lattice, at = _lattice(signal, candidates, search, measure, pace)
    zeros_at = np.concatenate([[grids["vorbis"].offset], grids["vorbis"].candidates])
    vorbis_lattice, vorbis_at = 0.0, 0
    if vorbis:
        vorbis_lattice, vorbis_at = _vorbis_lattice(
            signal, searched["vorbis"], zeros_at, search, measure, pace
        )
    # The quantisers' lattices are each one codec's; where one stands out and the zeros do
    # not, it names the codec. (Where zeros stand out the window names it: a low-rate Vorbis
    # band of equal magnitudes sits on AAC's lattice too.)
    found = {"aac": (lattice, at), "vorbis": (vorbis_lattice, vorbis_at)}
    surer = max(found, key=lambda f: found[f][0])
    if found[surer][0] >= MIDPOINT > excess:
        family, offset = surer, found[surer][1]
    else:
        # Either window shows a grid's zeros; the codec's own gives back more of them
        # (measured as a share, since the windows' off-grid spreads differ).
        family = max(grids, key=lambda f: grids[f].gain)
        offset = grids[family].offset
    return MdctTrace(family, round(excess, 2), offset, round(lattice, 2), round(vorbis_lattice, 2))


def _aac_search(spectra: np.ndarray, loudest: np.ndarray) -> np.ndarray:
    """AAC's lattice search on the zero test's spectra: its low bands on the loudest frames."""
    return _aac_scores(spectra[:, loudest], LATTICE_SEARCH_BANDS)


def _vorbis_search(spectra: np.ndarray) -> np.ndarray:
    """Vorbis's lattice search on the zero test's spectra: its low groups' coarse scores."""
    return _vorbis_group_scores(spectra, VORBIS_SEARCH_GROUPS)[..., 0]


@dataclass(frozen=True)
class _Grid:
    excess: float  # on-grid share of zeros over the off-grid median, in off-grid spreads
    gain: float  # the same, as a share of the coefficients
    offset: int
    candidates: np.ndarray  # the offsets with the most zeros on the search frames, below and
    # above 15 kHz (there modulo the hop)


def _zero_shares(
    signal: np.ndarray,
    starts: np.ndarray,
    window: np.ndarray,
    bands: tuple[slice, ...],
    pace: Callable[[], None] | None,
    also: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per band and entry of ``starts`` (offsets x frames), the share of its frame's coefficients
    in the band that lie within ``ZERO`` of zero; a few offsets at a time, so memory stays
    small. ``also``: a lattice's search, given the same spectra (offsets x frames x bins), so
    they are transformed once; its values per offset come back beside the shares."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * FRAME)
    shares, searched = [], []
    for rows in np.array_split(starts, max(1, len(starts) // OFFSETS_AT_ONCE)):
        spectra = _mdct(frames[rows] * window)
        zero = np.abs(spectra) < ZERO
        shares.append(np.stack([np.mean(zero[..., b], axis=-1) for b in bands]))
        if also is not None:
            searched.append(also(spectra))
        if pace is not None:
            pace()
    return np.concatenate(shares, axis=1), np.concatenate(searched) if searched else None


def _grid(
    signal: np.ndarray,
    window: np.ndarray,
    hop: int,
    search: np.ndarray,
    measure: np.ndarray,
    bands: tuple[slice, slice],
    pace: Callable[[], None] | None,
    also: Callable[[np.ndarray], np.ndarray] | None,
) -> tuple[_Grid, np.ndarray | None]:
    """The zeros' grid for one window, measured on the first of ``bands``; the second only adds
    candidates. ``hop``: the steps by which the codec's frames may move along the wave, so each
    frame takes the best of the offsets ``hop`` apart (FRAME: frames that never move, as AAC's;
    Vorbis's short blocks move its long ones by 128 samples). ``also``: the window's lattice
    search, on the same spectra; its values come back beside the grid."""
    offsets = np.arange(FRAME)
    both, searched = _zero_shares(signal, offsets[:, None] + search, window, bands, pace, also)
    shares, above = both
    phases = FRAME // hop
    free = shares.reshape(phases, hop, -1).max(axis=0).mean(axis=1)  # per offset modulo hop
    free_above = above.reshape(phases, hop, -1).max(axis=0).mean(axis=1)
    candidates = np.concatenate(
        [
            np.argsort(-shares.mean(axis=1), kind="stable")[:LATTICE_CANDIDATES],
            np.argsort(-free_above, kind="stable")[:VORBIS_CANDIDATES],
        ]
    )
    base = int(np.argmax(free))
    offset = base + hop * int(np.argmax(shares[base::hop].mean(axis=1)))
    rng = np.random.default_rng(0)
    if phases == 1:
        null = rng.choice(np.delete(offsets, offset), NULL_OFFSETS, replace=False)
    else:  # off the grid by more than its smear, modulo hop
        others = np.delete(np.arange(hop), (base + np.arange(-2, 3)) % hop)
        null = rng.choice(others, min(NULL_OFFSETS, len(others)), replace=False)
    bases = np.concatenate([[base], null])
    (measured,), _ = _zero_shares(
        signal,
        (bases[:, None] + hop * np.arange(phases)).ravel()[:, None] + measure,
        window,
        bands[:1],
        pace,
    )
    on, *off = measured.reshape(len(bases), phases, -1).max(axis=1).mean(axis=1)
    median = float(np.median(off))
    # the off-grid shares' spread, never below a binomial count's over the measured bins
    count = len(measure) * (bands[0].stop - bands[0].start)
    p = min(max(median, 1.0 / count), 1.0 - 1.0 / count)
    spread = 1.4826 * float(np.median(np.abs(np.array(off) - median)))
    spread = max(spread, math.sqrt(p * (1 - p) / count))
    return _Grid((on - median) / spread, on - median, offset, candidates), searched


def _lattice(
    signal: np.ndarray,
    candidates: np.ndarray,
    search: np.ndarray,
    measure: np.ndarray,
    pace: Callable[[], None] | None,
) -> tuple[float, int]:
    """AAC's lattice on the best of ``candidates`` (chosen on the search frames), measured on
    the other frames against off-grid offsets: its excess in their spreads, and the offset."""
    tried = _lattice_scores(signal, candidates[:, None] + search, pace)
    offset = int(candidates[int(np.argmax(tried))])
    others = np.delete(np.arange(FRAME), (offset + np.arange(-2, 3)) % FRAME)
    null = np.random.default_rng(1).choice(others, LATTICE_NULL, replace=False)
    on, *off = _lattice_scores(signal, np.concatenate([[offset], null])[:, None] + measure, pace)
    return _lattice_excess(on, off), offset


def _lattice_excess(on: float, off: list[float]) -> float:
    """A lattice score on the grid over off-grid ones, in their spread (never below
    LATTICE_SPREAD, their noise on real clips)."""
    median = float(np.median(off))
    spread = max(1.4826 * float(np.median(np.abs(np.array(off) - median))), LATTICE_SPREAD)
    return (on - median) / spread


def _counted_mean(
    closeness: np.ndarray, span: np.ndarray, top: np.ndarray, count: np.ndarray, axes
) -> np.ndarray:
    """Both lattices' mean closeness over the counted bands or groups: each at the best step
    it allows, counted where a step is allowed, it is loud enough and has enough coefficients
    that are not zero."""
    allowed = (span >= LATTICE_STEPS[0]) & (span <= LATTICE_STEPS[1])
    best = np.where(allowed, closeness, -1.0).max(axis=-1)
    counted = allowed.any(axis=-1) & (top >= LATTICE_FLOOR) & (count >= LATTICE_KEPT)
    total = np.where(counted, best, 0.0).sum(axis=axes)
    return total / np.maximum(counted.sum(axis=axes), 1)


def _lattice_scores(
    signal: np.ndarray,
    starts: np.ndarray,
    pace: Callable[[], None] | None,
    bands: int = len(AAC_BANDS) - 1,
) -> np.ndarray:
    """Per row of ``starts`` (offsets x frames), how close its frames' first ``bands`` AAC
    bands lie to a lattice of AAC's quantiser: per band and frame, the mean of
    cos(2 pi |c|^(3/4) / step) over its coefficients that are not zero (zeros sit on every
    lattice, and are the zero test's) at the best step the band allows (1 on the lattice, about
    0 off it), over the counted bands; a few rows at a time, so memory stays small."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * FRAME)
    scores = []
    for rows in np.array_split(starts, max(1, starts.size // LATTICE_FRAMES_AT_ONCE)):
        scores.append(_aac_scores(_mdct(frames[rows] * _WINDOWS["aac"]), bands))
        if pace is not None:
            pace()
    return np.concatenate(scores)


def _aac_scores(spectra: np.ndarray, bands: int) -> np.ndarray:
    """``_lattice_scores`` of spectra on AAC's window (rows x frames x FRAME), per row."""
    edges = AAC_BANDS[:bands] - AAC_BANDS[0]
    band_of_bin = np.repeat(np.arange(bands), np.diff(AAC_BANDS[: bands + 1]))
    c = np.abs(spectra[..., AAC_BANDS[0] : AAC_BANDS[bands]])
    kept = (c >= ZERO).astype(np.float32)
    top = np.maximum.reduceat(c, edges, axis=-1)  # (rows, frames, bands)
    # Each band's steps, the finest first: its largest coefficient spans at most the most
    # steps allowed on it, and each next step is 2^(3/16) coarser.
    first = np.ceil(16 / 3 * np.log2(np.maximum(top, 1e-12) ** AAC_POWER / LATTICE_STEPS[1]))
    unit = np.exp2(-3 / 16 * first)  # the finest step's reciprocal, per band
    y = c**AAC_POWER * unit[..., band_of_bin]  # in the finest step's units
    phase = np.cos((2 * np.pi) * y[..., None] / _STEPS) * kept[..., None]
    count = np.add.reduceat(kept, edges, axis=-1)
    closeness = np.add.reduceat(phase, edges, axis=-2) / np.maximum(count, 1)[..., None]
    # the steps were chosen so that none spans more than LATTICE_STEPS[1]
    span = (top**AAC_POWER * unit)[..., None] / _STEPS
    return _counted_mean(closeness, span, top, count, (1, 2))


def _vorbis_lattice(
    signal: np.ndarray,
    searched: np.ndarray,
    zeros_at: np.ndarray,
    search: np.ndarray,
    measure: np.ndarray,
    pace: Callable[[], None] | None,
) -> tuple[float, int]:
    """Vorbis's lattice on its best grid, measured as AAC's is; each frame takes the best of
    the offsets 128 apart, as on the zeros' grid. ``searched``: the low groups' coarse scores
    at every offset of every search frame (offsets x frames); the best bases overall and on
    each frame (any may be short blocks, without the long blocks' lattice), and those where
    Vorbis's zeros stood out (``zeros_at``), are tried on all search frames. Measured with the
    coarse steps and the fine ones, each on its own best grid: the surer of the two."""
    hop = _HOPS["vorbis"]
    phases = FRAME // hop
    free = searched.reshape(phases, hop, -1).max(axis=0)  # (hop, frames)
    candidates = np.unique(
        np.concatenate(
            [
                np.argsort(-free.mean(axis=1), kind="stable")[:VORBIS_CANDIDATES],
                np.argsort(-free, axis=0, kind="stable")[:2].ravel(),
                zeros_at % hop,
            ]
        )
    )
    offsets = candidates[:, None] + hop * np.arange(phases)  # (candidates, phases)
    tried = _vorbis_scores(signal, offsets[..., None] + search, pace, fine=True)
    found = []
    for k, free in enumerate(tried.max(axis=1).mean(axis=1).T):  # each measure on its own grid
        at = int(np.argmax(free))
        base = int(candidates[at])
        others = np.delete(np.arange(hop), (base + np.arange(-2, 3)) % hop)
        null = np.random.default_rng(2).choice(others, LATTICE_NULL, replace=False)
        bases = np.concatenate([[base], null])
        starts = (bases[:, None] + hop * np.arange(phases))[..., None] + measure
        measured = _vorbis_scores(signal, starts, pace, coarse=k == 0, fine=k == 1)[..., 0]
        on, *off = measured.max(axis=1).mean(axis=1)
        offset = int(offsets[at, int(np.argmax(tried[at, ..., k].mean(axis=-1)))])
        found.append((_lattice_excess(on, off), offset))
    return max(found)


def _vorbis_scores(
    signal: np.ndarray,
    starts: np.ndarray,
    pace: Callable[[], None] | None,
    groups: int = VORBIS_GROUPS,
    coarse: bool = True,
    fine: bool = False,
) -> np.ndarray:
    """``_vorbis_group_scores`` of the frames at ``starts`` (any shape; a last axis is added),
    a few frames at a time."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * FRAME)
    scores = []
    for rows in np.array_split(starts.ravel(), max(1, starts.size // LATTICE_FRAMES_AT_ONCE)):
        spectra = _mdct(frames[rows] * _WINDOWS["vorbis"])
        scores.append(_vorbis_group_scores(spectra, groups, coarse, fine))
        if pace is not None:
            pace()
    return np.concatenate(scores).reshape(*starts.shape, -1)


def _vorbis_group_scores(
    spectra: np.ndarray, groups: int, coarse: bool = True, fine: bool = False
) -> np.ndarray:
    """Per frame of ``spectra`` (any leading shape x FRAME, on Vorbis's window), how close its
    first ``groups`` groups of bins lie to Vorbis's lattice: per group, the mean of
    cos(2 pi |c| / step) over the coefficients that are not zero, at the best of the steps
    tried (coarse: those its least coefficient gives; fine: every level), over the counted
    groups (1 on the lattice, about 0 off it). A last axis holds the coarse and the fine
    scores, those asked for."""
    shape = spectra.shape[:-1]
    bins = slice(AAC_BANDS[0], AAC_BANDS[0] + groups * VORBIS_GROUP)
    c = np.abs(spectra[..., bins]).reshape(-1, groups, VORBIS_GROUP)
    kept = c >= ZERO
    count = kept.sum(axis=-1)
    top = c.max(axis=-1)
    row = []
    if coarse:
        least = np.where(kept, c, np.inf).min(axis=-1, initial=np.inf)
        level = np.log(np.minimum(least, 1.0)[..., None] / _VORBIS_MULTIPLES) / VORBIS_RATIO
        step = np.exp(VORBIS_RATIO * (np.round(level - VORBIS_PHASE) + VORBIS_PHASE))
        row.append(_vorbis_closeness(c, kept, count, top, step.astype(np.float32)))
    if fine:  # every level from the one a group's loudest spans VORBIS_FINE_SPAN[0] of
        f = slice(0, VORBIS_FINE_GROUPS)
        span = np.log(np.maximum(top[:, f], 1e-12) / VORBIS_FINE_SPAN[0]) / VORBIS_RATIO
        level = np.floor(span - VORBIS_PHASE)[..., None] - _VORBIS_LEVELS
        step = np.exp(VORBIS_RATIO * (level + VORBIS_PHASE)).astype(np.float32)
        row.append(_vorbis_closeness(c[:, f], kept[:, f], count[:, f], top[:, f], step))
    return np.stack(row, axis=-1).reshape(*shape, -1)


def _vorbis_closeness(
    c: np.ndarray, kept: np.ndarray, count: np.ndarray, top: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Per frame, the counted groups' mean closeness to the lattice at the steps tried on each
    (rows x groups x steps)."""
    phase = c[..., None, :] * ((2 * np.pi) / step)[..., None]
    np.cos(phase, out=phase)
    phase *= kept[..., None, :]
    closeness = phase.sum(axis=-1) / np.maximum(count, 1)[..., None]
    return _counted_mean(closeness, top[..., None] / step, top, count, -1)

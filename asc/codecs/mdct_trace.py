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

HE-AAC codes an AAC-LC core at half the rate and rebuilds the band above it from the core
(SBR). Its decoder brings the core up to the full rate through a filter bank that passes the
core's band nearly unchanged, so the wave taken back down to half the rate is the core again,
nearly to 16-bit rounding, and its AAC grid shows there. Which of the wave's samples fell on the
core's depends on the decoder's delay, so both phases are tried. Only AAC's window and lattice
are measured there (Vorbis has no such core), and only where the full rate shows no grid: a grid
found at half the rate names HE-AAC.

This reaches what the lossy detector's network misses on real recordings, FFmpeg's AAC at 256
kbit/s and Vorbis at 256 to 320 kbit/s, whose noise hides under the recording's own, without
any cue in the spectrum, and names HE-AAC, whose copies the network often takes for Opus. MP3's
hybrid filter bank leaves a grid of its own (``asc.codecs.mp3_trace``); Opus's 48 kHz frames
(which resampling moves off the wave's samples) leave none, so Opus stays the network's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.signal import resample_poly

from asc.codecs.mdct_frames import (
    AAC_BANDS,
    FRAME,
    HOPS,
    LATTICE_FRAMES_AT_ONCE,
    LATTICE_NULL,
    LATTICE_STEPS,
    WINDOWS,
    ZERO,
    counted_mean,
    lattice_excess,
    mdct,
)
from asc.codecs.vorbis_lattice import VORBIS_CANDIDATES, vorbis_lattice, vorbis_search

# Frames spread over the wave: every third finds the grid, the rest measure it, so the search
# cannot lend an original the best of its own offsets.
FRAMES = 24
# The bands counted, as shares of the Nyquist frequency: about 0.9 to 15 kHz at 44.1 kHz.
LOW, HIGH = 0.04, 0.68
# Above them, to about 21 kHz, a codec at a high bitrate still quantises to zero what its
# masking hides, where an original's coefficients seldom vanish: there its zeros point at the
# grid when few fall below 15 kHz, and add candidates for the lattices (not to the measure).
TOP = 0.95
NULL_OFFSETS = 48  # off-grid offsets the measured share is held against
OFFSETS_AT_ONCE = 64  # offsets transformed together (64 x 8 frames: about 4 MB)
# The excess (in standard deviations of the off-grid shares) at which a wave is as likely coded
# as not, and how fast the call turns.
MIDPOINT = 5.0
SCALE = 0.5
AAC_POWER = 0.75
# The steps tried on a band, as multiples of its finest: 2^(3/16) apart, AAC's scalefactor step
# seen through the 3/4 power (in this module's MDCT scale the steps are 2^(3s/16) exactly).
_STEPS = np.exp2(
    3 / 16 * np.arange(math.ceil(16 / 3 * math.log2(LATTICE_STEPS[1] / LATTICE_STEPS[0])) + 1)
).astype(np.float32)
LATTICE_CANDIDATES = 8  # offsets with the most zeros whose lattice is tried, and as many more:
LATTICE_SEARCH_BANDS = 13  # those whose lowest bands (0.9 to 3.8 kHz) lie closest on the
LATTICE_SEARCH_FRAMES = 3  # loudest search frames
HALF_RATE_FAMILY = "he-aac"  # the family a grid found at half the rate names


@dataclass(frozen=True)
class MdctTrace:
    """How far the zeros on the wave's best MDCT grid stand out from its other offsets."""

    # "aac" or "vorbis": whose window gives back more zeros (or whose lattice stands out);
    # "he-aac": AAC's grid at half the rate; None: untested
    family: str | None
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
    best = UNTESTED
    for signal in signals:  # Vorbis scales each channel by its own floor: their mean is on none
        trace = _trace(signal, *_frames(signal), pace, vorbis=signal is signals[0])
        if best.family is None or trace.strength > best.strength:
            best = trace
    if best.strength < MIDPOINT:
        half = _half_rate_trace(signals, pace)
        if half.family is not None and half.strength > best.strength:  # not when too short
            best = half
    return best


def _frames(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The search frames' and the measured frames' starts in ``signal``."""
    starts = np.unique(np.linspace(1, len(signal) // FRAME - 3, FRAMES).astype(int)) * FRAME
    return starts[::3], np.delete(starts, np.s_[::3])


def _half_rate_trace(signals: list[np.ndarray], pace: Callable[[], None] | None) -> MdctTrace:
    """HE-AAC's core: AAC's grid in each signal taken down to half the rate, from its even and
    from its odd samples (the offset is given in the wave's samples); ``UNTESTED`` where the
    half is too short for the frames."""
    if len(signals[0]) // 2 < (FRAMES + 3) * FRAME:
        return UNTESTED
    best = UNTESTED
    for signal in signals:
        for phase in (0, 1):
            core = resample_poly(signal[phase:], 1, 2).astype(np.float32)
            trace = _trace(core, *_frames(core), pace, vorbis=False, windows=("aac",))
            if best.family is None or trace.strength > best.strength:
                best = MdctTrace(
                    HALF_RATE_FAMILY, trace.excess, 2 * trace.offset + phase, trace.lattice
                )
    return best


def _trace(
    signal: np.ndarray,
    search: np.ndarray,
    measure: np.ndarray,
    pace: Callable[[], None] | None,
    vorbis: bool,
    windows: tuple[str, ...] = tuple(WINDOWS),
) -> MdctTrace:
    """The zeros' grid and the lattices of one signal (``vorbis``: Vorbis's lattice too;
    ``windows``: those whose zeros are counted)."""
    bins = slice(int(LOW * FRAME), int(HIGH * FRAME)), slice(int(HIGH * FRAME), int(TOP * FRAME))
    # Each lattice's search scores the zero test's own spectra: AAC's low bands on the loudest
    # search frames, Vorbis's low groups on every search frame.
    energy = [float(np.mean(np.square(signal[s : s + 2 * FRAME]))) for s in search]
    loudest = np.argsort(energy)[-LATTICE_SEARCH_FRAMES:]
    searches = {"aac": partial(_aac_search, loudest=loudest), "vorbis": None}
    if vorbis:
        searches["vorbis"] = vorbis_search
    grids, searched = {}, {}
    for f in windows:
        grids[f], searched[f] = _grid(
            signal, WINDOWS[f], HOPS[f], search, measure, bins, pace, searches[f]
        )
    excess = max(g.excess for g in grids.values())
    nearest = np.argsort(-searched["aac"], kind="stable")[:LATTICE_CANDIDATES]
    candidates = np.unique(np.concatenate([g.candidates for g in grids.values()] + [nearest]))
    lattice, at = _lattice(signal, candidates, search, measure, pace)
    vorbis_score, vorbis_at = 0.0, 0
    if vorbis:
        zeros_at = np.concatenate([[grids["vorbis"].offset], grids["vorbis"].candidates])
        vorbis_score, vorbis_at = vorbis_lattice(
            signal, searched["vorbis"], zeros_at, search, measure, pace
        )
    # The quantisers' lattices are each one codec's; where one stands out and the zeros do
    # not, it names the codec. (Where zeros stand out the window names it: a low-rate Vorbis
    # band of equal magnitudes sits on AAC's lattice too.)
    found = {"aac": (lattice, at), "vorbis": (vorbis_score, vorbis_at)}
    surer = max(found, key=lambda f: found[f][0])
    if found[surer][0] >= MIDPOINT > excess:
        family, offset = surer, found[surer][1]
    else:
        # Either window shows a grid's zeros; the codec's own gives back more of them
        # (measured as a share, since the windows' off-grid spreads differ).
        family = max(grids, key=lambda f: grids[f].gain)
        offset = grids[family].offset
    return MdctTrace(family, round(excess, 2), offset, round(lattice, 2), round(vorbis_score, 2))


def _aac_search(spectra: np.ndarray, loudest: np.ndarray) -> np.ndarray:
    """AAC's lattice search on the zero test's spectra: its low bands on the loudest frames."""
    return _aac_scores(spectra[:, loudest], LATTICE_SEARCH_BANDS)


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
        spectra = mdct(frames[rows] * window)
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
    return lattice_excess(on, off), offset


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
        scores.append(_aac_scores(mdct(frames[rows] * WINDOWS["aac"]), bands))
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
    return counted_mean(closeness, span, top, count, (1, 2))

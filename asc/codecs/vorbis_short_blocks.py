"""Vorbis's lattice on its short blocks, where libvorbis codes a transient.

libvorbis codes a sound's onsets in short blocks (256 samples) to keep its noise from spreading
before them, and at 256 to 320 kbit/s on real recordings it does so often: its long blocks'
lattice (``asc.codecs.vorbis_lattice``), measured on frames spread over the wave, then finds too
few long blocks that lie where it looks. A short block's coefficients lie on the same lattice as
a long block's (its floor's level times an integer residue, the floor's levels from one table),
and every block, long or short, starts on one grid 128 samples apart: a short block between two
long ones moves the later ones by a multiple of 128. So this test analyses the wave again in
256-sample frames with Vorbis's short window at each of the 128 offsets, on frames at the
wave's onsets (where libvorbis puts its short blocks; an onset is found from the wave's energy
alone, the same for every offset), and measures the best offset's lattice against off-grid
offsets as the long blocks' is. On a short block's few bins a group's level changes from bin to
bin more often, so groups are narrower (4 bins), and every level its loudest coefficient allows
is tried. Only the first channel is measured: each channel has its own floor.

It runs only where no other grid test finds a grid (``asc.codecs.grid_tests``): it costs
nothing on a wave already decided, and it also stands out in some low-rate AAC copies, which
the MDCT test names first (docs/reports.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asc.codecs.mdct_frames import (
    LATTICE_NULL,
    NOTHING_COUNTED,
    ZERO,
    lattice_excess,
    mdct,
    vorbis_window,
)
from asc.codecs.mdct_trace import MIDPOINT, SCALE
from asc.codecs.vorbis_lattice import VORBIS_RATIO

SHORT = 128  # a short block's coefficients: its frame is twice as long, and it hops by as much
FIRST_BIN = 4  # the groups counted: 0.7 to 17 kHz at 44.1 kHz
GROUP = 4  # neighbouring bins taken to share one floor level
GROUPS = 24
# The levels tried on a group: its loudest coefficient spans from SPAN[0] to SPAN[1] steps.
SPAN = (2.0, 40.0)
_LEVELS = np.arange(math.ceil(math.log(SPAN[1] / SPAN[0]) / VORBIS_RATIO) + 1, dtype=np.float32)
# In this module's MDCT scale a short block's floor levels are exp(VORBIS_RATIO (n + PHASE)) for
# integers n (tests/test_vorbis_short_blocks.py checks it on real clips' copies).
PHASE = 0.0
LOUD = 32.0 / 32768  # a group whose loudest coefficient is below this is not counted
KEPT = 2  # nor one with fewer coefficients that are not zero
ONSET_HISTORY = 8  # an onset: a frame's energy over the mean log energy of the 8 frames before
ONSET_FRAMES = (-2, 4)  # the frames around an onset taken, from the first to before the last
FRAMES = 48  # search frames; twice as many are measured
CANDIDATES = 16  # offsets kept, of all tried on half of the search frames, for all of them
FRAMES_AT_ONCE = 64  # frames analysed together (64 x 24 groups x 48 levels x 4 bins: 1.2 MB)

_WINDOW = vorbis_window(2 * SHORT)


@dataclass(frozen=True)
class ShortBlockTrace:
    """How far Vorbis's lattice on short blocks stands out from the wave's other offsets."""

    excess: float  # the best offset's lattice over off-grid offsets, in their spreads
    offset: int  # the grid's offset from the wave's start, modulo SHORT
    tested: bool = True

    @property
    def lossy_probability(self) -> float:
        return 1.0 / (1.0 + math.exp(-(self.excess - MIDPOINT) / SCALE))


UNTESTED = ShortBlockTrace(0.0, 0, tested=False)


def short_block_trace(
    wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None
) -> ShortBlockTrace:
    """The short blocks' test of a wave (samples, or samples x channels, as decoded) on its
    first channel; ``UNTESTED`` where it is silent or too short for its frames. ``rate``
    is unused (Vorbis's blocks are counted in samples at every rate), kept for the grid tests'
    one signature. ``pace``: called after each batch of frames."""
    del rate
    x = np.asarray(wave, dtype=np.float32)
    signal = x if x.ndim == 1 else x[:, 0]
    frames = _onset_frames(signal) if np.any(signal) else None
    if frames is None:
        return UNTESTED
    search, measure = frames[::3], np.delete(frames, np.s_[::3])
    first = _counted_mean(_scores(signal, np.arange(SHORT)[:, None] + search[::2], pace))
    kept = np.argsort(-first, kind="stable")[:CANDIDATES]
    tried = _counted_mean(_scores(signal, kept[:, None] + search, pace))
    offset = int(kept[int(np.argmax(tried))])
    others = np.delete(np.arange(SHORT), (offset + np.arange(-2, 3)) % SHORT)
    null = np.random.default_rng(3).choice(others, LATTICE_NULL, replace=False)
    starts = np.concatenate([[offset], null])[:, None] + measure
    on, *off = _counted_mean(_scores(signal, starts, pace))
    return ShortBlockTrace(round(lattice_excess(on, off), 2), offset)


def _counted_mean(scores: np.ndarray) -> np.ndarray:
    """Per offset (a row of ``_scores``), the mean over its frames that counted a group:
    a frame too quiet to count any at one offset is no evidence for or against it; an offset
    whose frames counted none scores ``NOTHING_COUNTED`` (see ``lattice_excess``)."""
    counted = ~np.isnan(scores)
    total = np.where(counted, scores, 0.0).sum(axis=1)
    return np.where(
        counted.any(axis=1), total / np.maximum(counted.sum(axis=1), 1), NOTHING_COUNTED
    )


def _onset_frames(signal: np.ndarray) -> np.ndarray | None:
    """The starts (multiples of SHORT) of 3 x FRAMES frames at the wave's strongest onsets, in
    order; None where the wave has fewer frames than that."""
    count = (len(signal) - 2 * SHORT) // SHORT - 1  # each offset's frame must fit
    if count < 3 * FRAMES + ONSET_HISTORY:
        return None
    power = np.concatenate([[0.0], np.cumsum(np.square(signal, dtype=np.float64))])
    starts = np.arange(count) * SHORT
    energy = np.log(power[starts + 2 * SHORT] - power[starts] + 1e-10)
    before = np.convolve(energy, np.ones(ONSET_HISTORY) / ONSET_HISTORY)[: count - 1]
    rise = np.concatenate([[-np.inf], energy[1:] - before])
    chosen: dict[int, None] = {}  # the frames in the order their onsets rank, each once
    for k in np.argsort(-rise, kind="stable"):
        chosen |= dict.fromkeys(range(max(0, k + ONSET_FRAMES[0]), min(count, k + ONSET_FRAMES[1])))
        if len(chosen) >= 3 * FRAMES:
            break
    return np.sort(np.array(list(chosen)[: 3 * FRAMES])) * SHORT


def _scores(signal: np.ndarray, starts: np.ndarray, pace: Callable[[], None] | None) -> np.ndarray:
    """Per entry of ``starts`` (offsets x frames), how close the frame's groups lie to Vorbis's
    lattice: per counted group, the mean of cos(2 pi |c| / step) over its coefficients that are
    not zero at the best level tried, over the frame's counted groups (NaN where none counts)."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * SHORT)
    scores = []
    for rows in np.array_split(starts.ravel(), max(1, starts.size // FRAMES_AT_ONCE)):
        spectra = mdct(frames[rows] * _WINDOW)[:, FIRST_BIN : FIRST_BIN + GROUPS * GROUP]
        scores.append(_closeness(np.abs(spectra).reshape(len(rows), GROUPS, GROUP)))
        if pace is not None:
            pace()
    return np.concatenate(scores).reshape(starts.shape)


def _closeness(c: np.ndarray) -> np.ndarray:
    """``_scores`` of frames' grouped coefficient magnitudes (frames x groups x GROUP); only
    the counted groups are tried, which on a quiet wave are few."""
    kept = c >= ZERO
    top = c.max(axis=-1)
    counted = (top >= LOUD) & (kept.sum(axis=-1) >= KEPT)
    g, g_kept, g_top = c[counted], kept[counted], top[counted]  # (groups counted x GROUP)
    span = np.log(g_top / SPAN[0]) / VORBIS_RATIO
    step = np.exp(VORBIS_RATIO * (np.floor(span - PHASE)[:, None] - _LEVELS + PHASE))
    phase = g[:, None, :] * ((2 * np.pi) / step.astype(np.float32))[..., None]
    np.cos(phase, out=phase)
    phase *= g_kept[:, None, :]
    closeness = phase.sum(axis=-1) / g_kept.sum(axis=-1)[:, None]
    best = np.zeros(counted.shape, np.float32)
    best[counted] = np.where(g_top[:, None] / step <= SPAN[1], closeness, -1.0).max(axis=-1)
    frames_counted = counted.sum(axis=-1)
    return np.where(frames_counted > 0, best.sum(axis=-1) / np.maximum(frames_counted, 1), np.nan)

"""The MDCT frames that AAC's and Vorbis's grid tests analyse, and what both lattices share.

Both codecs code 2048-sample frames, 1024 apart, through an MDCT with their own windows; a
wave analysed again on the codec's frames with its window gives back the quantised
coefficients, up to 16-bit rounding (``asc.codecs.mdct_trace``). Both quantisers leave a
lattice there, scored alike: per band or group of bins, how close the coefficients lie to
multiples of a step, held against off-grid offsets (``asc.codecs.vorbis_lattice`` for Vorbis's).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

FRAME = 1024  # AAC-LC's frame; Vorbis's long block (2048 samples) hops by as much
ZERO = 2.0 / 32768  # within two 16-bit steps of zero: what a quantised zero becomes on output
# AAC-LC's long-block scalefactor bands at 44.1 and 48 kHz (ISO/IEC 14496-3, swb_offset_long_48),
# those within the counted bins; AAC's quantiser's exponent and the lattice steps it leaves.
AAC_BANDS = np.array(
    [
        *(40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160, 176, 196, 216, 240, 264),
        *(292, 320, 352, 384, 416, 448, 480, 512, 544, 576, 608, 640, 672, 704),
    ]
)
# A band's largest coefficient spans this many steps of a lattice tried on it: fewer tell no
# lattice apart, more make the steps finer than 16-bit rounding at low levels.
LATTICE_STEPS = (1.5, 40.0)
LATTICE_FLOOR = 64.0 / 32768  # a band whose largest coefficient is below this is not counted
LATTICE_KEPT = 4  # nor one with fewer coefficients that are not zero
LATTICE_NULL = 16  # off-grid offsets the lattice is held against
NOTHING_COUNTED = 0.0  # a counted mean where no band or group was counted
LATTICE_SPREAD = 0.004  # the least spread of off-grid lattice scores (their noise on real clips)
LATTICE_FRAMES_AT_ONCE = 64  # frames analysed together (64 x 664 bins x 24 steps: about 4 MB)


def vorbis_window(size: int) -> np.ndarray:
    """Vorbis's window over a block of ``size`` samples (its power-of-sine slopes), float32."""
    n = np.arange(size)
    return np.sin(np.pi / 2 * np.sin(np.pi * (n + 0.5) / size) ** 2).astype(np.float32)


def _windows() -> dict[str, np.ndarray]:
    """The codecs' long-block windows, 2 x FRAME samples."""
    kaiser = np.kaiser(FRAME + 1, 4 * np.pi)  # AAC's Kaiser-Bessel-derived window, alpha 4
    rise = np.sqrt(np.cumsum(kaiser[:FRAME]) / kaiser.sum())
    return {"aac": np.concatenate([rise, rise[::-1]]), "vorbis": vorbis_window(2 * FRAME)}


WINDOWS = {name: w.astype(np.float32) for name, w in _windows().items()}
# How far each codec's long blocks may move along the wave: AAC's frames never do; a Vorbis
# short block (256 samples) between long ones moves the later ones by a multiple of 128.
HOPS = {"aac": FRAME, "vorbis": 128}


def mdct(frames: np.ndarray) -> np.ndarray:
    """The MDCT of windowed frames of 2 n samples (n = FRAME for a long block, 128 for a
    Vorbis short block), as the DCT-IV of their time-domain-aliased fold: a quarter of the work
    of a 2 n-point FFT, in float32 like the samples."""
    n = frames.shape[-1] // 2
    h = n // 2
    a, b, c, d = frames[..., :h], frames[..., h:n], frames[..., n:-h], frames[..., -h:]
    folded = np.concatenate([-c[..., ::-1] - d, a - b[..., ::-1]], axis=-1)
    return scipy.fft.dct(folded, type=4, axis=-1) * np.float32(0.5 * math.sqrt(2 / n))


def lattice_excess(on: float, off: list[float]) -> float:
    """A lattice score on the grid over off-grid ones, in their spread (never below
    LATTICE_SPREAD, their noise on real clips). An offset where no band was loud enough to count
    (``NOTHING_COUNTED``) is no evidence either way, so it stays out of the off-grid scores; on a
    quiet clip, offsets that counted nothing made the few that counted one band look like a grid
    (a real sweep's Opus copies stood 72 to 94 spreads out at half the rate). Where the grid
    counts nothing or over half the off-grid offsets do, there is no lattice to measure: 0."""
    kept = np.array([o for o in off if o != NOTHING_COUNTED])
    if on == NOTHING_COUNTED or 2 * len(kept) < len(off):
        return 0.0
    median = float(np.median(kept))
    spread = max(1.4826 * float(np.median(np.abs(kept - median))), LATTICE_SPREAD)
    return (on - median) / spread


def counted_mean(
    closeness: np.ndarray, span: np.ndarray, top: np.ndarray, count: np.ndarray, axes
) -> np.ndarray:
    """Both lattices' mean closeness over the counted bands or groups: each at the best step
    it allows, counted where a step is allowed, it is loud enough and has enough coefficients
    that are not zero. A row with none counted scores exactly ``NOTHING_COUNTED``."""
    allowed = (span >= LATTICE_STEPS[0]) & (span <= LATTICE_STEPS[1])
    best = np.where(allowed, closeness, -1.0).max(axis=-1)
    counted = allowed.any(axis=-1) & (top >= LATTICE_FLOOR) & (count >= LATTICE_KEPT)
    total = np.where(counted, best, 0.0).sum(axis=axes)
    return total / np.maximum(counted.sum(axis=axes), 1)

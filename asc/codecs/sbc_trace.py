"""SBC's frame grid: the trace Bluetooth's codec leaves where its noise hides in the recording's.

SBC keeps the full band, and at the bitpools a device uses its noise sits under a real
recording's own floor, so a spectrogram shows nothing that a lossless original lacks (the lossy
detector calls about 2 % of real SBC copies lossy). What SBC cannot hide is its grid: coding the
decoded audio again with SBC, on the same 128-sample frames, repeats most of the first coding's
choices, so the second coding changes the audio far less on the grid than a few samples off it.
A lossless recording has no grid, and every offset changes it alike.

The test codes two short loud segments with the engine's own SBC: the first finds the grid (the
sub-band phase, then the frame), the second measures the contrast on and off it, so the search
cannot lend an original the minimum of its own noise. It needs the wave at the rate it was coded
at and one channel as coded: a downmixed joint-stereo stream or a resampled one shows no grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asc.codecs.clip import roundtrip
from asc.codecs.registry import SBC_BLOCKS, SBC_SUBBANDS

SBC_RATES = (16000, 32000, 44100, 48000)
FRAME = SBC_SUBBANDS * SBC_BLOCKS
SEGMENT_SECONDS = 0.25
# The contrast is measured over this many segments' length: more frames, a steadier median.
CONTRAST_SEGMENTS = 3
# The first and last frames of a re-coded segment start from silence; they are not compared.
EDGE = 3 * FRAME
# 53 is the highest bitpool A2DP's high-quality setting uses; 8 is `sbc:64k` in mono.
BITPOOLS = (53, 45, 35, 19, 8)
# Off the grid by less than a sub-band step: the frames fall where the first coding's did not.
OFF_GRID = (1, 3, 5)
# The contrast at which a wave is as likely SBC-coded as not, and how fast the call turns.
MIDPOINT_DB = 0.6
SCALE_DB = 0.1
# 16-bit quantisation's noise power: below it a frame counts as repeated exactly.
NOISE_FLOOR = 1e-10


@dataclass(frozen=True)
class SbcTrace:
    """How much less a second SBC coding changes the wave on its best grid than off it."""

    contrast_db: float
    bitpool: int | None  # the test bitpool with the largest contrast; None if not tested
    offset: int  # the grid's offset from the wave's start, in samples

    @property
    def lossy_probability(self) -> float:
        return 1.0 / (1.0 + math.exp(-(self.contrast_db - MIDPOINT_DB) / SCALE_DB))


UNTESTED = SbcTrace(0.0, None, 0)


def sbc_trace(wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None) -> SbcTrace:
    """The grid contrast of a wave (samples, or samples x channels, as it was decoded);
    ``UNTESTED`` where SBC cannot run at ``rate`` or the wave is too short or silent.
    ``pace``: called after each SBC coding (see ``asc.codecs.grid_tests.grid_call``)."""
    x = np.asarray(wave, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    n = int(SEGMENT_SECONDS * rate) // FRAME * FRAME
    if rate not in SBC_RATES or len(x) < 2 * (CONTRAST_SEGMENTS * n + 2 * FRAME) + n:
        return UNTESTED
    first, second = _loudest_segments(x, CONTRAST_SEGMENTS * n + 2 * FRAME)
    if not np.any(x[first : first + n]) or not np.any(x[second : second + n]):
        return UNTESTED  # digital silence: every coding leaves it alike

    def noise(start: int, offset: int, bitpool: int, length: int) -> np.ndarray:
        added = _frame_noise_db(x[start + offset : start + offset + length], rate, bitpool)
        if pace is not None:
            pace()
        return added

    # The sub-band phase first (each bitpool, since a coarse coding's lattice is not a fine
    # one's), on half a segment (enough frames to tell a phase), then the frame among the
    # offsets with that phase.
    half = n // 2 // FRAME * FRAME
    phases = {
        b: [float(np.mean(noise(first, o, b, half))) for o in range(SBC_SUBBANDS)] for b in BITPOOLS
    }
    bitpool = max(BITPOOLS, key=lambda b: float(np.median(phases[b]) - min(phases[b])))
    phase = int(np.argmin(phases[bitpool]))
    grid = min(
        range(phase, FRAME, SBC_SUBBANDS),
        key=lambda o: float(np.mean(noise(first, o, bitpool, n))),
    )
    offset = (first + grid) % FRAME
    on = (offset - second) % FRAME  # the same grid seen from the second segment
    length = CONTRAST_SEGMENTS * n
    off_grid = np.median([noise(second, on + d, bitpool, length) for d in OFF_GRID], axis=0)
    contrast = float(np.median(off_grid - noise(second, on, bitpool, length)))
    return SbcTrace(round(contrast, 2), bitpool, offset)


def _loudest_segments(x: np.ndarray, length: int) -> tuple[int, int]:
    """Starts of the two loudest non-overlapping segments, on a half-segment hop."""
    hop = length // 2
    starts = list(range(0, len(x) - length + 1, hop))
    energy = [float(np.mean(np.square(x[s : s + length]))) for s in starts]
    order = sorted(range(len(starts)), key=lambda i: -energy[i])
    first = starts[order[0]]
    second = next(starts[i] for i in order[1:] if abs(starts[i] - first) >= length)
    return first, second  # three segments' length always holds two apart


def _frame_noise_db(segment: np.ndarray, rate: int, bitpool: int) -> np.ndarray:
    """What one SBC coding adds to each inner frame of the segment, in dB (floored where the
    coding repeats the frame exactly, so that one exact frame cannot outweigh the rest)."""
    coded = roundtrip(segment, rate, f"sbc:bitpool={bitpool}")
    added = np.square(coded - segment).mean(axis=1)[EDGE : len(segment) - EDGE]
    frames = added[: len(added) // FRAME * FRAME].reshape(-1, FRAME).mean(axis=1)
    return 10.0 * np.log10(frames + NOISE_FLOOR)

"""The codecs' frame-grid tests beside the lossy detector's network, joined one way.

A spectrogram network sees a codec's lowpass and its noise where they rise above the
recording's own; at the bitrates a device uses on real recordings, SBC and FFmpeg's AAC often
leave neither. Their frame grids remain (asc.codecs.sbc_trace, asc.codecs.mdct_trace), and
each test names the codec whose grid it finds. The server and the detector-families report
both take the surer test's call and join it to the network's output with ``join_detector``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asc.codecs.mdct_trace import MdctTrace, mdct_trace
from asc.codecs.registry import CODEC_FAMILIES
from asc.codecs.sbc_trace import SbcTrace, sbc_trace


@dataclass(frozen=True)
class GridCall:
    """The surer grid test's call: the family whose grid the wave shows, and how likely."""

    family: str
    probability: float


def surer_call(sbc: SbcTrace, mdct: MdctTrace) -> GridCall | None:
    """The call of the test more sure that it found a grid; None where neither could run."""
    calls = []
    if sbc.bitpool is not None:
        calls.append(GridCall("sbc", sbc.lossy_probability))
    if mdct.family is not None:
        calls.append(GridCall(mdct.family, mdct.lossy_probability))
    return max(calls, key=lambda c: c.probability) if calls else None


def grid_call(
    wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None
) -> GridCall | None:
    """Both grid tests on a wave as decoded, at the rate it was coded at. ``pace``, where
    given, is called between their steps (a few milliseconds of CPU each), so that a caller
    can spread a test's CPU over time (server/grid_runner.py)."""
    return surer_call(sbc_trace(wave, rate, pace), mdct_trace(wave, rate, pace))


def join_detector(
    lossy: float, families: np.ndarray, call: GridCall | None
) -> tuple[float, np.ndarray]:
    """The detector's network output (lossy probability, probabilities over ``CODEC_FAMILIES``)
    joined by a grid test's call: as lossy as the surer of the two says, and where the test
    finds a grid the family probabilities lean to its family by its probability, which makes
    that family their argmax; elsewhere they stay the network's."""
    if call is None:
        return lossy, families
    if call.probability < 0.5:
        return max(lossy, call.probability), families
    found = np.array([name == call.family for name in CODEC_FAMILIES], np.float64)
    p = call.probability
    return max(lossy, p), (1.0 - p) * np.asarray(families) + p * found

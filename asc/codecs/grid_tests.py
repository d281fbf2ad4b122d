"""The codecs' frame-grid tests beside the lossy detector's network, joined one way.

A spectrogram network sees a codec's lowpass and its noise where they rise above the
recording's own; at the bitrates a device uses on real recordings, SBC and FFmpeg's AAC often
leave neither, and MP3's noise looks like Opus's and Vorbis's. Their frame grids remain
(asc.codecs.sbc_trace, asc.codecs.mdct_trace, asc.codecs.mp3_trace), and each test names the
codec whose grid it finds; where none does, Vorbis's short blocks may still show its lattice
(asc.codecs.vorbis_short_blocks). The server and the detector-families report
both take the surer test's call and join it to the network's output with ``join_detector``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from asc.codecs.mdct_trace import UNTESTED as MDCT_UNTESTED
from asc.codecs.mdct_trace import MdctTrace, mdct_trace
from asc.codecs.mp3_trace import UNTESTED as MP3_UNTESTED
from asc.codecs.mp3_trace import Mp3Trace, mp3_trace
from asc.codecs.registry import CODEC_FAMILIES
from asc.codecs.sbc_trace import SbcTrace, sbc_trace
from asc.codecs.vorbis_short_blocks import UNTESTED as SHORT_UNTESTED
from asc.codecs.vorbis_short_blocks import ShortBlockTrace, short_block_trace

# A wave is called lossy at this probability or more (the server's and the report's call).
LOSSY_AT = 0.5


@dataclass(frozen=True)
class GridCall:
    """The surer grid test's call: the family whose grid the wave shows, and how likely."""

    family: str
    probability: float
    # The SBC test's own probability where it ran, even when the other test is surer: at a
    # device's bitpools on real recordings it finds every SBC copy (docs/reports.md), so a wave
    # it finds no SBC grid in is seldom SBC-coded, whatever the network's family head says.
    sbc_probability: float | None = None


def surer_call(
    sbc: SbcTrace, mdct: MdctTrace, mp3: Mp3Trace, short: ShortBlockTrace = SHORT_UNTESTED
) -> GridCall | None:
    """The grid tests' call: the first test, cheapest first (SBC, MP3, MDCT, then Vorbis's
    short blocks), that finds a grid decides, so ``grid_call`` runs no later test once one
    has; where none finds one, the surest. None where none could run."""
    sbc_probability = sbc.lossy_probability if sbc.bitpool is not None else None
    calls = []  # cheapest first
    if sbc_probability is not None:
        calls.append(GridCall("sbc", sbc_probability, sbc_probability))
    if mp3.tested:
        calls.append(GridCall("mp3", mp3.lossy_probability, sbc_probability))
    if mdct.family is not None:
        calls.append(GridCall(mdct.family, mdct.lossy_probability, sbc_probability))
    if short.tested:
        calls.append(GridCall("vorbis", short.lossy_probability, sbc_probability))
    found = [c for c in calls if c.probability >= LOSSY_AT]
    if found:
        return found[0]
    return max(calls, key=lambda c: c.probability) if calls else None


def grid_call(
    wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None
) -> GridCall | None:
    """The grid tests on a wave as decoded, at the rate it was coded at, cheapest first, until
    one finds a grid: on a wave whose SBC or MP3 grid shows, the dearer tests would not change
    ``surer_call``'s answer, and on the server their CPU is what bounds how many clips are
    tested. ``pace``, where given, is called between the tests' steps (a few milliseconds of
    CPU each), so that a caller can spread their CPU over time (server/grid_runner.py)."""
    sbc = sbc_trace(wave, rate, pace)
    mp3, mdct, short = MP3_UNTESTED, MDCT_UNTESTED, SHORT_UNTESTED
    if _undecided(surer_call(sbc, mdct, mp3)):
        mp3 = mp3_trace(wave, rate, pace)
    if _undecided(surer_call(sbc, mdct, mp3)):
        mdct = mdct_trace(wave, rate, pace)
    if _undecided(surer_call(sbc, mdct, mp3)):
        short = short_block_trace(wave, rate, pace)
    return surer_call(sbc, mdct, mp3, short)


def _undecided(call: GridCall | None) -> bool:
    """Whether the tests run so far leave the call open: none found a grid."""
    return call is None or call.probability < LOSSY_AT


def join_detector(
    lossy: float, families: np.ndarray, call: GridCall | None
) -> tuple[float, np.ndarray]:
    """The detector's network output (lossy probability, probabilities over ``CODEC_FAMILIES``)
    joined by a grid test's call: as lossy as the surer of the two says, and where the test
    finds a grid the family probabilities lean to its family by its probability, which makes
    that family their argmax. Where the SBC test ran, the network's SBC share is scaled by
    that test's probability (and the shares made to sum to one again): the network names SBC
    for copies whose noise hides under the recording's, the test does not."""
    if call is None:
        return lossy, families
    if call.sbc_probability is not None:
        families = np.array(families, np.float64)
        families[CODEC_FAMILIES.index("sbc")] *= call.sbc_probability
        families /= max(families.sum(), 1e-12)
    if call.probability < LOSSY_AT:
        return max(lossy, call.probability), families
    found = np.array([name == call.family for name in CODEC_FAMILIES], np.float64)
    p = call.probability
    return max(lossy, p), (1.0 - p) * np.asarray(families) + p * found


def named_family(lossy: float, families: np.ndarray, names: Sequence[str] = CODEC_FAMILIES) -> str:
    """The family a detector output names, which never contradicts its call: a wave called
    lossy is named by its likeliest lossy family, even where the family head gives "lossless"
    the largest single share (its lossy shares may still sum to more), and a wave not called
    lossy is named "lossless"."""
    if lossy < LOSSY_AT:
        return "lossless"
    lossy_ones = [i for i, name in enumerate(names) if name != "lossless"]
    return names[max(lossy_ones, key=lambda i: families[i])]

"""MP3's frame grid: the zeros Layer III leaves where its granules lay, found by decoding backwards.

MP3 splits the wave into 32 subbands with a polyphase filter bank, then each subband's samples
into 18 lines with an MDCT over 36 of them, 18 apart (a granule: 576 samples), and quantises the
576 lines; at every bitrate many quantise to zero. Its decoder undoes both steps. Analysing the
decoded wave again with the matching analysis bank, at the decoder's sample phase (32 possible),
and the matching MDCT, at its block phase (18 possible), gives back the quantised lines and
their zeros; at any of the other 575 offsets they smear. A lossless recording has no such grid,
and every offset looks alike. So the test counts, at each of the 576 offsets, the share of lines
near zero, and holds the best offset's share against the others', as the MDCT test does for AAC
and Vorbis (``asc.codecs.mdct_trace``): the best offset is chosen on some of the wave's
segments and measured on the others, so an original gains nothing from having the best of its
own offsets.

The decoder's synthesis filters are measured here rather than copied from the standard's
tables: FFmpeg's Layer II decoder, which shares Layer III's polyphase synthesis, decodes
hand-built frames that hold one nonzero subband sample, and each response it gives is one
512-tap prototype times cos((2k+1)(n+16)pi/64) for subband k. The analysis filters are those
responses run backwards. Before the MDCT the analysis undoes the decoder's frequency inversion
(odd samples of odd subbands negated), and after it applies the encoder's alias-reduction
butterflies between neighbouring subbands, so the lines are the ones the encoder quantised.

Granules that Layer III codes with short blocks (on transients) show no zeros on this long-block
grid; the rest carry the call. The filter bank does not depend on the sample rate, so the test
runs at any of MPEG audio's rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import av
import numpy as np

SUBBANDS = 32
TAPS = 512  # the polyphase prototype's length
LINES = 18  # MDCT lines per subband
GRANULE = SUBBANDS * LINES  # 576 samples, and as many offsets a grid may lie at
RATES = (16000, 22050, 24000, 32000, 44100, 48000)  # MPEG-1 and MPEG-2 Layer III
SEGMENT_GRANULES = 6  # granules per segment, analysed at every offset
# Segments spread over the wave (as many as fit, up to SEGMENTS, at least LEAST_SEGMENTS):
# every third finds the grid, the rest measure it.
SEGMENTS = 24
LEAST_SEGMENTS = 6
# The lines counted, about 0.8 to 20 kHz at 44.1 kHz; the granule's level is measured below
# 15 kHz, where every codec keeps the band.
COUNTED = slice(20, 520)
LEVEL = slice(20, 400)
# A line counts as zero under this share of its granule's level, or under half a 16-bit step:
# the inverse decoder gives the quantised lines back only to the prototype's stopband
# (about -90 dB), and a 16-bit copy adds rounding noise of about 0.3 steps to every line.
ZERO_SHARE = 1e-3
ZERO = 0.5 / 32768
NULL_OFFSETS = 48  # off-grid offsets the measured share is held against
NEAR = 2  # offsets this close to the grid (in samples) are not off it
# The excess (in standard deviations of the off-grid shares) at which a wave is as likely coded
# as not, and how fast the call turns: as the MDCT test's.
MIDPOINT = 5.0
SCALE = 0.5
# The encoder's alias-reduction coefficients (ISO/IEC 11172-3, Table B.9).
_ALIAS = np.array([-0.6, -0.535, -0.33, -0.185, -0.095, -0.041, -0.0142, -0.0037])
_CS, _CA = 1 / np.sqrt(1 + _ALIAS**2), _ALIAS / np.sqrt(1 + _ALIAS**2)


@dataclass(frozen=True)
class Mp3Trace:
    """How far the zeros on the wave's best Layer III grid stand out from its other offsets."""

    excess: float  # on-grid share of zeros over the off-grid median, in off-grid spreads
    offset: int  # the grid's offset from the wave's start, in samples (0 to 575)
    tested: bool = True

    @property
    def lossy_probability(self) -> float:
        if not self.tested:
            return 0.0
        return 1.0 / (1.0 + math.exp(-(self.excess - MIDPOINT) / SCALE))


UNTESTED = Mp3Trace(0.0, 0, tested=False)


def mp3_trace(wave: np.ndarray, rate: int, pace: Callable[[], None] | None = None) -> Mp3Trace:
    """The grid test of a wave (samples, or samples x channels, as it was decoded): the first
    channel and, where the channels differ, their mean (the mid channel of MP3's joint stereo);
    ``UNTESTED`` at a rate MP3 has no mode for, on a wave too short for its segments, or on
    silence. ``pace``: called after each segment's analysis (see
    ``asc.codecs.grid_tests.grid_call``)."""
    x = np.asarray(wave, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    span = _segment_samples()
    count = min(SEGMENTS, len(x) // span)
    if rate not in RATES or count < LEAST_SEGMENTS or not np.any(x):
        return UNTESTED
    # whole granules apart, so that the grid lies at one offset in every segment
    starts = np.linspace(0, len(x) - span, count).astype(int) // GRANULE * GRANULE
    search, measure = starts[::3], np.delete(starts, np.s_[::3])
    same = all(np.array_equal(x[:, 0], x[:, c]) for c in range(1, x.shape[1]))
    signals = [x[:, 0]] if same else [x[:, 0], x.mean(axis=1)]
    best = UNTESTED
    for signal in signals:
        trace = _trace(signal, search, measure, pace)
        if not best.tested or trace.excess > best.excess:
            best = trace
    return best


def _trace(
    signal: np.ndarray, search: np.ndarray, measure: np.ndarray, pace: Callable[[], None] | None
) -> Mp3Trace:
    """The grid of one signal: the offset whose lines hold the most zeros on the search
    segments, measured on the others against off-grid offsets."""
    offsets = np.arange(GRANULE)
    searched = np.mean([_zero_shares(signal[s:], offsets, pace) for s in search], axis=0)
    offset = int(np.argmax(searched))
    off_grid = np.abs((offsets - offset + GRANULE // 2) % GRANULE - GRANULE // 2) > NEAR
    null = np.random.default_rng(0).choice(offsets[off_grid], NULL_OFFSETS, replace=False)
    tried = np.concatenate([[offset], null])
    on, *off = np.mean([_zero_shares(signal[s:], tried, pace) for s in measure], axis=0)
    median = float(np.median(off))
    # the off-grid shares' spread, never below a binomial count's over the measured lines
    lines = len(measure) * SEGMENT_GRANULES * (COUNTED.stop - COUNTED.start)
    p = min(max(median, 1.0 / lines), 1.0 - 1.0 / lines)
    spread = 1.4826 * float(np.median(np.abs(np.array(off) - median)))
    spread = max(spread, math.sqrt(p * (1 - p) / lines))
    return Mp3Trace(round(float((on - median) / spread), 2), offset)


def _segment_samples() -> int:
    """Samples one segment needs: its granules and one more (the MDCT's overlap) at the last
    offset, plus the analysis filters' length."""
    return GRANULE + (SEGMENT_GRANULES + 1) * GRANULE + TAPS


def _zero_shares(
    segment: np.ndarray, offsets: np.ndarray, pace: Callable[[], None] | None
) -> np.ndarray:
    """Per offset, the share of the lines of the segment's granules that lie near zero."""
    subbands = _analysis(segment[: _segment_samples()])
    times = LINES * (SEGMENT_GRANULES + 1)
    s = subbands[offsets[:, None] + SUBBANDS * np.arange(times)]  # (offsets, times, subbands)
    s[:, 1::2, 1::2] *= -1  # the decoder's frequency inversion, undone
    window, cosines = _mdct_basis()
    blocks = np.stack([s[:, LINES * g : LINES * g + 2 * LINES] for g in range(SEGMENT_GRANULES)], 1)
    blocks = np.swapaxes(blocks, -1, -2) * window  # (offsets, granules, subbands, 36)
    lines = blocks @ cosines
    _alias_reduce(lines)
    flat = lines.reshape(len(offsets), SEGMENT_GRANULES, GRANULE)
    level = np.sqrt(np.mean(np.square(flat[..., LEVEL]), axis=-1, keepdims=True))
    zero = np.abs(flat[..., COUNTED]) < np.maximum(ZERO_SHARE * level, ZERO)
    if pace is not None:
        pace()
    return zero.mean(axis=(1, 2))


def _analysis(segment: np.ndarray) -> np.ndarray:
    """The 32 subbands' samples at every sample of the segment (windows x 32): each window
    weighted by the prototype and folded to 64 samples (the cosines repeat every 128 taps,
    with a sign every 64), then taken through the 64 x 32 cosines."""
    prototype, cosines = _analysis_parts()
    windows = np.lib.stride_tricks.sliding_window_view(segment, TAPS) * prototype
    folded = windows.reshape(len(windows), TAPS // 64, 64)
    folded = folded[:, 0::2].sum(axis=1) - folded[:, 1::2].sum(axis=1)
    return folded @ cosines


def _alias_reduce(lines: np.ndarray) -> None:
    """The encoder's butterflies between each subband's top eight lines and the next one's
    bottom eight, in place (lines: ... x subbands x LINES)."""
    top, bottom = LINES - 1 - np.arange(8), np.arange(8)
    lo, hi = lines[..., :-1, top], lines[..., 1:, bottom]
    lines[..., :-1, top] = lo * _CS + hi * _CA
    lines[..., 1:, bottom] = hi * _CS - lo * _CA


@cache
def _mdct_basis() -> tuple[np.ndarray, np.ndarray]:
    """Layer III's long-block window and MDCT (36 samples to 18 lines), orthonormal."""
    i, k = np.arange(2 * LINES), np.arange(LINES)
    window = np.sin(np.pi / (2 * LINES) * (i + 0.5)).astype(np.float32)
    cosines = np.sqrt(2 / LINES) * np.cos(
        np.pi / LINES * (i[:, None] + 0.5 + LINES / 2) * (k[None] + 0.5)
    )
    return window, cosines.astype(np.float32)


@cache
def _analysis_parts() -> tuple[np.ndarray, np.ndarray]:
    """The prototype and the 64 x 32 cosines of the analysis filters, scaled so that each
    filter has unit energy. Correlating a wave with a synthesis response is filtering it with
    that response run backwards: the matching analysis filter."""
    n = np.arange(TAPS)
    prototype = _prototype()
    filters = prototype * np.cos(np.outer(2 * np.arange(SUBBANDS) + 1, n + 16) * np.pi / 64)
    energy = np.sqrt(np.sum(np.square(filters), axis=1))
    cosines = np.cos(np.outer(n[:64] + 16, 2 * np.arange(SUBBANDS) + 1) * np.pi / 64) / energy
    return prototype.astype(np.float32), cosines.astype(np.float32)


# Layer II, MPEG-1, 44.1 kHz, mono, 192 kbit/s: its allocation table (ISO/IEC 11172-3 B.2b)
# gives the first 23 subbands a 15-level class with 4-bit codes, whose zero is code 7.
_FRAME_BYTES = 626
_ALLOCATION_BITS = [4] * 11 + [3] * 12 + [2] * 7
_FIFTEEN_LEVELS = [3] * 3 + [5] * 20  # the class's allocation index, per subband
_MID = 7


def _layer2_frame(subband: int, codes: list[int]) -> bytes:
    """One Layer II frame in which only ``subband`` carries samples (36 codes, scalefactor 0)."""
    fields = [(0xFFF, 12), (1, 1), (0b10, 2), (1, 1), (10, 4), (0, 2), (0, 1), (0, 1)]  # header
    fields += [(0b11, 2), (0, 2), (0, 1), (0, 1), (0, 2)]  # mono, no emphasis
    fields += [
        (_FIFTEEN_LEVELS[k] if k == subband else 0, b) for k, b in enumerate(_ALLOCATION_BITS)
    ]
    fields += [(0, 2)] + [(0, 6)] * 3 + [(code, 4) for code in codes]  # scfsi, scalefactors
    value, length = 0, 0
    for v, bits in fields:
        value, length = (value << bits) | v, length + bits
    return (value << (_FRAME_BYTES * 8 - length)).to_bytes(_FRAME_BYTES, "big")


def _decode_layer2(data: bytes) -> np.ndarray:
    decoder = av.CodecContext.create("mp2float", "r")
    frames = [f for packet in decoder.parse(data) for f in decoder.decode(packet)]
    frames += decoder.decode(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)


def _prototype() -> np.ndarray:
    """The synthesis prototype, fitted to the decoder's responses to one sample in each of the
    23 subbands a 4-bit class reaches (the cosines tell the subbands apart)."""
    n = np.arange(TAPS)
    responses, cosines = [], []
    for k in range(len(_FIFTEEN_LEVELS)):
        impulse = [_MID + 1] + [_MID] * 35
        frames = _layer2_frame(k, impulse) + _layer2_frame(k, [_MID] * 36)
        responses.append(_decode_layer2(frames)[:TAPS])
        cosines.append(np.cos((2 * k + 1) * (n + 16) * np.pi / 64))
    r, c = np.array(responses), np.array(cosines)
    return (r * c).sum(axis=0) / (c * c).sum(axis=0)

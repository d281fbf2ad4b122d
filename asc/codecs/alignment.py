"""Codec delay, measured once per codec setting rather than trusted from metadata.

Encoders and decoders add priming samples (and resamplers their own latency), and not every
container records them. Training pairs must line up sample for sample, so the engine codes a
fixed calibration signal, finds the lag by cross-correlation, and caches it.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from asc.codecs.backends import open_decoder, open_encoder
from asc.codecs.errors import CodecError
from asc.codecs.registry import Resolved, resolve
from asc.codecs.spec import CodecSpec

CALIBRATION_SECONDS = 1.5
MAX_DELAY_SECONDS = 0.25


def calibration_signal(rate: int, channels: int) -> np.ndarray:
    """Band-limited noise (200 Hz-3 kHz): every codec keeps this band's waveform, SBR ones too."""
    n = int(CALIBRATION_SECONDS * rate)
    spectrum = np.fft.rfft(np.random.default_rng(20211115).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 200) | (freqs > 3000)] = 0
    x = np.fft.irfft(spectrum, n)
    x *= 0.25 / np.max(np.abs(x))
    return np.repeat(x.astype(np.float32)[:, None], channels, axis=1)


def find_lag(reference: np.ndarray, delayed: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag in samples of ``delayed`` behind ``reference`` and the normalised correlation there."""
    a = reference.mean(axis=1) if reference.ndim == 2 else reference
    b = delayed.mean(axis=1) if delayed.ndim == 2 else delayed
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: max_lag + 1]
    lag = int(np.argmax(corr))
    segment = b[lag : lag + len(a)]
    norm = np.sqrt(np.sum(a[: len(segment)] ** 2) * np.sum(segment**2)) or 1.0
    return lag, float(corr[lag] / norm)


def _coded(r: Resolved, x: np.ndarray) -> np.ndarray:
    """``x`` through one stage's raw encoder and decoder, cut as ``StreamDecoder`` cuts it.

    The stream's end frame goes out after the encoder's last input and before its flush, so
    only what the flushed packets and the decoder's flush add is cut at the input's length;
    a codec that ends short is padded with silence.
    """
    encoder = open_encoder(r)
    before_end = encoder.encode(x) + encoder.encode(np.zeros((0, r.channels), np.float32))
    after_end = encoder.flush()
    decoder = open_decoder(r, encoder.header)
    head = [decoder.decode(packet) for packet in before_end]
    done = sum(len(part) for part in head)
    tail = np.concatenate([*(decoder.decode(packet) for packet in after_end), decoder.flush()])
    tail = tail[: max(0, len(x) - done)]
    pad = np.zeros((max(0, len(x) - done - len(tail)), r.channels), np.float32)
    return np.concatenate([*head, tail, pad])


@cache
def _delay(stage: str, rate: int, channels: int) -> int:
    r = resolve(stage, rate, channels)[-1]
    x = calibration_signal(rate, channels)
    # the decoder cuts at the input length, so code silence after the signal to see the whole lag
    tail = int(MAX_DELAY_SECONDS * rate)
    y = _coded(r, np.concatenate([x, np.zeros((tail, channels), np.float32)]))
    lag, score = find_lag(x, y, tail)
    if score < 0.5:
        raise CodecError(f"{stage}: could not measure the codec delay (correlation {score:.2f})")
    return lag


def codec_delay(spec: str | CodecSpec, rate: int, channels: int) -> int:
    """Samples a ``StreamDecoder`` for ``spec`` drops so its output lines up with the input.

    That is the delay of the chain's last stage (the encoder aligns its earlier hops itself).
    Measured once per stage, rate and channel count, then cached: the first call codes 1.75 s
    of audio, so servers make it off their event loop.
    """
    r = resolve(spec, rate, channels)[-1]
    return _delay(str(r.stage), r.rate, r.channels)

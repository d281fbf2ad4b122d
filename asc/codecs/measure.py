"""Numbers people ask of a codec path: achieved bitrate, SNR and the bandwidth left."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asc.codecs.alignment import codec_delay
from asc.codecs.stream import StreamDecoder, StreamEncoder


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = np.sum((test.astype(np.float64) - reference) ** 2)
    signal = np.sum(reference.astype(np.float64) ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-30) / noise))


def power_spectrum(x: np.ndarray, rate: int, size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Welch-averaged power per frequency bin (mono mix, Hann windows, 50 % overlap)."""
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if len(mono) < size:
        mono = np.pad(mono, (0, size - len(mono)))
    window = np.hanning(size)
    starts = range(0, len(mono) - size + 1, size // 2)
    power = np.mean([np.abs(np.fft.rfft(mono[s : s + size] * window)) ** 2 for s in starts], axis=0)
    return np.fft.rfftfreq(size, 1 / rate), power


def effective_bandwidth(x: np.ndarray, rate: int, floor_db: float = 60.0) -> float:
    """Highest frequency whose power is within ``floor_db`` of the spectrum's peak."""
    return spectrum_bandwidth(*power_spectrum(x, rate), floor_db)


def spectrum_bandwidth(freqs: np.ndarray, power: np.ndarray, floor_db: float = 60.0) -> float:
    """``effective_bandwidth`` of a spectrum already measured."""
    above = np.nonzero(power >= power.max() * 10 ** (-floor_db / 10))[0]
    return float(freqs[above[-1]]) if len(above) else 0.0


@dataclass
class RoundtripReport:
    spec: str
    decoded: np.ndarray
    kbps: float  # codec payload bits per second of input audio
    wire_bytes: int  # framed stream bytes, as the edge would send them
    payload_bytes: int
    delay_samples: list[int]  # per stage of the chain
    snr_db: float
    bandwidth_hz: float
    input_bandwidth_hz: float


def measure_roundtrip(pcm: np.ndarray, rate: int, spec: str) -> RoundtripReport:
    """Code ``pcm`` through ``spec`` as a stream and measure what the path did to it."""
    x = pcm if pcm.ndim == 2 else pcm[:, None]
    channels = x.shape[1]
    encoder = StreamEncoder(spec, rate, channels)
    decoder = StreamDecoder(spec, rate, channels, codec_delay(spec, rate, channels))
    data = encoder.encode(x) + encoder.finish()
    y = np.concatenate([decoder.feed(data), decoder.finish()])
    seconds = len(x) / rate
    return RoundtripReport(
        spec=str(spec),
        decoded=y,
        kbps=encoder.payload_bytes * 8 / seconds / 1000,
        wire_bytes=len(data),
        payload_bytes=encoder.payload_bytes,
        delay_samples=[codec_delay(str(r.stage), rate, channels) for r in encoder.spec],
        snr_db=snr_db(x, y),
        bandwidth_hz=effective_bandwidth(y, rate),
        input_bandwidth_hz=effective_bandwidth(x, rate),
    )

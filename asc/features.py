"""The one feature function, shared by training and serving.

Two kinds, both from ``torch.stft`` and torchaudio's mel filter bank on the model's device,
batched:

- ``logmel``: the front end of Hu et al.'s DCASE 2020 system that the ASC paper builds on:
  44.1 kHz, FFT 2048, hop 1024, 128 HTK mel bands over 0-22.05 kHz, log, per-clip scaling, and
  deltas and delta-deltas as extra channels -> (batch, 3, 128, frames);
- ``spectrogram``: the lossy detector's input: magnitude spectrogram with 1024 frequency bins
  (FFT 2046), in dB -> (batch, 1, 1024, frames).

A checkpoint stores its ``FeatureConfig``; the server rebuilds the extractor from it and refuses
a config this code cannot honour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from asc.torchaudio_pair import load_torchaudio

torchaudio = load_torchaudio()

FEATURE_KINDS = ("logmel", "spectrogram")


class FeatureConfigError(ValueError):
    """A feature configuration this version cannot reproduce."""


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "logmel"
    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 22050.0
    mel_scale: str = "htk"
    log_offset: float = 1e-8
    per_clip_scaling: bool = True
    deltas: int = 2  # 0: log-mel only; 1: + deltas; 2: + deltas and delta-deltas
    delta_win: int = 5

    @property
    def channels(self) -> int:
        return 1 + self.deltas if self.kind == "logmel" else 1

    @property
    def bins(self) -> int:
        return self.n_mels if self.kind == "logmel" else self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        return samples // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureConfigError(f"feature config has settings this version lacks: {unknown}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise FeatureConfigError(f"unknown feature kind {self.kind!r}; known: {FEATURE_KINDS}")
        if self.mel_scale not in ("htk", "slaney"):
            raise FeatureConfigError(f"unknown mel scale {self.mel_scale!r}")
        if not 0 <= self.deltas <= 2:
            raise FeatureConfigError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.f_max > self.sample_rate / 2 or self.f_min < 0 or self.f_min >= self.f_max:
            raise FeatureConfigError(
                f"bad band {self.f_min}..{self.f_max} Hz at {self.sample_rate} Hz"
            )


LOGMEL = FeatureConfig()
# On a CPU, a few clips at a time keep the STFT and its power spectrum in cache: on 32 clips,
# one thread, benchmarks/features_speed.py ran at 0.69x of librosa without the chunks and 1.44x
# with them. Every feature is per clip, so the chunks give exactly the batch's features.
CPU_CHUNK = 4
DETECTOR_SPECTROGRAM = FeatureConfig(kind="spectrogram", n_fft=2046, hop_length=512, deltas=0)


class FeatureExtractor(torch.nn.Module):
    """Waveforms (batch, samples) -> features; a module so it moves with ``.to(device)``."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        config.validate()
        self.config = config
        window = torch.hann_window(config.n_fft)
        self.register_buffer("window", window, persistent=False)
        if config.kind == "logmel":
            banks = torchaudio.functional.melscale_fbanks(
                n_freqs=config.n_fft // 2 + 1,
                f_min=config.f_min,
                f_max=config.f_max,
                n_mels=config.n_mels,
                sample_rate=config.sample_rate,
                mel_scale=config.mel_scale,
            )
            self.register_buffer("mel_banks", banks, persistent=False)  # (freqs, mels)

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, frames, freqs) power spectrum, the STFT of torchaudio's transforms.

        Squared magnitude as re*re + im*im in the STFT's own frames-major layout, rather than
        ``abs().pow(2)`` over the freqs-major view, which takes a square root only to undo it
        and walks memory across the grain.
        """
        config = self.config
        spec = torch.stft(
            wave,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).transpose(-1, -2)
        return torch.addcmul(spec.real.square(), spec.imag, spec.imag)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 3:  # (batch, channels, samples): mix to mono
            wave = wave.mean(dim=1)
        if wave.device.type == "cpu" and wave.shape[0] > CPU_CHUNK:
            return torch.cat([self.forward(chunk) for chunk in wave.split(CPU_CHUNK)])
        config = self.config
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self.power(wave.float())
            if config.kind == "spectrogram":
                magnitude = power.sqrt().transpose(-1, -2)
                return (20 * torch.log10(magnitude + 1e-7)).unsqueeze(1)
            mel = torch.matmul(power, self.mel_banks).transpose(-1, -2)
        x = torch.log(mel + config.log_offset)
        if config.per_clip_scaling:  # each clip to zero mean, unit variance
            mean = x.mean(dim=(1, 2), keepdim=True)
            std = x.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
            x = (x - mean) / std
        channels = [x]
        for _ in range(config.deltas):
            channels.append(torchaudio.functional.compute_deltas(channels[-1], config.delta_win))
        return torch.stack(channels, dim=1)

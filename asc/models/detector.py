"""The lossy-compression detector of the detection paper, with its random cutoff mask.

Input: the ``spectrogram`` features of 2-second windows (batch, 1, 1024 bins, frames). Four
blocks of 3x3 convolution, ReLU, batch norm and max-pooling (2x2, the last 2x4), a two-layer
bidirectional LSTM of 128 over time, and a dense head to lossless/lossy. Beyond the paper, a
second head names the codec family.
"""

from __future__ import annotations

import torch
from torch import nn

from asc.codecs.registry import CODEC_FAMILIES

WINDOW_SECONDS = 2.0


def window_starts(samples: int, window: int, overlap: float = 0.5) -> list[int]:
    """Window starts with the paper's 50 % overlap; a short file gets one (padded) window."""
    if samples <= window:
        return [0]
    hop = max(1, int(window * (1 - overlap)))
    starts = list(range(0, samples - window + 1, hop))
    if starts[-1] + window < samples:  # cover the end too
        starts.append(samples - window)
    return starts


def cut_windows(wave: torch.Tensor, window: int, overlap: float = 0.5) -> torch.Tensor:
    """(samples,) -> (windows, window): the file-level score is the mean over these."""
    if len(wave) < window:
        wave = torch.nn.functional.pad(wave, (0, window - len(wave)))
    return torch.stack([wave[s : s + window] for s in window_starts(len(wave), window, overlap)])


MASK_LOW_HZ = 14000.0  # the lowest cutoff the training mask draws: below it, nothing is hidden


class RandomCutoffMask(nn.Module):
    """Simulates a codec lowpass: bins above a cutoff drawn from U(14 kHz, Nyquist) are set to the
    spectrogram's minimum, for each example with probability ``prob``; only while training."""

    def __init__(self, prob: float, sample_rate: int = 44100, low_hz: float = MASK_LOW_HZ):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mask probability must lie in [0, 1], got {prob}")
        self.prob, self.sample_rate, self.low_hz = prob, sample_rate, low_hz

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return spec
        batch, bins = spec.shape[0], spec.shape[2]
        nyquist = self.sample_rate / 2
        cutoff = self.low_hz + torch.rand(batch, device=spec.device) * (nyquist - self.low_hz)
        fires = torch.rand(batch, device=spec.device) < self.prob
        bin_hz = torch.arange(bins, device=spec.device) * (nyquist / (bins - 1))
        masked = (bin_hz[None, :] > cutoff[:, None]) & fires[:, None]  # (batch, bins)
        minimum = spec.amin(dim=(1, 2, 3), keepdim=True)
        return torch.where(masked[:, None, :, None], minimum, spec)


class LossyDetector(nn.Module):
    def __init__(
        self,
        mask_prob: float = 0.0,
        widths: tuple[int, ...] = (8, 16, 24, 32),
        bins: int = 1024,
        hidden: int = 128,
    ):
        super().__init__()
        self.config = {
            "mask_prob": mask_prob,
            "widths": list(widths),
            "bins": bins,
            "hidden": hidden,
        }
        self.mask = RandomCutoffMask(mask_prob)
        layers: list[nn.Module] = []
        c_in = 1
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(c_in, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(width),
                nn.MaxPool2d((2, 4) if i == len(widths) - 1 else (2, 2)),
            ]
            c_in = width
        self.cnn = nn.Sequential(*layers)
        self.input_norm = nn.BatchNorm2d(1)
        freq_out = bins // (2 ** len(widths))
        self.lstm = nn.LSTM(
            c_in * freq_out, hidden, num_layers=2, batch_first=True, bidirectional=True
        )
        self.lossy_head = nn.Linear(2 * hidden, 2)
        self.family_head = nn.Linear(2 * hidden, len(CODEC_FAMILIES))

    def forward(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.cnn(self.input_norm(self.mask(spec)))  # (batch, channels, freq, time)
        x = x.permute(0, 3, 1, 2).flatten(2)  # (batch, time, channels * freq)
        sequence, _ = self.lstm(x)
        summary = sequence.mean(dim=1)
        lossy = self.lossy_head(summary)
        family = self.family_head(summary)
        return {
            "lossy_logits": lossy,
            "family_logits": family,
            "lossy_prob": lossy.softmax(-1)[:, 1],
            "family_probs": family.softmax(-1),
        }

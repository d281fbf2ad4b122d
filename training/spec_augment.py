"""Augmentations of a batch of log-mel features (training only), drawn anew at every step.

Beside the baseline ones of Hu et al. (random time crop, frequency and time masks), two stand in
for kinds of coding damage without any codec, so that they prepare the model for codecs it never
trained on: a lowpass (``limit_band``: what MP3 at low rates, AAC and SBC at low bitpools do to
the upper bands) and level noise in every band (``jitter_levels``: what a low-rate coder that
keeps the whole band does, such as Opus at 16 kbit/s, which keeps each band's energy but not its
fine structure). Both work on the per-clip-scaled log-mels with deltas that the feature function
gives, and leave a batch scaled as it would be.
"""

from __future__ import annotations

import torch

from asc.torchaudio_pair import load_torchaudio

torchaudio = load_torchaudio()

# The spread of the level noise, in the clip's own standard deviations (a clip's log-mels spread
# over a few natural-log units): of the order of what Opus at 16 kbit/s does to Kitchen20's
# clips, 0.56 to 0.73 units on average in every mel-band group below 14 kHz (`asc-train
# corpus-stats --codecs opus:16k`).
JITTER_LOW = 0.1
JITTER_HIGH = 0.4


class SpecAugment(torch.nn.Module):
    """Random time crop, band limiting, level noise and frequency/time masks on a batch."""

    def __init__(
        self,
        crop_frames: int,
        masks: bool,
        band_limit: float = 0.0,
        jitter: float = 0.0,
        jitter_spread: tuple[float, float] = (JITTER_LOW, JITTER_HIGH),
    ):
        super().__init__()
        for name, share in (("band_limit", band_limit), ("jitter", jitter)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {share}")
        if not 0.0 <= jitter_spread[0] <= jitter_spread[1]:
            raise ValueError(
                f"jitter spread must be LOW,HIGH with 0 <= LOW <= HIGH: {jitter_spread}"
            )
        self.crop_frames = crop_frames
        self.band_limit = band_limit
        self.jitter = jitter
        self.jitter_spread = jitter_spread
        self.masks = (
            torch.nn.Sequential(
                torchaudio.transforms.FrequencyMasking(16, iid_masks=True),
                torchaudio.transforms.TimeMasking(40, iid_masks=True),
            )
            if masks
            else torch.nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        if 0 < self.crop_frames < frames:
            start = int(torch.randint(0, frames - self.crop_frames + 1, (1,)))
            x = x[..., start : start + self.crop_frames]
        if self.band_limit > 0:
            x = limit_band(x, self.band_limit)
        if self.jitter > 0:
            x = jitter_levels(x, self.jitter, *self.jitter_spread)
        return self.masks(x)


def limit_band(x: torch.Tensor, prob: float, low: float = 0.55, high: float = 0.92) -> torch.Tensor:
    """What a codec's lowpass does to per-clip-scaled log-mels with deltas, drawn at random.

    For each example, with probability ``prob``, the bands above a cutoff drawn between
    ``low`` and ``high`` of the mel range (about 4 to 16 kHz at 44.1 kHz) fall to a floor below
    the clip's quietest value (a coded band holds next to no energy), their deltas to zero, and
    the clip is scaled to zero mean and unit variance again, as the feature function does.
    Codecs the model never saw (SBC at low bitpools, MP3 at 32 kbit/s) cut lower than the
    training codecs do; this is what lets it cope.
    """
    batch, _, bins, _ = x.shape
    fires = torch.rand(batch, device=x.device) < prob
    if not fires.any():
        return x
    cutoff = (low + (high - low) * torch.rand(batch, device=x.device)) * bins
    above = torch.arange(bins, device=x.device)[None, :] >= cutoff[:, None]  # (batch, bins)
    cut = (above & fires[:, None])[:, :, None]  # (batch, bins, 1)
    level = x[:, 0].amin(dim=(1, 2), keepdim=True) - 3 * torch.rand(batch, 1, 1, device=x.device)
    scaled, std = _rescaled(torch.where(cut, level, x[:, 0]))
    channels = [scaled]
    for c in range(1, x.shape[1]):  # deltas are linear in the log-mels: same scale, zero where cut
        channels.append(torch.where(cut, torch.zeros_like(x[:, c]), x[:, c]) / std)
    limited = torch.stack(channels, dim=1)
    return torch.where(fires[:, None, None, None], limited, x)


def jitter_levels(
    x: torch.Tensor,
    prob: float,
    low: float = JITTER_LOW,
    high: float = JITTER_HIGH,
    delta_win: int = 5,
) -> torch.Tensor:
    """What a low-rate coder that keeps the band does to per-clip-scaled log-mels with deltas.

    For each example, with probability ``prob``, every cell of the log-mels gets Gaussian noise
    with a spread drawn between ``low`` and ``high`` (the clip's own standard deviations); the
    clip is scaled to zero mean and unit variance again and its deltas are taken anew (with the
    feature function's ``delta_win``), so the noise moves them as a codec's would. Every
    training codec cuts a band; Opus at low rates keeps it and disturbs its levels instead.
    """
    batch = x.shape[0]
    fires = torch.rand(batch, device=x.device) < prob
    if not fires.any():
        return x
    spread = low + (high - low) * torch.rand(batch, 1, 1, device=x.device)
    channels = [_rescaled(x[:, 0] + spread * torch.randn_like(x[:, 0]))[0]]
    for _ in range(1, x.shape[1]):
        channels.append(torchaudio.functional.compute_deltas(channels[-1], delta_win))
    jittered = torch.stack(channels, dim=1)
    return torch.where(fires[:, None, None, None], jittered, x)


def _rescaled(logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip's log-mels to zero mean and unit variance again, as the feature function
    scales them, and the spread it divided by."""
    mean = logmel.mean(dim=(1, 2), keepdim=True)
    std = logmel.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
    return (logmel - mean) / std, std

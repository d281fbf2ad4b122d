"""Training the lossy-compression detector on a lossless corpus (the detection paper's DS1).

Each track is coded with one codec drawn from the list (libfdk-aac, libvorbis, LAME at 128, 256,
320 kbps in the paper); the model sees random 2-second crops of the lossless original (label 0)
and of the coded copy (label 1, plus its codec family), with the random cutoff mask applied
with probability ``mask_prob``. Tracks are split 70/10/20 into train/validation/test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.audio import load
from asc.checkpoint import Checkpoint, save
from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import CODEC_FAMILIES, WINDOW_SECONDS, LossyDetector, cut_windows
from asc.models.scene import count_parameters
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.detector_data import (
    DS1_CODECS,
    LosslessDataError,
    assign_codecs,
    family_of,
    list_tracks,
    split_tracks,
    tracks_fingerprint,
)
from training.fit_scene import one_cycle, pick_device, provenance_common


@dataclass
class DetectorTrainConfig:
    data: Path
    out: Path
    codecs: list[str] = field(default_factory=lambda: list(DS1_CODECS))
    mask_prob: float = 1.0
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    cache_dir: Path = Path(".cache/coded")
    workers: int | None = None
    progress: bool = True
    max_tracks: int | None = None


def load_mono(path: Path, rate: int) -> torch.Tensor:
    return torch.from_numpy(load(path, rate=rate, channels=1)[0][:, 0].copy())


@dataclass
class Example:
    wave: torch.Tensor  # mono float32
    lossy: int
    family: int
    spec: str
    track: Path


def build_examples(tracks: list[Path], specs: dict[Path, str], mapping, rate: int) -> list[Example]:
    out = []
    for track in tracks:
        for spec in (UNCODED, specs[track]):
            out.append(
                Example(
                    load_mono(mapping[(track, spec)], rate),
                    int(spec != UNCODED),
                    CODEC_FAMILIES.index(family_of(spec)),
                    spec,
                    track,
                )
            )
    return out


@torch.inference_mode()
def file_scores(
    model: LossyDetector,
    extractor: FeatureExtractor,
    waves: list[torch.Tensor],
    device: torch.device,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per file: mean lossy probability over 50 %-overlapping windows, and mean family probs."""
    model.eval()
    lossy, family = [], []
    for wave in waves:
        out = model(extractor(cut_windows(wave, window).to(device)))
        lossy.append(float(out["lossy_prob"].mean()))
        family.append(out["family_probs"].mean(0).cpu().numpy())
    return np.array(lossy), np.stack(family)


def fit_detector(cfg: DetectorTrainConfig) -> Checkpoint:
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    codecs = [s for s in parse_spec_list(cfg.codecs) if s != UNCODED]
    if not codecs:
        raise LosslessDataError("give at least one lossy codec to train against")
    tracks = list_tracks(cfg.data)[: cfg.max_tracks]
    splits = split_tracks(tracks, cfg.seed)
    specs = assign_codecs(tracks, codecs, cfg.seed)
    rate = DETECTOR_SPECTROGRAM.sample_rate
    cache = CodedCache(cfg.cache_dir, rate=rate, channels=2)
    pairs = [(track, s) for track, spec in specs.items() for s in (UNCODED, spec)]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)

    window = int(WINDOW_SECONDS * rate)
    train = build_examples(splits["train"], specs, mapping, rate)
    val = build_examples(splits["val"], specs, mapping, rate)
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    model = LossyDetector(mask_prob=cfg.mask_prob, bins=DETECTOR_SPECTROGRAM.bins).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * cfg.steps_per_epoch)
    history, started = [], time.time()
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        bar = tqdm(
            range(cfg.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress,
            leave=False,
        )
        for _ in bar:
            picks = rng.integers(len(train), size=cfg.batch_size)
            crops = []
            for i in picks:  # a random 2-second crop of each example, as in the paper
                wave = train[i].wave
                start = int(rng.integers(max(1, len(wave) - window + 1)))
                crop = wave[start : start + window]
                crops.append(torch.nn.functional.pad(crop, (0, window - len(crop))))
            x = extractor(torch.stack(crops).to(device))
            out = model(x)
            lossy = torch.tensor([train[i].lossy for i in picks], device=device)
            family = torch.tensor([train[i].family for i in picks], device=device)
            loss = torch.nn.functional.cross_entropy(out["lossy_logits"], lossy)
            loss = loss + 0.5 * torch.nn.functional.cross_entropy(out["family_logits"], family)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        scores, _ = file_scores(model, extractor, [e.wave for e in val], device, window)
        accuracy = float(np.mean((scores >= 0.5) == np.array([e.lossy for e in val])))
        history.append(
            {"epoch": epoch + 1, "loss": total / cfg.steps_per_epoch, "val_accuracy": accuracy}
        )
        if cfg.progress:
            tqdm.write(
                f"epoch {epoch + 1}: loss {total / cfg.steps_per_epoch:.3f}, "
                f"validation file accuracy {accuracy:.3f}"
            )

    test = build_examples(splits["test"], specs, mapping, rate)
    scores, families = file_scores(model, extractor, [e.wave for e in test], device, window)
    truth = np.array([e.lossy for e in test])
    metrics = {
        "test_accuracy": float(np.mean((scores >= 0.5) == truth)),
        "test_family_accuracy": float(np.mean(families.argmax(1) == [e.family for e in test])),
        "test_files": len(test),
        "train_tracks": len(splits["train"]),
        "parameters": count_parameters(model),
        "history": history,
        "train_seconds": round(time.time() - started, 1),
    }
    checkpoint = Checkpoint(
        kind="lossy_detector",
        config=model.config,
        features=DETECTOR_SPECTROGRAM,
        model=model.cpu().eval(),
        codec_conditions=codecs,
        data_fingerprint=tracks_fingerprint(tracks),
        metrics=metrics,
        extra={
            **provenance_common(cfg.out, cfg.seed),
            "mask_prob": cfg.mask_prob,
            "splits": {k: len(v) for k, v in splits.items()},
        },
    )
    save(checkpoint, cfg.out)
    return checkpoint

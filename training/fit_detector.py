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
from training.loop import LoopSettings, one_cycle, pick_device, provenance_common, run_epochs


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


@dataclass
class DetectorData:
    """DS1 as the detector trains on it: the tracks, their split, each one's codec setting, and
    where the coded copies lie."""

    codecs: list[str]
    tracks: list[Path]
    splits: dict[str, list[Path]]
    specs: dict[Path, str]  # the DS1 setting of each track
    mapping: dict[tuple[Path, str], Path]  # (track, setting or "none") -> audio


def prepare_detector_data(cfg: DetectorTrainConfig) -> DetectorData:
    codecs = [s for s in parse_spec_list(cfg.codecs) if s != UNCODED]
    if not codecs:
        raise LosslessDataError("give at least one lossy codec to train against")
    tracks = list_tracks(cfg.data)[: cfg.max_tracks]
    splits = split_tracks(tracks, cfg.seed)
    specs = assign_codecs(tracks, codecs, cfg.seed)
    cache = CodedCache(cfg.cache_dir, rate=DETECTOR_SPECTROGRAM.sample_rate, channels=2)
    pairs = [(track, s) for track, spec in specs.items() for s in (UNCODED, spec)]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)
    return DetectorData(codecs, tracks, splits, specs, mapping)


@dataclass
class DetectorTask:
    """The detector's hooks for ``run_epochs``: batches of random 2-second crops of random
    examples, and file accuracy on the validation tracks after each epoch."""

    batch_size: int
    model: LossyDetector
    extractor: FeatureExtractor
    train: list[Example]
    val: list[Example]
    device: torch.device
    rng: np.random.Generator
    window: int  # samples in one crop

    def start_epoch(self, epoch: int) -> None:
        pass  # every step draws its own examples

    def training_step(self, step: int) -> tuple[torch.Tensor, int]:
        """The loss of one batch; weighed as one, so an epoch's loss is the mean over steps."""
        train, window, device = self.train, self.window, self.device
        picks = self.rng.integers(len(train), size=self.batch_size)
        crops = []
        for i in picks:  # a random 2-second crop of each example, as in the paper
            wave = train[i].wave
            start = int(self.rng.integers(max(1, len(wave) - window + 1)))
            crop = wave[start : start + window]
            crops.append(torch.nn.functional.pad(crop, (0, window - len(crop))))
        x = self.extractor(torch.stack(crops).to(device))
        out = self.model(x)
        lossy = torch.tensor([train[i].lossy for i in picks], device=device)
        family = torch.tensor([train[i].family for i in picks], device=device)
        loss = torch.nn.functional.cross_entropy(out["lossy_logits"], lossy)
        loss = loss + 0.5 * torch.nn.functional.cross_entropy(out["family_logits"], family)
        return loss, 1

    def validate(self) -> float:
        waves = [e.wave for e in self.val]
        scores, _ = file_scores(self.model, self.extractor, waves, self.device, self.window)
        return float(np.mean((scores >= 0.5) == np.array([e.lossy for e in self.val])))

    def end_epoch(self, epochs_done: int, history: list[dict]) -> None:
        pass  # a detector trains in minutes: nothing kept to resume from


def fit_detector(cfg: DetectorTrainConfig) -> Checkpoint:
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = prepare_detector_data(cfg)
    rate = DETECTOR_SPECTROGRAM.sample_rate
    window = int(WINDOW_SECONDS * rate)
    train = build_examples(data.splits["train"], data.specs, data.mapping, rate)
    val = build_examples(data.splits["val"], data.specs, data.mapping, rate)
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    model = LossyDetector(mask_prob=cfg.mask_prob, bins=DETECTOR_SPECTROGRAM.bins).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * cfg.steps_per_epoch)
    started = time.time()
    task = DetectorTask(cfg.batch_size, model, extractor, train, val, device, rng, window)
    settings = LoopSettings(
        cfg.epochs, cfg.steps_per_epoch, cfg.progress, "val_accuracy", "validation file accuracy"
    )
    history = run_epochs(task, model, optimizer, scheduler, settings)
    checkpoint = detector_checkpoint(cfg, data, task, history, started)
    save(checkpoint, cfg.out)
    return checkpoint


def detector_checkpoint(
    cfg: DetectorTrainConfig,
    data: DetectorData,
    task: DetectorTask,
    history: list[dict],
    started: float,
) -> Checkpoint:
    """The trained detector with its file accuracy on the test tracks and how it was trained."""
    rate = DETECTOR_SPECTROGRAM.sample_rate
    model = task.model
    test = build_examples(data.splits["test"], data.specs, data.mapping, rate)
    waves = [e.wave for e in test]
    scores, families = file_scores(model, task.extractor, waves, task.device, task.window)
    truth = np.array([e.lossy for e in test])
    metrics = {
        "test_accuracy": float(np.mean((scores >= 0.5) == truth)),
        "test_family_accuracy": float(np.mean(families.argmax(1) == [e.family for e in test])),
        "test_files": len(test),
        "train_tracks": len(data.splits["train"]),
        "parameters": count_parameters(model),
        "history": history,
        "train_seconds": round(time.time() - started, 1),
    }
    return Checkpoint(
        kind="lossy_detector",
        config=model.config,
        features=DETECTOR_SPECTROGRAM,
        model=model.cpu().eval(),
        codec_conditions=data.codecs,
        data_fingerprint=tracks_fingerprint(data.tracks),
        metrics=metrics,
        extra={
            **provenance_common(cfg.out, cfg.seed),
            "mask_prob": cfg.mask_prob,
            "splits": {k: len(v) for k, v in data.splits.items()},
        },
    )

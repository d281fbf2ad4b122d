"""The detection paper's experiments (its Tables 1 and 2, Figures 4 to 6) on a lossless corpus.

- DS1: every track coded with one codec setting drawn from LAME MP3, libfdk-aac and libvorbis at
  128, 256 and 320 kbps (``fit_detector``'s own assignment);
- DS2: the same tracks and settings, each with a codec cutoff drawn from 14, 16, 18 and 20 kHz;
- one 70/10/20 split by track; two detectors trained by ``fit_detector`` on DS1's training
  tracks, *naive* (no mask) and *masked* (the random cutoff mask);
- both scored on the test tracks: the lossless originals and their DS1 and DS2 copies. A file's
  score is the mean lossy probability over 50 %-overlapping 2-second windows; it is called lossy
  at ``threshold`` (0.5).

The report gives accuracy per codec and bitrate on DS1 and DS2 (Table 1), per cutoff (Table 2),
lossless accuracy, F1 against threshold per codec on DS2 (Figure 5), saliency maps (Figure 4)
and the lossless files flagged lossy (Figure 6). The tables are computed in
``lossy_detection_scores`` and written by ``lossy_detection_report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.checkpoint import Checkpoint
from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, LossyDetector
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.detector_data import (
    DS1_CODECS,
    DS2_CUTOFFS_HZ,
    assign_codecs,
    assign_cutoffs,
    list_tracks,
    split_tracks,
    with_cutoff,
)
from training.experiments.lossy_detection_scores import (
    DETECTORS,
    THRESHOLDS,
    TestFile,
    codec_setting,
    f1_curves,
    file_accuracy,
    path_results,
    table1,
    table2,
)
from training.fit_detector import DetectorTrainConfig, file_scores, fit_detector, load_mono
from training.loop import pick_device
from training.report import uncoded_kbps


@dataclass
class LossyDetectionConfig:
    data: Path
    out: Path
    codecs: tuple[str, ...] = DS1_CODECS
    cutoffs_hz: tuple[int, ...] = DS2_CUTOFFS_HZ
    mask_prob: float = 1.0  # the masked detector's; the naive one has none
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    max_tracks: int | None = None
    threshold: float = 0.5
    saliency_examples: int = 3
    seed: int = 0
    device: str = "auto"
    cache_dir: Path = Path(".cache/coded")
    checkpoints: Path = Path(".cache/experiments/lossy-detection")
    workers: int | None = None
    progress: bool = True
    command: str = ""  # how the run was started, for the report


@dataclass
class DetectionRun:
    results: dict  # what results.json holds
    files: list[TestFile]  # every test file with both detectors' scores
    models: dict[str, LossyDetector]  # for the saliency maps


@dataclass
class DetectionData:
    """DS1 and DS2 over one split, drawn with the same seeds as ``fit_detector`` draws them."""

    codecs: list[str]
    tracks: list[Path]
    splits: dict[str, list[Path]]
    ds1: dict[Path, str]  # each track's codec setting
    cutoffs: dict[Path, int]  # each track's DS2 cutoff
    ds2: dict[Path, str]  # its DS1 setting with that cutoff


def draw_datasets(cfg: LossyDetectionConfig) -> DetectionData:
    codecs = [s for s in parse_spec_list(list(cfg.codecs)) if s != UNCODED]
    tracks = list_tracks(cfg.data)[: cfg.max_tracks]  # as fit_detector picks them
    splits = split_tracks(tracks, cfg.seed)
    ds1 = assign_codecs(tracks, codecs, cfg.seed)
    cutoffs = assign_cutoffs(tracks, list(cfg.cutoffs_hz), cfg.seed)
    ds2 = {t: with_cutoff(ds1[t], cutoffs[t]) for t in tracks}
    return DetectionData(codecs, tracks, splits, ds1, cutoffs, ds2)


def run_lossy_detection(cfg: LossyDetectionConfig) -> DetectionRun:
    """Build DS1/DS2, train both detectors and score the test tracks."""
    device = pick_device(cfg.device)
    data = draw_datasets(cfg)
    checkpoints = {name: train_detector(cfg, name, data.codecs) for name in DETECTORS}
    cache = CodedCache(cfg.cache_dir, rate=DETECTOR_SPECTROGRAM.sample_rate, channels=2)
    files = coded_test_files(cfg, data, cache)
    models = score_files(files, checkpoints, device, cfg.progress)
    kbps = achieved_kbps(files, cache, cfg.workers)
    detectors = {
        name: detector_results(cfg, name, checkpoints[name], files, data.codecs, kbps)
        for name in DETECTORS
    }
    results = {
        "report": "lossy-detection",
        "data": str(cfg.data),
        "tracks": len(data.tracks),
        "splits": {k: len(v) for k, v in data.splits.items()},
        "test_files": len(files),
        "codecs": data.codecs,
        "cutoffs_hz": list(cfg.cutoffs_hz),
        "threshold": cfg.threshold,
        "thresholds": list(THRESHOLDS),
        "training": {
            "epochs": cfg.epochs,
            "steps_per_epoch": cfg.steps_per_epoch,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "max_tracks": cfg.max_tracks,
            "seed": cfg.seed,
            "device": str(device),
        },
        "detectors": detectors,
        "paths": detectors["masked"]["paths"],
        "command": cfg.command,
    }
    return DetectionRun(results, files, models)


def train_detector(cfg: LossyDetectionConfig, name: str, codecs: list[str]) -> Checkpoint:
    """The naive (no mask) or the masked detector, trained on DS1 by ``fit_detector``."""
    tqdm.write(f"training the {name} detector on DS1")
    return fit_detector(
        DetectorTrainConfig(
            data=cfg.data,
            out=cfg.checkpoints / f"{name}.safetensors",
            codecs=codecs,
            mask_prob=0.0 if name == "naive" else cfg.mask_prob,
            epochs=cfg.epochs,
            steps_per_epoch=cfg.steps_per_epoch,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed,
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            workers=cfg.workers,
            progress=cfg.progress,
            max_tracks=cfg.max_tracks,
        )
    )


def coded_test_files(
    cfg: LossyDetectionConfig, data: DetectionData, cache: CodedCache
) -> list[TestFile]:
    """Each test track three times: the lossless original, its DS1 copy and its DS2 copy."""
    ds1, ds2, cutoffs = data.ds1, data.ds2, data.cutoffs
    test = data.splits["test"]
    pairs = [(t, s) for t in test for s in (UNCODED, ds1[t], ds2[t])]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)
    files: list[TestFile] = []
    for t in test:
        codec, bitrate = codec_setting(ds1[t])
        files.append(TestFile(t, "lossless", UNCODED, None, None, None, None, t))
        files.append(TestFile(t, "ds1", ds1[t], ds1[t], codec, bitrate, None, mapping[(t, ds1[t])]))
        files.append(
            TestFile(t, "ds2", ds2[t], ds1[t], codec, bitrate, cutoffs[t], mapping[(t, ds2[t])])
        )
    return files


def score_files(
    files: list[TestFile],
    checkpoints: dict[str, Checkpoint],
    device: torch.device,
    progress: bool,
) -> dict[str, LossyDetector]:
    """Each detector's file score, into ``TestFile.scores``; the detectors, ready to explain."""
    rate = DETECTOR_SPECTROGRAM.sample_rate
    waves = [load_mono(f.audio, rate) for f in tqdm(files, desc="test files", disable=not progress)]
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    window = int(WINDOW_SECONDS * rate)
    models = {name: ckpt.model.to(device).eval() for name, ckpt in checkpoints.items()}
    for name, model in models.items():
        scores, _ = file_scores(model, extractor, waves, device, window)
        for f, score in zip(files, scores, strict=True):
            f.scores[name] = float(score)
    return models


def achieved_kbps(files: list[TestFile], cache: CodedCache, workers: int | None) -> dict:
    """Measured bitrate of each codec path among the test files (uncoded: 16-bit PCM stereo)."""
    kbps = {}
    for spec in dict.fromkeys(f.path for f in files):
        sources = [f.track for f in files if f.path == spec]
        kbps[spec] = (
            uncoded_kbps(DETECTOR_SPECTROGRAM.sample_rate, 2)
            if spec == UNCODED
            else cache.achieved_kbps(sources, spec, workers=workers, progress=False)
        )
    return kbps


def detector_results(
    cfg: LossyDetectionConfig,
    name: str,
    ckpt: Checkpoint,
    files: list[TestFile],
    codecs: list[str],
    kbps: dict,
) -> dict:
    """One detector's entry under results.json's ``detectors``."""
    return {
        "mask_prob": ckpt.config["mask_prob"],
        "checkpoint": str(cfg.checkpoints / f"{name}.safetensors"),
        "training": {k: v for k, v in ckpt.metrics.items() if k != "history"},
        "history": ckpt.metrics.get("history", []),
        "lossless_accuracy": file_accuracy([f for f in files if not f.lossy], name, cfg.threshold),
        "paths": path_results(files, "ds2", name, cfg.threshold, kbps),
        "ds1_paths": path_results(files, "ds1", name, cfg.threshold, kbps),
        "table1": table1(files, codecs, name, cfg.threshold),
        "table2": table2(files, codecs, list(cfg.cutoffs_hz), name, cfg.threshold),
        "f1": f1_curves(files, name),
        "flagged_lossless": [
            {"track": f.track.name, "score": round(f.scores[name], 4)}
            for f in files
            if not f.lossy and f.scores[name] >= cfg.threshold
        ],
    }


def saliency(model: LossyDetector, features: torch.Tensor) -> np.ndarray:
    """|d(lossy logit - lossless logit) / d input spectrogram| for one window (1, 1, bins, t)."""
    x = features.clone().requires_grad_(True)
    # cuDNN cannot run an LSTM backward in eval mode; the plain kernels can
    with torch.backends.cudnn.flags(enabled=False):
        logits = model(x)["lossy_logits"]
        (logits[0, 1] - logits[0, 0]).backward()
    return x.grad.abs()[0, 0].cpu().numpy()

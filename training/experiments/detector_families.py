"""A trained lossy detector on what the system carries: every codec family, real and generated.

The test split of each ``--data`` folder, drawn from the seed exactly as ``fit-detector`` draws
it (Kitchen20's lossless originals split by recording, a generated corpus by track), is scored
as the lossless originals and as a coded copy of each through every codec path of the list (by
default ``DEVICE_CODECS``: each family at its common settings, lower rates and two chains). A
file's score is the mean lossy probability over 50 %-overlapping 2-second windows, and its
family guess the family head's argmax of the mean family probabilities.

The numbers are computed in ``detector_families_scores`` and written by
``detector_families_report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.checkpoint import Checkpoint, load
from asc.codecs.grid_tests import named_family
from asc.codecs.measure import noise_over_floor_db
from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import CODEC_FAMILIES, MASK_LOW_HZ, WINDOW_SECONDS, LossyDetector
from training.augment import UNCODED, CodedCache
from training.detector_data import DEVICE_COMMON, family_of, tracks_fingerprint
from training.detector_sources import LosslessSet, lossless_set
from training.experiments.detector_families_grid import (
    GRID_CACHE,
    NETWORK,
    combine,
    grid_scores,
    network_alone,
)
from training.experiments.detector_families_scores import (
    DETECTOR,
    GOALS,
    THRESHOLDS,
    ScoredFile,
    called_lossy,
    confusion,
    expected_calibration_error,
    f1_curves,
    family_rows,
    goal_rows,
    noise_bins,
    reliability,
    setting_rows,
)
from training.fit_detector import file_scores, load_mono, training_codecs
from training.kitchen20_lossless import exclusion_counts
from training.loop import pick_device
from training.report import uncoded_kbps

COMMON_SETTINGS = frozenset(s for group in DEVICE_COMMON.values() for s in group)


@dataclass
class DetectorFamiliesConfig:
    checkpoint: Path
    data: list[Path]
    out: Path
    codecs: list[str] = field(default_factory=lambda: ["device"])
    seed: int = 0  # the seed the detector was trained with: it draws the same test split
    max_tracks: int | None = None  # from each folder, as fit-detector's
    threshold: float = 0.5
    device: str = "auto"
    cache_dir: Path = Path(".cache/coded")
    workers: int | None = None
    grid_tests: bool = True  # the grid tests beside the network (asc.codecs.grid_tests)
    progress: bool = True
    command: str = ""


@dataclass
class FamiliesRun:
    results: dict  # what results.json holds
    files: list[ScoredFile]
    model: LossyDetector  # for the saliency maps


def run_detector_families(cfg: DetectorFamiliesConfig) -> FamiliesRun:
    """Code the test tracks through every path, score them, and gather every table."""
    device = pick_device(cfg.device)
    checkpoint = load(cfg.checkpoint, expect_kind="lossy_detector")
    codecs = training_codecs(cfg.codecs)
    found = lossless_set(cfg.data, cfg.seed, cfg.max_tracks)
    cache = CodedCache(cfg.cache_dir, rate=DETECTOR_SPECTROGRAM.sample_rate, channels=2)
    files = coded_test_files(cfg, found, codecs, cache)
    model = checkpoint.model.to(device).eval()
    score_files(files, model, checkpoint, device, cfg.progress)
    if cfg.grid_tests:
        grid_scores(files, cfg.workers, cfg.progress, cfg.cache_dir / GRID_CACHE)
        combine(files)
    sources = {
        name: source_results([f for f in files if f.source == name], cache, cfg)
        for name in dict.fromkeys(f.source for f in files)
    }
    first = next(iter(sources))
    results = {
        "report": "detector-families",
        "checkpoint": str(cfg.checkpoint),
        "data": [str(d) for d in cfg.data],
        "same_tracks_as_training": tracks_fingerprint(found.tracks) == checkpoint.data_fingerprint,
        "trained_on": checkpoint.codec_conditions,
        "codecs": codecs,
        "common_settings": {k: list(v) for k, v in DEVICE_COMMON.items()},
        "seed": cfg.seed,
        "max_tracks": cfg.max_tracks,
        "threshold": cfg.threshold,
        "grid_tests": cfg.grid_tests,
        "thresholds": list(THRESHOLDS),
        "goals": GOALS,
        "device": str(device),
        "splits": {k: len(v) for k, v in found.splits.items()},
        "sources": sources,
        "paths": sources["kitchen20" if "kitchen20" in sources else first]["settings"],
        "excluded": exclusion_counts(found.exclusions),
        "exclusions": [e.to_dict() for e in found.exclusions],
        "command": cfg.command,
    }
    return FamiliesRun(results, files, model)


def coded_test_files(
    cfg: DetectorFamiliesConfig, found: LosslessSet, codecs: list[str], cache: CodedCache
) -> list[ScoredFile]:
    """Each test track as its lossless original and through every codec path."""
    test = found.splits["test"]
    pairs = [(t, s) for t in test for s in (UNCODED, *codecs)]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)
    return [
        ScoredFile(found.source[t], t, s, family_of(s), s in COMMON_SETTINGS, mapping[(t, s)])
        for t in test
        for s in (UNCODED, *codecs)
    ]


@torch.inference_mode()
def score_files(
    files: list[ScoredFile],
    model: LossyDetector,
    checkpoint: Checkpoint,
    device: torch.device,
    progress: bool,
) -> None:
    """Each file's lossy score and family guess, and each coded copy's noise over its
    original's floor; one file and its original in memory at a time."""
    rate = DETECTOR_SPECTROGRAM.sample_rate
    extractor = FeatureExtractor(checkpoint.features).to(device)
    window = int(WINDOW_SECONDS * rate)
    families = list(CODEC_FAMILIES)  # the family head's outputs, as the server names them
    originals = {f.track: f.audio for f in files if not f.lossy}
    held: tuple[Path | None, np.ndarray] = (None, np.zeros(0, np.float32))
    for f in tqdm(files, desc="scoring", unit="file", disable=not progress):
        wave = load_mono(f.audio, rate)
        lossy, probs = file_scores(model, extractor, [wave], device, window)
        f.scores[NETWORK] = f.scores[DETECTOR] = float(lossy[0])
        f.network_families = probs[0]
        f.family_guess = named_family(float(lossy[0]), probs[0], families)
        if f.lossy:
            if held[0] != f.track:  # a track's files lie together: its original loads once
                held = (f.track, load_mono(originals[f.track], rate).numpy())
            f.noise_below_db, f.noise_above_db = noise_rise(held[1], wave.numpy(), rate)


NOISE_BAND_HZ = 2000


def noise_rise(original: np.ndarray, coded: np.ndarray, rate: int) -> tuple[float, float]:
    """The coding noise's highest rise over the recording's floor in the 2 kHz bands below the
    training mask's lowest cutoff (where the detector always looks) and in those above it."""
    edges = list(range(0, rate // 2 + 1, NOISE_BAND_HZ))
    split = edges.index(int(MASK_LOW_HZ))
    rise = noise_over_floor_db(original, coded, rate, edges)
    return round(float(rise[:split].max()), 2), round(float(rise[split:].max()), 2)


def source_results(files: list[ScoredFile], cache: CodedCache, cfg: DetectorFamiliesConfig) -> dict:
    """One source's tables: per setting, per family, false alarms, confusion, F1, calibration."""
    lossless = [f for f in files if not f.lossy]
    kbps = {UNCODED: uncoded_kbps(DETECTOR_SPECTROGRAM.sample_rate, 2)}
    for spec in dict.fromkeys(f.path for f in files if f.lossy):
        tracks = [f.track for f in files if f.path == spec]
        kbps[spec] = cache.achieved_kbps(tracks, spec, workers=cfg.workers, progress=False)
    families = family_rows(files, cfg.threshold)
    false_alarm = called_lossy(lossless, cfg.threshold)
    scores = np.array([f.score for f in files])
    truth = np.array([f.lossy for f in files])
    alone = network_alone(files)
    return {
        "network_alone": {
            "families": family_rows(alone, cfg.threshold),
            "false_alarm": called_lossy([f for f in alone if not f.lossy], cfg.threshold),
        },
        "tracks": len(lossless),
        "files": len(files),
        "false_alarm": false_alarm,
        "false_alarms": [
            {"track": f.track.name, "score": round(f.score, 4)}
            for f in lossless
            if f.score >= cfg.threshold
        ],
        "settings": setting_rows(files, cfg.threshold, kbps),
        "families": families,
        "goals": goal_rows(families, false_alarm),
        "confusion": confusion(files),
        "noise_bins": noise_bins(files, cfg.threshold),
        "f1": f1_curves(files),
        "calibration": {
            "ece": expected_calibration_error(scores, truth),
            "bins": reliability(scores, truth),
        },
    }

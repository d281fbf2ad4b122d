"""The detector-families report's numbers from per-file scores: share called lossy per family and
setting, false alarms, the family confusion matrix, F1 against threshold, calibration, and the
goals with the shortfall of each family that misses one.

Pure arithmetic on ``ScoredFile`` scores, so every figure can be recomputed from files.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from asc.codecs.grid_tests import GridCall, named_family
from asc.codecs.registry import CODEC_FAMILIES
from training.augment import UNCODED
from training.experiments.lossy_detection_scores import THRESHOLDS

# The project's goals for the detector on what the system carries.
GOALS = {"called_lossy": 0.98, "false_alarm": 0.02, "family_named": 0.90}
RELIABILITY_BINS = 10
DETECTOR = "detector"  # the one model's key in ``scores`` (the saliency plot reads it)
NETWORK = "network"  # the network's own score, kept beside the joined one


@dataclass
class ScoredFile:
    source: str  # "kitchen20" or "generated"
    track: Path
    path: str  # "none" for the lossless original, else the codec path
    family: str  # the true family: "lossless", or the last codec's family
    common: bool  # at one of its family's common settings
    audio: Path
    # {"detector": lossy probability}, and the network's own under "network"
    scores: dict[str, float] = field(default_factory=dict)
    family_guess: str = ""
    # A coded copy's noise over the original's floor (asc.codecs.measure.noise_over_floor_db),
    # the highest 2 kHz band below and above the lowest cutoff of the detector's training mask.
    noise_below_db: float | None = None
    noise_above_db: float | None = None
    # the family head's probabilities over CODEC_FAMILIES, before the grid tests
    network_families: np.ndarray | None = None
    # The grid tests (asc.codecs.grid_tests) where run: the SBC contrast, the MDCT test's family
    # excess and lattices, the MP3 test's excess and lattice, Vorbis's short blocks' lattice, and
    # the tests' call.
    sbc_contrast_db: float | None = None
    mdct_family: str | None = None
    mdct_excess: float | None = None
    mdct_lattice: float | None = None
    mdct_vorbis_lattice: float | None = None
    mp3_excess: float | None = None
    mp3_lattice: float | None = None
    vorbis_short_lattice: float | None = None
    grid: GridCall | None = None

    @property
    def lossy(self) -> bool:
        return self.path != UNCODED

    @property
    def score(self) -> float:
        return self.scores[DETECTOR]

    @property
    def network_guess(self) -> str:
        """The family the network alone names (``family_guess`` where it was not kept)."""
        if self.network_families is None:
            return self.family_guess
        return named_family(self.scores[NETWORK], self.network_families)


def share(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def called_lossy(files: list[ScoredFile], threshold: float) -> float | None:
    return share(f.score >= threshold for f in files)


def family_named(files: list[ScoredFile]) -> float | None:
    return share(f.family_guess == f.family for f in files)


def setting_rows(files: list[ScoredFile], threshold: float, kbps: dict[str, float]) -> list[dict]:
    """One row per codec path (the lossless originals first, as ``none``): files, the share
    called lossy, the share called right (``accuracy``: lossless for ``none``), family named."""
    rows = []
    for path in dict.fromkeys(f.path for f in sorted(files, key=lambda f: f.lossy)):
        group = [f for f in files if f.path == path]
        lossy = called_lossy(group, threshold)
        rows.append(
            {
                "path": path,
                "family": group[0].family,
                "common": group[0].common,
                "kbps": round(kbps[path], 3),
                "files": len(group),
                "called_lossy": lossy,
                "accuracy": lossy if group[0].lossy else 1.0 - lossy,
                "family_named": family_named(group),
                "mean_score": round(float(np.mean([f.score for f in group])), 4),
                "noise_below_db": median_noise(group, "noise_below_db"),
                "noise_above_db": median_noise(group, "noise_above_db"),
            }
        )
    return rows


def median_noise(files: list[ScoredFile], key: str) -> float | None:
    values = [getattr(f, key) for f in files if getattr(f, key) is not None]
    return round(float(np.median(values)), 2) if values else None


# Bins of the noise's rise over the floor below the mask's cutoff, in dB.
NOISE_BINS = (-np.inf, -10.0, -5.0, 0.0, 5.0, 10.0, np.inf)


def noise_bins(files: list[ScoredFile], threshold: float) -> list[dict]:
    """The share of coded copies called lossy by how far their noise rises over the recording's
    floor below the mask's cutoff: where the detector can see a full-band codec at all."""
    coded = [f for f in files if f.lossy and f.noise_below_db is not None]
    rows = []
    for low, high in pairwise(NOISE_BINS):
        group = [f for f in coded if low <= f.noise_below_db < high]
        rows.append(
            {
                "low_db": None if np.isinf(low) else low,
                "high_db": None if np.isinf(high) else high,
                "files": len(group),
                "called_lossy": called_lossy(group, threshold),
                "paths": len({f.path for f in group}),
            }
        )
    return rows


def family_rows(files: list[ScoredFile], threshold: float) -> dict[str, dict]:
    """Per family, at its common settings (all its settings where none is common)."""
    out = {}
    for family in [f for f in CODEC_FAMILIES if f != "lossless"]:
        group = [f for f in files if f.lossy and f.family == family]
        common = [f for f in group if f.common]
        judged = common or group
        if not judged:
            continue
        out[family] = {
            "settings": "common" if common else "all",
            "files": len(judged),
            "called_lossy": called_lossy(judged, threshold),
            "family_named": family_named(judged),
            "all_settings_called_lossy": called_lossy(group, threshold),
            "noise_below_db": median_noise(judged, "noise_below_db"),
        }
    return out


def confusion(files: list[ScoredFile]) -> list[list[int]]:
    """Rows: the true family (lossless first); columns: the detector's family guess."""
    index = {f: i for i, f in enumerate(CODEC_FAMILIES)}
    matrix = np.zeros((len(CODEC_FAMILIES), len(CODEC_FAMILIES)), dtype=int)
    for f in files:
        matrix[index[f.family], index[f.family_guess]] += 1
    return matrix.tolist()


def f1_curve(positives: np.ndarray, negatives: np.ndarray) -> list[float]:
    """F1 at each of ``THRESHOLDS``, positives called lossy at or above it."""
    curve = []
    for t in THRESHOLDS:
        tp = int(np.sum(positives >= t))
        fn, fp = len(positives) - tp, int(np.sum(negatives >= t))
        curve.append(round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 0.0)
    return curve


def f1_curves(files: list[ScoredFile]) -> dict[str, dict]:
    """All coded copies, then each family's, against the lossless originals."""
    negatives = np.array([f.score for f in files if not f.lossy])
    groups = {"all": [f for f in files if f.lossy]}
    for family in dict.fromkeys(f.family for f in files if f.lossy):
        groups[family] = [f for f in files if f.lossy and f.family == family]
    curves = {}
    for name, group in groups.items():
        curve = f1_curve(np.array([f.score for f in group]), negatives)
        best = int(np.argmax(curve)) if curve else 0
        curves[name] = {
            "peak": curve[best] if curve else None,
            "peak_threshold": THRESHOLDS[best],
            "area": round(float(np.mean(curve)), 4) if curve else None,
            "f1": curve,
        }
    return curves


def reliability(scores: np.ndarray, lossy: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Equal-width bins of the lossy probability: files, mean probability, share truly lossy."""
    scores, lossy = np.asarray(scores, dtype=float), np.asarray(lossy, dtype=float)
    which = np.minimum((scores * bins).astype(int), bins - 1)  # 1.0 falls in the last bin
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "files": n,
                "mean_probability": float(scores[inside].mean()) if n else None,
                "lossy_share": float(lossy[inside].mean()) if n else None,
            }
        )
    return out


def expected_calibration_error(
    scores: np.ndarray, lossy: np.ndarray, bins: int = RELIABILITY_BINS
) -> float:
    """Sum over bins of (files in bin / files) x |share truly lossy - mean lossy probability|."""
    table = reliability(scores, lossy, bins)
    total = sum(b["files"] for b in table)
    return float(
        sum(
            b["files"] / total * abs(b["lossy_share"] - b["mean_probability"])
            for b in table
            if b["files"]
        )
    )


def goal_rows(families: dict[str, dict], false_alarm: float | None) -> list[dict]:
    """Each goal per family (and the false alarms), measured, met, and short by how much."""
    rows = []
    for family, row in families.items():
        for key in ("called_lossy", "family_named"):
            rows.append(_goal(key, family, row[key], at_least=True))
    if false_alarm is not None:
        rows.append(_goal("false_alarm", "lossless", false_alarm, at_least=False))
    return rows


def _goal(key: str, family: str, measured: float | None, at_least: bool) -> dict:
    goal = GOALS[key]
    met = measured is not None and (measured >= goal if at_least else measured <= goal)
    short = None if met or measured is None else abs(measured - goal)
    return {
        "goal": key,
        "family": family,
        "target": goal,
        "measured": measured,
        "met": met,
        "short_by": short,
    }

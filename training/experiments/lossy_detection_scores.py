"""The detection paper's tables from per-file scores: accuracy per codec, bitrate and cutoff,
and F1 against threshold (its Tables 1 and 2, Figure 5).

Pure arithmetic on ``TestFile`` scores, apart from training and plotting, so the report's
numbers can be recomputed from files.csv alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asc.codecs import parse_spec
from training.detector_data import DS1_CODECS
from training.report import family_of_path

DETECTORS = ("naive", "masked")
THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.01, 0.99, 99))


@dataclass
class TestFile:
    track: Path
    set: str  # "lossless", "ds1" or "ds2"
    path: str  # the codec path, "none" for the lossless original
    base: str | None  # the DS1 setting, e.g. "fdk-aac:128k"
    codec: str | None  # e.g. "fdk-aac"
    bitrate: str | None  # e.g. "128k"
    cutoff_hz: int | None
    audio: Path
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def lossy(self) -> bool:
        return self.set != "lossless"


def codec_setting(spec: str) -> tuple[str, str]:
    """``fdk-aac:128k,cutoff=14k`` -> ``("fdk-aac", "128k")``: a column of the tables."""
    last = parse_spec(spec).last
    return last.name, f"{last.bitrate // 1000}k"


def file_accuracy(files: list[TestFile], detector: str, threshold: float) -> float | None:
    if not files:
        return None
    return float(np.mean([(f.scores[detector] >= threshold) == f.lossy for f in files]))


def path_results(
    files: list[TestFile], dataset: str, detector: str, threshold: float, kbps: dict
) -> list[dict]:
    """The schema's ``paths``: lossless files as ``none``, then each codec path of ``dataset``."""
    out = []
    chosen = [f for f in files if not f.lossy or f.set == dataset]
    for spec in dict.fromkeys(f.path for f in sorted(chosen, key=_path_order)):
        group = [f for f in chosen if f.path == spec]
        out.append(
            {
                "path": spec,
                "family": family_of_path(spec),
                "kbps": round(kbps[spec], 3),
                "accuracy": file_accuracy(group, detector, threshold),
                "files": len(group),
                "cutoff_hz": group[0].cutoff_hz,
            }
        )
    return out


def _path_order(f: TestFile) -> tuple:
    if not f.lossy:
        return (0,)
    codec_rank = [c for c, _ in map(codec_setting, DS1_CODECS)]
    rank = codec_rank.index(f.codec) if f.codec in codec_rank else len(codec_rank)
    return (1, rank, int(f.bitrate[:-1]), f.cutoff_hz or 0)


def table1(files: list[TestFile], codecs: list[str], detector: str, threshold: float) -> dict:
    """Accuracy per codec setting on DS1 and on DS2, on the lossless files, and over all files."""
    lossless = [f for f in files if not f.lossy]
    table = {}
    for dataset in ("ds1", "ds2"):
        row = {
            base: file_accuracy(
                [f for f in files if f.set == dataset and f.base == base], detector, threshold
            )
            for base in codecs
        }
        row["lossless"] = file_accuracy(lossless, detector, threshold)
        row["all"] = file_accuracy(
            lossless + [f for f in files if f.set == dataset], detector, threshold
        )
        table[dataset] = row
    return table


def table2_columns(codecs: list[str]) -> list[str]:
    names = list(dict.fromkeys(codec_setting(c)[0] for c in codecs))
    rates = sorted(dict.fromkeys(codec_setting(c)[1] for c in codecs), key=lambda r: int(r[:-1]))
    return [*names, *rates, "mean"]


def table2(
    files: list[TestFile], codecs: list[str], cutoffs: list[int], detector: str, threshold: float
) -> dict:
    """DS2 accuracy per cutoff (rows, and "mean") and codec or bitrate (columns, and "mean")."""
    lossy = [f for f in files if f.set == "ds2"]
    table = {}
    for cutoff in [*cutoffs, None]:
        rows = [f for f in lossy if cutoff is None or f.cutoff_hz == cutoff]
        table[f"{cutoff // 1000}k" if cutoff else "mean"] = {
            column: file_accuracy(
                [f for f in rows if column in ("mean", f.codec, f.bitrate)], detector, threshold
            )
            for column in table2_columns(codecs)
        }
    return table


def f1_curves(files: list[TestFile], detector: str) -> dict:
    """Per codec on DS2: lossless files negative, that codec's files positive (Figure 5)."""
    negatives = np.array([f.scores[detector] for f in files if not f.lossy])
    curves = {}
    for codec in dict.fromkeys(f.codec for f in files if f.set == "ds2"):
        positives = np.array(
            [f.scores[detector] for f in files if f.codec == codec and f.set == "ds2"]
        )
        f1 = []
        for t in THRESHOLDS:
            tp = int(np.sum(positives >= t))
            fn = len(positives) - tp
            fp = int(np.sum(negatives >= t))
            f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        best = int(np.argmax(f1))
        curves[codec] = {
            "peak": round(f1[best], 4),
            "peak_threshold": THRESHOLDS[best],
            "area": round(float(np.mean(f1)), 4),  # over thresholds 0.01..0.99
            "f1": [round(v, 4) for v in f1],
            "positives": len(positives),
            "negatives": len(negatives),
        }
    return curves

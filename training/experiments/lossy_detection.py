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
and the lossless files flagged lossy (Figure 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.codecs import parse_spec
from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, LossyDetector, cut_windows
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
from training.fit_detector import DetectorTrainConfig, file_scores, fit_detector, load_mono
from training.loop import pick_device
from training.report import (
    family_of_path,
    markdown_table,
    percent,
    plt,
    save_figure,
    uncoded_kbps,
    write_csv,
    write_json,
)

DETECTORS = ("naive", "masked")
THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.01, 0.99, 99))


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


def _setting(spec: str) -> tuple[str, str]:
    last = parse_spec(spec).last
    return last.name, f"{last.bitrate // 1000}k"


@dataclass
class DetectionRun:
    results: dict  # what results.json holds
    files: list[TestFile]  # every test file with both detectors' scores
    models: dict[str, LossyDetector]  # for the saliency maps


def run_lossy_detection(cfg: LossyDetectionConfig) -> DetectionRun:
    """Build DS1/DS2, train both detectors and score the test tracks."""
    device = pick_device(cfg.device)
    codecs = [s for s in parse_spec_list(list(cfg.codecs)) if s != UNCODED]
    tracks = list_tracks(cfg.data)[: cfg.max_tracks]  # as fit_detector picks them
    splits = split_tracks(tracks, cfg.seed)
    ds1 = assign_codecs(tracks, codecs, cfg.seed)
    cutoffs = assign_cutoffs(tracks, list(cfg.cutoffs_hz), cfg.seed)
    ds2 = {t: with_cutoff(ds1[t], cutoffs[t]) for t in tracks}

    checkpoints = {}
    for name in DETECTORS:
        tqdm.write(f"training the {name} detector on DS1")
        checkpoints[name] = fit_detector(
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

    rate = DETECTOR_SPECTROGRAM.sample_rate
    cache = CodedCache(cfg.cache_dir, rate=rate, channels=2)
    test = splits["test"]
    pairs = [(t, s) for t in test for s in (UNCODED, ds1[t], ds2[t])]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)
    files: list[TestFile] = []
    for t in test:
        codec, bitrate = _setting(ds1[t])
        files.append(TestFile(t, "lossless", UNCODED, None, None, None, None, t))
        files.append(TestFile(t, "ds1", ds1[t], ds1[t], codec, bitrate, None, mapping[(t, ds1[t])]))
        files.append(
            TestFile(t, "ds2", ds2[t], ds1[t], codec, bitrate, cutoffs[t], mapping[(t, ds2[t])])
        )
    waves = [
        load_mono(f.audio, rate) for f in tqdm(files, desc="test files", disable=not cfg.progress)
    ]
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    window = int(WINDOW_SECONDS * rate)
    models = {name: ckpt.model.to(device).eval() for name, ckpt in checkpoints.items()}
    for name, model in models.items():
        scores, _ = file_scores(model, extractor, waves, device, window)
        for f, score in zip(files, scores, strict=True):
            f.scores[name] = float(score)

    kbps = {}
    for spec in dict.fromkeys(f.path for f in files):
        sources = [f.track for f in files if f.path == spec]
        kbps[spec] = (
            uncoded_kbps(rate, 2)
            if spec == UNCODED
            else cache.achieved_kbps(sources, spec, workers=cfg.workers, progress=False)
        )

    detectors = {}
    for name in DETECTORS:
        ckpt = checkpoints[name]
        detectors[name] = {
            "mask_prob": ckpt.config["mask_prob"],
            "checkpoint": str(cfg.checkpoints / f"{name}.safetensors"),
            "training": {k: v for k, v in ckpt.metrics.items() if k != "history"},
            "history": ckpt.metrics.get("history", []),
            "lossless_accuracy": _accuracy([f for f in files if not f.lossy], name, cfg.threshold),
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

    results = {
        "report": "lossy-detection",
        "data": str(cfg.data),
        "tracks": len(tracks),
        "splits": {k: len(v) for k, v in splits.items()},
        "test_files": len(files),
        "codecs": codecs,
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


# --- numbers --------------------------------------------------------------------------------


def _accuracy(files: list[TestFile], detector: str, threshold: float) -> float | None:
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
                "accuracy": _accuracy(group, detector, threshold),
                "files": len(group),
                "cutoff_hz": group[0].cutoff_hz,
            }
        )
    return out


def _path_order(f: TestFile) -> tuple:
    if not f.lossy:
        return (0,)
    codec_rank = [c for c, _ in map(_setting, DS1_CODECS)]
    rank = codec_rank.index(f.codec) if f.codec in codec_rank else len(codec_rank)
    return (1, rank, int(f.bitrate[:-1]), f.cutoff_hz or 0)


def table1(files: list[TestFile], codecs: list[str], detector: str, threshold: float) -> dict:
    """Accuracy per codec setting on DS1 and on DS2, on the lossless files, and over all files."""
    lossless = [f for f in files if not f.lossy]
    table = {}
    for dataset in ("ds1", "ds2"):
        row = {
            base: _accuracy(
                [f for f in files if f.set == dataset and f.base == base], detector, threshold
            )
            for base in codecs
        }
        row["lossless"] = _accuracy(lossless, detector, threshold)
        row["all"] = _accuracy(
            lossless + [f for f in files if f.set == dataset], detector, threshold
        )
        table[dataset] = row
    return table


def table2_columns(codecs: list[str]) -> list[str]:
    names = list(dict.fromkeys(_setting(c)[0] for c in codecs))
    rates = sorted(dict.fromkeys(_setting(c)[1] for c in codecs), key=lambda r: int(r[:-1]))
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
            column: _accuracy(
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


def saliency(model: LossyDetector, features: torch.Tensor) -> np.ndarray:
    """|d(lossy logit - lossless logit) / d input spectrogram| for one window (1, 1, bins, t)."""
    x = features.clone().requires_grad_(True)
    # cuDNN cannot run an LSTM backward in eval mode; the plain kernels can
    with torch.backends.cudnn.flags(enabled=False):
        logits = model(x)["lossy_logits"]
        (logits[0, 1] - logits[0, 0]).backward()
    return x.grad.abs()[0, 0].cpu().numpy()


# --- report ---------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def table1_markdown(results: dict) -> str:
    codecs = results["codecs"]
    header = ["detector", "data", *(c.replace(":", " ") for c in codecs), "lossless", "all files"]
    rows = []
    for name in DETECTORS:
        for dataset in ("ds1", "ds2"):
            row = results["detectors"][name]["table1"][dataset]
            cells = [_cell(row[c]) for c in [*codecs, "lossless", "all"]]
            rows.append([name, dataset.upper(), *cells])
    return markdown_table(header, rows, "ll" + "r" * (len(header) - 2))


def table2_markdown(results: dict) -> str:
    columns = table2_columns(results["codecs"])
    header = ["cutoff"] + [f"{c} {d}" for c in columns for d in ("No", "Mask")]
    naive = results["detectors"]["naive"]["table2"]
    masked = results["detectors"]["masked"]["table2"]
    rows = [
        [f"**{row}**" if row == "mean" else row]
        + [_cell(t[row][c]) for c in columns for t in (naive, masked)]
        for row in naive
    ]
    return markdown_table(header, rows)


def files_rows(files: list[TestFile]) -> list[dict]:
    return [
        {
            "track": f.track.name,
            "set": f.set,
            "path": f.path,
            "codec": f.codec,
            "bitrate": f.bitrate,
            "cutoff_hz": f.cutoff_hz,
            **{f"score_{d}": round(f.scores[d], 5) for d in DETECTORS},
        }
        for f in files
    ]


def plot_f1(results: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for ax, name in zip(axes, DETECTORS, strict=True):
        for codec, curve in results["detectors"][name]["f1"].items():
            ax.plot(results["thresholds"], curve["f1"], label=f"{codec} (area {curve['area']:.2f})")
        ax.set_title(f"{name} detector on DS2")
        ax.set_xlabel("threshold")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("F1 (lossless negative, codec positive)")
    return save_figure(fig, path)


def _spectrogram_axes(ax, image: np.ndarray, title: str, cmap: str) -> None:
    nyquist_khz = DETECTOR_SPECTROGRAM.sample_rate / 2000
    ax.imshow(
        image, origin="lower", aspect="auto", cmap=cmap,
        extent=(0, WINDOW_SECONDS, 0, nyquist_khz),
    )  # fmt: skip
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=7)


def _window_features(f: TestFile, extractor, device) -> torch.Tensor:
    rate = DETECTOR_SPECTROGRAM.sample_rate
    windows = cut_windows(load_mono(f.audio, rate), int(WINDOW_SECONDS * rate))
    return extractor(windows[len(windows) // 2 : len(windows) // 2 + 1].to(device))


def plot_saliency(f: TestFile, models: dict, path: Path) -> Path:
    """The middle window's spectrogram and each detector's saliency on it (Figure 4)."""
    device = next(iter(models.values())).lossy_head.weight.device
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    features = _window_features(f, extractor, device)
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(4 * (1 + len(models)), 3.4), dpi=110)
    _spectrogram_axes(axes[0], features[0, 0].detach().cpu().numpy(), f"{f.path} (dB)", "magma")
    for ax, (name, model) in zip(axes[1:], models.items(), strict=True):
        sal = saliency(model, features)
        top = np.percentile(sal, 99.5) or 1.0
        _spectrogram_axes(
            ax, np.clip(sal / top, 0, 1), f"{name}: saliency (file score {f.scores[name]:.2f})",
            "inferno",
        )  # fmt: skip
    return save_figure(fig, path)


def plot_flagged(flagged: list[TestFile], detector: str, path: Path) -> Path:
    """Spectrograms of lossless files a detector calls lossy (Figure 6)."""
    device = torch.device("cpu")
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM)
    shown = flagged[:5]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.2), dpi=110, squeeze=False)
    for ax, f in zip(axes[0], shown, strict=True):
        image = _window_features(f, extractor, device)[0, 0].numpy()
        _spectrogram_axes(ax, image, f"{f.track.name} ({f.scores[detector]:.2f})", "magma")
    return save_figure(fig, path)


def saliency_examples(files: list[TestFile], count: int) -> list[TestFile]:
    """DS2 test files, one per codec in turn, so every codec is shown before any repeats."""
    by_codec: dict[str, list[TestFile]] = {}
    for f in files:
        if f.set == "ds2":
            by_codec.setdefault(f.codec, []).append(f)
    picked: list[TestFile] = []
    while len(picked) < count and any(by_codec.values()):
        for group in by_codec.values():
            if group and len(picked) < count:
                picked.append(group.pop(0))
    return picked


def write_lossy_detection_report(
    out: Path, run: DetectionRun, saliency_count: int = 3
) -> list[Path]:
    """results.json, results.csv, files.csv, README.md, the F1 plot, saliency and error figures."""
    out.mkdir(parents=True, exist_ok=True)
    results, files, models = run.results, run.files, run.models
    rows = []
    for name in DETECTORS:
        for dataset, key in (("DS2", "paths"), ("DS1", "ds1_paths")):
            for p in results["detectors"][name][key]:
                rows.append({"detector": name, "data": dataset, **p})
    written = [
        write_json(out / "results.json", results),
        write_csv(out / "results.csv", rows),
        write_csv(out / "files.csv", files_rows(files)),
        plot_f1(results, out / "f1_vs_threshold.png"),
    ]
    saliency_pngs = []
    for i, f in enumerate(saliency_examples(files, saliency_count)):
        png = out / f"saliency-{i + 1}-{f.codec}.png"
        saliency_pngs.append(plot_saliency(f, models, png))
    written += saliency_pngs
    flagged_pngs = {}
    for name in DETECTORS:
        flagged = [f for f in files if not f.lossy and f.scores[name] >= results["threshold"]]
        if flagged:
            flagged_pngs[name] = plot_flagged(flagged, name, out / f"flagged-lossless-{name}.png")
    written += list(flagged_pngs.values())

    detectors = results["detectors"]
    splits = results["splits"]
    training = results["training"]
    lines = [
        "# Lossy-compression detection under codec cutoff changes (the detection paper's "
        "Tables 1 and 2)",
        "",
        f"Data: `{results['data']}`, {results['tracks']} lossless tracks split by track "
        f"{splits['train']}/{splits['val']}/{splits['test']} (train/validation/test). DS1: each "
        f"track coded with one of {', '.join(f'`{c}`' for c in results['codecs'])}; DS2: the "
        f"same settings with a cutoff of "
        f"{', '.join(f'{c // 1000} kHz' for c in results['cutoffs_hz'])}. Both detectors were "
        f"trained on DS1 ({training['epochs']} epochs of {training['steps_per_epoch']} steps, "
        f"batch {training['batch_size']}, seed {training['seed']}, on `{training['device']}`); "
        f"the naive one without the mask, the masked one with mask probability "
        f"{detectors['masked']['mask_prob']}. Test files: {results['test_files']} (each test "
        f"track as the lossless original, its DS1 copy and its DS2 copy); threshold "
        f"{results['threshold']}.",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        "## Accuracy per codec and bitrate (Table 1), in %",
        "",
        table1_markdown(results),
        "",
        "## DS2 accuracy per cutoff (Table 2), in %: No = naive, Mask = masked",
        "",
        table2_markdown(results),
        "",
        "Lossless accuracy: "
        + ", ".join(f"{n} {percent(detectors[n]['lossless_accuracy'])}" for n in DETECTORS)
        + f" ({splits['test']} files).",
        "",
    ]
    lines += detection_goal_lines(results)
    lines += [
        "## F1 against threshold on DS2 (Figure 5)",
        "",
        "Each curve: the lossless test files as negatives and one codec's DS2 files as "
        "positives. Area: mean F1 over thresholds 0.01 to 0.99.",
        "",
        markdown_table(
            ["codec", *(f"{n} peak F1" for n in DETECTORS), *(f"{n} area" for n in DETECTORS)],
            [
                [codec]
                + [f"{detectors[n]['f1'][codec]['peak']:.3f}" for n in DETECTORS]
                + [f"{detectors[n]['f1'][codec]['area']:.3f}" for n in DETECTORS]
                for codec in detectors["naive"]["f1"]
            ],
        ),
        "",
        "![F1 against threshold](f1_vs_threshold.png)",
        "",
        "## Saliency maps (Figure 4)",
        "",
        "The middle 2-second window of DS2 test files: its spectrogram, then the magnitude of "
        "the gradient of the lossy-minus-lossless logit with respect to each input bin, per "
        "detector.",
        "",
        *(f"![saliency]({p.name})" for p in saliency_pngs),
        "",
        "## Lossless files flagged lossy (Figure 6)",
        "",
    ]
    for name in DETECTORS:
        flagged = detectors[name]["flagged_lossless"]
        listed = ", ".join(f"`{x['track']}` ({x['score']:.2f})" for x in flagged) or "none"
        lines.append(f"- {name}: {len(flagged)} of {splits['test']}: {listed}")
    lines.append("")
    for name, png in flagged_pngs.items():
        lines += [f"![{name}: lossless files flagged lossy]({png.name})", ""]
    lines += [
        "Per-path accuracy (DS2 in `paths`, DS1 in `ds1_paths`, with achieved kbps) is in "
        "results.json and results.csv; every test file's scores are in files.csv.",
        "",
    ]
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def detection_goal_lines(results: dict) -> list[str]:
    """The project's goal: the masked detector at least 98 % on DS2 for every codec."""
    masked = results["detectors"]["masked"]["table2"]["mean"]
    codecs = list(dict.fromkeys(_setting(c)[0] for c in results["codecs"]))
    measured = {c: masked[c] for c in codecs if masked[c] is not None}
    if not measured:
        return []
    worst = min(measured, key=measured.get)
    untested = [c for c in codecs if c not in measured]
    if untested:
        verdict = f"it cannot be judged: no DS2 test files for {', '.join(untested)}"
    else:
        verdict = f"it {'meets' if measured[worst] >= 0.98 else 'misses'} the goal"
    per_codec = ", ".join(f"{c} {percent(v)}" for c, v in measured.items())
    return [
        f"Against the goal (masked detector at least 98 % on DS2 for every codec): {per_codec};"
        f" lowest {worst}: {verdict}.",
        "",
    ]

"""The lossy-detection experiment's report: results.json and CSVs, Tables 1 and 2 in Markdown,
the F1 curves (Figure 5), saliency maps (Figure 4) and the lossless files flagged lossy
(Figure 6), with a README that quotes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, cut_windows
from training.experiments.lossy_detection import DetectionRun, saliency
from training.experiments.lossy_detection_scores import (
    DETECTORS,
    TestFile,
    codec_setting,
    table2_columns,
)
from training.fit_detector import load_mono
from training.report import (
    markdown_table,
    percent,
    plt,
    save_figure,
    write_csv,
    write_json,
)


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

    lines = _tables_lines(results) + detection_goal_lines(results) + _f1_lines(results)
    lines += _figure_lines(results, saliency_pngs, flagged_pngs)
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def _tables_lines(results: dict) -> list[str]:
    """The README's opening: how DS1, DS2 and the detectors came about, Tables 1 and 2."""
    detectors = results["detectors"]
    splits = results["splits"]
    training = results["training"]
    return [
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


def _f1_lines(results: dict) -> list[str]:
    detectors = results["detectors"]
    return [
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
    ]


def _figure_lines(
    results: dict, saliency_pngs: list[Path], flagged_pngs: dict[str, Path]
) -> list[str]:
    """Saliency maps (Figure 4), then the lossless files each detector flags (Figure 6)."""
    lines = [
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
        flagged = results["detectors"][name]["flagged_lossless"]
        listed = ", ".join(f"`{x['track']}` ({x['score']:.2f})" for x in flagged) or "none"
        lines.append(f"- {name}: {len(flagged)} of {results['splits']['test']}: {listed}")
    lines.append("")
    for name, png in flagged_pngs.items():
        lines += [f"![{name}: lossless files flagged lossy]({png.name})", ""]
    return [
        *lines,
        "Per-path accuracy (DS2 in `paths`, DS1 in `ds1_paths`, with achieved kbps) is in "
        "results.json and results.csv; every test file's scores are in files.csv.",
        "",
    ]


def detection_goal_lines(results: dict) -> list[str]:
    """The project's goal: the masked detector at least 98 % on DS2 for every codec."""
    masked = results["detectors"]["masked"]["table2"]["mean"]
    codecs = list(dict.fromkeys(codec_setting(c)[0] for c in results["codecs"]))
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

"""The ASC paper's experiments across folds of real recordings, with the noise measured.

A Kitchen20 test fold holds about 120 clips: one clip moves an accuracy by 0.8 points, so a
single fold cannot tell a real difference from luck. ``scripts/real-audio-reports.sh`` runs
each experiment on several folds (each its own held-out recordings and seed); this module pools
the folds' per-clip predictions and puts a bootstrap interval (clips resampled within each
fold) on every figure it reports, so a difference is only claimed where the interval excludes
zero. Inputs, under one folder: ``codec-augmentation/fold*/``, ``ensemble/fold*/`` and
``ensemble-recipe/fold*/``, each a report with a results.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.augment import UNCODED
from training.experiments.class_losses import class_losses, loss_lines
from training.report import markdown_table, number, percent, save_figure, write_json

BOOTSTRAP = 2000
# The ASC paper's Table 3, row 1 (original training data only), on the real TAU recordings.
PAPER_CONDITION_1 = {
    "none": 0.703, "aac:32k": 0.458, "mp3:64k": 0.550, "mp3:32k": 0.261,
    "aac:48k": 0.477, "aac:64k": 0.525, "opus:64k": 0.587, "sbc:64k": 0.391,
}  # fmt: skip
GENERATED_REPORT = Path("reports/codec-augmentation/results.json")
GOAL_RELATIVE = 0.97
GOAL_CALIBRATION = 0.10  # the generated corpus's share kept within 10 points of the real clips'
MODELS = {
    "ensemble": "compact ensemble, baseline augmentations, no coded copies",
    "ensemble-recipe": "compact ensemble, baseline augmentations + the paper's four codecs",
}
# Tried against the recipe's misses, on the folds they have run (a folder per remedy, optional).
REMEDIES = {
    "ensemble-broad": "the recipe + `mp3:32k` copies (a low MP3 rate; SBC stays unseen)",
    "ensemble-bandlimit": "ensemble-broad + `--band-limit 0.25` (a quarter of the examples cut "
    "at a random 4-16 kHz in the features; SBC and Opus stay unseen)",
    "ensemble-consistency": "ensemble-broad + `--consistency 10` (each coded copy drawn with its "
    "original, and a Jensen-Shannon term between their answers; SBC and Opus stay unseen)",
    "ensemble-foreign": "ensemble-broad + `mp2:64k` and `ac3:64k` copies (two codecs no device "
    "streams: MPEG-1 Layer II's sub-band noise over the full band, AC-3's MDCT and 12 kHz cut; "
    "SBC, Opus, Vorbis and aptX stay unseen)",
    "ensemble-jitter": "ensemble-foreign + `--jitter 0.5` (half the examples with level noise "
    "in every band of the features, as a low-rate coder that keeps the band gives; no codec "
    "more, so SBC, Opus, Vorbis and aptX stay unseen)",
    "ensemble-mildjitter": "ensemble-jitter with milder noise (`--jitter-spread 0.05,0.2`, half "
    "the spread; SBC, Opus, Vorbis and aptX stay unseen)",
    "ensemble-opus": "ensemble-foreign + `opus:32k` copies (the rate a device streams by "
    "default: Opus is seen, `opus:16k` and `opus:24k` are seen codec at an unseen bitrate; SBC, "
    "Vorbis and aptX stay unseen)",
    "ensemble-opus16": "ensemble-foreign + `opus:16k` copies (the path itself seen: how much "
    "of it a model that has met that very path keeps; SBC, Vorbis and aptX stay unseen)",
}


@dataclass
class Outcomes:
    """Per-clip correctness of one model on one path, kept fold by fold for the bootstrap."""

    folds: list[np.ndarray]  # one boolean array per fold
    kbps: list[float]
    quality: list[float]

    @property
    def accuracy(self) -> float:
        return float(np.concatenate(self.folds).mean())


def fold_numbers(folder: Path) -> set[int]:
    return {int(p.parent.name[4:]) for p in folder.glob("fold*/results.json")}


def read_folds(folder: Path, folds: list[int]) -> list[dict]:
    """The results.json of each of ``folds`` under ``folder``, in that order."""
    return [json.loads((folder / f"fold{k}" / "results.json").read_text()) for k in folds]


def outcomes(folds: list[dict], paths_of=lambda r: r["paths"]) -> dict[str, Outcomes]:
    """Per path, the correctness of every test clip of every fold."""
    result: dict[str, Outcomes] = {}
    for report in folds:
        truth = np.array(report["truth"])
        for p in paths_of(report):
            entry = result.setdefault(p["path"], Outcomes([], [], []))
            entry.folds.append(np.array(p["predicted"]) == truth)
            entry.kbps.append(p["kbps"])
            if p.get("quality") is not None:
                entry.quality.append(p["quality"])
    return result


def _resample(folds: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Indices drawn with replacement within each fold (folds differ in size and recordings)."""
    return [rng.integers(0, len(f), len(f)) for f in folds]


def interval(stat, draws: list[list[np.ndarray]], rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile interval of ``stat`` over clip resamples shared by every array in
    ``draws`` (each a list of per-fold arrays over the same clips), so paired figures stay
    paired."""
    values = []
    for _ in range(BOOTSTRAP):
        picks = _resample(draws[0], rng)
        values.append(stat(*[np.concatenate([f[i] for f, i in zip(d, picks, strict=True)])
                             for d in draws]))  # fmt: skip
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def ratio(path: np.ndarray, uncoded: np.ndarray) -> float:
    base = uncoded.mean()
    return float(path.mean() / base) if base else float("nan")


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.mean() - b.mean())


def path_rows(table: dict[str, Outcomes], rng: np.random.Generator) -> list[dict]:
    """Pooled accuracy and share of the uncoded accuracy kept, each with its interval."""
    uncoded = table[UNCODED]
    rows = []
    for spec, o in table.items():
        row = {
            "path": spec,
            "kbps": float(np.mean(o.kbps)),
            "quality": float(np.mean(o.quality)) if o.quality else None,
            "accuracy": o.accuracy,
            "accuracy_ci": interval(lambda a: float(a.mean()), [o.folds], rng),
            "fold_accuracy": [float(f.mean()) for f in o.folds],
            "clips": int(sum(len(f) for f in o.folds)),
        }
        if spec != UNCODED:
            row["relative"] = ratio(np.concatenate(o.folds), np.concatenate(uncoded.folds))
            row["relative_ci"] = interval(ratio, [o.folds, uncoded.folds], rng)
        rows.append(row)
    return rows


def paired(a: Outcomes, b: Outcomes, rng: np.random.Generator) -> dict:
    """a minus b on the same clips: the difference and its interval."""
    flat_a, flat_b = np.concatenate(a.folds), np.concatenate(b.folds)
    low, high = interval(difference, [a.folds, b.folds], rng)
    return {"difference": difference(flat_a, flat_b), "ci": (low, high), "clips": len(flat_a)}


def summarize(folder: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    # Only folds every experiment has finished: the figures pair models clip by clip.
    names = ["codec-augmentation", *MODELS]
    found = {name: fold_numbers(folder / name) for name in names}
    folds = sorted(set.intersection(*found.values()))
    experiment_b = read_folds(folder / "codec-augmentation", folds)
    models = {name: read_folds(folder / name, folds) for name in MODELS}
    if not folds:
        missing = [n for n in names if not found[n]] or names
        raise ValueError(f"{folder}: no fold reports under {', '.join(m + '/' for m in missing)}")
    check_same_clips(experiment_b, *models.values())
    # Conditions every fold trained (a later fold may have run only some, to save time).
    common = set.intersection(*({c["condition"] for c in r["conditions"]} for r in experiment_b))
    per_condition = {
        index: outcomes(
            experiment_b,
            lambda r, i=index: next(x for x in r["conditions"] if x["condition"] == i)["paths"],
        )
        for index in sorted(common)
    }
    tables = {name: outcomes(folds) for name, folds in models.items()}
    comparisons = {
        "recipe minus ensemble, uncoded": paired(
            tables["ensemble-recipe"][UNCODED], tables["ensemble"][UNCODED], rng
        )
    }
    if 2 in per_condition:
        comparisons["ensemble minus FCNN alone (condition 2), uncoded"] = paired(
            tables["ensemble"][UNCODED], per_condition[2][UNCODED], rng
        )
    results = {
        "report": "real-audio",
        "data": experiment_b[0]["data"],
        "folds": len(experiment_b),
        "fold_numbers": folds,
        "clips": int(sum(r["clips"] for r in experiment_b)),
        "bootstrap": {"resamples": BOOTSTRAP, "seed": seed, "interval": 0.95},
        "models": {name: path_rows(t, rng) for name, t in tables.items()},
        "conditions": [
            {
                "condition": i,
                "name": next(
                    c["name"] for c in experiment_b[0]["conditions"] if c["condition"] == i
                ),
                "paths": path_rows(t, rng),
            }
            for i, t in per_condition.items()
        ],
        "comparisons": comparisons,
        "calibration": calibration(per_condition.get(1)),
        "training": {k: experiment_b[0]["training"][k] for k in ("epochs", "epoch_size")},
    }
    results["paths"] = [
        {k: row[k] for k in ("path", "kbps", "accuracy")}
        for row in results["models"]["ensemble-recipe"]
    ]
    results["remedies"] = remedies(folder, rng)
    return {**results, "misses": misses(folder, results)}


def misses(folder: Path, results: dict) -> dict[str, list[dict]]:
    """For the recipe and each remedy, on its own folds: where each path below the goal lost
    its clips, class by class (``class_losses``)."""
    entries = [("ensemble-recipe", results["fold_numbers"], results["models"]["ensemble-recipe"])]
    entries += [(name, r["fold_numbers"], r["paths"]) for name, r in results["remedies"].items()]
    found = {}
    for name, folds, rows in entries:
        below = [r["path"] for r in rows if r.get("relative", 1.0) < GOAL_RELATIVE]
        if below:
            reports = read_folds(folder / name, folds)
            found[name] = [class_losses(reports, path) for path in below]
    return found


def remedies(folder: Path, rng: np.random.Generator) -> dict[str, dict]:
    """Each remedy on the folds it has, paired clip by clip with the recipe on those folds: a
    remedy costs a training run per fold, so it is often tried on fewer folds than the rest."""
    out = {}
    for name in REMEDIES:
        folds = sorted(fold_numbers(folder / name) & fold_numbers(folder / "ensemble-recipe"))
        if not folds:
            continue
        remedy, recipe = (
            read_folds(folder / name, folds),
            read_folds(folder / "ensemble-recipe", folds),
        )
        check_same_clips(remedy, recipe)
        table, base = outcomes(remedy), outcomes(recipe)
        out[name] = {
            "fold_numbers": folds,
            "paths": path_rows(table, rng),
            "minus_recipe": {p: paired(table[p], base[p], rng) for p in table if p in base},
        }
    return out


def check_same_clips(*reports: list[dict], names: Sequence[str] = ()) -> None:
    """Paired figures need every model scored on the same clips, in the same order, fold by
    fold. ``reports``: each model's fold reports; ``names`` say whose they are in the error."""
    who = " and ".join(names) or "fold reports of different experiments"
    if len({len(r) for r in reports}) > 1:
        counts = ", ".join(str(len(r)) for r in reports)
        raise ValueError(f"{who} hold different numbers of fold reports ({counts})")
    for k, fold_reports in enumerate(zip(*reports, strict=True), 1):
        first = fold_reports[0]["test_clips"]
        if any(r["test_clips"] != first for r in fold_reports[1:]):
            where = f" (fold report {k})" if len(reports[0]) > 1 else ""
            raise ValueError(
                f"{who} tested different clips{where}: score them on the same data and fold"
            )


def calibration(condition_1: dict[str, Outcomes] | None) -> list[dict]:
    """Share of the uncoded accuracy kept after training on originals only: the paper (TAU),
    the real clips and the generated corpus, path by path."""
    generated = {}
    if GENERATED_REPORT.is_file():
        report = json.loads(GENERATED_REPORT.read_text())
        first = next(c for c in report["conditions"] if c["condition"] == 1)
        acc = {p["path"]: p["accuracy"] for p in first["paths"]}
        generated = {s: acc[s] / acc[UNCODED] for s in acc if s != UNCODED}
    real = {}
    if condition_1:
        flat = {s: np.concatenate(o.folds) for s, o in condition_1.items()}
        real = {s: ratio(flat[s], flat[UNCODED]) for s in flat if s != UNCODED}
    rows = []
    for spec, paper in PAPER_CONDITION_1.items():
        if spec == UNCODED:
            continue
        gen, rl = generated.get(spec), real.get(spec)
        rows.append(
            {
                "path": spec,
                "paper_tau": paper / PAPER_CONDITION_1[UNCODED],
                "real": rl,
                "generated": gen,
                "generated_minus_real": None if gen is None or rl is None else gen - rl,
            }
        )
    return rows


# --- the report --------------------------------------------------------------------------------


def _ci(pair: tuple[float, float] | list[float], digits: int = 3) -> str:
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def model_table(rows: list[dict]) -> str:
    header = [
        "path",
        "kbps",
        "ViSQOL",
        "accuracy",
        "95 % interval",
        "folds",
        "kept",
        "95 % interval",
    ]
    body = []
    for r in rows:
        kept = r.get("relative")
        body.append(
            [
                f"`{r['path']}`",
                f"{r['kbps']:.1f}",
                number(r["quality"], 2),
                f"{r['accuracy']:.3f}",
                _ci(r["accuracy_ci"]),
                " / ".join(f"{a:.2f}" for a in r["fold_accuracy"]),
                "n/a" if kept is None else percent(kept),
                "" if kept is None else _ci([100 * x for x in r["relative_ci"]], 1) + " %",
            ]
        )
    return markdown_table(header, body)


def conditions_table(conditions: list[dict]) -> str:
    specs = [r["path"] for r in conditions[0]["paths"]]
    header = ["#", "training condition", *(f"`{s}`" for s in specs)]
    body = [
        [str(c["condition"]), c["name"], *(f"{r['accuracy']:.3f}" for r in c["paths"])]
        for c in conditions
    ]
    return markdown_table(header, body, align="ll" + "r" * len(specs))


def calibration_table(rows: list[dict]) -> str:
    header = ["path", "paper (TAU)", "real clips", "generated corpus", "generated - real"]
    body = [
        [
            f"`{r['path']}`",
            percent(r["paper_tau"], 0),
            percent(r["real"], 0),
            percent(r["generated"], 0),
            "–"
            if r["generated_minus_real"] is None
            else f"{round(100 * r['generated_minus_real']):+d}",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def plot_kept(results: dict, path: Path) -> Path:
    """Share of the uncoded accuracy kept per path, both ensembles, with intervals."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    names = list(results["models"])
    specs = [r["path"] for r in results["models"][names[0]] if r["path"] != UNCODED]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        rows = {r["path"]: r for r in results["models"][name]}
        y = [100 * rows[s]["relative"] for s in specs]
        err = [
            [100 * (rows[s]["relative"] - rows[s]["relative_ci"][0]) for s in specs],
            [100 * (rows[s]["relative_ci"][1] - rows[s]["relative"]) for s in specs],
        ]
        x = np.arange(len(specs)) + (k - (len(names) - 1) / 2) * width
        ax.bar(x, y, width, yerr=err, capsize=2, label=name)
    ax.axhline(100 * GOAL_RELATIVE, color="k", ls="--", lw=1, label="goal 97 %")
    ax.set_xticks(np.arange(len(specs)), specs, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of uncoded accuracy kept (%)")
    ax.set_title(f"Real recordings: {results['clips']} clips over {results['folds']} folds")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_summary(folder: Path, results: dict, command: str) -> list[Path]:
    folder = Path(folder)
    lines = [
        "# The ASC paper's experiments on real recordings (Kitchen20)",
        "",
        f"Real, full-band, lossless recordings: `{results['data']}`, 20 classes, "
        f"{results['folds']} fold(s) of held-out recordings ({results['clips']} test clips in all, "
        "each tested once; no recording on both sides of a split), each fold trained with its own "
        f"seed; {results['training']['epochs']} epochs of up to "
        f"{results['training']['epoch_size']} examples, on CPU. Intervals: 95 % bootstrap over "
        f"clips ({BOOTSTRAP} resamples within each fold); a difference is claimed only where its "
        "interval excludes zero.",
        "",
        "```sh",
        command,
        "```",
        "",
        "Made by `scripts/real-audio-reports.sh`, which also wrote each fold's report below.",
        "",
    ]
    for name, description in MODELS.items():
        lines += [f"## {name}: {description}", "", model_table(results["models"][name]), ""]
    lines += ["![share kept per path](kept_per_path.png)", ""]
    lines += _remedy_lines(results.get("remedies", {}))
    lines += [
        "## Experiment B: the seven training conditions (20-class FCNN)",
        "",
        conditions_table(results["conditions"]),
        "",
        "## Generated corpus against real audio (condition 1: originals only)",
        "",
        "Share of the uncoded accuracy kept on each of the paper's Table 3 paths.",
        "",
        calibration_table(results["calibration"]),
        "",
    ]
    lines += loss_lines(results.get("misses", {}))
    lines += _goal_lines(results)
    lines.append("")
    written = [write_json(folder / "results.json", {**results, "command": command})]
    written.append(plot_kept(results, folder / "kept_per_path.png"))
    readme = folder / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def _goal_lines(results: dict) -> list[str]:
    """The recipe ensemble and each remedy against the share-kept goal, and each comparison's
    verdict."""
    lines = [
        "## Against the goals",
        "",
        _kept_line("Recipe ensemble", results["models"]["ensemble-recipe"]),
    ]
    for name, r in results.get("remedies", {}).items():
        folds = ", ".join(str(k) for k in r["fold_numbers"])
        lines.append(_kept_line(f"{name} (fold {folds})", r["paths"]))
    gaps = [r for r in results["calibration"] if r["generated_minus_real"] is not None]
    if gaps:
        far = max(gaps, key=lambda r: abs(r["generated_minus_real"]))
        outside = [
            f"`{r['path']}`" for r in gaps if abs(r["generated_minus_real"]) > GOAL_CALIBRATION
        ]
        lines.append(
            f"- Generated corpus against the real clips (condition 1, share kept): largest gap "
            f"{100 * far['generated_minus_real']:+.0f} points on `{far['path']}`; the goal is "
            f"within {100 * GOAL_CALIBRATION:.0f} points on every path: "
            + ("met." if not outside else f"missed on {', '.join(outside)}.")
        )
    for label, c in results["comparisons"].items():
        verdict = (
            "higher"
            if c["ci"][0] > 0
            else "lower"
            if c["ci"][1] < 0
            else "no difference beyond the noise"
        )
        lines.append(
            f"- {label}: {100 * c['difference']:+.1f} points, interval "
            f"{_ci([100 * x for x in c['ci']], 1)}: {verdict}."
        )
    return lines


def _kept_line(label: str, rows: list[dict]) -> str:
    """The lowest share kept against the goal; where missed, every path below it and whether
    its interval still reaches the goal (a miss within the noise)."""
    kept = [r for r in rows if "relative" in r]
    worst = min(kept, key=lambda r: r["relative"])
    line = (
        f"- {label}: lowest share kept {percent(worst['relative'])} on `{worst['path']}` "
        f"(interval {_ci([100 * x for x in worst['relative_ci']], 1)} %); the goal is "
        f"{percent(GOAL_RELATIVE, 0)} on every path: "
    )
    below = [r for r in kept if r["relative"] < GOAL_RELATIVE]
    if not below:
        return line + "met."
    each = [
        f"`{r['path']}` {percent(r['relative'])}"
        + (", its interval reaching the goal" if r["relative_ci"][1] >= GOAL_RELATIVE else "")
        for r in sorted(below, key=lambda r: r["relative"])
    ]
    return line + f"missed: {'; '.join(each)}."


def _remedy_lines(found: dict[str, dict]) -> list[str]:
    lines = []
    for name, r in found.items():
        folds = ", ".join(str(k) for k in r["fold_numbers"])
        lines += [f"## {name}: {REMEDIES[name]} (fold {folds})", "", model_table(r["paths"]), ""]
        rows = [
            [f"`{p}`", f"{100 * c['difference']:+.1f}", _ci([100 * x for x in c["ci"]], 1)]
            for p, c in r["minus_recipe"].items()
        ]
        lines += [
            f"Accuracy minus the recipe ensemble's on the same clips (fold {folds}), in points:",
            "",
            markdown_table(["path", "difference", "95 % interval"], rows),
            "",
        ]
    return lines

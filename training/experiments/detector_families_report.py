"""The detector-families report: results.json and CSVs, the goals per family with each shortfall,
per-setting tables, the family confusion matrices, F1 against threshold, a reliability diagram
with the expected calibration error, saliency maps for an SBC and an aptX copy, and the Kitchen20
clips kept off the lossless side with the reason for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc.codecs.registry import CODEC_FAMILIES
from asc.models.detector import MASK_LOW_HZ
from training.experiments.detector_families import FamiliesRun
from training.experiments.detector_families_grid import NETWORK
from training.experiments.detector_families_scores import DETECTOR, ScoredFile
from training.experiments.lossy_detection_report import plot_saliency
from training.report import (
    confusion_table,
    markdown_table,
    percent,
    plot_matrix,
    plt,
    save_figure,
    write_csv,
    write_json,
)

MASK_LOW_KHZ = MASK_LOW_HZ / 1000
GOAL_NAMES = {
    "called_lossy": "called lossy",
    "family_named": "family named",
    "false_alarm": "lossless called lossy",
}


def files_rows(files: list[ScoredFile]) -> list[dict]:
    return [
        {
            "source": f.source,
            "track": f.track.name,
            "path": f.path,
            "family": f.family,
            "common": f.common,
            "score": round(f.score, 5),
            "family_guess": f.family_guess,
            "network_score": round(f.scores.get(NETWORK, f.score), 5),
            "network_guess": f.network_guess,
            "network_families": families_text(f.network_families),
            "sbc_contrast_db": f.sbc_contrast_db,
            "mdct_family": f.mdct_family or "",
            "mdct_excess": f.mdct_excess,
            "mdct_lattice": f.mdct_lattice,
            "mdct_vorbis_lattice": f.mdct_vorbis_lattice,
            "mp3_excess": f.mp3_excess,
            "mp3_lattice": f.mp3_lattice,
            "vorbis_short_lattice": f.vorbis_short_lattice,
            "noise_below_db": f.noise_below_db,
            "noise_above_db": f.noise_above_db,
        }
        for f in files
    ]


def families_text(families) -> str:
    """The family head's probabilities in ``CODEC_FAMILIES`` order, so a reader (and the
    report's own test) can name a file's family again from files.csv."""
    return "" if families is None else " ".join(f"{p:.5f}" for p in families)


def plot_reliability(results: dict, path: Path) -> Path:
    """Share truly lossy against mean lossy probability per bin, one line per source."""
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(6, 6), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for name, source in results["sources"].items():
        bins = [b for b in source["calibration"]["bins"] if b["files"]]
        ece = source["calibration"]["ece"]
        ax.plot(
            [b["mean_probability"] for b in bins],
            [b["lossy_share"] for b in bins],
            "o-",
            label=f"{name} (ECE {ece:.3f})",
        )
        centres = [(b["low"] + b["high"]) / 2 for b in source["calibration"]["bins"]]
        counts.plot(centres, [b["files"] for b in source["calibration"]["bins"]], "o-", label=name)
    ax.set_ylabel("share of files truly lossy")
    ax.set_title("reliability of the lossy probability")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    counts.set_xlabel("lossy probability (bin)")
    counts.set_ylabel("files")
    counts.set_yscale("symlog")
    counts.grid(True, alpha=0.3)
    return save_figure(fig, path)


def plot_f1(results: dict, path: Path) -> Path:
    sources = results["sources"]
    fig, axes = plt.subplots(
        1, len(sources), figsize=(5.5 * len(sources), 4), dpi=110, squeeze=False
    )
    for ax, (name, source) in zip(axes[0], sources.items(), strict=True):
        for family, curve in source["f1"].items():
            style = "k-" if family == "all" else "-"
            ax.plot(results["thresholds"], curve["f1"], style, label=f"{family} ({curve['area']})")
        ax.set_title(f"{name}: F1, lossless negative, family positive", fontsize=9)
        ax.set_xlabel("threshold")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def plot_confusion(source: dict, name: str, path: Path) -> Path:
    """Rows (true families present) normalised to shares of their files."""
    matrix = np.array(source["confusion"], dtype=float)
    present = [i for i, row in enumerate(matrix) if row.sum()]
    shares = matrix[present] / matrix[present].sum(axis=1, keepdims=True)
    rows = [CODEC_FAMILIES[i] for i in present]
    title = f"{name}: family guess (columns) per true family (rows)"
    return plot_matrix(shares, rows, list(CODEC_FAMILIES), path, title, label="share of files")


def plot_families(source: dict, name: str, goals: dict, path: Path) -> Path:
    """Per family: share called lossy and share named right, against the goals."""
    families = list(source["families"])
    x = np.arange(len(families))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(families), 4), dpi=110)
    for offset, key in ((-0.2, "called_lossy"), (0.2, "family_named")):
        values = [source["families"][f][key] or 0.0 for f in families]
        ax.bar(x + offset, values, 0.4, label=GOAL_NAMES[key])
        ax.axhline(goals[key], linestyle="--", linewidth=0.8, color="C0" if offset < 0 else "C1")
    ax.set_xticks(x, families)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{name}: coded copies at common settings (dashed: goals)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


def plot_noise(results: dict, path: Path) -> Path:
    """Share of coded copies called lossy per bin of noise over the floor, one line per source."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    labels = [_bin_label(b) for b in next(iter(results["sources"].values()))["noise_bins"]]
    for name, source in results["sources"].items():
        shares = [
            np.nan if b["called_lossy"] is None else b["called_lossy"] for b in source["noise_bins"]
        ]
        ax.plot(range(len(labels)), shares, "o-", label=name)
    ax.axhline(results["goals"]["called_lossy"], linestyle="--", linewidth=0.8, color="grey")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(f"coding noise over the recording's floor below {MASK_LOW_KHZ:g} kHz (dB)")
    ax.set_ylabel("called lossy")
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _bin_label(b: dict) -> str:
    if b["low_db"] is None:
        return f"< {b['high_db']:g}"
    if b["high_db"] is None:
        return f">= {b['low_db']:g}"
    return f"{b['low_db']:g} to {b['high_db']:g}"


def saliency_files(files: list[ScoredFile]) -> dict[str, ScoredFile]:
    """One SBC and one aptX copy, from real audio where there is some, common settings first."""
    order = sorted(files, key=lambda f: (f.source != "kitchen20", not f.common))
    picked = {}
    for family in ("sbc", "aptx"):
        match = [f for f in order if f.family == family]
        if match:
            picked[family] = match[0]
    return picked


def write_detector_families_report(out: Path, run: FamiliesRun) -> list[Path]:
    """Every file of the report folder; the README last."""
    out.mkdir(parents=True, exist_ok=True)
    results, files = run.results, run.files
    setting_csv = [
        {"source": name, **row}
        for name, source in results["sources"].items()
        for row in source["settings"]
    ]
    written = [
        write_json(out / "results.json", results),
        write_csv(out / "results.csv", setting_csv),
        write_csv(out / "files.csv", files_rows(files)),
        plot_reliability(results, out / "reliability.png"),
        plot_f1(results, out / "f1_vs_threshold.png"),
        plot_noise(results, out / "noise_vs_floor.png"),
    ]
    if results["exclusions"]:
        written.append(write_csv(out / "exclusions.csv", results["exclusions"]))
    for name, source in results["sources"].items():
        written.append(plot_confusion(source, name, out / f"confusion-{name}.png"))
        written.append(plot_families(source, name, results["goals"], out / f"families-{name}.png"))
    saliency = {
        family: plot_saliency(f, {DETECTOR: run.model}, out / f"saliency-{family}.png")
        for family, f in saliency_files(files).items()
    }
    written += list(saliency.values())
    readme = out / "README.md"
    readme.write_text("\n".join(readme_lines(results, saliency)))
    return [*written, readme]


def readme_lines(results: dict, saliency: dict[str, Path]) -> list[str]:
    lines = _opening_lines(results)
    for name, source in results["sources"].items():
        lines += _source_lines(name, source, results)
    lines += _noise_lines(results)
    lines += _figure_lines(results, saliency)
    lines += _exclusion_lines(results)
    return lines


def _opening_lines(results: dict) -> list[str]:
    splits = results["splits"]
    same = results["same_tracks_as_training"]
    return [
        "# The lossy detector on every codec family the system carries",
        "",
        f"Checkpoint `{results['checkpoint']}`, scored on the test split of "
        f"{', '.join(f'`{d}`' for d in results['data'])} (seed {results['seed']}, the split "
        f"fit-detector draws: train/validation/test {splits['train']}/{splits['val']}/"
        f"{splits['test']} tracks; Kitchen20 by recording, a generated corpus by track). "
        + (
            "The checkpoint was trained on these very tracks, so the test tracks are held out."
            if same
            else "The checkpoint was not trained on these folders with this seed (its track "
            "fingerprint differs): the test tracks may not be held out from its training."
        ),
        "",
        f"Each test track is scored as its lossless original and through each of "
        f"{len(results['codecs'])} codec paths; a file is called lossy at a mean lossy "
        f"probability of {results['threshold']} or more, and its family is named as the "
        f"server names it: a file whose joined probability is 0.5 or more by its likeliest lossy "
        f"family, never lossless, one below by lossless, with SBC's share scaled by the SBC "
        f"test's probability where it ran. Common settings per family (the goals are judged "
        f"there): "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in results["common_settings"].items())
        + f". Run on `{results['device']}`:",
        "",
        "```sh",
        results["command"],
        "```",
        "",
    ]


def _goal_cell(row: dict) -> str:
    verdict = "met" if row["met"] else f"short by {percent(row['short_by'])}"
    return f"{percent(row['measured'])} ({verdict})"


def _source_lines(name: str, source: dict, results: dict) -> list[str]:
    goals = results["goals"]
    by_family = {}
    for row in source["goals"]:
        by_family.setdefault(row["family"], {})[row["goal"]] = row
    family_rows = [
        [family, str(source["families"][family]["files"]),
         _goal_cell(rows["called_lossy"]), _goal_cell(rows["family_named"])]
        for family, rows in by_family.items() if family != "lossless"
    ]  # fmt: skip
    missed = [r for r in source["goals"] if not r["met"]]
    fa = by_family.get("lossless", {}).get("false_alarm")
    lines = [
        f"## {name}: {source['tracks']} test tracks, {source['files']} files",
        "",
        f"Goals: at least {percent(goals['called_lossy'])} of coded copies called lossy and the "
        f"family named for {percent(goals['family_named'])}, per family at its common "
        f"settings; at most {percent(goals['false_alarm'])} of lossless originals called lossy.",
        "",
        markdown_table(["family", "files", "called lossy", "family named"], family_rows),
        "",
        f"Lossless originals called lossy: {_goal_cell(fa) if fa else '–'}"
        f" ({len(source['false_alarms'])} of {source['tracks']}). "
        + (f"{len(missed)} goal(s) missed." if missed else "Every goal met."),
        "",
        "Per codec path (`accuracy`: share called right, lossy for a coded copy, lossless for "
        "`none`):",
        "",
        markdown_table(SETTING_HEADER, [_setting_row(r) for r in source["settings"]], "lllrrrrrr"),
        "",
        f"Family confusion (rows: true family, columns: guess), `confusion-{name}.png`:",
        "",
        confusion_table(source["confusion"], list(CODEC_FAMILIES)),
        "",
        f"![{name}: per family](families-{name}.png) ![{name}: confusion](confusion-{name}.png)",
        "",
    ]
    return lines + _grid_lines(source, results)


def _grid_lines(source: dict, results: dict) -> list[str]:
    """What the grid tests add: the same files with the network alone, side by side."""
    if not results.get("grid_tests"):
        return ["The grid tests were not run (`--no-grid-tests`): the figures above are the "
                "network's alone.", ""]  # fmt: skip
    alone = source["network_alone"]
    rows = [
        [family, percent(alone["families"][family]["called_lossy"]), percent(row["called_lossy"]),
         percent(alone["families"][family]["family_named"]), percent(row["family_named"])]
        for family, row in source["families"].items()
    ]  # fmt: skip
    rows.append(["lossless (false alarms)", percent(alone["false_alarm"]),
                 percent(source["false_alarm"]), "", ""])  # fmt: skip
    return [
        "The network alone against the detector with the grid tests beside it "
        "(`asc.codecs.grid_tests`; files.csv holds both scores, the SBC test's contrast, the "
        "MDCT test's family, excess and lattices, and the MP3 test's excess and lattice):",
        "",
        markdown_table(
            ["family", "called lossy, network", "with grid tests", "named, network", "with them"],
            rows,
        ),
        "",
    ]


SETTING_HEADER = [
    "path", "family", "common", "kbps", "files", "accuracy", "family named",
    f"noise < {MASK_LOW_KHZ:g} kHz (dB)", f"noise >= {MASK_LOW_KHZ:g} kHz (dB)",
]  # fmt: skip


def _setting_row(r: dict) -> list[str]:
    common = "yes" if r["common"] else ""
    return [
        f"`{r['path']}`", r["family"], common, f"{r['kbps']:.1f}", str(r["files"]),
        f"{r['accuracy']:.3f}", percent(r["family_named"]),
        _db(r["noise_below_db"]), _db(r["noise_above_db"]),
    ]  # fmt: skip


def _db(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _noise_lines(results: dict) -> list[str]:
    sources = results["sources"]
    names = list(sources)
    bins = next(iter(sources.values()))["noise_bins"]
    rows = [
        [_bin_label(b)]
        + [
            f"{percent(s['noise_bins'][i]['called_lossy'])} of {s['noise_bins'][i]['files']}"
            if s["noise_bins"][i]["files"]
            else "–"
            for s in sources.values()
        ]
        for i, b in enumerate(bins)
    ]
    families = [
        [family]
        + [_db(s["families"].get(family, {}).get("noise_below_db")) for s in sources.values()]
        for family in dict.fromkeys(f for s in sources.values() for f in s["families"])
    ]
    return [
        "## Coding noise against the recording's own floor",
        "",
        "A codec that adds noise without cutting a band leaves a trace a detector can see in the "
        "coded copy alone only where that noise rises above the noise the recording already "
        "holds. Per coded copy: the coded copy minus its original (the two line up sample for "
        "sample), its median frame power in each 2 kHz band over the original's "
        "10th-percentile frame power there (`asc.codecs.measure.noise_over_floor_db`), and the "
        f"highest band below {MASK_LOW_KHZ:g} kHz, the lowest cutoff of the detector's training "
        "mask: below it the detector sees every training example whole. The per-path tables "
        "give the median per path below and above that edge; a band a codec cuts counts as "
        "noise as loud as what was cut.",
        "",
        f"Coded copies called lossy by that rise ({', '.join(names)}), `noise_vs_floor.png`:",
        "",
        markdown_table(["noise over floor (dB)", *names], rows),
        "",
        "Median per family at its common settings (dB):",
        "",
        markdown_table(["family", *names], families),
        "",
        "![called lossy against noise over the floor](noise_vs_floor.png)",
        "",
    ]


def _figure_lines(results: dict, saliency: dict[str, Path]) -> list[str]:
    sources = results["sources"]
    f1_rows = [
        [name, family, f"{c['peak']:.3f}", f"{c['peak_threshold']:.2f}", f"{c['area']:.3f}"]
        for name, source in sources.items()
        for family, c in source["f1"].items()
    ]
    ece = ", ".join(f"{n} {s['calibration']['ece']:.3f}" for n, s in sources.items())
    bins = len(next(iter(sources.values()))["calibration"]["bins"])
    return [
        "## F1 against threshold",
        "",
        "Lossless originals negative, one family's coded copies (every setting) positive; "
        "area: mean F1 over thresholds 0.01 to 0.99.",
        "",
        markdown_table(["source", "family", "peak F1", "at threshold", "area"], f1_rows),
        "",
        "![F1 against threshold](f1_vs_threshold.png)",
        "",
        "## Calibration",
        "",
        f"Expected calibration error of the lossy probability over {bins} equal-width bins "
        "(sum over bins of the bin's share of files times |share truly lossy "
        f"- mean probability|): {ece}.",
        "",
        "![reliability diagram](reliability.png)",
        "",
        "## Saliency",
        "",
        "The middle 2-second window of a coded copy: its spectrogram, and the magnitude of the "
        "gradient of the lossy-minus-lossless logit with respect to each input bin.",
        "",
        *(f"![saliency: {family}]({png.name})" for family, png in saliency.items()),
        "",
    ]


def _exclusion_lines(results: dict) -> list[str]:
    exclusions = results["exclusions"]
    if not exclusions:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in results["excluded"].items())
    return [
        "## Kitchen20 clips kept off the lossless side",
        "",
        f"{len(exclusions)} clips ({counts}): a lossy upload by the extension of its "
        "`freesound_file`; band-limited: an effective bandwidth (highest frequency within "
        "60 dB of the spectrum's peak) below 16.5 kHz; or cut to the 16-bit floor: in at least "
        "15 % of the frames that reach 12 kHz, a drop of 25 dB or more within 1 kHz onto "
        "nothing but 16-bit rounding noise, between 12 and 20.5 kHz (an encoder's lowpass). "
        "Listed in exclusions.csv too.",
        "",
        "<details><summary>every excluded clip and why</summary>",
        "",
        markdown_table(
            ["clip", "upload", "reason"],
            [[e["filename"], e["upload"], e["reason"]] for e in exclusions],
        ),
        "",
        "</details>",
        "",
        "Per-file scores and family guesses are in files.csv; per-path figures in results.csv.",
        "",
    ]

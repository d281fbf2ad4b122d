"""What a corpus sounds like to a codec: level, crest factor, where its energy and class cues sit.

The generated scene corpus is meant to behave like real audio where codecs are concerned, and
codecs act on exactly these properties: a lowpass removes what lies above its cutoff, a
perceptual model spends bits where energy is, quantisation noise hides under loud, dense
signals and shows in quiet, peaky ones. Measuring the same statistics on real recordings and on
the generated corpus says which of them the generator gets wrong, before any model is trained.

Per clip: RMS level (dBFS), crest factor (peak over RMS, dB) and the share of energy above 8, 12
and 16 kHz; per corpus, the long-term average spectrum in third-octave bands and the share of
the between-class differences (of per-clip log band energies) that lies above each cutoff: how
much of what tells the classes apart a codec's lowpass would remove.

With codec paths (``codec_damage``), what each path does to the features the model sees: every
sampled clip is coded and decoded, and the log-mel maps of the original and the coded copy (the
model's front end without per-clip scaling or deltas) are compared per group of 16 mel bands,
over the frames within 60 dB of the clip's peak: the mean |coded - original|, and the share of
those frames in which the path removed the group outright. The statistics above say where a
corpus's energy sits; this says what a codec actually does to it, which is where the accuracy a
path costs comes from, and where a generated corpus can differ from real audio with the same
spectrum (a sub-band codec's bit allocation, for one, depends on more than the average level).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asc.audio import load
from asc.codecs.clip import roundtrip
from asc.codecs.measure import power_spectrum, spectrum_bandwidth
from asc.features import LOGMEL, FeatureConfig, FeatureExtractor

RATE = 44100
CUTOFFS_HZ = (8000, 12000, 16000)
# A clip is band-limited below this: lower than any full-band converter's anti-alias edge, and
# where the 32-64 kbps codecs cut (Kitchen20's exclusions use the same edge and floor).
BAND_LIMITED_HZ = 16500.0
BANDWIDTH_FLOOR_DB = 60.0
# Third-octave band centres from 50 Hz to 20 kHz (IEC 61260 nominal series).
BAND_CENTRES = 1000.0 * 2.0 ** (np.arange(-13, 14) / 3.0)
# The model's log-mel front end as a codec changes it: unscaled (per-clip scaling would hide a
# level change and spread a removed band's loss over every band), without deltas.
DAMAGE_FEATURES = dataclasses.replace(LOGMEL, per_clip_scaling=False, deltas=0)
MEL_GROUPS = 8  # groups of 128 / 8 = 16 mel bands
# 60 dB in the features' natural-log power units: ln(1e6) = 13.8. Bins further below the clip's
# loudest are noise floor or zero padding, where any codec's difference means nothing.
JUDGED_RANGE = math.log(1e6)
# A group is removed in a frame when its coded mean lies this far below the original's: 5
# natural-log units of power are 22 dB, far beyond quantisation noise: a band the codec dropped.
REMOVED_BELOW = 5.0
REMOVED_BELOW_DB = 10 * math.log10(math.e) * REMOVED_BELOW


@dataclass
class ClipStats:
    level_dbfs: float
    crest_db: float
    above: dict[int, float]  # cutoff (Hz) -> share of energy above it
    bands_db: np.ndarray  # energy per third-octave band, dB
    bandwidth_hz: float  # highest frequency within 60 dB of the spectrum's peak


def band_edges() -> np.ndarray:
    return np.concatenate([BAND_CENTRES * 2 ** (-1 / 6), BAND_CENTRES[-1:] * 2 ** (1 / 6)])


def clip_stats(audio: np.ndarray) -> ClipStats:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    rms = float(np.sqrt(np.mean(mono**2)) + 1e-12)
    peak = float(np.max(np.abs(mono)) + 1e-12)
    freqs, power = power_spectrum(mono, RATE)
    total = power.sum() + 1e-20
    above = {c: float(power[freqs >= c].sum() / total) for c in CUTOFFS_HZ}
    edges = band_edges()
    bands = np.array(
        [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)]
    )
    return ClipStats(
        level_dbfs=20 * np.log10(rms),
        crest_db=20 * np.log10(peak / rms),
        above=above,
        bands_db=10 * np.log10(bands / total + 1e-12),
        bandwidth_hz=spectrum_bandwidth(freqs, power, BANDWIDTH_FLOOR_DB),
    )


def cue_share_above(bands_db: np.ndarray, labels: Sequence[str]) -> dict[int, float]:
    """Share of the between-class variance of band levels that lies above each cutoff.

    Per band, the variance of the class means of the (level-normalised) band energies: where
    classes differ. Summed over the bands above a cutoff and divided by the sum over all bands.
    """
    names = sorted(set(labels))
    label_array = np.array(labels)
    means = np.stack([bands_db[label_array == n].mean(axis=0) for n in names])
    between = means.var(axis=0)
    total = between.sum() + 1e-12
    return {c: float(between[c <= BAND_CENTRES].sum() / total) for c in CUTOFFS_HZ}


def corpus_stats(files: Sequence[Path], labels: Sequence[str]) -> dict:
    """Every statistic above, summarised over a corpus's clips (median and 10th-90th pct)."""
    clips = [clip_stats(load(f, rate=RATE, channels=1)[0]) for f in files]
    bands = np.stack([c.bands_db for c in clips])

    def spread(values: Sequence[float]) -> dict[str, float]:
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        return {"median": float(p50), "p10": float(p10), "p90": float(p90)}

    return {
        "clips": len(clips),
        "classes": len(set(labels)),
        "level_dbfs": spread([c.level_dbfs for c in clips]),
        "crest_db": spread([c.crest_db for c in clips]),
        "energy_above": {str(k): spread([c.above[k] for c in clips]) for k in CUTOFFS_HZ},
        "bandwidth_hz": spread([c.bandwidth_hz for c in clips]),
        "band_limited_share": float(np.mean([c.bandwidth_hz < BAND_LIMITED_HZ for c in clips])),
        "class_cues_above": {str(k): v for k, v in cue_share_above(bands, labels).items()},
        "band_centres_hz": BAND_CENTRES.round(1).tolist(),
        "ltas_db": bands.mean(axis=0).round(2).tolist(),
    }


def compare(corpora: dict[str, dict]) -> str:
    """The statistics of several corpora side by side, as a Markdown table."""
    from training.report import markdown_table

    names = list(corpora)

    def cell(s: dict, digits: int = 1, scale: float = 1.0) -> str:
        low, mid, high = (f"{scale * s[k]:.{digits}f}" for k in ("p10", "median", "p90"))
        return f"{mid} ({low} to {high})"

    rows = [
        ["clips", *(str(corpora[n]["clips"]) for n in names)],
        [
            "level, dBFS: median (10th to 90th pct)",
            *(cell(corpora[n]["level_dbfs"]) for n in names),
        ],
        ["crest factor, dB", *(cell(corpora[n]["crest_db"]) for n in names)],
        [
            "effective bandwidth, kHz (within 60 dB of the peak)",
            *(cell(corpora[n]["bandwidth_hz"], 1, 1e-3) for n in names),
        ],
        [
            f"clips band-limited below {BAND_LIMITED_HZ / 1000:.1f} kHz, %",
            *(f"{100 * corpora[n]['band_limited_share']:.1f}" for n in names),
        ],
    ]
    for k in CUTOFFS_HZ:
        rows.append(
            [
                f"energy above {k // 1000} kHz, %",
                *(cell(corpora[n]["energy_above"][str(k)], 2, 100) for n in names),
            ]
        )
    for k in CUTOFFS_HZ:
        rows.append(
            [
                f"class cues above {k // 1000} kHz, %",
                *(f"{100 * corpora[n]['class_cues_above'][str(k)]:.1f}" for n in names),
            ]
        )
    return markdown_table(["statistic", *(f"`{n}`" for n in names)], rows)


def plot_ltas(corpora: dict[str, dict], path: Path) -> Path:
    """Long-term average spectra (level-normalised), one line per corpus."""
    import matplotlib.pyplot as plt

    from training.report import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, stats in corpora.items():
        ax.semilogx(stats["band_centres_hz"], stats["ltas_db"], "o-", ms=3, label=name)
    for k in CUTOFFS_HZ:
        ax.axvline(k, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("third-octave band centre (Hz)")
    ax.set_ylabel("share of clip energy (dB)")
    ax.set_title("Long-term average spectrum")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass(frozen=True)
class MelGroup:
    """A run of adjacent mel bands and the frequencies it covers."""

    first: int  # first mel band of the run
    stop: int  # one past its last
    low_hz: float
    high_hz: float

    @property
    def label(self) -> str:
        return f"{self.low_hz / 1000:.1f}-{self.high_hz / 1000:.1f} kHz"


def mel_groups(config: FeatureConfig = DAMAGE_FEATURES, groups: int = MEL_GROUPS) -> list[MelGroup]:
    """The config's mel bands in ``groups`` equal runs, each with the frequencies it covers.

    Computed, not written down, so the labels follow the front end if it changes. HTK mel
    filters are triangles between ``n_mels + 2`` points spaced evenly on the mel scale from
    f_min to f_max, band i peaking at point i + 1. Neighbouring runs meet halfway (in mel)
    between the peaks of the bands either side, where those two filters cross, so the ranges
    tile f_min to f_max and each says where its own bands respond most.
    """
    if config.mel_scale != "htk":
        raise ValueError(f"band ranges are computed for the HTK mel scale, not {config.mel_scale}")
    if config.n_mels % groups:
        raise ValueError(f"{config.n_mels} mel bands do not split into {groups} equal groups")

    def mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    low, step = mel(config.f_min), (mel(config.f_max) - mel(config.f_min)) / (config.n_mels + 1)

    def edge(band: int) -> float:  # where band - 1 and band cross: halfway between their peaks
        if band in (0, config.n_mels):
            return config.f_min if band == 0 else config.f_max
        return hz(low + (band + 0.5) * step)

    size = config.n_mels // groups
    return [
        MelGroup(g * size, (g + 1) * size, edge(g * size), edge((g + 1) * size))
        for g in range(groups)
    ]


def damage_paths(text: str) -> list[str]:
    """The codec paths of ``--codecs``, canonical; a path the engine cannot run is refused now.

    Checked before any clip is measured, so a typo fails in a second rather than after the
    corpus statistics; the error names the codec (``CodecError``, which asc-train reports).
    """
    from asc.codecs import CodecError, parse_spec, resolve
    from training.augment import UNCODED, parse_spec_list

    specs = parse_spec_list(text)
    if not specs:
        raise CodecError("--codecs: no codec path given")
    for spec in specs:
        if spec == UNCODED:
            raise CodecError(f"--codecs: {spec!r} is the original itself; give codec paths")
        resolve(parse_spec(spec), RATE, 1)
    return list(dict.fromkeys(specs))


def evenly_spaced(items: Sequence, count: int) -> list:
    """``count`` items spread evenly over ``items`` (all of them if fewer): a bounded sample
    that covers every part of an ordered corpus, the same on every run."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def judged(features: np.ndarray) -> np.ndarray:
    """Which bins of a clip's (mels, frames) log-mel map a codec's change is judged in.

    Those within 60 dB of the clip's loudest bin: quieter ones are noise floor or the zero
    padding of a short clip, where any difference says nothing about what the model hears.
    """
    return features > features.max() - JUDGED_RANGE


def feature_damage(
    original: np.ndarray, coded: np.ndarray, groups: Sequence[MelGroup]
) -> np.ndarray:
    """Per mel group, the sums behind the damage statistics of one clip: (groups, 4).

    Columns: |coded - original| summed over the judged bins, the judged bins, the frames with
    a judged bin (those the group is heard in), and of these the frames in which the group's
    coded mean lies more than ``REMOVED_BELOW`` below the original's (the path removed it).
    Sums, so that clips pool into one mean per corpus, weighted by what each one holds.
    """
    mask = judged(original)
    sums = np.zeros((len(groups), 4))
    for row, group in zip(sums, groups, strict=True):
        bands = slice(group.first, group.stop)
        heard = mask[bands]
        frames = heard.any(axis=0)
        removed = coded[bands].mean(axis=0) < original[bands].mean(axis=0) - REMOVED_BELOW
        row[:] = (
            np.abs(coded[bands] - original[bands])[heard].sum(),
            heard.sum(),
            frames.sum(),
            (removed & frames).sum(),
        )
    return sums


@functools.cache
def _extractor() -> FeatureExtractor:
    """One per process: the mel filter bank is built once, not once per clip."""
    return FeatureExtractor(DAMAGE_FEATURES)


def to_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """``audio`` trimmed or zero-padded to ``samples``, so the frames of both maps align."""
    return np.pad(audio[:samples], (0, max(0, samples - len(audio))))


def clip_damage(path: Path, specs: Sequence[str]) -> np.ndarray:
    """One clip through every path: (specs, groups, 4) sums of ``feature_damage``.

    The clip is loaded and its features computed once for all paths; mono at 44.1 kHz, as the
    model's front end takes it.
    """
    original = load(path, rate=RATE, channels=1)[0][:, 0]
    waves = [original] + [
        to_length(roundtrip(original[:, None], RATE, spec)[:, 0], len(original)) for spec in specs
    ]
    with torch.no_grad():
        maps = _extractor()(torch.from_numpy(np.stack(waves).astype(np.float32)))[:, 0].numpy()
    groups = mel_groups()
    return np.stack([feature_damage(maps[0], coded, groups) for coded in maps[1:]])


def _one_thread() -> None:
    """Worker start-up: one torch thread each, since the workers already fill the cores."""
    torch.set_num_threads(1)


def codec_damage(
    files: Sequence[Path], specs: Sequence[str], workers: int | None = None
) -> dict[str, dict[str, dict]]:
    """Per path and mel group: mean |coded - original| over the judged bins of all ``files``,
    and the share of the group's heard frames that the path removed (``feature_damage``).

    A group no clip is heard in has no mean and no share (None).
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    if workers == 1:
        per_clip = [clip_damage(f, specs) for f in files]
    else:  # fresh interpreters: forking a parent that holds torch's thread pools can hang
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            per_clip = list(pool.map(clip_damage, files, itertools.repeat(list(specs))))
    sums = np.sum(per_clip, axis=0)
    damage: dict[str, dict[str, dict]] = {}
    for spec, rows in zip(specs, sums, strict=True):
        damage[spec] = {}
        for group, (diff, bins, frames, removed) in zip(mel_groups(), rows, strict=True):
            damage[spec][group.label] = {
                "mels": [group.first, group.stop],
                "hz": [round(group.low_hz, 1), round(group.high_hz, 1)],
                "mean_abs_diff": float(diff / bins) if bins else None,
                "removed_share": float(removed / frames) if frames else None,
                "judged_bins": int(bins),
                "heard_frames": int(frames),
            }
    return damage


def damage_table(damage: dict[str, dict[str, dict[str, dict]]]) -> str:
    """``codec_damage`` of several corpora as one Markdown table: a row per path and statistic,
    a column per mel group, each cell the corpora's values side by side in their given order."""
    from training.report import markdown_table

    names = list(damage)
    specs = list(damage[names[0]])
    labels = [g.label for g in mel_groups()]

    def cell(spec: str, label: str, key: str, scale: float, digits: int) -> str:
        values = (damage[n][spec][label][key] for n in names)
        return " / ".join("-" if v is None else f"{scale * v:.{digits}f}" for v in values)

    rows = []
    for spec in specs:
        rows.append(
            [
                f"`{spec}` mean abs difference",
                *(cell(spec, lb, "mean_abs_diff", 1, 2) for lb in labels),
            ]
        )
        rows.append(
            [
                f"`{spec}` frames removed, %",
                *(cell(spec, lb, "removed_share", 100, 0) for lb in labels),
            ]
        )
    corpora = " / ".join(f"`{n}`" for n in names)
    return markdown_table([f"path, statistic ({corpora})", *labels], rows)


def corpus_stats_readme(
    table: str,
    command: str,
    damage: str | None = None,
    damage_clips: dict[str, int] | None = None,
) -> str:
    """The report's front page: what was measured, the command, the table and the spectrum;
    with ``damage`` (``damage_table``), what each codec path does to the model's features."""
    lines = [
        "# Corpora side by side: what a codec meets in each",
        "",
        "Per clip: RMS level, crest factor, effective bandwidth (highest frequency within 60 "
        "dB of the spectrum's peak) and the share of energy above 8, 12 and 16 kHz (median, "
        "10th to 90th percentile); per corpus, the share of the between-class differences of "
        "third-octave band levels that lies above each cutoff (where a lowpass removes what "
        "tells the classes apart). Made by:",
        "",
        "```sh",
        command,
        "```",
        "",
        table,
        "",
        "![long-term average spectrum](ltas.png)",
        "",
    ]
    if damage is not None:
        counts = sorted(set((damage_clips or {}).values()))
        clips = (
            f"{counts[0]} clips per corpus"
            if len(counts) == 1
            else "clips (" + ", ".join(f"`{n}`: {c}" for n, c in (damage_clips or {}).items()) + ")"
        )
        lines += [
            "## What each codec path does to the model's features",
            "",
            "Codecs act on the features the model sees, and where a path removes or disturbs "
            "mel bands differently in two corpora the accuracy it costs differs too, whatever "
            f"their spectra say: so {clips}, spread evenly over each corpus, were coded and "
            "decoded, and the log-mel maps of the original and the coded copy (the model's front "
            "end without per-clip scaling or deltas, natural-log power) compared per group of "
            f"{DAMAGE_FEATURES.n_mels // MEL_GROUPS} mel bands, over the bins within 60 dB of "
            "the clip's loudest: the mean |coded - original|, and the share of the frames the "
            "group is heard in where its coded mean lies more than "
            f"{REMOVED_BELOW:g} units ({REMOVED_BELOW_DB:.0f} dB) below the original's (the path "
            "removed the group). Each cell gives the corpora in the order of the header; `-` "
            "where a corpus has nothing within 60 dB in a group.",
            "",
            damage,
            "",
        ]
    return "\n".join(lines)

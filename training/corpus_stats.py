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
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc.audio import load
from asc.codecs.measure import power_spectrum, spectrum_bandwidth

RATE = 44100
CUTOFFS_HZ = (8000, 12000, 16000)
# A clip is band-limited below this: lower than any full-band converter's anti-alias edge, and
# where the 32-64 kbps codecs cut (Kitchen20's exclusions use the same edge and floor).
BAND_LIMITED_HZ = 16500.0
BANDWIDTH_FLOOR_DB = 60.0
# Third-octave band centres from 50 Hz to 20 kHz (IEC 61260 nominal series).
BAND_CENTRES = 1000.0 * 2.0 ** (np.arange(-13, 14) / 3.0)


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


def corpus_stats_readme(table: str, command: str) -> str:
    """The report's front page: what was measured, the command, the table and the spectrum."""
    return "\n".join(
        [
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
    )

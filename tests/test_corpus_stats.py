"""Corpus statistics on signals whose answers are known, and the command on two corpora."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asc.audio import save
from training.corpus_stats import (
    BAND_CENTRES,
    RATE,
    REMOVED_BELOW,
    clip_stats,
    cue_share_above,
    feature_damage,
    mel_groups,
)

SECONDS = 2


def sine(freq: float, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(RATE * SECONDS) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_level_crest_and_energy_of_a_sine_and_of_white_noise():
    tone = clip_stats(sine(1000.0))
    assert tone.level_dbfs == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)
    assert tone.crest_db == pytest.approx(3.01, abs=0.05)
    assert tone.above[8000] < 1e-4
    noise = np.random.default_rng(0).standard_normal(RATE * SECONDS).astype(np.float32) * 0.1
    flat = clip_stats(noise)
    for cutoff in (8000, 12000, 16000):
        assert flat.above[cutoff] == pytest.approx((RATE / 2 - cutoff) / (RATE / 2), abs=0.02)


def test_class_cues_found_where_the_classes_differ():
    rng = np.random.default_rng(1)
    bands = rng.normal(0, 0.01, (40, len(BAND_CENTRES)))
    labels = ["a"] * 20 + ["b"] * 20
    high = BAND_CENTRES >= 13000
    bands[:20, high] += 6.0  # class a is louder above 13 kHz, and nowhere else
    share = cue_share_above(bands, labels)
    assert share[8000] > 0.99 and share[12000] > 0.99
    bands[:20, BAND_CENTRES < 2000] += 6.0  # now equally different below 2 kHz
    share = cue_share_above(bands, labels)
    assert share[12000] == pytest.approx(
        high.sum() / (high.sum() + (BAND_CENTRES < 2000).sum()), abs=1e-3
    )


def test_corpus_stats_command_compares_two_corpora(tmp_path: Path):
    for corpus, freq in (("low", 500.0), ("high", 15000.0)):
        for label in ("x", "y"):
            for k in range(2):
                save(
                    tmp_path / corpus / label / f"{k}.wav", sine(freq * (1 + k / 10))[:, None], RATE
                )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", "corpus-stats", "--data", str(tmp_path / "low"),
         "--data", str(tmp_path / "high"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| energy above 12 kHz, % | 0.00 (0.00 to 0.00) | 100.00 (100.00 to 100.00) |" in (
        result.stdout
    )
    assert (out / "ltas.png").stat().st_size > 1000 and (out / "corpus_stats.json").is_file()
    readme = (out / "README.md").read_text()
    assert "asc-train corpus-stats --data" in readme and "| clips band-limited below" in readme
    assert "codec_damage" not in json.loads((out / "corpus_stats.json").read_text())
    assert "## What each codec path" not in readme  # without --codecs: the report as it was


def test_effective_bandwidth_tells_band_limited_clips_from_full_band_ones():
    from training.corpora.devices import band_limit

    noise = np.random.default_rng(2).standard_normal(RATE * SECONDS).astype(np.float32) * 0.1
    assert clip_stats(noise).bandwidth_hz > 21000
    limited = clip_stats(band_limit(noise, RATE, 12000.0))
    assert 11000 < limited.bandwidth_hz < 16500


def test_mel_groups_tile_the_front_ends_band_in_computed_ranges():
    groups = mel_groups()
    assert [(g.first, g.stop) for g in groups] == [(16 * k, 16 * k + 16) for k in range(8)]
    assert groups[0].low_hz == 0.0 and groups[-1].high_hz == RATE / 2
    assert all(a.high_hz == b.low_hz for a, b in itertools.pairwise(groups))
    # HTK mel bands 96-111 peak from 8.9 to 13.7 kHz; the range runs to where neighbours cross
    assert groups[6].label == "8.8-13.9 kHz"


def test_feature_damage_judges_only_bins_near_the_peak_and_finds_a_removed_group():
    groups = mel_groups()
    original = np.full((128, 10), 0.0)
    original[:, 5:] = -30.0  # frames 5-9 lie 30 natural-log units (130 dB) below the peak
    coded = original.copy()
    coded[96:112] -= REMOVED_BELOW + 1  # group 6 removed in every frame
    coded[:16, :5] += 0.5  # group 0 disturbed where heard, and wildly where not
    coded[:16, 5:] += 20.0
    sums = feature_damage(original, coded, groups)
    diff, bins, frames, removed = sums.T
    assert bins[0] == 16 * 5 and frames[0] == 5  # the quiet frames are not judged
    assert diff[0] / bins[0] == pytest.approx(0.5)
    assert diff[6] / bins[6] == pytest.approx(REMOVED_BELOW + 1) and removed[6] == frames[6] == 5
    assert removed[[0, 1, 2, 3, 4, 5, 7]].sum() == 0 and diff[[1, 2, 3, 4, 5, 7]].sum() == 0


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """Two small generated scene corpora, independent draws of the same generator."""
    from training.corpora import write_scene_corpus

    root = tmp_path_factory.mktemp("generated")
    return tuple(
        write_scene_corpus(root / f"seed{seed}", 2, seed=seed, seconds=2.0, workers=1,
                           progress=False)
        for seed in (1, 2)
    )  # fmt: skip


def corpus_stats_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.cli", "corpus-stats", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_codec_damage_per_corpus_path_and_band_group(generated, tmp_path: Path):
    first, second = generated
    out = tmp_path / "out"
    result = corpus_stats_cli(
        "--data", str(first), "--data", str(second), "--codecs", "sbc:64k,opus:64k,pcm16",
        "--codec-clips", "4", "--workers", "2", "--max-clips", "8", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "corpus_stats.json").read_text())
    damage = results["codec_damage"]
    labels = [g.label for g in mel_groups()]
    assert list(damage) == [first.name, second.name]
    assert results["codec_damage_clips"] == {first.name: 4, second.name: 4}
    for paths in damage.values():
        assert list(paths) == ["sbc:64k", "opus:64k", "pcm16"]
        for groups in paths.values():
            assert list(groups) == labels
            for group in groups.values():
                assert np.isfinite(group["mean_abs_diff"]) and group["mean_abs_diff"] >= 0
                assert 0.0 <= group["removed_share"] <= 1.0
        # SBC at 64 kbps drops 8.8-13.9 kHz in generated scenes; Opus leaves the lowest band be
        sbc_high = paths["sbc:64k"][labels[6]]
        assert paths["opus:64k"][labels[0]]["mean_abs_diff"] < 0.1 * sbc_high["mean_abs_diff"]
        assert sbc_high["removed_share"] > 0.5
        for group in paths["pcm16"].values():  # lossless: nothing removed, nothing disturbed
            assert group["removed_share"] == 0.0 and group["mean_abs_diff"] < 0.05
    readme = (out / "README.md").read_text()
    assert "## What each codec path does to the model's features" in readme
    assert f"| path, statistic (`{first.name}` / `{second.name}`) | {labels[0]} |" in readme
    assert "| `sbc:64k` frames removed, % |" in result.stdout


def test_an_unknown_codec_is_refused_by_name_before_any_work(generated):
    result = corpus_stats_cli("--data", str(generated[0]), "--codecs", "sbc:64k,nocodec:32k")
    assert result.returncode != 0
    assert "nocodec" in result.stderr and "Traceback" not in result.stderr
    assert "| clips |" not in result.stdout  # refused before the corpus was measured

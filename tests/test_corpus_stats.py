"""Corpus statistics on signals whose answers are known, and the command on two corpora."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asc.audio import save
from training.corpus_stats import BAND_CENTRES, RATE, clip_stats, cue_share_above

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


def test_effective_bandwidth_tells_band_limited_clips_from_full_band_ones():
    from training.corpora.devices import band_limit

    noise = np.random.default_rng(2).standard_normal(RATE * SECONDS).astype(np.float32) * 0.1
    assert clip_stats(noise).bandwidth_hz > 21000
    limited = clip_stats(band_limit(noise, RATE, 12000.0))
    assert 11000 < limited.bandwidth_hz < 16500

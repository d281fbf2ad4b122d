"""The asc-codec command as a user runs it: a real process, real files."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from asc.audio import load, save
from asc.signals import full_band_clip


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asc.codecs.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_list_names_every_codec_and_its_state():
    result = run("list")
    assert result.returncode == 0
    for name in (
        "pcm16",
        "flac",
        "opus",
        "mp3",
        "aac",
        "fdk-aac",
        "he-aac",
        "he-aac-v2",
        "vorbis",
        "sbc",
        "aptx",
        "mp2",
        "ac3",
    ):
        assert f"\n{name} " in result.stdout
    assert "UNAVAILABLE" not in result.stdout  # make setup installs every library


def test_a_missing_library_is_reported_and_never_replaced(tmp_path: Path):
    env = {"ASC_FDK_AAC_LIBRARY": str(tmp_path / "libfdk-aac-missing.so")}
    listing = run("list", env=env)
    assert listing.returncode == 0
    he_aac = next(line for line in listing.stdout.splitlines() if line.startswith("he-aac "))
    assert "UNAVAILABLE" in he_aac and "reason: " in listing.stdout
    assert "libfdk-aac-missing.so cannot be loaded" in listing.stdout
    clip = tmp_path / "in.wav"
    save(clip, full_band_clip(seconds=0.5), 44100)
    coded = run("roundtrip", str(clip), "he-aac:32k", "-o", str(tmp_path / "out.wav"), env=env)
    assert coded.returncode == 2
    assert "he-aac is unavailable here" in coded.stderr
    assert not (tmp_path / "out.wav").exists()


def test_roundtrip_prints_the_measurements_and_writes_aligned_audio(tmp_path: Path):
    clip = tmp_path / "in.wav"
    x = full_band_clip(seconds=2.0)
    save(clip, x, 44100)
    out = tmp_path / "out.wav"
    result = run("roundtrip", str(clip), "mp3:128k,cutoff=14k", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    kbps = float(text.split("achieved")[1].split("kbps")[0])
    bandwidth = float(text.split("bandwidth")[1].split("kHz")[0])
    assert 110 < kbps < 150
    assert "codec delay" in text and "SNR" in text
    assert 12.5 < bandwidth < 14.5  # the lowpass shows
    y, rate = load(out)
    assert rate == 44100 and y.shape == (len(x), 1)
    assert np.corrcoef(x[:, 0], y[:, 0])[0, 1] > 0.9


def test_bad_input_exits_2_with_one_line(tmp_path: Path):
    clip = tmp_path / "in.wav"
    save(clip, full_band_clip(seconds=0.5), 44100)
    cases = [
        (str(clip), "nosuch:32k", "unknown codec 'nosuch'"),
        (str(clip), "mp3:999k", "out of range for mp3"),
        (str(tmp_path / "missing.wav"), "mp3:64k", "no such audio file"),
    ]
    for path, spec, needle in cases:
        result = run("roundtrip", path, spec, "-o", str(tmp_path / "o.wav"))
        assert result.returncode == 2
        assert needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

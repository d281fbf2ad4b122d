"""The generated lossless corpus: real WAV files in the detector's format, full band, repeatable."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asc.codecs.measure import effective_bandwidth
from training.corpora.lossless_corpus import KINDS, PEAK, synth_track, write_lossless_corpus

RATE = 44100
SECONDS = 2.0
TRACKS = 6
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lossless")
    return write_lossless_corpus(out, TRACKS, seed=SEED, seconds=SECONDS, workers=1, progress=False)


def read_meta(root: Path) -> list[dict[str, str]]:
    with (root / "meta.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_files_are_stereo_44k1_16_bit_wav_of_the_asked_length(corpus: Path) -> None:
    names = sorted(p.name for p in (corpus / "audio").iterdir())
    assert names == [f"track-{i:05d}-{KINDS[i % 3]}.wav" for i in range(TRACKS)]
    for name in names:
        info = sf.info(corpus / "audio" / name)
        assert (info.format, info.subtype) == ("WAV", "PCM_16")
        assert (info.samplerate, info.channels, info.frames) == (RATE, 2, int(SECONDS * RATE))


def test_meta_lists_every_track_with_a_seed_that_rebuilds_it(corpus: Path) -> None:
    with (corpus / "meta.csv").open() as f:
        assert f.readline().strip() == "filename,kind,seed"
    rows = read_meta(corpus)
    assert [r["filename"] for r in rows] == [
        f"audio/track-{i:05d}-{KINDS[i % 3]}.wav" for i in range(TRACKS)
    ]
    assert {k: sum(r["kind"] == k for r in rows) for k in KINDS} == dict.fromkeys(KINDS, 2)
    assert len({r["seed"] for r in rows}) == TRACKS
    row = rows[4]
    rebuilt = synth_track(row["kind"], np.random.default_rng(int(row["seed"])), SECONDS)
    stored, _ = sf.read(corpus / row["filename"], dtype="float32")
    assert np.max(np.abs(stored - rebuilt)) <= 1.0 / 32768  # equal up to 16-bit rounding
    readme = (corpus / "README.txt").read_text()
    assert "generated" in readme.lower() and "meta.csv" in readme


def test_same_seed_same_corpus_whatever_the_workers(corpus: Path, tmp_path: Path) -> None:
    other = write_lossless_corpus(
        tmp_path / "two", TRACKS, seed=SEED, seconds=SECONDS, workers=2, progress=True
    )
    assert read_meta(other) == read_meta(corpus)
    for row in read_meta(corpus):
        assert (other / row["filename"]).read_bytes() == (corpus / row["filename"]).read_bytes()
    changed = write_lossless_corpus(
        tmp_path / "seed", 1, seed=SEED + 1, seconds=SECONDS, workers=1, progress=False
    )
    name = read_meta(corpus)[0]["filename"]
    assert (changed / name).read_bytes() != (corpus / name).read_bytes()


def test_every_kind_is_present_stereo_and_unclipped(corpus: Path) -> None:
    kinds = set()
    for row in read_meta(corpus):
        pcm, _ = sf.read(corpus / row["filename"], dtype="int16")
        kinds.add(row["kind"])
        peak = int(np.max(np.abs(pcm.astype(np.int32))))
        assert peak < 32767  # no sample at full scale: nothing clipped
        assert abs(peak / 32768 - PEAK) < 0.01  # peak-normalised to about -1 dBFS
        left, right = pcm.T.astype(np.float64)
        assert np.corrcoef(left, right)[0, 1] < 0.999  # real stereo, not two copies
    assert kinds == set(KINDS)


def test_music_is_full_band(corpus: Path) -> None:
    """Codecs cut at 16 to 20 kHz; the originals must have content up there to cut."""
    for row in read_meta(corpus):
        pcm, rate = sf.read(corpus / row["filename"], dtype="float32")
        floor = 18000 if row["kind"] == "music" else 15000
        assert effective_bandwidth(pcm, rate) > floor, row
    for seed in range(3):  # full-length tracks too, over several pieces
        music = synth_track("music", np.random.default_rng(seed))
        assert effective_bandwidth(music, RATE) > 18000


def test_kinds_have_their_own_character() -> None:
    rng = np.random.default_rng(3)
    speech = synth_track("speech", rng, seconds=6.0)
    frames = speech[: len(speech) // 882 * 882, 0].reshape(-1, 882)  # 20 ms frames
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    assert np.mean(level < level.max() - 30) > 0.05  # talk has pauses
    music = synth_track("music", rng, seconds=6.0)
    assert not np.array_equal(music, synth_track("music", np.random.default_rng(4), 6.0))


def test_a_ten_second_track_is_fast() -> None:
    synth_track("music", np.random.default_rng(0), seconds=1.0)  # warm caches and imports
    for kind in KINDS:
        start = time.perf_counter()
        synth_track(kind, np.random.default_rng(1))
        assert time.perf_counter() - start < 1.0, kind  # about 0.1 s on one core; slack for CI


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown kind 'noise'"):
        synth_track("noise", np.random.default_rng(0))
    with pytest.raises(ValueError, match="tracks must be at least 1"):
        write_lossless_corpus(tmp_path, 0)
    with pytest.raises(ValueError, match="seconds > 0"):
        synth_track("music", np.random.default_rng(0), seconds=0)

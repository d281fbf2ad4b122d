"""The synthetic scene corpus: TAU's layout and splits, determinism, and audio that is full-band.

Short clips keep this quick; the layout, the split rules and the byte-identity across worker
counts do not depend on clip length.
"""

import csv
import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asc.codecs.measure import effective_bandwidth, power_spectrum
from training.corpora import synth_clip, write_scene_corpus
from training.corpora.devices import EVAL_DEVICES, TRAIN_DEVICES
from training.corpora.scenes import FINE_CLASSES

RATE = 44100
SECONDS = 1.0
CLIPS_PER_CLASS = 6
SEED = 3


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, as a content hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    return write_scene_corpus(
        out, CLIPS_PER_CLASS, seed=SEED, seconds=SECONDS, workers=1, progress=False
    )


@pytest.fixture(scope="module")
def meta(corpus: Path) -> list[dict[str, str]]:
    return read_tsv(corpus / "meta.csv")


def test_layout_and_headers_follow_tau(corpus: Path, meta: list[dict[str, str]]):
    setup = corpus / "evaluation_setup"
    headers = {
        corpus / "meta.csv": "filename\tscene_label\tidentifier\tsource_label",
        setup / "fold1_train.csv": "filename\tscene_label",
        setup / "fold1_evaluate.csv": "filename\tscene_label",
        setup / "fold1_test.csv": "filename",
    }
    for path, header in headers.items():
        assert path.read_text().splitlines()[0] == header, path
    assert len(meta) == CLIPS_PER_CLASS * len(FINE_CLASSES)
    for row in meta:
        scene, city, location, segment, device = Path(row["filename"]).stem.split("-")
        assert row["filename"].startswith("audio/")
        assert (scene, device) == (row["scene_label"], row["source_label"])
        assert row["identifier"] == f"{city}-{location}"
        assert location.isdigit() and segment.isdigit()
    evaluate = read_tsv(setup / "fold1_evaluate.csv")
    test = read_tsv(setup / "fold1_test.csv")
    assert [r["filename"] for r in test] == [r["filename"] for r in evaluate]
    listed = read_tsv(setup / "fold1_train.csv") + evaluate
    assert sorted(r["filename"] for r in listed) == sorted(r["filename"] for r in meta)


def test_every_listed_file_is_44k1_16bit_mono_of_the_right_length(corpus: Path, meta):
    assert len(list((corpus / "audio").glob("*.wav"))) == len(meta)
    for row in meta:
        info = sf.info(corpus / row["filename"])
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        assert info.frames == int(SECONDS * RATE)


def test_readme_says_the_audio_is_generated(corpus: Path):
    text = (corpus / "README.txt").read_text()
    assert "GENERATED" in text and "not recorded" in text
    assert f"seed: {SEED}" in text and "generator version:" in text


def test_split_is_by_location_with_every_class_on_both_sides(corpus: Path, meta):
    setup = corpus / "evaluation_setup"
    train = {r["filename"] for r in read_tsv(setup / "fold1_train.csv")}
    evaluate = {r["filename"] for r in read_tsv(setup / "fold1_evaluate.csv")}
    assert not train & evaluate
    side = {}
    for row in meta:
        where = "train" if row["filename"] in train else "evaluate"
        assert side.setdefault(row["identifier"], where) == where, row["identifier"]
    for split in (train, evaluate):
        assert {r["scene_label"] for r in meta if r["filename"] in split} == set(FINE_CLASSES)
    assert 0.5 < len(train) / len(meta) < 0.85


def test_devices_as_in_tau(corpus: Path, meta):
    setup = corpus / "evaluation_setup"
    train = {r["filename"] for r in read_tsv(setup / "fold1_train.csv")}
    train_devices = Counter(r["source_label"] for r in meta if r["filename"] in train)
    eval_devices = Counter(r["source_label"] for r in meta if r["filename"] not in train)
    assert set(train_devices) <= set(TRAIN_DEVICES)
    assert train_devices.most_common(1)[0][0] == "a"
    assert set(eval_devices) <= set(EVAL_DEVICES)
    assert set(eval_devices) - set(TRAIN_DEVICES), "evaluation must hold unseen devices"


def test_same_seed_gives_the_same_bytes_with_any_worker_count(corpus: Path, tmp_path: Path):
    again = write_scene_corpus(
        tmp_path, CLIPS_PER_CLASS, seed=SEED, seconds=SECONDS, workers=2, progress=False
    )
    assert digests(again) == digests(corpus)


def test_different_seeds_give_different_audio(tmp_path: Path):
    first = write_scene_corpus(tmp_path / "1", 2, seed=1, seconds=0.5, workers=1, progress=False)
    second = write_scene_corpus(tmp_path / "2", 2, seed=2, seconds=0.5, workers=1, progress=False)
    audio = [{d for p, d in digests(c).items() if p.endswith(".wav")} for c in (first, second)]
    assert len(audio[0]) == 20 and not audio[0] & audio[1]


def test_recording_chains_are_band_limited_as_often_as_real_recordings():
    """About a fifth of real recordings arrive band-limited below 16.5 kHz (Kitchen20: 18.8 %,
    `asc-train corpus-stats`), the rest reach 19-22 kHz; the reference device's clips too."""
    rng = np.random.default_rng(11)
    widths = np.array(
        [
            effective_bandwidth(synth_clip(FINE_CLASSES[k % 10], "a", rng, seconds=1.0), RATE)
            for k in range(60)
        ]
    )
    assert 0.05 <= np.mean(widths < 16500) <= 0.4
    assert np.mean(widths > 19000) >= 0.4


def test_clip_contract_and_determinism():
    clip = synth_clip("tram", "s4", np.random.default_rng(5), seconds=1.5)
    assert clip.dtype == np.float32 and clip.shape == (int(1.5 * RATE),)
    assert np.all(np.isfinite(clip)) and np.max(np.abs(clip)) <= 1.0
    assert np.sqrt(np.mean(clip**2)) > 1e-3
    assert np.array_equal(clip, synth_clip("tram", "s4", np.random.default_rng(5), seconds=1.5))
    assert synth_clip("park", "b", np.random.default_rng(5), seconds=0.5, rate=16000).shape == (
        8000,
    )


def test_phone_device_rolls_off_the_top_band():
    """One seed renders one scene; only the device differs, as with TAU's parallel recordings."""
    ref = synth_clip("street_traffic", "a", np.random.default_rng(8), seconds=2.0)
    phone = synth_clip("street_traffic", "b", np.random.default_rng(8), seconds=2.0)

    def top_to_mid_db(x: np.ndarray) -> float:
        freqs, power = power_spectrum(x, RATE)
        top = power[freqs > 18000].mean()
        mid = power[(freqs > 1000) & (freqs < 4000)].mean()
        return float(10 * np.log10(top / mid))

    assert top_to_mid_db(phone) < top_to_mid_db(ref) - 6


def test_brightness_tilts_a_clip_and_stays_off_by_default():
    """--brightness draws a slope per clip (dB per octave around 1 kHz); off, it draws nothing
    from the clip's generator, so a clip rendered with (0, 0) equals one rendered without it."""

    def high_to_low_db(x: np.ndarray) -> float:
        freqs, power = power_spectrum(x, RATE)
        high = power[(freqs > 4000) & (freqs < 7000)].mean()
        low = power[(freqs > 250) & (freqs < 1000)].mean()
        return float(10 * np.log10(high / low))

    plain = synth_clip("park", "a", np.random.default_rng(3), seconds=2.0)
    same = synth_clip("park", "a", np.random.default_rng(3), seconds=2.0, brightness=(0.0, 0.0))
    assert np.array_equal(plain, same)
    bright = synth_clip("park", "a", np.random.default_rng(3), seconds=2.0, brightness=(3.0, 3.0))
    # 3 dB per octave over the ~3.5 octaves between the two bands' centres: about +10 dB
    assert high_to_low_db(bright) > high_to_low_db(plain) + 6


@pytest.mark.parametrize(
    ("value", "needle"), [("4,0", "needs LOW <= HIGH"), ("bright", "expected LOW,HIGH")]
)
def test_synth_refuses_a_bad_brightness_range(tmp_path: Path, value: str, needle: str):
    command = [sys.executable, "-m", "training.cli", "synth", "--out", str(tmp_path / "c")]
    result = subprocess.run(
        [*command, "--clips-per-class", "2", "--brightness", value],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and needle in result.stderr
    assert not (tmp_path / "c").exists()


def test_unknown_scene_or_device_is_refused():
    with pytest.raises(ValueError, match="unknown scene"):
        synth_clip("beach", "a", np.random.default_rng(0), seconds=0.5)
    with pytest.raises(ValueError, match="unknown device"):
        synth_clip("park", "z9", np.random.default_rng(0), seconds=0.5)

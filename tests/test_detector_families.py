"""The detector on every codec family: its training data (DEVICE_CODECS, Kitchen20's lossless
originals and why the others are left out), fit-detector over two folders, and
``asc-train experiment detector-families`` end to end on tiny data with real codecs.

Real recordings (Kitchen20) are read where they are; the tests that need them skip without them.
A Kitchen20-shaped folder made from generated tracks (one listed as an .mp3 upload) stands in
for it where only the layout matters.
"""

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from asc.audio import load as load_audio
from asc.checkpoint import load
from asc.codecs import mdct_frames, parse_spec, roundtrip, vorbis_lattice
from asc.codecs import mp3_trace as mp3_trace_module
from asc.codecs.grid_tests import join_detector, named_family, surer_call
from asc.codecs.mdct_trace import MIDPOINT as MDCT_MIDPOINT
from asc.codecs.mdct_trace import MdctTrace
from asc.codecs.measure import effective_bandwidth, measure_roundtrip
from asc.codecs.mp3_trace import MIDPOINT as MP3_MIDPOINT
from asc.codecs.mp3_trace import Mp3Trace
from asc.codecs.registry import CODEC_FAMILIES
from asc.codecs.sbc_trace import SbcTrace
from asc.codecs.vorbis_short_blocks import ShortBlockTrace
from tests.real_data import kitchen20_root
from tests.test_reports import asc_train, assert_png
from training.augment import canonical
from training.corpora import write_lossless_corpus
from training.detector_data import (
    DEVICE_CHAINS,
    DEVICE_CODECS,
    DEVICE_COMMON,
    DS1_CODECS,
    assign_codec_sets,
    assign_codecs,
    family_of,
)
from training.detector_sources import lossless_set
from training.experiments.detector_families_grid import (
    GRID_TESTS,
    _code_of,
    _imported_sources,
    grid_cache_path,
    grid_code_version,
    grid_scores,
)
from training.experiments.detector_families_scores import (
    ScoredFile,
    expected_calibration_error,
    f1_curve,
    reliability,
)
from training.kitchen20_lossless import (
    FALL_DB,
    MIN_BANDWIDTH_HZ,
    MIN_CLIFF_SHARE,
    FloorCliff,
    SteepFall,
    clip_measures,
    exclusion_reason,
    floor_cliff,
    kitchen20_lossless,
    steep_fall,
)
from training.report import RESULTS_SCHEMA

TINY_CODECS = "sbc:bitpool=35,aptx,mp3:128k,sbc:bitpool=53>aac:64k"

# --- Kitchen20's lossless originals ------------------------------------------------------------


def test_exclusion_reasons_name_the_extension_or_the_bandwidth():
    assert exclusion_reason("1__a__b.mp3", 22050, MIN_BANDWIDTH_HZ) == "lossy upload (.mp3)"
    assert exclusion_reason("1__a__b.M4A", 16200, MIN_BANDWIDTH_HZ) == "lossy upload (.m4a)"
    assert exclusion_reason("1__a__b.ogg", 22050, MIN_BANDWIDTH_HZ) == "lossy upload (.ogg)"
    assert exclusion_reason("1__a__b.wav", 15200, MIN_BANDWIDTH_HZ) == (
        "band-limited (15.2 kHz < 16.5 kHz)"
    )
    assert exclusion_reason("1__a__b.wav", 16500, MIN_BANDWIDTH_HZ) is None
    assert exclusion_reason("1__a__b.aiff", 22050, MIN_BANDWIDTH_HZ) is None
    cliff = FloorCliff(0.3, 18650.0)
    assert exclusion_reason("1__a__b.wav", 22050, MIN_BANDWIDTH_HZ, cliff) == (
        "cut to the 16-bit floor (30 % of frames, at 18.6 kHz)"
    )
    assert exclusion_reason("1__a__b.mp3", 22050, MIN_BANDWIDTH_HZ, cliff) == "lossy upload (.mp3)"
    assert exclusion_reason("1__a__b.wav", 22050, MIN_BANDWIDTH_HZ, FloorCliff(0.1, 18e3)) is None
    fall = SteepFall(69.4, 3790.0)
    assert exclusion_reason("1__a__b.wav", 22050, MIN_BANDWIDTH_HZ, fall=fall) == (
        "steep fall (69 dB within 1 kHz at 3.8 kHz)"
    )
    assert exclusion_reason("1__a__b.wav", 22050, MIN_BANDWIDTH_HZ, cliff, fall).startswith("cut")
    assert exclusion_reason("1__a__b.wav", 22050, MIN_BANDWIDTH_HZ, fall=SteepFall(29, 4e3)) is None


def sixteen_bit(x: np.ndarray) -> np.ndarray:
    return (np.round(x * 32767) / 32767).astype(np.float32)[:, None]


def test_a_cliff_onto_the_16_bit_floor_is_a_digital_lowpass_not_a_sounds_roll_off():
    """Noise with a gentle roll-off keeps its edge over the floor; the same noise through a
    brickwall at 18 kHz, or through MP3, falls onto the floor there; FLAC leaves it alone."""
    rate, n = 44100, 44100 * 3
    f = np.fft.rfftfreq(n, 1 / rate)
    spectrum = np.fft.rfft(np.random.default_rng(0).normal(0, 1, n)) / np.sqrt(1 + (f / 4000) ** 2)
    natural = np.fft.irfft(spectrum, n)
    natural *= 0.5 / np.abs(natural).max()
    assert floor_cliff(sixteen_bit(natural), rate) == FloorCliff(0.0, 0.0)
    brickwall = floor_cliff(sixteen_bit(np.fft.irfft(np.fft.rfft(natural) * (f < 18000), n)), rate)
    assert brickwall.share > 0.9 and 17800 < brickwall.hz < 18200, brickwall
    assert floor_cliff(roundtrip(sixteen_bit(natural), rate, "flac"), rate).share == 0.0
    mp3 = floor_cliff(sixteen_bit(roundtrip(sixteen_bit(natural), rate, "mp3:192k")[:, 0]), rate)
    assert mp3.share >= MIN_CLIFF_SHARE, mp3
    assert floor_cliff(sixteen_bit(natural[:1000]), rate) == FloorCliff(0.0, 0.0)  # too short


def test_a_steep_fall_of_the_mean_spectrum_is_a_lowpass_under_added_noise():
    """A band cut at 3.8 kHz (a recording made at 8 kHz) under noise 45 dB lower that rises
    towards Nyquist, as shaped dither does, keeps its full effective bandwidth yet falls steeply;
    a sound's gentle roll-off, loud tones in it, or a lowpass at the recorder's anti-alias edge
    do not count."""
    rate, n = 44100, 44100 * 3
    f = np.fft.rfftfreq(n, 1 / rate)
    rng = np.random.default_rng(1)
    natural = np.fft.irfft(np.fft.rfft(rng.normal(0, 1, n)) / np.sqrt(1 + (f / 4000) ** 2), n)
    natural *= 0.3 / np.abs(natural).max()
    gentle = steep_fall(sixteen_bit(natural), rate)
    assert gentle.db < 10, gentle
    cut = np.fft.irfft(np.fft.rfft(natural) * (f < 3800), n)
    dither = np.fft.irfft(np.fft.rfft(rng.normal(0, 1, n)) * (f / 22050), n)
    dither *= np.sqrt(np.mean(cut**2)) / np.sqrt(np.mean(dither**2)) * 10 ** (-45 / 20)
    shaped = sixteen_bit(cut + dither)
    assert (
        effective_bandwidth(shaped, rate, 60.0) > MIN_BANDWIDTH_HZ
    )  # the bandwidth rule passes it
    fall = steep_fall(shaped, rate)
    assert fall.db >= FALL_DB and 3500 < fall.hz < 4100, fall
    tones = natural + sum(0.05 * np.sin(2 * np.pi * k * 1000 * np.arange(n) / rate) for k in (5, 9))
    assert steep_fall(sixteen_bit(tones), rate).db < FALL_DB
    anti_alias = np.fft.irfft(np.fft.rfft(natural) * (f < 21000), n)
    assert steep_fall(sixteen_bit(anti_alias), rate).db < FALL_DB  # above 20.05 kHz: not looked at
    assert steep_fall(sixteen_bit(natural[:1000]), rate) == SteepFall(0.0, 0.0)  # too short


def test_no_generated_lossless_track_falls_steeply(tmp_path):
    corpus = write_lossless_corpus(tmp_path, 40, seed=0, seconds=5.0, workers=1, progress=False)
    tracks = sorted(Path(corpus).rglob("*.wav"))
    assert len(tracks) == 40
    assert all(steep_fall(*load_audio(t)).db < FALL_DB for t in tracks)


def test_kitchen20_lossless_originals_and_exclusions():
    root = kitchen20_root()
    kept, excluded = kitchen20_lossless(root)
    with open(root / "meta.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(kept) + len(excluded) == len(rows)
    lossy = [e for e in excluded if e.reason.startswith("lossy upload")]
    assert Counter(Path(e.upload).suffix for e in lossy) == {".mp3": 21, ".m4a": 5, ".ogg": 5}
    for e in lossy:
        if e.upload.endswith(".m4a"):  # AAC's lowpass, left in the FLAC
            assert 15800 < e.bandwidth_hz < 16500, e
    limited = [e for e in excluded if e.reason.startswith("band-limited")]
    assert all(e.bandwidth_hz < MIN_BANDWIDTH_HZ for e in limited)
    cut = {e.filename.split("/")[-1] for e in excluded if e.reason.startswith("cut to the 16-bit")}
    assert "3-27367-A-3.flac" in cut and "1-27365-A-15.flac" not in cut  # the uploader's two
    assert len(cut) == 7, cut
    mp3 = [r["filename"] for r in rows if r["freesound_file"].lower().endswith(".mp3")]
    found = sum(clip_measures(root / name)[1].share >= MIN_CLIFF_SHARE for name in mp3)
    assert found == 17 and len(mp3) == 21  # the .mp3 uploads, by their audio alone
    fell = {e.filename.split("/")[-1]: e.reason for e in excluded if e.reason.startswith("steep")}
    assert len(fell) == 12 and all(name.endswith(".flac") for name in fell), fell
    assert "3.8 kHz" in fell["3-318615-A-13.flac"] and "3.8 kHz" in fell["3-318615-B-13.flac"]
    assert all(e.upload.endswith(".wav") for e in excluded if e.reason.startswith("steep"))
    lossy_uploads = [
        r for r in rows if Path(r["freesound_file"].lower()).suffix in (".mp3", ".m4a")
    ]
    falls = [clip_measures(root / r["filename"])[2].db >= FALL_DB for r in lossy_uploads]
    assert sum(falls) == 21 and len(falls) == 26  # 16 of the .mp3 and all 5 .m4a uploads
    carried = {
        e.filename.split("/")[-1]: e.reason for e in excluded if e.reason.startswith("upload")
    }
    assert set(carried) == {"1-182861-A-16.flac", "0-144185-A-18.flac"}, carried
    assert "0-144185-B-18: steep fall" in carried["0-144185-A-18.flac"]
    lowpassed = {e.upload for e in excluded if e.reason.startswith(("cut to", "steep"))}
    assert not any(c.upload in lowpassed for c in kept)  # a lowpass found in one cut carries
    limited_uploads = {e.upload for e in limited}
    assert sum(c.upload in limited_uploads for c in kept) == 19  # loud cuts of quiet-cut files
    assert all(c.bandwidth_hz >= MIN_BANDWIDTH_HZ for c in kept)
    assert not any(Path(c.upload).suffix in (".mp3", ".m4a", ".ogg") for c in kept)
    wav = [r for r in rows if r["freesound_file"].endswith(".wav")]
    limited_wav = [e for e in limited if e.upload.endswith(".wav")]
    assert 0.15 < len(limited_wav) / len(wav) < 0.21  # about 18 % of the .wav uploads


def test_kitchen20_splits_by_recording_about_70_10_20():
    root = kitchen20_root()
    found = lossless_set([root], seed=0)
    recordings = {
        split: {found.recording[t] for t in tracks} for split, tracks in found.splits.items()
    }
    assert not recordings["train"] & recordings["test"]
    assert not recordings["train"] & recordings["val"]
    assert not recordings["val"] & recordings["test"]
    shares = {k: len(v) / len(found.tracks) for k, v in found.splits.items()}
    assert 0.6 < shares["train"] < 0.8 and 0.05 < shares["val"] < 0.15, shares
    assert 0.15 < shares["test"] < 0.25, shares
    other = lossless_set([root], seed=1)
    assert other.splits["test"] != found.splits["test"]  # the seed draws another split


# --- the codec set ----------------------------------------------------------------------------


def test_device_codecs_cover_every_family_and_encode_here():
    assert {family_of(s) for s in DEVICE_CODECS} == set(CODEC_FAMILIES) - {"lossless"}
    assert set(DEVICE_COMMON) == set(CODEC_FAMILIES) - {"lossless"}
    assert len(set(DEVICE_CODECS)) == len(DEVICE_CODECS)
    assert {parse_spec(c).stages[0].name for c in DEVICE_CODECS} >= {"aac", "fdk-aac"}
    assert [family_of(c) for c in DEVICE_CHAINS] == ["aac", "mp3"]
    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.standard_normal((22050, 2))).astype(np.float32)
    for spec in DEVICE_CODECS:
        assert canonical(spec) == spec, spec  # the spelling the cache and reports key on
        report = measure_roundtrip(pcm, 44100, spec)  # the real engine, as training codes
        assert len(report.decoded) == len(pcm), spec
        assert report.payload_bytes > 0 and np.isfinite(report.snr_db), spec
        assert not np.array_equal(report.decoded, pcm), spec


def test_codec_sets_keep_ds1_and_balance_families():
    tracks = [Path(f"t{i}.wav") for i in range(3000)]
    ds1 = assign_codec_sets(tracks, list(DS1_CODECS), 1, seed=3)
    assert ds1 == {t: (s,) for t, s in assign_codecs(tracks, list(DS1_CODECS), 3).items()}
    sets = assign_codec_sets(tracks, list(DEVICE_CODECS), 3, seed=3)
    assert all(len(set(s)) == 3 for s in sets.values())
    families = Counter(family_of(s) for chosen in sets.values() for s in chosen)
    expected = 3 * len(tracks) / len(DEVICE_COMMON)
    for family, n in families.items():
        assert abs(n - expected) < 0.2 * expected, (family, n, expected)


# --- the report's arithmetic ------------------------------------------------------------------


def test_expected_calibration_error_by_hand():
    scores = np.array([0.05, 0.15, 0.95, 0.85, 0.55])
    lossy = np.array([0, 0, 1, 1, 0])
    # one file per bin: |0 - 0.05|, |0 - 0.15|, |1 - 0.95|, |1 - 0.85|, |0 - 0.55|, each a fifth
    assert expected_calibration_error(scores, lossy) == pytest.approx(0.19)
    # two files in one bin: mean probability 0.65, half truly lossy
    assert expected_calibration_error(np.array([0.61, 0.69]), np.array([1, 0])) == (
        pytest.approx(0.15)
    )
    # calibrated: ten files at 0.3, three of them lossy
    assert expected_calibration_error(np.full(10, 0.3), np.array([1] * 3 + [0] * 7)) == (
        pytest.approx(0.0)
    )
    bins = reliability(np.array([1.0, 0.0]), np.array([1, 0]))
    assert bins[-1]["files"] == 1 and bins[0]["files"] == 1  # 1.0 falls in the last bin


def test_f1_curve_by_hand():
    curve = f1_curve(np.array([0.9, 0.6, 0.2]), np.array([0.1, 0.7]))
    # at 0.5: tp 2, fn 1, fp 1 -> 4 / 6
    assert curve[49] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1), abs=1e-4)


# --- fit-detector on two folders, then the report ---------------------------------------------


def kitchen20_shaped(corpus: Path, out: Path) -> Path:
    """Generated tracks laid out as Kitchen20's meta.csv: two clips per recording, two classes,
    the last recording listed as an .mp3 upload."""
    with open(corpus / "meta.csv", newline="") as f:
        names = [r["filename"] for r in csv.DictReader(f)]
    rows = []
    for i, name in enumerate(names):
        label = ("blender", "kettle")[i % 2]
        target = out / "audio" / label / f"{i}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / name, target)
        recording = str(100 + i // 2)
        upload = f"{recording}__someone__clip.{'mp3' if i >= len(names) - 2 else 'wav'}"
        rows.append([f"audio/{label}/{i}.wav", label, recording, upload])
    with open(out / "meta.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label", "source_id", "freesound_file"])
        writer.writerows(rows)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("families")
    corpus = write_lossless_corpus(root / "lossless", 10, seed=7, seconds=2.5, workers=1)
    real = kitchen20_shaped(
        write_lossless_corpus(root / "other", 16, seed=8, seconds=2.5, workers=1), root / "k20"
    )
    checkpoint = root / "detector.safetensors"
    common = ("--cache-dir", str(root / "cache"), "--workers", "2", "--device", "cpu")
    asc_train(
        "fit-detector",
        *("--data", str(corpus), str(real), "--codecs", TINY_CODECS, "--copies-per-track", "2"),
        *("--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "4", "--out", str(checkpoint)),
        *common,
    )
    out = root / "report"
    printed = asc_train(
        "experiment",
        "detector-families",
        *("--checkpoint", str(checkpoint), "--data", str(corpus), str(real), "--out", str(out)),
        *("--codecs", TINY_CODECS),
        *common,
    ).stdout
    return {"checkpoint": checkpoint, "out": out, "printed": printed, "real": real}


def test_fit_detector_takes_two_folders(tiny):
    checkpoint = load(tiny["checkpoint"], expect_kind="lossy_detector")
    extra = checkpoint.extra
    assert extra["tracks_per_source"] == {"generated": 10, "kitchen20": 14}
    assert extra["excluded"] == {"lossy upload .mp3": 2}
    assert extra["copies_per_track"] == 2 and len(extra["data"]) == 2
    assert sum(extra["splits"].values()) == 24
    assert checkpoint.codec_conditions == TINY_CODECS.split(",")


def test_report_tables_follow_from_the_file_scores(tiny):
    results = json.loads((tiny["out"] / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["same_tracks_as_training"] is True
    assert set(results["sources"]) == {"generated", "kitchen20"}
    assert results["excluded"] == {"lossy upload .mp3": 2}
    with open(tiny["out"] / "files.csv", newline="") as f:
        files = list(csv.DictReader(f))
    for name, source in results["sources"].items():
        rows = [r for r in files if r["source"] == name]
        assert len(rows) == source["files"] == 5 * source["tracks"]
        for setting in source["settings"]:
            group = [r for r in rows if r["path"] == setting["path"]]
            lossy = np.mean([float(r["score"]) >= 0.5 for r in group])
            assert setting["called_lossy"] == pytest.approx(lossy)
            named = np.mean([r["family_guess"] == r["family"] for r in group])
            assert setting["family_named"] == pytest.approx(named)
        assert np.sum(source["confusion"]) == len(rows)
        coded = [r for r in rows if r["path"] != "none"]
        assert all(r["noise_below_db"] == "" for r in rows if r["path"] == "none")
        below = np.array([float(r["noise_below_db"]) for r in coded])
        assert np.all(np.isfinite(below)) and np.all(
            np.isfinite([float(r["noise_above_db"]) for r in coded])
        )
        assert sum(b["files"] for b in source["noise_bins"]) == len(coded)
        for b in source["noise_bins"]:
            low = -np.inf if b["low_db"] is None else b["low_db"]
            high = np.inf if b["high_db"] is None else b["high_db"]
            inside = [
                float(r["score"]) >= 0.5
                for r, v in zip(coded, below, strict=True)
                if low <= v < high
            ]
            assert b["files"] == len(inside)
            if inside:
                assert b["called_lossy"] == pytest.approx(np.mean(inside))
        assert source["false_alarm"] == pytest.approx(
            np.mean([float(r["score"]) >= 0.5 for r in rows if r["path"] == "none"])
        )
        assert set(source["families"]) == {"sbc", "aptx", "mp3", "aac"}
        assert source["families"]["aac"]["settings"] == "all"  # its only path is a chain
        goals = {(g["family"], g["goal"]) for g in source["goals"]}
        assert ("lossless", "false_alarm") in goals and ("sbc", "called_lossy") in goals
        for g in source["goals"]:
            assert g["met"] == (g["short_by"] is None)
        assert 0.0 <= source["calibration"]["ece"] <= 1.0
        assert sum(b["files"] for b in source["calibration"]["bins"]) == len(rows)
    assert results["paths"] == results["sources"]["kitchen20"]["settings"]


def test_report_writes_every_table_and_plot(tiny):
    out = tiny["out"]
    readme = (out / "README.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert "asc-train experiment detector-families --checkpoint" in readme
    headings = ("## generated", "## kitchen20", "## F1 against threshold", "## Calibration")
    for heading in (*headings, "## Coding noise against the recording's own floor"):
        assert heading in readme
    assert "## Saliency" in readme and "## Kitchen20 clips kept off the lossless side" in readme
    assert "lossy upload (.mp3)" in readme
    for p in results["paths"]:
        assert f"`{p['path']}`" in readme and f"{p['accuracy']:.3f}" in readme
    for name in (
        "reliability",
        "f1_vs_threshold",
        "noise_vs_floor",
        "saliency-sbc",
        "saliency-aptx",
    ):
        assert_png(out / f"{name}.png")
        assert f"({name}.png)" in readme
    for source in ("generated", "kitchen20"):
        assert_png(out / f"confusion-{source}.png")
        assert_png(out / f"families-{source}.png")
    with open(out / "exclusions.csv", newline="") as f:
        assert [r["reason"] for r in csv.DictReader(f)] == ["lossy upload (.mp3)"] * 2
    assert "goals met" in tiny["printed"]


def test_grid_results_are_kept_by_the_files_bytes(tmp_path):
    """A report run again takes each file's grid tests from the cache, exactly as tested; a
    file with other bytes is tested afresh, and so is an entry a stopped run left broken."""
    rate = 44100
    noise = np.random.default_rng(3).normal(0, 0.1, (rate * 3, 1)).astype(np.float32)
    coded = tmp_path / "coded.wav"
    sf.write(coded, roundtrip(noise, rate, "aac:128k"), rate, subtype="FLOAT")
    cache = tmp_path / "grid"

    def scored() -> ScoredFile:
        return ScoredFile("generated", coded, "aac:128k", "aac", True, coded)

    first, again = scored(), scored()
    grid_scores([first], workers=1, progress=False, cache_dir=cache)
    kept = grid_cache_path(cache, coded, "mdct")
    assert kept.is_file() and first.grid is not None and first.grid.family == "aac"
    assert len({grid_cache_path(cache, coded, test) for test in GRID_TESTS}) == len(GRID_TESTS)
    grid_scores([again], workers=1, progress=False, cache_dir=cache)
    assert (again.grid, again.mdct_lattice) == (first.grid, first.mdct_lattice)
    kept.write_bytes(kept.read_bytes()[:10])  # a run stopped mid-write
    grid_scores([again], workers=1, progress=False, cache_dir=cache)
    assert (again.grid, again.mdct_lattice) == (first.grid, first.mdct_lattice)
    sf.write(coded, noise, rate, subtype="FLOAT")  # other bytes: another key, tested afresh
    assert grid_cache_path(cache, coded, "mdct") != kept
    grid_scores([again], workers=1, progress=False, cache_dir=cache)
    assert again.grid is not None and again.grid.probability < 0.5


def test_each_grid_test_is_kept_under_its_own_code():
    """A grid test's kept results depend on the code it runs and no other test's: a change to
    the MP3 test leaves the SBC and MDCT tests' results kept."""
    mp3, vorbis = Path(mp3_trace_module.__file__), Path(vorbis_lattice.__file__)
    frames = Path(mdct_frames.__file__)  # the lattice statistics both MDCT-like tests share
    assert {mp3, frames} <= _imported_sources("asc.codecs.mp3_trace")
    assert {vorbis, frames} <= _imported_sources("asc.codecs.mdct_trace")
    for other in ("asc.codecs.sbc_trace", "asc.codecs.mdct_trace"):
        assert mp3 not in _imported_sources(other)
    assert vorbis not in _imported_sources("asc.codecs.mp3_trace")
    assert len({grid_code_version(test) for test in GRID_TESTS}) == len(GRID_TESTS)


def test_a_grid_tests_prose_keeps_its_results(tmp_path):
    """Docstrings and comments are not the code a result depends on; a changed line is."""
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Why."""\nimport x  # a note\n\n\ndef f():\n    """Not."""\n    return 1\n')
    b.write_text('"""Why, said again."""\nimport x\n\n\ndef f():\n    return 1  # another\n')
    c.write_text('"""Why."""\nimport x\n\n\ndef f():\n    """Not."""\n    return 2\n')
    assert _code_of(a) == _code_of(b) != _code_of(c)


def test_the_grid_tests_join_the_network(tiny):
    """Each file's score is the surer of network and grid tests, the surer test names its
    family, and the network's own figures are kept beside the joined ones."""
    results = json.loads((tiny["out"] / "results.json").read_text())
    assert results["grid_tests"] is True
    with open(tiny["out"] / "files.csv", newline="") as f:
        files = list(csv.DictReader(f))
    for r in files:
        sbc = SbcTrace(float(r["sbc_contrast_db"]), 53, 0)
        excess, lattice = float(r["mdct_excess"] or 0), float(r["mdct_lattice"] or 0)
        vorbis = float(r["mdct_vorbis_lattice"] or 0)
        mdct = MdctTrace(r["mdct_family"] or None, excess, 0, lattice, vorbis)
        tested = r["mp3_excess"] != ""
        mp3 = Mp3Trace(float(r["mp3_excess"] or 0), 0, float(r["mp3_lattice"] or 0), tested)
        tested = r["vorbis_short_lattice"] != ""
        short = ShortBlockTrace(float(r["vorbis_short_lattice"] or 0), 0, tested)
        call = surer_call(sbc, mdct, mp3, short)
        assert call is not None
        grid = call.probability
        assert float(r["score"]) == pytest.approx(max(float(r["network_score"]), grid), abs=1e-4)
        network = np.array([float(p) for p in r["network_families"].split()])
        lossy, families = join_detector(float(r["network_score"]), network, call)
        assert r["family_guess"] == named_family(lossy, families)
        if grid >= 0.5:
            assert r["family_guess"] == call.family  # a sure grid names its family
        assert (r["family_guess"] == "lossless") == (float(r["score"]) < 0.5)  # never contradicts
        assert (r["network_guess"] == "lossless") == (float(r["network_score"]) < 0.5)
    # real codecs on generated and Kitchen20-shaped tracks: SBC copies carry SBC's grid, copies
    # whose last hop is AAC carry AAC's, and no original carries either
    originals = [r for r in files if r["path"] == "none"]
    sbc = [float(r["sbc_contrast_db"]) for r in files if r["path"] == "sbc:bitpool=35"]
    assert max(float(r["sbc_contrast_db"]) for r in originals) < 0.6 < min(sbc)
    assert max(float(r["mdct_excess"]) for r in originals) < MDCT_MIDPOINT
    assert max(float(r["mdct_lattice"]) for r in originals) < MDCT_MIDPOINT
    assert max(float(r["mdct_vorbis_lattice"]) for r in originals) < MDCT_MIDPOINT
    assert max(float(r["mp3_excess"]) for r in originals) < MP3_MIDPOINT
    assert max(float(r["mp3_lattice"]) for r in originals) < MP3_MIDPOINT
    assert max(float(r["vorbis_short_lattice"]) for r in originals) < MDCT_MIDPOINT
    aac = [r for r in files if r["path"] == "sbc:bitpool=53>aac:64k"]
    found = [r for r in aac if r["mdct_family"] == "aac" and float(r["mdct_excess"]) > 20]
    assert len(found) >= len(aac) / 2, [(r["mdct_family"], r["mdct_excess"]) for r in aac]
    mp3 = [r for r in files if r["path"] == "mp3:128k"]
    found = [r for r in mp3 if float(r["mp3_excess"] or 0) > MP3_MIDPOINT]
    assert len(found) >= len(mp3) / 2, [r["mp3_excess"] for r in mp3]
    for source in results["sources"].values():
        alone = source["network_alone"]
        assert set(alone["families"]) == set(source["families"])
        assert 0.0 <= alone["false_alarm"] <= 1.0
        assert alone["false_alarm"] <= source["false_alarm"]  # the tests only ever add calls
    readme = (tiny["out"] / "README.md").read_text()
    assert "with grid tests" in readme

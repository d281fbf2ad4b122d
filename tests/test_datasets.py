"""Dataset loaders on small generated copies of each real layout, written to a temp dir."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asc.audio import save
from training.datasets import (
    ESC50_COARSE,
    TAU_CLASSES,
    DatasetError,
    SceneDataset,
    load_dataset,
)

RATE = 16000
TAU_DEVICES = ("a", "b", "s1")


def write_wav(path: Path, seed: int = 0) -> None:
    """0.1 s of quiet noise; the loaders only care that a file is there."""
    rng = np.random.default_rng(seed)
    save(path, (0.1 * rng.standard_normal((RATE // 10, 1))).astype(np.float32), RATE)


def write_tsv(path: Path, header: list[str], rows: list[list[str]], sep: str = "\t") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n")


# --- TAU 2020 Mobile ----------------------------------------------------------------------


def make_tau(root: Path) -> Path:
    """Three clips per class (devices a, b, s1); the s1 clip of each class is in evaluate."""
    meta, train, evaluate = [], [], []
    for i, label in enumerate(TAU_CLASSES):
        for device in TAU_DEVICES:
            name = f"audio/{label}-barcelona-{i}-0-{device}.wav"
            write_wav(root / name, i)
            meta.append([name, label, f"barcelona-{i}", device])
            (evaluate if device == "s1" else train).append([name, label])
    write_tsv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    setup = root / "evaluation_setup"
    write_tsv(setup / "fold1_train.csv", ["filename", "scene_label"], train)
    write_tsv(setup / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    return root


def test_tau_classes_coarse_map_splits_and_devices(tmp_path: Path) -> None:
    ds = load_dataset(make_tau(tmp_path))
    assert ds.name == "tau2020mobile"
    assert ds.fine_classes == TAU_CLASSES
    assert ds.coarse_classes == ["indoor", "outdoor", "transportation"]
    assert ds.coarse_of == [0, 2, 2, 0, 1, 1, 0, 1, 1, 2]
    assert ds.coarse_label("metro_station") == "indoor"
    assert ds.coarse_label("tram") == "transportation"
    assert ds.label_index("park") == 4
    assert len(ds.split("train")) == 20 and len(ds.split("test")) == 10
    assert {c.device for c in ds.split("test")} == {"s1"}
    assert {c.device for c in ds.split("train")} == {"a", "b"}
    assert all(c.path.is_file() for c in ds.clips)
    assert "tau2020mobile" in ds.summary() and "20 train" in ds.summary()


def test_tau_device_falls_back_to_the_filename(tmp_path: Path) -> None:
    root = make_tau(tmp_path)
    write_tsv(root / "meta.csv", ["filename", "scene_label"], [])  # no source_label column
    assert {c.device for c in load_dataset(root).clips} == set(TAU_DEVICES)


def _drop_fold_file(root: Path) -> None:
    (root / "evaluation_setup" / "fold1_evaluate.csv").unlink()


def _drop_audio(root: Path) -> None:
    (root / "audio" / "bus-barcelona-1-0-a.wav").unlink()


def _unknown_label(root: Path) -> None:
    rows = [["audio/airport-barcelona-0-0-a.wav", "beach"]]
    write_tsv(root / "evaluation_setup" / "fold1_train.csv", ["filename", "scene_label"], rows)


def _drop_column(root: Path) -> None:
    write_tsv(root / "evaluation_setup" / "fold1_train.csv", ["filename"], [])


def _drop_tram(root: Path) -> None:
    for path in (root / "evaluation_setup").glob("fold1_*.csv"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if "\ttram" not in line))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_drop_fold_file, r"fold1_evaluate\.csv: fold file missing"),
        (_drop_audio, r"do not exist: audio/bus-barcelona-1-0-a\.wav"),
        (_unknown_label, r"fold1_train\.csv: unknown scene label 'beach' on line 2"),
        (_drop_column, r"fold1_train\.csv: missing column\(s\) scene_label"),
        (_drop_tram, r"no clips for class\(es\) tram"),
    ],
)
def test_tau_errors_name_the_file_and_the_problem(
    tmp_path: Path, edit: Callable[[Path], None], match: str
) -> None:
    root = make_tau(tmp_path)
    edit(root)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(root)
    assert str(tmp_path) in str(info.value)


def test_tau_missing_fold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"fold2_train\.csv: fold file missing"):
        load_dataset(make_tau(tmp_path), fold=2)


def test_tau_without_evaluation_setup_is_not_mistaken_for_folders(tmp_path: Path) -> None:
    root = make_tau(tmp_path)
    for f in (root / "evaluation_setup").iterdir():
        f.unlink()
    (root / "evaluation_setup").rmdir()
    with pytest.raises(DatasetError, match="evaluation_setup: missing"):
        load_dataset(root)


# --- ESC-50 -------------------------------------------------------------------------------

ESC_CATEGORIES = {0: "dog", 1: "rooster", 10: "rain", 20: "crying_baby", 30: "door_wood_knock"}
ESC_CATEGORIES |= {40: "helicopter"}


def make_esc50(root: Path) -> Path:
    """One clip per (category, fold): 6 categories over all five coarse groups."""
    rows = []
    for target, category in ESC_CATEGORIES.items():
        for fold in range(1, 6):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            write_wav(root / "audio" / name, target)
            rows.append([name, str(fold), str(target), category, "False", str(100 + target), "A"])
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    write_tsv(root / "meta" / "esc50.csv", header, rows, sep=",")
    return root


def test_esc50_classes_by_target_and_the_five_groups(tmp_path: Path) -> None:
    ds = load_dataset(make_esc50(tmp_path), fold=3)
    assert ds.name == "esc50"
    assert ds.fine_classes == list(ESC_CATEGORIES.values())
    assert ds.coarse_classes == ESC50_COARSE
    assert ds.coarse_of == [0, 0, 1, 2, 3, 4]
    assert ds.coarse_label("helicopter") == "exterior_urban"
    test = ds.split("test")
    assert len(test) == 6 and all(c.path.name.startswith("3-") for c in test)
    assert len(ds.split("train")) == 24
    assert all(c.device == "" for c in ds.clips)


@pytest.mark.parametrize("fold", [0, 6, -1])
def test_esc50_invalid_fold(tmp_path: Path, fold: int) -> None:
    with pytest.raises(DatasetError, match="invalid fold"):
        load_dataset(make_esc50(tmp_path), fold=fold)


def test_esc50_missing_audio_and_missing_column(tmp_path: Path) -> None:
    root = make_esc50(tmp_path)
    for name in ("1-100-A-0.wav", "2-100-A-0.wav"):
        (root / "audio" / name).unlink()
    with pytest.raises(DatasetError, match=r"2 listed audio file\(s\) do not exist: 1-100-A-0"):
        load_dataset(root)
    write_tsv(root / "meta" / "esc50.csv", ["filename", "fold", "category"], [], sep=",")
    with pytest.raises(DatasetError, match=r"esc50\.csv: missing column\(s\) target"):
        load_dataset(root)


def test_esc50_inconsistent_category_is_an_unknown_label(tmp_path: Path) -> None:
    root = make_esc50(tmp_path)
    csv_path = root / "meta" / "esc50.csv"
    csv_path.write_text(
        csv_path.read_text().replace("2-100-A-0.wav,2,0,dog", "2-100-A-0.wav,2,0,cat")
    )
    with pytest.raises(DatasetError, match="unknown scene label 'cat'"):
        load_dataset(root)


# --- one folder per class -----------------------------------------------------------------

FOLDER_CLASSES = {"birds": 7, "cafe": 6, "traffic": 1, "train_station": 5}


def make_folder(root: Path) -> Path:
    for cls, count in FOLDER_CLASSES.items():
        for i in range(count):
            ext = ".WAV" if i == 1 else ".wav"  # extensions match case-insensitively
            write_wav(root / cls / f"{cls}-{i:02d}{ext}", i)
        (root / cls / "notes.txt").write_text("not audio")
    (root / ".cache" / "x").mkdir(parents=True)
    write_wav(root / ".cache" / "x" / "hidden.wav")
    write_wav(root / "birds" / ".trash" / "old.wav")
    return root


def test_folder_classes_default_coarse_and_hash_split(tmp_path: Path) -> None:
    ds = load_dataset(make_folder(tmp_path), fold=4)  # folders have no folds: fold is ignored
    assert ds.name == "folder"
    assert ds.fine_classes == sorted(FOLDER_CLASSES)
    assert ds.coarse_classes == ["all"] and ds.coarse_of == [0, 0, 0, 0]
    assert len(ds.clips) == sum(FOLDER_CLASSES.values())
    assert not any(".trash" in str(c.path) or c.path.suffix == ".txt" for c in ds.clips)
    for cls, count in FOLDER_CLASSES.items():
        splits = [c.split for c in ds.clips if c.label == cls]
        assert "train" in splits
        assert count < 2 or "test" in splits
    for cls in FOLDER_CLASSES:  # where no guarantee had to step in, the hash rule decides
        own = [c for c in ds.clips if c.label == cls]
        by_hash = [_hash_split(c.path.relative_to(ds.root).as_posix()) for c in own]
        if "train" in by_hash and ("test" in by_hash or len(own) < 2):
            assert [c.split for c in own] == by_hash


def _hash_split(rel: str) -> str:
    return "test" if int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"


def test_folder_split_is_stable_when_files_are_added(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    before = {c.path: c.split for c in load_dataset(root).clips if c.label == "birds"}
    for i in range(20, 40):
        write_wav(root / "birds" / f"birds-{i:02d}.wav", i)
    after = {c.path: c.split for c in load_dataset(root).clips}
    changed = [p for p, s in before.items() if after[p] != s]
    assert len(changed) <= 2  # only the per-class guarantees may move a file


def test_folder_coarse_map_and_split_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    rows = [["birds", "outdoor"], ["traffic", "outdoor"], ["cafe", "indoor"]]
    write_tsv(root / "coarse_map.csv", ["class", "coarse"], rows, sep=",")
    with pytest.raises(DatasetError, match=r"coarse_map\.csv: no coarse group for.*train_station"):
        load_dataset(root)
    rows += [["train_station", "transport"], ["forest", "outdoor"]]
    write_tsv(root / "coarse_map.csv", ["class", "coarse"], rows, sep=",")
    with pytest.raises(DatasetError, match=r"unknown class.*forest"):
        load_dataset(root)
    write_tsv(root / "coarse_map.csv", ["class", "coarse"], rows[:-1], sep=",")
    files = sorted(c.path.relative_to(root).as_posix() for c in load_dataset(root).clips)
    split_rows = [[f, "test" if f.startswith("cafe") else "train"] for f in files]
    write_tsv(root / "split.csv", ["path", "split"], split_rows, sep=",")
    ds = load_dataset(root)
    assert ds.coarse_classes == ["indoor", "outdoor", "transport"]
    assert ds.coarse_of == [1, 0, 1, 2]
    assert {c.label for c in ds.split("test")} == {"cafe"}
    write_tsv(
        root / "split.csv", ["path", "split"], [*split_rows, ["cafe/gone.wav", "test"]], sep=","
    )
    with pytest.raises(DatasetError, match=r"do not exist: cafe/gone\.wav"):
        load_dataset(root)
    write_tsv(root / "split.csv", ["path", "split"], split_rows[1:], sep=",")
    with pytest.raises(DatasetError, match=r"split\.csv: no split for 1 file"):
        load_dataset(root)
    write_tsv(root / "split.csv", ["path", "split"], [[files[0], "validation"]], sep=",")
    with pytest.raises(DatasetError, match="'validation' on line 2"):
        load_dataset(root)


def test_folder_class_without_files_and_no_audio_at_all(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "a")
    (root / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no audio files: empty_class"):
        load_dataset(root)
    bare = tmp_path / "b"
    (bare / "docs").mkdir(parents=True)
    (bare / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no audio files"):
        load_dataset(bare)
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetError, match="no recognised layout"):
        load_dataset(tmp_path / "c")


def test_missing_root_and_bad_fold(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset directory") as info:
        load_dataset(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    with pytest.raises(DatasetError, match="invalid fold"):
        load_dataset(make_folder(tmp_path / "f"), fold=0)


# --- fingerprint and the dataset type -----------------------------------------------------


def test_fingerprint_is_stable_and_follows_the_data(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "one")
    first = load_dataset(root).fingerprint()
    assert len(first) == 64 and first == load_dataset(root).fingerprint()
    assert load_dataset(make_folder(tmp_path / "two")).fingerprint() == first  # moved copy
    write_wav(root / "cafe" / "cafe-00.wav", 99)  # same size, same list: unchanged
    assert load_dataset(root).fingerprint() == first
    save(root / "cafe" / "cafe-00.wav", np.zeros((RATE // 5, 1), np.float32), RATE)
    resized = load_dataset(root).fingerprint()
    assert resized != first
    write_wav(root / "cafe" / "cafe-99.wav")
    assert load_dataset(root).fingerprint() not in (first, resized)


def test_fingerprint_follows_the_split(tmp_path: Path) -> None:
    root = make_tau(tmp_path)
    assert load_dataset(root).fingerprint() != _swap_tau_folds(root).fingerprint()


def _swap_tau_folds(root: Path) -> SceneDataset:
    setup = root / "evaluation_setup"
    train, evaluate = setup / "fold1_train.csv", setup / "fold1_evaluate.csv"
    text = train.read_text()
    train.write_text(evaluate.read_text())
    evaluate.write_text(text)
    return load_dataset(root)


def test_hand_built_dataset_is_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="coarse_of has 1 entries"):
        SceneDataset("folder", tmp_path, ["a", "b"], ["all"], [0], [])
    ds = SceneDataset("folder", tmp_path, ["a"], ["all"], [0], [])
    with pytest.raises(DatasetError, match="unknown label 'z'"):
        ds.label_index("z")
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("validation")


# --- Kitchen20 ----------------------------------------------------------------------------


def make_kitchen20_public(root: Path) -> Path:
    """The public layout: kitchen20.csv, whose own folds split recording 'r1' across two."""
    rows = []
    clips = [
        ("blender", "r1", 0), ("blender", "r1", 1), ("blender", "r2", 0), ("blender", "r3", 2),
        ("blender", "r4", 3), ("blender", "r5", 4), ("book", "r6", 0), ("book", "r7", 1),
        ("book", "r8", 2), ("book", "r9", 3), ("book", "r10", 4), ("book", "r10", 4),
    ]  # fmt: skip
    for i, (label, recording, fold) in enumerate(clips):
        name = f"audio/{fold}-{recording}-{'ABCDEF'[i % 6]}-{i}.wav"
        write_wav(root / name, i)
        rows.append([str(i), label, str(fold), str(i), name, "A", "0", recording])
    header = ["", "category", "fold", "orig_idx", "path", "take", "target", "usr_id"]
    write_tsv(root / "kitchen20.csv", header, rows, sep=",")
    return root


def test_kitchen20_public_layout_splits_by_recording(tmp_path: Path) -> None:
    root = make_kitchen20_public(tmp_path)
    seen_test: set[str] = set()
    for fold in range(1, 6):
        ds = load_dataset(root, fold=fold)
        assert ds.name == "kitchen20" and ds.fine_classes == ["blender", "book"]
        assert ds.coarse_classes == ["machines", "fluids", "handling"]
        assert ds.coarse_of == [0, 2]
        train = {c.recording for c in ds.split("train")}
        test = {c.recording for c in ds.split("test")}
        assert train and test and not train & test, (fold, train, test)
        seen_test |= test
    # Five folds test every recording exactly once, and both clips of r1 and r10 together.
    assert seen_test == {f"r{i}" for i in range(1, 11)}


def test_kitchen20_errors_name_the_problem(tmp_path: Path) -> None:
    root = make_kitchen20_public(tmp_path)
    with pytest.raises(DatasetError, match="folds 1 to 5"):
        load_dataset(root, fold=6)
    text = (root / "kitchen20.csv").read_text().replace(",book,", ",toaster,", 1)
    (root / "kitchen20.csv").write_text(text)
    with pytest.raises(DatasetError, match="unknown class 'toaster' on line"):
        load_dataset(root)
    make_kitchen20_public(root)
    next((root / "audio").glob("*.wav")).unlink()
    with pytest.raises(DatasetError, match="1 listed audio file"):
        load_dataset(root)


def test_recording_folds_are_stratified_and_stable() -> None:
    from training.datasets import recording_folds

    clips = [(label, f"{label}-{r}") for label in ("a", "b") for r in range(10) for _ in range(2)]
    folds = recording_folds(clips, 5)
    for label in ("a", "b"):
        per_fold = [sum(1 for lb, r in clips if lb == label and folds[r] == k) for k in range(1, 6)]
        assert per_fold == [4] * 5
    assert recording_folds(list(reversed(clips)), 5) == folds


def test_the_real_kitchen20_folder_loads_split_by_recording() -> None:
    from tests.real_data import kitchen20_root

    root = kitchen20_root()
    tested: list[Path] = []
    for fold in range(1, 6):
        ds = load_dataset(root, fold=fold)
        assert ds.name == "kitchen20" and len(ds.fine_classes) == 20
        train = {c.recording for c in ds.split("train")}
        test = ds.split("test")
        assert not train & {c.recording for c in test}
        assert 100 <= len(test) <= 140, len(test)  # about a fifth of 595 clips
        assert len({c.label for c in test}) >= 18
        tested += [c.path for c in test]
    assert len(tested) == len(set(tested)) == len(ds.clips) == 595

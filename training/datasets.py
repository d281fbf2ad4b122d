"""The real scene datasets a user may have, read into one type the trainer can rely on.

Four layouts are recognised: TAU Urban Acoustic Scenes 2020 Mobile (development set), ESC-50,
Kitchen20 (its public ``kitchen20.csv``, or a ``meta.csv`` with a ``source_id`` per clip) and a
plain folder per class. Whatever the layout, the trainer sees the same ``SceneDataset``:
fine classes, a coarse grouping for the two-stage ensemble, and clips split into train and
test. Everything a loader cannot make sense of raises ``DatasetError`` with one line naming
the file and the problem, because a half-read dataset silently trains the wrong model.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asc.labels import (
    DCASE_CLASSES,
    DCASE_COARSE,
    DCASE_COARSE_OF_CLASS,
    KITCHEN20_COARSE,
    KITCHEN20_COARSE_OF_CLASS,
)

SPLITS = ("train", "test")
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac"})
MAX_NAMED = 5  # how many offending paths an error message lists before "..."

# TAU's classes and coarse map are the shared DCASE ones.
TAU_CLASSES = DCASE_CLASSES
TAU_COARSE = DCASE_COARSE
TAU_COARSE_OF_CLASS = DCASE_COARSE_OF_CLASS
ESC50_COARSE = [
    "animals",
    "natural_soundscapes",
    "human_non_speech",
    "interior_domestic",
    "exterior_urban",
]
ESC50_FOLDS = range(1, 6)
KITCHEN20_FOLDS = range(1, 6)


class DatasetError(ValueError):
    """A dataset that is missing, malformed or inconsistent; the message names the path."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    split: str  # "train" or "test"
    device: str = ""  # recording device when known (TAU: a, b, c, s1..s6)
    recording: str = ""  # the recording the clip was cut from, when known (Kitchen20)


@dataclass
class SceneDataset:
    name: str  # "tau2020mobile" | "esc50" | "kitchen20" | "folder"
    root: Path
    fine_classes: list[str]
    coarse_classes: list[str]
    coarse_of: list[int]  # for each fine class index, its coarse class index
    clips: list[Clip]

    def __post_init__(self) -> None:
        # Loaders are the only producers, but a hand-built dataset must obey the same rules,
        # or a wrong coarse map would only surface as a shape error deep inside training.
        if len(self.coarse_of) != len(self.fine_classes):
            raise DatasetError(
                f"{self.root}: coarse_of has {len(self.coarse_of)} entries "
                f"for {len(self.fine_classes)} fine classes"
            )
        if any(not 0 <= c < len(self.coarse_classes) for c in self.coarse_of):
            raise DatasetError(f"{self.root}: coarse_of points outside coarse_classes")
        known = set(self.fine_classes)
        for clip in self.clips:
            if clip.label not in known:
                raise DatasetError(f"{clip.path}: label {clip.label!r} is not a fine class")
            if clip.split not in SPLITS:
                raise DatasetError(f"{clip.path}: split {clip.split!r} is not train or test")

    def split(self, name: str) -> list[Clip]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [clip for clip in self.clips if clip.split == name]

    def label_index(self, label: str) -> int:
        try:
            return self.fine_classes.index(label)
        except ValueError:
            raise DatasetError(f"{self.root}: unknown label {label!r}") from None

    def coarse_label(self, label: str) -> str:
        return self.coarse_classes[self.coarse_of[self.label_index(label)]]

    def fingerprint(self) -> str:
        """Identify the data a model was trained on, so a checkpoint can tell it apart.

        Relative paths keep the fingerprint stable when the dataset is moved or mounted
        elsewhere; file sizes make it change when audio is replaced.
        """
        lines = sorted(
            f"{self.relative_path(c.path)}\t{c.label}\t{c.split}\t{_size(c.path)}"
            for c in self.clips
        )
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def summary(self) -> str:
        counts = ", ".join(f"{len(self.split(s))} {s}" for s in SPLITS)
        return (
            f"{self.name} at {self.root}: {len(self.fine_classes)} classes in "
            f"{len(self.coarse_classes)} coarse groups, {counts} clips"
        )

    def relative_path(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def load_dataset(root: str | Path, fold: int = 1) -> SceneDataset:
    """Detect the layout under ``root`` and load it.

    ``fold`` picks the TAU evaluation-setup fold, the ESC-50 test fold or the Kitchen20 test
    fold (of five, by recording); a folder-per-class dataset has no folds and ignores it.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise DatasetError(f"{root}: invalid fold {fold!r}; folds are numbered from 1")
    if (root / "meta.csv").is_file() and (root / "evaluation_setup").is_dir():
        return load_tau(root, fold)
    if (root / "meta" / "esc50.csv").is_file():
        return load_esc50(root, fold)
    if (root / "kitchen20.csv").is_file():
        return load_kitchen20(root, fold)
    if (root / "meta.csv").is_file() and "source_id" in _header(root / "meta.csv", ","):
        return load_kitchen20(root, fold)
    if (root / "meta.csv").is_file() and "scene_label" in _header(root / "meta.csv", "\t"):
        raise DatasetError(
            f"{root / 'evaluation_setup'}: missing; a TAU dataset needs its evaluation setup"
        )
    return load_folder(root)


# --- TAU Urban Acoustic Scenes 2020 Mobile ------------------------------------------------


def load_tau(root: Path, fold: int = 1) -> SceneDataset:
    """The fold files define the split; meta.csv adds the recording device of each clip."""
    devices = {
        row["filename"]: row.get("source_label") or ""
        for row in _read_csv(root / "meta.csv", "\t", ("filename", "scene_label"))
    }
    clips: dict[str, Clip] = {}
    for split, suffix in (("train", "train"), ("test", "evaluate")):
        path = _tau_fold_file(root, fold, suffix)
        for line, row in enumerate(_read_csv(path, "\t", ("filename", "scene_label")), start=2):
            name, label = row["filename"], row["scene_label"]
            if label not in TAU_COARSE_OF_CLASS:
                raise DatasetError(
                    f"{path}: unknown scene label {label!r} on line {line}; "
                    f"known: {', '.join(TAU_CLASSES)}"
                )
            if name in clips and clips[name].split != split:
                raise DatasetError(f"{path}: {name} is listed in both train and test")
            device = devices.get(name) or _device_from_name(name)
            clips[name] = Clip(root / name, label, split, device)
    _require_files(root, clips)
    _require_every_class(root, TAU_CLASSES, clips.values())
    return SceneDataset(
        name="tau2020mobile",
        root=root,
        fine_classes=list(TAU_CLASSES),
        coarse_classes=list(TAU_COARSE),
        coarse_of=[TAU_COARSE.index(TAU_COARSE_OF_CLASS[c]) for c in TAU_CLASSES],
        clips=list(clips.values()),
    )


def _tau_fold_file(root: Path, fold: int, suffix: str) -> Path:
    path = root / "evaluation_setup" / f"fold{fold}_{suffix}.csv"
    if not path.is_file():
        found = sorted(p.name for p in (root / "evaluation_setup").glob("fold*_*.csv"))
        raise DatasetError(
            f"{path}: fold file missing for fold {fold} (found: {', '.join(found) or 'none'})"
        )
    return path


def _device_from_name(name: str) -> str:
    """TAU names end in the device, e.g. airport-barcelona-0-0-a.wav is device a."""
    return Path(name).stem.rsplit("-", 1)[-1] if "-" in Path(name).stem else ""


# --- ESC-50 -------------------------------------------------------------------------------


def load_esc50(root: Path, fold: int = 1) -> SceneDataset:
    """ESC-50's five folds are cross-validation folds: ``fold`` is tested, the rest trained."""
    path = root / "meta" / "esc50.csv"
    if fold not in ESC50_FOLDS:
        raise DatasetError(f"{path}: invalid fold {fold}; ESC-50 has folds 1 to 5")
    category_of: dict[int, str] = {}
    clips: dict[str, Clip] = {}
    for line, row in enumerate(
        _read_csv(path, ",", ("filename", "fold", "target", "category")), start=2
    ):
        target, clip_fold = _int(row["target"], path, line), _int(row["fold"], path, line)
        category = row["category"]
        if not 0 <= target < 10 * len(ESC50_COARSE):
            raise DatasetError(f"{path}: target {target} on line {line} is outside 0..49")
        if category_of.setdefault(target, category) != category:
            raise DatasetError(
                f"{path}: unknown scene label {category!r} on line {line}; target {target} "
                f"is {category_of[target]!r}"
            )
        if clip_fold not in ESC50_FOLDS:
            raise DatasetError(f"{path}: fold {clip_fold} on line {line} is outside 1..5")
        split = "test" if clip_fold == fold else "train"
        clips[row["filename"]] = Clip(root / "audio" / row["filename"], category, split)
    if not clips:
        raise DatasetError(f"{path}: lists no clips")
    _require_files(root / "audio", clips)
    targets = sorted(category_of)
    return SceneDataset(
        name="esc50",
        root=root,
        fine_classes=[category_of[t] for t in targets],
        coarse_classes=list(ESC50_COARSE),
        coarse_of=[t // 10 for t in targets],
        clips=list(clips.values()),
    )


def _int(text: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}: {text!r} on line {line} is not a whole number") from None


# --- Kitchen20 -----------------------------------------------------------------------------


def load_kitchen20(root: Path, fold: int = 1) -> SceneDataset:
    """Kitchen20's 20 classes, five folds made by recording, ``fold`` tested.

    Several 5-second clips are cut from one recording (and the public set's own folds split
    some recordings across folds), so the split is rebuilt from the recording ids: a model is
    never tested on a recording it heard in training. Two layouts: the public repository's
    ``kitchen20.csv`` (``path``, ``category``, ``usr_id``) and a ``meta.csv`` of ``filename``,
    ``label``, ``source_id`` (the Freesound part as converted to FLAC).
    """
    if fold not in KITCHEN20_FOLDS:
        raise DatasetError(f"{root}: invalid fold {fold}; Kitchen20 has folds 1 to 5")
    public = root / "kitchen20.csv"
    if public.is_file():
        rows = _read_csv(public, ",", ("path", "category", "usr_id"))
        entries = [(r["path"], r["category"], r["usr_id"]) for r in rows]
        listing = public
    else:
        listing = root / "meta.csv"
        rows = _read_csv(listing, ",", ("filename", "label", "source_id"))
        entries = [(r["filename"], r["label"], r["source_id"]) for r in rows]
    if not entries:
        raise DatasetError(f"{listing}: lists no clips")
    for line, (name, label, recording) in enumerate(entries, start=2):
        if label not in KITCHEN20_COARSE_OF_CLASS:
            raise DatasetError(
                f"{listing}: unknown class {label!r} on line {line}; "
                f"known: {', '.join(sorted(KITCHEN20_COARSE_OF_CLASS))}"
            )
        if not recording:
            raise DatasetError(f"{listing}: no recording id on line {line} ({name})")
    _require_files(root, [name for name, _, _ in entries])
    fold_of = recording_folds([(label, rec) for _, label, rec in entries], len(KITCHEN20_FOLDS))
    clips = [
        Clip(root / name, label, "test" if fold_of[rec] == fold else "train", recording=rec)
        for name, label, rec in entries
    ]
    classes = sorted({label for _, label, _ in entries})
    return SceneDataset(
        name="kitchen20",
        root=root,
        fine_classes=classes,
        coarse_classes=list(KITCHEN20_COARSE),
        coarse_of=[KITCHEN20_COARSE.index(KITCHEN20_COARSE_OF_CLASS[c]) for c in classes],
        clips=clips,
    )


def recording_folds(clips: Sequence[tuple[str, str]], folds: int) -> dict[str, int]:
    """Fold (1..folds) of each recording, from (label, recording) pairs, one per clip.

    Grouped and stratified: every clip of a recording lands in one fold, and within each class
    the recordings go, largest first, to the fold holding the fewest clips of that class so far,
    so each fold tests every class that has enough recordings. Ties break on a hash of the
    recording id, so the folds never depend on file order and stay put when clips are added.
    """
    sizes: dict[str, dict[str, int]] = {}
    for label, recording in clips:
        per_class = sizes.setdefault(label, {})
        per_class[recording] = per_class.get(recording, 0) + 1
    fold_of: dict[str, int] = {}
    for label in sorted(sizes):
        load = [0] * folds
        for recording, n in sizes[label].items():
            if recording in fold_of:  # a recording with clips of an earlier class
                load[fold_of[recording] - 1] += n
        pending = sorted(
            (r for r in sizes[label] if r not in fold_of),
            key=lambda r: (-sizes[label][r], hashlib.sha1(r.encode()).hexdigest()),
        )
        for recording in pending:
            start = int(hashlib.sha1(recording.encode()).hexdigest()[:8], 16) % folds
            best = min(range(folds), key=lambda k: (load[(start + k) % folds], k))
            chosen = (start + best) % folds
            fold_of[recording] = chosen + 1
            load[chosen] += sizes[label][recording]
    return fold_of


# --- one folder per class -----------------------------------------------------------------


def load_folder(root: Path) -> SceneDataset:
    """Any collection sorted into ``root/<class>/`` folders; split and coarse map are optional."""
    files = _class_files(root)
    classes = sorted(files)
    coarse_classes, coarse_of = _coarse_map(root, classes)
    split_file = root / "split.csv"
    if split_file.is_file():
        splits = _split_from_file(split_file, root, files)
    else:
        splits = {rel: s for cls in classes for rel, s in _hash_split(files[cls]).items()}
    clips = [Clip(root / rel, cls, splits[rel]) for cls in classes for rel in sorted(files[cls])]
    return SceneDataset("folder", root, classes, coarse_classes, coarse_of, clips)


def _class_files(root: Path) -> dict[str, list[str]]:
    """Relative POSIX paths of the audio under each class folder (searched recursively)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(
            f"{root}: no recognised layout: expected meta.csv + evaluation_setup/ (TAU 2020 "
            "Mobile), meta/esc50.csv (ESC-50) or one folder of audio files per class"
        )
    files = {folder.name: _audio_under(folder, root) for folder in folders}
    if not any(files.values()):
        raise DatasetError(f"{root}: no audio files in any class folder")
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise DatasetError(f"{root}: class folder(s) with no audio files: {_names(empty)}")
    return files


def _audio_under(folder: Path, root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def _coarse_map(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    path = root / "coarse_map.csv"
    if not path.is_file():
        return ["all"], [0] * len(classes)
    mapping: dict[str, str] = {}
    for line, row in enumerate(_read_csv(path, ",", ("class", "coarse")), start=2):
        name, coarse = row["class"].strip(), row["coarse"].strip()
        if not coarse:
            raise DatasetError(f"{path}: class {name!r} on line {line} has no coarse group")
        if mapping.setdefault(name, coarse) != coarse:
            raise DatasetError(
                f"{path}: class {name!r} is mapped twice ({mapping[name]}, {coarse})"
            )
    missing = [c for c in classes if c not in mapping]
    unknown = sorted(set(mapping) - set(classes))
    if missing:
        raise DatasetError(f"{path}: no coarse group for class(es) {_names(missing)}")
    if unknown:
        raise DatasetError(f"{path}: unknown class(es) with no folder: {_names(unknown)}")
    coarse_classes = sorted(set(mapping.values()))
    return coarse_classes, [coarse_classes.index(mapping[c]) for c in classes]


def _split_from_file(path: Path, root: Path, files: dict[str, list[str]]) -> dict[str, str]:
    splits: dict[str, str] = {}
    for line, row in enumerate(_read_csv(path, ",", ("path", "split")), start=2):
        rel, split = Path(row["path"].strip()).as_posix(), row["split"].strip()
        if split not in SPLITS:
            raise DatasetError(f"{path}: split {split!r} on line {line} is not train or test")
        splits[rel] = split
    present = {rel for found in files.values() for rel in found}
    absent = sorted(set(splits) - present)
    if absent:
        _require_files(root, absent)  # names the files that do not exist at all
        raise DatasetError(f"{path}: lists files outside the class folders: {_names(absent)}")
    unlisted = sorted(present - set(splits))
    if unlisted:
        raise DatasetError(f"{path}: no split for {len(unlisted)} file(s): {_names(unlisted)}")
    return splits


def _hash_split(files: Sequence[str]) -> dict[str, str]:
    """About one file in five goes to test, decided by its path so it never moves.

    Hashing the path (rather than shuffling) keeps a file's split fixed when other files are
    added or removed, so a test clip never leaks into training between runs.
    """
    ordered = sorted(files)
    split = {
        rel: "test" if int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"
        for rel in ordered
    }
    if all(s == "test" for s in split.values()):
        split[ordered[0]] = "train"
    if len(ordered) >= 2 and all(s == "train" for s in split.values()):
        split[ordered[-1]] = "test"
    return split


# --- shared helpers -----------------------------------------------------------------------


def _header(path: Path, delimiter: str) -> list[str]:
    """The column names, or none for a file that is not a readable CSV (it is only a hint)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [name.strip() for name in next(csv.reader(f, delimiter=delimiter), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _read_csv(path: Path, delimiter: str, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows as dicts, after checking the header: a wrong column fails here, not mid-training."""
    kind = "tab" if delimiter == "\t" else "comma"
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in required if name not in header]
            if missing:
                raise DatasetError(
                    f"{path}: missing column(s) {', '.join(missing)} in this {kind}-separated "
                    f"file (found: {', '.join(header) or 'no header'})"
                )
            reader.fieldnames = header
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: unreadable CSV ({e})") from None


def _require_files(base: Path, names: Iterable[str]) -> None:
    """Check listed audio exists, listing each directory once rather than stat-ing every file."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for name in names:
        path = base / name
        if path.parent not in listings:
            try:
                listings[path.parent] = {e.name for e in os.scandir(path.parent) if e.is_file()}
            except OSError:
                listings[path.parent] = set()
        if path.name not in listings[path.parent]:
            missing.append(path.relative_to(base).as_posix())
    if missing:
        raise DatasetError(
            f"{base}: {len(missing)} listed audio file(s) do not exist: {_names(missing)}"
        )


def _require_every_class(root: Path, classes: Sequence[str], clips: Iterable[Clip]) -> None:
    present = {clip.label for clip in clips}
    empty = [c for c in classes if c not in present]
    if empty:
        raise DatasetError(f"{root}: no clips for class(es) {_names(empty)} in this fold")


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_NAMED else "")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # a file deleted since loading still changes the fingerprint

"""The detector's lossless tracks from one or more folders, each split its own way.

A generated lossless corpus (or any folder of .wav/.flac) is split 70/10/20 by track, exactly as
the detection paper's reproduction splits it (``detector_data.split_tracks``), so one such root
alone gives the tracks and split it always gave. Kitchen20 is real audio cut into several clips
per recording: only its lossless originals are used (``kitchen20_lossless``), and they are split
by recording (``source_id``) into about 70/10/20, stratified by class, so no recording is heard
in training and tested. The trainer and the report draw the same split from the same seed.
Kept free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.datasets import recording_folds
from training.detector_data import list_tracks, split_tracks
from training.kitchen20_lossless import Exclusion, is_kitchen20, kitchen20_lossless

SPLITS = ("train", "val", "test")
# Ten folds by recording: two tested, one for validation, seven trained on.
RECORDING_FOLDS = 10
FOLD_SPLIT = {1: "test", 2: "test", 3: "val"}


@dataclass
class LosslessSet:
    """Every root's lossless tracks, where each came from, and the one split over them."""

    tracks: list[Path] = field(default_factory=list)
    splits: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    source: dict[Path, str] = field(default_factory=dict)  # "kitchen20" or "generated"
    recording: dict[Path, str] = field(default_factory=dict)  # Kitchen20's source_id
    exclusions: list[Exclusion] = field(default_factory=list)

    def add(self, name: str, tracks: list[Path], splits: dict[str, list[Path]]) -> None:
        self.tracks += tracks
        for split in SPLITS:
            self.splits[split] += splits[split]
        self.source.update((t, name) for t in tracks)


def source_name(root: Path) -> str:
    return "kitchen20" if is_kitchen20(root) else "generated"


def lossless_set(roots: list[Path], seed: int, max_tracks: int | None = None) -> LosslessSet:
    """The tracks of every root (at most ``max_tracks`` from each) and their split."""
    found = LosslessSet()
    for root in roots:
        if is_kitchen20(root):
            kept, excluded = kitchen20_lossless(root)
            kept = kept[:max_tracks]
            tracks = [c.path for c in kept]
            recordings = {c.path: c.recording for c in kept}
            labels = {c.path: c.label for c in kept}
            found.add("kitchen20", tracks, split_by_recording(tracks, recordings, labels, seed))
            found.recording.update(recordings)
            found.exclusions += excluded
        else:
            tracks = list_tracks(root)[:max_tracks]
            found.add("generated", tracks, split_tracks(tracks, seed))
    return found


def split_by_recording(
    tracks: list[Path], recording: dict[Path, str], label: dict[Path, str], seed: int
) -> dict[str, list[Path]]:
    """About 70/10/20 by recording, stratified by class (``recording_folds`` over ten folds; the
    seed salts the recording ids, so another seed gives another split). A split left empty, as
    with a handful of tracks, takes the smallest training recording."""
    salted = {t: f"{seed}|{recording[t]}" for t in tracks}
    fold_of = recording_folds([(label[t], salted[t]) for t in tracks], RECORDING_FOLDS)
    side = {rec: FOLD_SPLIT.get(fold, "train") for rec, fold in fold_of.items()}
    for split in ("test", "val"):
        if split not in side.values():
            training = [r for r in side if side[r] == "train"]
            if len(training) > 1:
                sizes = {r: sum(salted[t] == r for t in tracks) for r in training}
                side[min(training, key=lambda r: (sizes[r], r))] = split
    return {s: [t for t in tracks if side[salted[t]] == s] for s in SPLITS}

"""A synthetic acoustic-scene corpus laid out like TAU Urban Acoustic Scenes 2020 Mobile.

No real scene recordings ship with this project, yet training, the codec-robustness reports and
the end-to-end tests need a corpus with the same file layout, splits and device structure. The
audio here is generated, never recorded, and it is built to be hard in the ways real scenes are:

- sources are shared between scenes (babble, traffic, footsteps, announcements, music, engines,
  rails, wind, ventilation) with scene-dependent probabilities and levels, so that the pairs the
  TAU challenge confuses (metro/tram, street_pedestrian/public_square, airport/shopping_mall)
  stay confusable;
- the cues that do separate scenes (birdsong, brake squeal, cutlery, door chimes) are only in
  some clips, and several live above 4 kHz, where lossy codecs cut first;
- each recording location fixes its own mix, room and level, and the corpus splits by location,
  so a model cannot memorise a place;
- every device colours the audio with a fixed response, band limits, compression and a noise
  floor; the evaluation side holds three devices (s4-s6) that training never sees.

Speed matters because a TAU-sized corpus has ~14 000 ten-second clips: stationary noise beds are
built in the short-time Fourier domain (one batched inverse FFT for all of them), tonal sources
come from wavetables, events are synthesised only where they sound, and room and device filters
share one FFT convolution.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.corpora.devices import EVAL_DEVICES, TRAIN_DEVICES
from training.corpora.scene_clip import render_clip
from training.corpora.scenes import FINE_CLASSES, draw_location

GENERATOR_VERSION = "2.0"

_CITIES = (
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)

# TAU's layout, location split and device balance

_TRAIN_PATTERN = ("a", "a", "b", "a", "a", "c", "a", "a", "s1", "a", "a", "s2", "a", "a", "s3")

_LOCATION_SALT = 0x10C  # keeps location seeds apart from clip seeds drawn from the same seed


@dataclass(frozen=True)
class _ClipPlan:
    """One file of the corpus and everything needed to generate it independently of the rest."""

    index: int
    scene: str
    city: str
    location: int  # TAU's location number within the city
    class_location: int  # the location's index within its scene (its seed)
    segment: int
    device: str
    split: str  # "train" or "evaluate"

    @property
    def filename(self) -> str:
        return f"audio/{self.scene}-{self.city}-{self.location}-{self.segment}-{self.device}.wav"

    @property
    def identifier(self) -> str:
        return f"{self.city}-{self.location}"


def _location_count(clips_per_class: int) -> int:
    """About ten clips per place for small corpora, at most 40 places per scene (TAU has ~40)."""
    return min(clips_per_class, max(3, min(40, round(clips_per_class / 10))))


def _devices_for(split: str, count: int, offset: int, rng: np.random.Generator) -> list[str]:
    """Device 'a' dominates training as in TAU; evaluation cycles all nine devices evenly."""
    pattern = _TRAIN_PATTERN if split == "train" else EVAL_DEVICES
    devices = [pattern[(offset + i) % len(pattern)] for i in range(count)]
    return [devices[i] for i in rng.permutation(count)]


def _plan_corpus(clips_per_class: int, seed: int = 0) -> list[_ClipPlan]:
    """Every clip of the corpus, in a fixed order: the order defines each clip's seed."""
    if clips_per_class < 2:
        raise ValueError("clips_per_class must be at least 2 (one per side of the split)")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _LOCATION_SALT]))
    city_counter = dict.fromkeys(_CITIES, 0)
    plans: list[_ClipPlan] = []
    for class_index, scene in enumerate(FINE_CLASSES):
        n_loc = _location_count(clips_per_class)
        n_eval = min(max(1, round(0.3 * n_loc)), n_loc - 1)
        evaluate = set(rng.permutation(n_loc)[:n_eval].tolist())
        places = []
        for loc in range(n_loc):
            city = _CITIES[(loc + class_index) % len(_CITIES)]
            places.append((city, city_counter[city]))
            city_counter[city] += 1
        sizes = [len(a) for a in np.array_split(np.arange(clips_per_class), n_loc)]
        rows = [
            (loc, seg, "evaluate" if loc in evaluate else "train")
            for loc in range(n_loc)
            for seg in range(sizes[loc])
        ]
        for split in ("train", "evaluate"):
            mine = [r for r in rows if r[2] == split]
            devices = _devices_for(split, len(mine), 2 * class_index, rng)
            for (loc, seg, _), device in zip(mine, devices, strict=True):
                city, number = places[loc]
                plans.append(_ClipPlan(len(plans), scene, city, number, loc, seg, device, split))
    return plans


def _clip_seed(seed: int, plan: _ClipPlan) -> tuple[np.random.Generator, np.random.Generator]:
    class_index = FINE_CLASSES.index(plan.scene)
    where = np.random.SeedSequence([seed, _LOCATION_SALT, class_index, plan.class_location])
    clip = np.random.SeedSequence([seed, plan.index])
    return np.random.default_rng(where), np.random.default_rng(clip)


def _write_clip(job: tuple[Path, int, float, _ClipPlan, tuple[float, float]]) -> str:
    """Worker entry point: everything the clip needs arrives in ``job``, so any pool order works."""
    from asc.audio import save

    out, seed, seconds, plan, brightness = job
    where, clip = _clip_seed(seed, plan)
    location = draw_location(plan.scene, where)
    audio = render_clip(location, plan.device, clip, seconds, 44100, brightness)
    save(out / plan.filename, audio, 44100)
    return plan.filename


def _write_tsv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(out: Path, plans: list[_ClipPlan]) -> None:
    _write_tsv(
        out / "meta.csv",
        ["filename", "scene_label", "identifier", "source_label"],
        ([p.filename, p.scene, p.identifier, p.device] for p in plans),
    )
    setup = out / "evaluation_setup"
    train = [p for p in plans if p.split == "train"]
    evaluate = [p for p in plans if p.split == "evaluate"]
    labelled = ["filename", "scene_label"]
    _write_tsv(setup / "fold1_train.csv", labelled, ([p.filename, p.scene] for p in train))
    _write_tsv(setup / "fold1_evaluate.csv", labelled, ([p.filename, p.scene] for p in evaluate))
    _write_tsv(setup / "fold1_test.csv", ["filename"], ([p.filename] for p in evaluate))


def _write_readme(
    out: Path, plans: list[_ClipPlan], seed: int, seconds: float, brightness: tuple[float, float]
) -> None:
    train = sum(p.split == "train" for p in plans)
    brightness_line = (
        f"\nbrightness: {brightness[0]:g} to {brightness[1]:g} dB per octave (--brightness)"
        if brightness != (0.0, 0.0)
        else ""
    )
    text = f"""SYNTHETIC acoustic scene corpus (asc-stream, training.corpora {GENERATOR_VERSION})

All audio in this folder is GENERATED by a program, not recorded. It imitates the layout of
TAU Urban Acoustic Scenes 2020 Mobile (development set) so that the same loaders, splits and
reports work on it, but no sound here comes from a real place or a real device, and accuracy
measured on it says nothing about accuracy on real recordings.

seed: {seed}
generator version: {GENERATOR_VERSION}{brightness_line}
clips: {len(plans)} ({train} in fold1_train, {len(plans) - train} in fold1_evaluate/fold1_test)
clip length: {seconds:g} s, 44100 Hz, 16-bit PCM, mono
classes: {", ".join(FINE_CLASSES)}
devices: training {", ".join(TRAIN_DEVICES)}; evaluation {", ".join(EVAL_DEVICES)}
split: by location (identifier), about 70 % of locations for training

The same seed and generator version give byte-identical files.
"""
    (out / "README.txt").write_text(text)


def write_scene_corpus(
    out: Path,
    clips_per_class: int,
    seed: int = 0,
    seconds: float = 10.0,
    workers: int | None = None,
    progress: bool = True,
    brightness: tuple[float, float] = (0.0, 0.0),
) -> Path:
    """Generate the corpus under ``out`` and return ``out``.

    Each clip's audio depends only on (seed, its index in the plan, its location), never on the
    worker that made it, so any worker count writes the same bytes.
    """
    out = Path(out)
    plans = _plan_corpus(clips_per_class, seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed, float(seconds), plan, brightness) for plan in plans]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    bar = _progress(len(jobs), progress)
    if workers == 1:
        for job in jobs:
            _write_clip(job)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_clip, jobs, chunksize=4):
                bar.update()
    bar.close()
    _write_tables(out, plans)
    _write_readme(out, plans, seed, seconds, brightness)
    return out


def _progress(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, disable=not enabled, unit="clip", desc="synth")

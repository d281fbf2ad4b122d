"""Training the lossy-compression detector on lossless tracks (the detection paper's DS1 and more).

Each track is coded with one codec drawn from the list (libfdk-aac, libvorbis, LAME at 128, 256,
320 kbps in the paper), or with ``copies_per_track`` distinct ones, every family equally likely;
the model sees random 2-second crops of the lossless original (label 0) and of the coded copies
(label 1, plus the codec family), half of each batch lossless on average, with the random cutoff
mask applied with probability ``mask_prob``. The tracks come from one or more folders: a
generated corpus split 70/10/20 by track, Kitchen20's lossless originals split by recording
(``detector_sources``).

A full run takes hours on a CPU, so, as the scene ensemble does, each epoch ends by keeping the
model, optimiser, schedule, history and both random generators in ``OUT.train-state.pt``; a
rerun on the same tracks and settings picks up from the last finished epoch and ends with the
same weights as an uninterrupted run. The file is removed once the checkpoint is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.audio import load
from asc.checkpoint import Checkpoint, save
from asc.codecs.spec import split_spec_list
from asc.features import DETECTOR_SPECTROGRAM, FeatureExtractor
from asc.models.detector import CODEC_FAMILIES, WINDOW_SECONDS, LossyDetector, cut_windows
from asc.models.scene import count_parameters
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.detector_data import (
    DS1_CODECS,
    LosslessDataError,
    assign_codec_sets,
    expand_codec_sets,
    family_of,
    tracks_fingerprint,
)
from training.detector_sources import LosslessSet, lossless_set
from training.kitchen20_lossless import exclusion_counts
from training.loop import (
    LoopSettings,
    one_cycle,
    pick_device,
    provenance_common,
    read_train_state,
    run_epochs,
    write_train_state,
)


@dataclass
class DetectorTrainConfig:
    data: Path | list[Path]  # one folder of lossless tracks, or several (e.g. corpus + Kitchen20)
    out: Path
    codecs: list[str] = field(default_factory=lambda: list(DS1_CODECS))
    copies_per_track: int = 1  # coded copies of each track, distinct settings
    mask_prob: float = 1.0
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    cache_dir: Path = Path(".cache/coded")
    workers: int | None = None
    progress: bool = True
    max_tracks: int | None = None  # from each folder
    resume: bool = True  # from OUT.train-state.pt, when it comes from the same data and settings

    @property
    def roots(self) -> list[Path]:
        return [Path(d) for d in self.data] if isinstance(self.data, list | tuple) else [self.data]


def load_mono(path: Path, rate: int) -> torch.Tensor:
    return torch.from_numpy(load(path, rate=rate, channels=1)[0][:, 0].copy())


@dataclass
class Example:
    wave: torch.Tensor  # mono float32
    lossy: int
    family: int
    spec: str
    track: Path


def build_examples(
    tracks: list[Path], specs: dict[Path, tuple[str, ...]], mapping, rate: int
) -> list[Example]:
    out = []
    for track in tracks:
        for spec in (UNCODED, *specs[track]):
            out.append(
                Example(
                    load_mono(mapping[(track, spec)], rate),
                    int(spec != UNCODED),
                    CODEC_FAMILIES.index(family_of(spec)),
                    spec,
                    track,
                )
            )
    return out


@torch.inference_mode()
def file_scores(
    model: LossyDetector,
    extractor: FeatureExtractor,
    waves: list[torch.Tensor],
    device: torch.device,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per file: mean lossy probability over 50 %-overlapping windows, and mean family probs."""
    model.eval()
    lossy, family = [], []
    for wave in waves:
        out = model(extractor(cut_windows(wave, window).to(device)))
        lossy.append(float(out["lossy_prob"].mean()))
        family.append(out["family_probs"].mean(0).cpu().numpy())
    return np.array(lossy), np.stack(family)


@dataclass
class DetectorData:
    """The data as the detector trains on it: the tracks, their split, each one's codec
    settings, and where the coded copies lie."""

    codecs: list[str]
    tracks: list[Path]
    splits: dict[str, list[Path]]
    specs: dict[Path, tuple[str, ...]]  # the settings of each track (DS1: one)
    mapping: dict[tuple[Path, str], Path]  # (track, setting or "none") -> audio
    lossless: LosslessSet  # where each track came from; Kitchen20's exclusions


def training_codecs(codecs: list[str] | str) -> list[str]:
    """The lossy settings of ``--codecs``, canonical; ``ds1`` and ``device`` expanded."""
    items = split_spec_list(codecs) if isinstance(codecs, str) else list(codecs)
    chosen = [s for s in parse_spec_list(expand_codec_sets(items)) if s != UNCODED]
    if not chosen:
        raise LosslessDataError("give at least one lossy codec to train against")
    return list(dict.fromkeys(chosen))


def prepare_detector_data(cfg: DetectorTrainConfig) -> DetectorData:
    codecs = training_codecs(cfg.codecs)
    found = lossless_set(cfg.roots, cfg.seed, cfg.max_tracks)
    specs = assign_codec_sets(found.tracks, codecs, cfg.copies_per_track, cfg.seed)
    cache = CodedCache(cfg.cache_dir, rate=DETECTOR_SPECTROGRAM.sample_rate, channels=2)
    pairs = [(track, s) for track, chosen in specs.items() for s in (UNCODED, *chosen)]
    mapping = cache.ensure_pairs(pairs, workers=cfg.workers, progress=cfg.progress)
    return DetectorData(codecs, found.tracks, found.splits, specs, mapping, found)


def training_fingerprint(cfg: DetectorTrainConfig, data: DetectorData) -> str:
    """What a kept training state must match to be resumed: the tracks, the codecs and every
    setting that changes the draws or the schedule (JSON, so it compares as one string)."""
    return json.dumps(
        {
            "tracks": tracks_fingerprint(data.tracks),
            "codecs": data.codecs,
            "copies_per_track": cfg.copies_per_track,
            "mask_prob": cfg.mask_prob,
            "batch_size": cfg.batch_size,
            "steps_per_epoch": cfg.steps_per_epoch,
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "max_tracks": cfg.max_tracks,
        },
        sort_keys=True,
    )


@dataclass
class DetectorTask:
    """The detector's hooks for ``run_epochs``: batches of random 2-second crops of random
    examples, file accuracy on the validation tracks after each epoch, and the state an
    interrupted run resumes from."""

    batch_size: int
    model: LossyDetector
    extractor: FeatureExtractor
    train: list[Example]
    val: list[Example]
    device: torch.device
    rng: np.random.Generator
    window: int  # samples in one crop
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state_path: Path
    fingerprint: str  # training_fingerprint's

    def __post_init__(self) -> None:
        """Lossless and coded examples drawn half and half when there are more coded ones."""
        lossy = np.array([e.lossy for e in self.train], dtype=bool)
        self.weights = None
        if 0 < lossy.sum() != (~lossy).sum():
            w = np.where(lossy, 0.5 / lossy.sum(), 0.5 / max(1, (~lossy).sum()))
            self.weights = w / w.sum()

    def pick(self) -> np.ndarray:
        if self.weights is None:  # as many of each: the paper's uniform draw
            return self.rng.integers(len(self.train), size=self.batch_size)
        return self.rng.choice(len(self.train), size=self.batch_size, p=self.weights)

    def start_epoch(self, epoch: int) -> None:
        pass  # every step draws its own examples

    def training_step(self, step: int) -> tuple[torch.Tensor, int]:
        """The loss of one batch; weighed as one, so an epoch's loss is the mean over steps."""
        train, window, device = self.train, self.window, self.device
        picks = self.pick()
        crops = []
        for i in picks:  # a random 2-second crop of each example, as in the paper
            wave = train[i].wave
            start = int(self.rng.integers(max(1, len(wave) - window + 1)))
            crop = wave[start : start + window]
            crops.append(torch.nn.functional.pad(crop, (0, window - len(crop))))
        x = self.extractor(torch.stack(crops).to(device))
        out = self.model(x)
        lossy = torch.tensor([train[i].lossy for i in picks], device=device)
        family = torch.tensor([train[i].family for i in picks], device=device)
        loss = torch.nn.functional.cross_entropy(out["lossy_logits"], lossy)
        loss = loss + 0.5 * torch.nn.functional.cross_entropy(out["family_logits"], family)
        return loss, 1

    def validate(self) -> float:
        waves = [e.wave for e in self.val]
        scores, _ = file_scores(self.model, self.extractor, waves, self.device, self.window)
        return float(np.mean((scores >= 0.5) == np.array([e.lossy for e in self.val])))

    def end_epoch(self, epochs_done: int, history: list[dict]) -> None:
        """Keep everything the next epoch depends on, the numpy generator's exact state among
        it (JSON: ``weights_only`` loading reads no other Python objects)."""
        write_train_state(
            self.state_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": epochs_done,
                "history": json.dumps(history),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": json.dumps(self.rng.bit_generator.state),
                "fingerprint": self.fingerprint,
            },
        )

    def resume(self, progress: bool) -> tuple[int, list[dict]]:
        """The epoch to start from and the history so far, from an interrupted run's state
        when it trained on the same tracks with the same settings."""
        state = read_train_state(self.state_path)
        if not (state and state.get("fingerprint") == self.fingerprint):
            return 0, []
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        if progress:
            tqdm.write(f"resuming from epoch {state['epoch']} ({self.state_path})")
        return state["epoch"], json.loads(state["history"])


def fit_detector(cfg: DetectorTrainConfig) -> Checkpoint:
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = prepare_detector_data(cfg)
    rate = DETECTOR_SPECTROGRAM.sample_rate
    window = int(WINDOW_SECONDS * rate)
    train = build_examples(data.splits["train"], data.specs, data.mapping, rate)
    val = build_examples(data.splits["val"], data.specs, data.mapping, rate)
    extractor = FeatureExtractor(DETECTOR_SPECTROGRAM).to(device)
    model = LossyDetector(mask_prob=cfg.mask_prob, bins=DETECTOR_SPECTROGRAM.bins).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * cfg.steps_per_epoch)
    started = time.time()
    state_path = cfg.out.with_suffix(".train-state.pt")
    task = DetectorTask(
        cfg.batch_size, model, extractor, train, val, device, rng, window, optimizer, scheduler,
        state_path, training_fingerprint(cfg, data),
    )  # fmt: skip
    start_epoch, history = task.resume(cfg.progress) if cfg.resume else (0, [])
    settings = LoopSettings(
        cfg.epochs, cfg.steps_per_epoch, cfg.progress, "val_accuracy", "validation file accuracy"
    )
    history = run_epochs(task, model, optimizer, scheduler, settings, start_epoch, history)
    checkpoint = detector_checkpoint(cfg, data, task, history, started)
    save(checkpoint, cfg.out)
    state_path.unlink(missing_ok=True)
    return checkpoint


def detector_checkpoint(
    cfg: DetectorTrainConfig,
    data: DetectorData,
    task: DetectorTask,
    history: list[dict],
    started: float,
) -> Checkpoint:
    """The trained detector with its file accuracy on the test tracks and how it was trained."""
    rate = DETECTOR_SPECTROGRAM.sample_rate
    model = task.model
    test = build_examples(data.splits["test"], data.specs, data.mapping, rate)
    waves = [e.wave for e in test]
    scores, families = file_scores(model, task.extractor, waves, task.device, task.window)
    truth = np.array([e.lossy for e in test])
    metrics = {
        "test_accuracy": float(np.mean((scores >= 0.5) == truth)),
        "test_family_accuracy": float(np.mean(families.argmax(1) == [e.family for e in test])),
        "test_files": len(test),
        "train_tracks": len(data.splits["train"]),
        "parameters": count_parameters(model),
        "history": history,
        "train_seconds": round(time.time() - started, 1),
    }
    return Checkpoint(
        kind="lossy_detector",
        config=model.config,
        features=DETECTOR_SPECTROGRAM,
        model=model.cpu().eval(),
        codec_conditions=data.codecs,
        data_fingerprint=tracks_fingerprint(data.tracks),
        metrics=metrics,
        extra={
            **provenance_common(cfg.out, cfg.seed),
            "mask_prob": cfg.mask_prob,
            "splits": {k: len(v) for k, v in data.splits.items()},
            **training_sources(cfg, data),
        },
    )


def training_sources(cfg: DetectorTrainConfig, data: DetectorData) -> dict:
    """What a multi-folder or multi-copy run records beyond the paper's single corpus."""
    if len(cfg.roots) == 1 and cfg.copies_per_track == 1 and not data.lossless.exclusions:
        return {}  # the paper's setting: its checkpoints keep their metadata as it was
    source = data.lossless.source
    return {
        "data": [str(r) for r in cfg.roots],
        "copies_per_track": cfg.copies_per_track,
        "tracks_per_source": {
            n: sum(v == n for v in source.values()) for n in set(source.values())
        },
        "excluded": exclusion_counts(data.lossless.exclusions),
        "max_tracks": cfg.max_tracks,
    }

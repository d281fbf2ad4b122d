"""Training the scene ensemble, with codec-coded copies of the training set as extra data.

As in the ASC paper, each codec condition adds a coded copy of every training clip; the
augmentations of Hu et al. that need no extra data (mixup, random time crop, spectrum masking)
are on by default. Features are computed once per (clip, condition) with the same extractor the
server uses and kept in memory as float16.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from asc.audio import load
from asc.checkpoint import Checkpoint, save
from asc.features import LOGMEL, FeatureConfig, FeatureExtractor
from asc.models.scene import ARCHITECTURES, SceneEnsemble, count_parameters
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.datasets import Clip, SceneDataset, load_dataset
from training.loop import (
    LoopSettings,
    one_cycle,
    pick_device,
    provenance_common,
    read_train_state,
    run_epochs,
    write_train_state,
)
from training.spec_augment import JITTER_HIGH, JITTER_LOW, SpecAugment


@dataclass
class SceneTrainConfig:
    data: Path
    out: Path
    preset: str = "compact"
    augment_codecs: list[str] = field(default_factory=list)
    architectures: tuple[str, ...] = ARCHITECTURES
    coarse: bool = True
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-3
    seed: int = 0
    device: str = "auto"
    mixup_alpha: float = 0.4  # 0 turns mixup off
    crop_frames: int = 400  # random time crop; 0 turns it off
    spec_masks: bool = True
    # Share of training examples whose upper bands are cut as an unseen codec's lowpass would;
    # 0 turns it off. Not tied to any codec, so it prepares the model for ones never trained on.
    band_limit: float = 0.0
    # Share of training examples with level noise in every band, as a low-rate coder that keeps
    # the band gives (Opus at 16 kbit/s); 0 turns it off. Not tied to any codec either.
    jitter: float = 0.0
    # The level noise's spread, drawn per example between the two (the clip's standard deviations).
    jitter_spread: tuple[float, float] = (JITTER_LOW, JITTER_HIGH)
    # Weight of a consistency term: each drawn example comes with its clip's original, and the
    # loss adds this times the Jensen-Shannon divergence between the two's class probabilities
    # (AugMix's remedy for unseen corruptions). 0 turns it off.
    consistency: float = 0.0
    cache_dir: Path = Path(".cache/coded")
    workers: int | None = None
    resume: bool = True
    progress: bool = True
    max_clips_per_class: int | None = None  # for quick experiments
    # Examples drawn per epoch (default: every clip under every condition). Smaller epochs of
    # random (clip, condition) draws cost less per epoch and see every copy over the run.
    epoch_size: int | None = None
    fold: int = 1  # TAU's fold files / ESC-50's test fold


def clip_samples(dataset: SceneDataset, rate: int) -> int:
    """Every clip is cut or padded to the first clip's length (10 s in TAU, 5 s in ESC-50)."""
    x, _ = load(dataset.clips[0].path, rate=rate, channels=1)
    return len(x)


def load_fixed(path: Path, rate: int, samples: int) -> np.ndarray:
    x, _ = load(path, rate=rate, channels=1)
    x = x[:samples, 0]
    return np.pad(x, (0, samples - len(x))) if len(x) < samples else x


@torch.inference_mode()
def compute_features(
    paths: list[Path],
    extractor: FeatureExtractor,
    samples: int,
    device: torch.device,
    progress: bool,
    desc: str,
    batch: int = 16,
) -> torch.Tensor:
    """float16 features of many files, batched on the model's device."""
    rate = extractor.config.sample_rate
    out = []
    for start in tqdm(range(0, len(paths), batch), desc=desc, unit="batch", disable=not progress):
        wave = np.stack([load_fixed(p, rate, samples) for p in paths[start : start + batch]])
        out.append(extractor(torch.from_numpy(wave).to(device)).half().cpu())
    return torch.cat(out)


def limit_per_class(clips: list[Clip], limit: int | None) -> list[Clip]:
    if limit is None:
        return clips
    counts: dict[str, int] = {}
    kept = []
    for clip in clips:
        if counts.get(clip.label, 0) < limit:
            counts[clip.label] = counts.get(clip.label, 0) + 1
            kept.append(clip)
    return kept


def consistency_loss(out: dict, pairs: int) -> torch.Tensor:
    """Every sub-model's Jensen-Shannon divergence between the first ``pairs`` rows (coded
    copies) and the next ``pairs`` rows (their originals): the model is taught to answer a copy
    as it answers the original, whatever the codec, rather than to learn each codec's look."""
    loss = torch.zeros((), device=next(iter(out.values())).device)
    for key, logits in out.items():
        if not key.startswith(("fine/", "coarse/")):
            continue
        p, q = logits[:pairs].softmax(-1), logits[pairs : 2 * pairs].softmax(-1)
        log_m = ((p + q) / 2).clamp_min(1e-7).log()
        kl = torch.nn.functional.kl_div
        loss = loss + (kl(log_m, p, reduction="batchmean") + kl(log_m, q, reduction="batchmean"))
    return loss / 2


def ensemble_loss(
    out: dict,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    perm: torch.Tensor | None,
    lam: float,
) -> torch.Tensor:
    """Sum of every sub-model's cross-entropy (mixed targets under mixup)."""
    loss = torch.zeros((), device=fine.device)
    for key, logits in out.items():
        if not key.startswith(("fine/", "coarse/")):
            continue
        target = fine if key.startswith("fine/") else coarse
        ce = torch.nn.functional.cross_entropy(logits, target)
        if perm is not None:
            ce = lam * ce + (1 - lam) * torch.nn.functional.cross_entropy(logits, target[perm])
        loss = loss + ce
    return loss


@torch.inference_mode()
def predict(
    model: SceneEnsemble, features: torch.Tensor, device: torch.device, batch: int = 64
) -> torch.Tensor:
    """Fused class scores for stored features."""
    model.eval()
    scores = [
        model(features[i : i + batch].to(device).float())["scores"].cpu()
        for i in range(0, len(features), batch)
    ]
    return torch.cat(scores)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _process_device(name: str, world: int) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank."""
    device = pick_device(name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


@dataclass
class SceneData:
    """Everything training draws batches from and scores on, computed before the first step."""

    dataset: SceneDataset
    train: list[Clip]
    test: list[Clip]
    conditions: list[str]  # the uncoded audio first, then each augmentation codec
    x_train: torch.Tensor  # float16 features of every clip under every condition
    fine_idx: torch.Tensor  # the fine class of each row of x_train
    coarse_map: torch.Tensor  # fine class -> coarse class
    x_test: torch.Tensor
    y_test: torch.Tensor


def prepare_scene_data(
    cfg: SceneTrainConfig,
    features_config: FeatureConfig,
    device: torch.device,
    rank: int,
    world: int,
    progress: bool,
) -> SceneData:
    """The split, the coded copies of the training clips, and every clip's features."""
    dataset = load_dataset(cfg.data, fold=cfg.fold)
    train = limit_per_class(dataset.split("train"), cfg.max_clips_per_class)
    test = limit_per_class(dataset.split("test"), cfg.max_clips_per_class)
    conditions = [UNCODED, *[s for s in parse_spec_list(cfg.augment_codecs) if s != UNCODED]]
    rate = features_config.sample_rate
    mapping = _coded_copies(cfg, [c.path for c in train], conditions, rate, rank, world, progress)

    samples = clip_samples(dataset, rate)
    extractor = FeatureExtractor(features_config).to(device)
    train_paths = [mapping[(c.path, cond)] for cond in conditions for c in train]
    x_train = compute_features(train_paths, extractor, samples, device, progress, "train features")
    fine_idx = torch.tensor([dataset.label_index(c.label) for c in train] * len(conditions))
    coarse_map = torch.tensor(dataset.coarse_of)
    x_test = compute_features(
        [c.path for c in test], extractor, samples, device, progress, "test features"
    )
    y_test = torch.tensor([dataset.label_index(c.label) for c in test])
    return SceneData(
        dataset, train, test, conditions, x_train, fine_idx, coarse_map, x_test, y_test
    )


def _coded_copies(
    cfg: SceneTrainConfig,
    sources: list[Path],
    conditions: list[str],
    rate: int,
    rank: int,
    world: int,
    progress: bool,
) -> dict[tuple[Path, str], Path]:
    cache = CodedCache(cfg.cache_dir, rate=rate, channels=1)
    if rank == 0:  # one process codes; the others then find every copy in the cache
        cache.ensure(sources, conditions, workers=cfg.workers, progress=progress)
    if world > 1:
        dist.barrier()
    return cache.ensure(sources, conditions, workers=cfg.workers, progress=False)


def build_ensemble(
    cfg: SceneTrainConfig, dataset: SceneDataset, features_config: FeatureConfig
) -> SceneEnsemble:
    use_coarse = cfg.coarse and len(dataset.coarse_classes) > 1
    return SceneEnsemble(
        dataset.fine_classes,
        dataset.coarse_classes,
        dataset.coarse_of,
        cfg.preset,
        features_config.channels,
        cfg.architectures,
        use_coarse,
    )


@dataclass
class SceneTask:
    """The scene ensemble's hooks for ``run_epochs``: mixup batches drawn from a shuffled
    order (each process its own share under torchrun), clean test accuracy after each epoch,
    and the state an interrupted run resumes from."""

    cfg: SceneTrainConfig
    data: SceneData
    model: SceneEnsemble
    trainable: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: SpecAugment
    device: torch.device
    rng: np.random.Generator
    rank: int
    world: int
    steps_per_epoch: int
    state_path: Path
    order: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    def start_epoch(self, epoch: int) -> None:
        order = torch.from_numpy(self.rng.permutation(len(self.data.x_train)))
        self.order = order[self.rank :: self.world][: self.steps_per_epoch * self.cfg.batch_size]

    def training_step(self, step: int) -> tuple[torch.Tensor, int]:
        size, device = self.cfg.batch_size, self.device
        idx = self.order[step * size : (step + 1) * size]
        pairs = 0
        if self.cfg.consistency > 0:  # half the batch drawn, each row with its original
            idx = idx[: max(1, len(idx) // 2)]
            pairs = len(idx)
            idx = torch.cat([idx, idx % len(self.data.train)])  # condition 0 is the original
        x = self.augment(self.data.x_train[idx].to(device).float())
        fine = self.data.fine_idx[idx].to(device)
        coarse = self.data.coarse_map.to(device)[fine]
        perm, lam = None, 1.0
        if self.cfg.mixup_alpha > 0:
            lam = float(self.rng.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha))
            perm = torch.randperm(len(idx) - pairs, device=device)
            if pairs:  # both halves mixed with the same partners, so they stay pairs
                perm = torch.cat([perm, perm + pairs])
            x = lam * x + (1 - lam) * x[perm]
        out = self.trainable(x)
        loss = ensemble_loss(out, fine, coarse, perm, lam)
        if pairs:
            loss = loss + self.cfg.consistency * consistency_loss(out, pairs)
        return loss, len(idx)

    def validate(self) -> float:
        scores = predict(self.model, self.data.x_test, self.device)
        return float((scores.argmax(1) == self.data.y_test).float().mean())

    def end_epoch(self, epochs_done: int, history: list[dict]) -> None:
        if self.rank != 0:
            return
        write_train_state(
            self.state_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": epochs_done,
                "history": json.dumps(history),
                "torch_rng": torch.get_rng_state(),
                "fingerprint": self.data.dataset.fingerprint(),
                "conditions": self.data.conditions,
            },
        )

    def resume(self, progress: bool) -> tuple[int, list[dict]]:
        """The epoch to start from and the history so far, from an interrupted run's state
        when it trained on the same data under the same conditions."""
        state = read_train_state(self.state_path) if self.cfg.resume else None
        if not (
            state
            and state["fingerprint"] == self.data.dataset.fingerprint()
            and state["conditions"] == self.data.conditions
        ):
            return 0, []
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        self.rng = np.random.default_rng(self.cfg.seed + start_epoch)
        if progress:
            tqdm.write(f"resuming from epoch {start_epoch} ({self.state_path})")
        return start_epoch, history


def fit_ensemble(cfg: SceneTrainConfig, features_config: FeatureConfig = LOGMEL) -> Checkpoint:
    rank, world = _distributed()
    device = _process_device(cfg.device, world)
    torch.manual_seed(cfg.seed)
    progress = cfg.progress and rank == 0
    data = prepare_scene_data(cfg, features_config, device, rank, world, progress)

    model = build_ensemble(cfg, data.dataset, features_config)
    model.to(device)
    trainable: torch.nn.Module = model
    if world > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch_size = min(cfg.epoch_size or len(data.x_train), len(data.x_train))
    steps_per_epoch = max(1, epoch_size // (cfg.batch_size * world))
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * steps_per_epoch)
    augment = SpecAugment(
        cfg.crop_frames, cfg.spec_masks, cfg.band_limit, cfg.jitter, cfg.jitter_spread
    )
    state_path = cfg.out.with_suffix(".train-state.pt")
    task = SceneTask(
        cfg, data, model, trainable, optimizer, scheduler, augment, device,
        np.random.default_rng(cfg.seed), rank, world, steps_per_epoch, state_path,
    )  # fmt: skip
    start_epoch, history = task.resume(progress)

    started = time.time()
    settings = LoopSettings(
        cfg.epochs, steps_per_epoch, progress, "test_accuracy", "clean test accuracy", "step", True
    )
    history = run_epochs(task, model, optimizer, scheduler, settings, start_epoch, history)
    checkpoint = ensemble_checkpoint(cfg, data, model, features_config, device, history, started)
    if rank == 0:
        save(checkpoint, cfg.out)
        state_path.unlink(missing_ok=True)
    if world > 1:
        dist.destroy_process_group()
    return checkpoint


def ensemble_checkpoint(
    cfg: SceneTrainConfig,
    data: SceneData,
    model: SceneEnsemble,
    features_config: FeatureConfig,
    device: torch.device,
    history: list[dict],
    started: float,
) -> Checkpoint:
    """The trained ensemble with its final clean test accuracy and how it was trained."""
    model.eval()
    scores = predict(model, data.x_test, device)
    metrics = {
        "test_accuracy": float((scores.argmax(1) == data.y_test).float().mean()),
        "test_clips": len(data.test),
        "train_clips": len(data.train),
        "epochs": cfg.epochs,
        "parameters": count_parameters(model),
        "history": history,
        "train_seconds": round(time.time() - started, 1),
    }
    return Checkpoint(
        kind="scene_ensemble",
        config=model.config,
        features=features_config,
        model=model.cpu(),
        codec_conditions=data.conditions,
        data_fingerprint=data.dataset.fingerprint(),
        metrics=metrics,
        extra={
            **provenance_common(cfg.out, cfg.seed),
            "dataset": data.dataset.summary(),
            "augmentations": {
                "mixup_alpha": cfg.mixup_alpha,
                "crop_frames": cfg.crop_frames,
                "spec_masks": cfg.spec_masks,
                "band_limit": cfg.band_limit,
                "jitter": cfg.jitter,
                "jitter_spread": list(cfg.jitter_spread),
                "consistency": cfg.consistency,
            },
        },
    )

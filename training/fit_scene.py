"""Training the scene ensemble, with codec-coded copies of the training set as extra data.

As in the ASC paper, each codec condition adds a coded copy of every training clip; the
augmentations of Hu et al. that need no extra data (mixup, random time crop, spectrum masking)
are on by default. Features are computed once per (clip, condition) with the same extractor the
server uses and kept in memory as float16.
"""

from __future__ import annotations

import json
import os
import platform
import sys
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
from asc.torchaudio_pair import load_torchaudio
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.datasets import Clip, SceneDataset, load_dataset

torchaudio = load_torchaudio()


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
    cache_dir: Path = Path(".cache/coded")
    workers: int | None = None
    resume: bool = True
    progress: bool = True
    max_clips_per_class: int | None = None  # for quick experiments
    # Examples drawn per epoch (default: every clip under every condition). Smaller epochs of
    # random (clip, condition) draws cost less per epoch and see every copy over the run.
    epoch_size: int | None = None
    fold: int = 1  # TAU's fold files / ESC-50's test fold


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


class SpecAugment(torch.nn.Module):
    """Random time crop, frequency/time masks and band limiting on a batch (training only)."""

    def __init__(self, crop_frames: int, masks: bool, band_limit: float = 0.0):
        super().__init__()
        if not 0.0 <= band_limit <= 1.0:
            raise ValueError(f"band_limit must lie in [0, 1], got {band_limit}")
        self.crop_frames = crop_frames
        self.band_limit = band_limit
        self.masks = (
            torch.nn.Sequential(
                torchaudio.transforms.FrequencyMasking(16, iid_masks=True),
                torchaudio.transforms.TimeMasking(40, iid_masks=True),
            )
            if masks
            else torch.nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        if 0 < self.crop_frames < frames:
            start = int(torch.randint(0, frames - self.crop_frames + 1, (1,)))
            x = x[..., start : start + self.crop_frames]
        if self.band_limit > 0:
            x = limit_band(x, self.band_limit)
        return self.masks(x)


def limit_band(x: torch.Tensor, prob: float, low: float = 0.55, high: float = 0.92) -> torch.Tensor:
    """What a codec's lowpass does to per-clip-scaled log-mels with deltas, drawn at random.

    For each example, with probability ``prob``, the bands above a cutoff drawn between
    ``low`` and ``high`` of the mel range (about 4 to 16 kHz at 44.1 kHz) fall to a floor below
    the clip's quietest value (a coded band holds next to no energy), their deltas to zero, and
    the clip is scaled to zero mean and unit variance again, as the feature function does.
    Codecs the model never saw (SBC at low bitpools, MP3 at 32 kbit/s) cut lower than the
    training codecs do; this is what lets it cope.
    """
    batch, _, bins, _ = x.shape
    fires = torch.rand(batch, device=x.device) < prob
    if not fires.any():
        return x
    cutoff = (low + (high - low) * torch.rand(batch, device=x.device)) * bins
    above = torch.arange(bins, device=x.device)[None, :] >= cutoff[:, None]  # (batch, bins)
    cut = (above & fires[:, None])[:, :, None]  # (batch, bins, 1)
    level = x[:, 0].amin(dim=(1, 2), keepdim=True) - 3 * torch.rand(batch, 1, 1, device=x.device)
    logmel = torch.where(cut, level, x[:, 0])
    mean = logmel.mean(dim=(1, 2), keepdim=True)
    std = logmel.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
    channels = [(logmel - mean) / std]
    for c in range(1, x.shape[1]):  # deltas are linear in the log-mels: same scale, zero where cut
        channels.append(torch.where(cut, torch.zeros_like(x[:, c]), x[:, c]) / std)
    limited = torch.stack(channels, dim=1)
    return torch.where(fires[:, None, None, None], limited, x)


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


def one_cycle(
    optimizer: torch.optim.Optimizer, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """One-cycle schedule, warming up over 10 % of the steps (at least two and a half: with
    fewer, as in a run of a handful of steps, the scheduler would divide by zero)."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=max(0.1, 2.5 / total_steps)
    )


def write_train_state(path: Path, state: dict) -> None:
    """Atomically, so a crash mid-write leaves the previous epoch's state intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def read_train_state(path: Path) -> dict | None:
    """The last epoch's state (loaded without arbitrary unpickling), or None to start afresh."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, ValueError, OSError) as e:
        tqdm.write(f"ignoring unreadable training state {path}: {e}")
        return None


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def fit_ensemble(cfg: SceneTrainConfig, features_config: FeatureConfig = LOGMEL) -> Checkpoint:
    rank, world = _distributed()
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    progress = cfg.progress and rank == 0

    dataset = load_dataset(cfg.data, fold=cfg.fold)
    train = limit_per_class(dataset.split("train"), cfg.max_clips_per_class)
    test = limit_per_class(dataset.split("test"), cfg.max_clips_per_class)
    conditions = [UNCODED, *[s for s in parse_spec_list(cfg.augment_codecs) if s != UNCODED]]
    rate = features_config.sample_rate
    cache = CodedCache(cfg.cache_dir, rate=rate, channels=1)
    sources = [c.path for c in train]
    if rank == 0:  # one process codes; the others then find every copy in the cache
        cache.ensure(sources, conditions, workers=cfg.workers, progress=progress)
    if world > 1:
        dist.barrier()
    mapping = cache.ensure(sources, conditions, workers=cfg.workers, progress=False)

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

    use_coarse = cfg.coarse and len(dataset.coarse_classes) > 1
    model = SceneEnsemble(
        dataset.fine_classes,
        dataset.coarse_classes,
        dataset.coarse_of,
        cfg.preset,
        features_config.channels,
        cfg.architectures,
        use_coarse,
    )
    model.to(device)
    trainable: torch.nn.Module = model
    if world > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch_size = min(cfg.epoch_size or len(x_train), len(x_train))
    steps_per_epoch = max(1, epoch_size // (cfg.batch_size * world))
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * steps_per_epoch)
    augment = SpecAugment(cfg.crop_frames, cfg.spec_masks, cfg.band_limit)
    state_path = cfg.out.with_suffix(".train-state.pt")
    start_epoch, history = 0, []
    state = read_train_state(state_path) if cfg.resume else None
    if (
        state
        and state["fingerprint"] == dataset.fingerprint()
        and state["conditions"] == conditions
    ):
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        rng = np.random.default_rng(cfg.seed + start_epoch)
        if progress:
            tqdm.write(f"resuming from epoch {start_epoch} ({state_path})")

    started = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_train)))
        order = order[rank::world][: steps_per_epoch * cfg.batch_size]
        total, seen = 0.0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = augment(x_train[idx].to(device).float())
            fine = fine_idx[idx].to(device)
            coarse = coarse_map.to(device)[fine]
            perm, lam = None, 1.0
            if cfg.mixup_alpha > 0:
                lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                perm = torch.randperm(len(idx), device=device)
                x = lam * x + (1 - lam) * x[perm]
            loss = ensemble_loss(trainable(x), fine, coarse, perm, lam)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        accuracy = float((predict(model, x_test, device).argmax(1) == y_test).float().mean())
        history.append(
            {"epoch": epoch + 1, "loss": total / max(seen, 1), "test_accuracy": accuracy}
        )
        if rank == 0:
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1}: loss {total / max(seen, 1):.3f}, "
                    f"clean test accuracy {accuracy:.3f}"
                )
            write_train_state(
                state_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": json.dumps(history),
                    "torch_rng": torch.get_rng_state(),
                    "fingerprint": dataset.fingerprint(),
                    "conditions": conditions,
                },
            )

    model.eval()
    scores = predict(model, x_test, device)
    metrics = {
        "test_accuracy": float((scores.argmax(1) == y_test).float().mean()),
        "test_clips": len(test),
        "train_clips": len(train),
        "epochs": cfg.epochs,
        "parameters": count_parameters(model),
        "history": history,
        "train_seconds": round(time.time() - started, 1),
    }
    checkpoint = Checkpoint(
        kind="scene_ensemble",
        config=model.config,
        features=features_config,
        model=model.cpu(),
        codec_conditions=conditions,
        data_fingerprint=dataset.fingerprint(),
        metrics=metrics,
        extra={
            **provenance_common(cfg.out, cfg.seed),
            "dataset": dataset.summary(),
            "augmentations": {
                "mixup_alpha": cfg.mixup_alpha,
                "crop_frames": cfg.crop_frames,
                "spec_masks": cfg.spec_masks,
                "band_limit": cfg.band_limit,
            },
        },
    )
    if rank == 0:
        save(checkpoint, cfg.out)
        state_path.unlink(missing_ok=True)
    if world > 1:
        dist.destroy_process_group()
    return checkpoint


def provenance_common(out: Path, seed: int) -> dict:
    """Where a checkpoint came from: its id, when, the command line and library versions."""
    return {
        "model_id": out.stem,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": seed,
        "versions": {
            "torch": torch.__version__,
            "torchaudio": torchaudio.__version__,
            "python": platform.python_version(),
        },
    }
